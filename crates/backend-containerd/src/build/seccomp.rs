//! The seccomp filter of a RUN step.
//!
//! Docker's default profile is an allow-list of ~350 system calls kept up to date with each kernel; berth writes the
//! opposite, shorter list: everything is allowed except the calls Docker's profile refuses to a container without
//! extra capabilities and that a build has no use for. Most of them already fail without `CAP_SYS_ADMIN` and the
//! other capabilities a step lacks; the filter matters for the ones that need no capability at all: creating user
//! namespaces (`unshare`, `clone` with namespace flags), which opens kernel code to an unprivileged root, the kernel
//! keyrings (not namespaced), `userfaultfd`, `perf_event_open` and `bpf`. `clone3` and io_uring answer "not
//! implemented", as with Docker, so libc and runtimes fall back to `clone` and plain system calls.

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArgBuilder, LinuxSeccompBuilder,
    LinuxSeccompOperator, LinuxSyscall, LinuxSyscallBuilder,
};
use oci_spec::OciSpecError;

/// Refused with `EPERM`. Names a kernel does not have on an architecture are skipped by runc.
const REFUSED: &[&str] = &[
    "acct",
    "add_key",
    "bpf",
    "clock_adjtime",
    "clock_settime",
    "create_module",
    "delete_module",
    "finit_module",
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "get_kernel_syms",
    "init_module",
    "ioperm",
    "iopl",
    "kcmp",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "mount",
    "mount_setattr",
    "move_mount",
    "name_to_handle_at",
    "nfsservctl",
    "open_by_handle_at",
    "open_tree",
    "perf_event_open",
    "pivot_root",
    "query_module",
    "quotactl",
    "quotactl_fd",
    "reboot",
    "request_key",
    "setns",
    "settimeofday",
    "stime",
    "swapoff",
    "swapon",
    "sysfs",
    "_sysctl",
    "umount",
    "umount2",
    "unshare",
    "uselib",
    "userfaultfd",
    "ustat",
    "vm86",
    "vm86old",
];

/// Answered with `ENOSYS`, so callers take their fallback.
const NOT_IMPLEMENTED: &[&str] = &[
    "clone3",
    "io_uring_enter",
    "io_uring_register",
    "io_uring_setup",
];

/// `clone` flags that create namespaces (`CLONE_NEWNS`, `NEWCGROUP`, `NEWUTS`, `NEWIPC`, `NEWUSER`, `NEWPID`,
/// `NEWNET`): a `clone` with any of them is refused. The flags are `clone`'s first argument on every architecture
/// berth builds for (s390x, where they are the second, gets no `clone` rule).
const NAMESPACE_FLAGS: [u64; 7] = [
    0x0002_0000,
    0x0200_0000,
    0x0400_0000,
    0x0800_0000,
    0x1000_0000,
    0x2000_0000,
    0x4000_0000,
];

const EPERM: u32 = 1;
const ENOSYS: u32 = 38;

/// The filter for a step on this machine's architecture.
pub(crate) fn profile() -> Result<LinuxSeccomp, OciSpecError> {
    let names = |list: &[&str]| list.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    let mut syscalls = vec![
        refuse(names(REFUSED), EPERM)?,
        refuse(names(NOT_IMPLEMENTED), ENOSYS)?,
    ];
    if std::env::consts::ARCH != "s390x" {
        for flag in NAMESPACE_FLAGS {
            let arg = LinuxSeccompArgBuilder::default()
                .index(0usize)
                .value(flag)
                .value_two(flag)
                .op(LinuxSeccompOperator::ScmpCmpMaskedEq)
                .build()?;
            syscalls.push(
                LinuxSyscallBuilder::default()
                    .names(vec!["clone".to_string()])
                    .action(LinuxSeccompAction::ScmpActErrno)
                    .errno_ret(EPERM)
                    .args(vec![arg])
                    .build()?,
            );
        }
    }
    LinuxSeccompBuilder::default()
        .default_action(LinuxSeccompAction::ScmpActAllow)
        .architectures(architectures())
        .syscalls(syscalls)
        .build()
}

fn refuse(names: Vec<String>, errno: u32) -> Result<LinuxSyscall, OciSpecError> {
    LinuxSyscallBuilder::default()
        .names(names)
        .action(LinuxSeccompAction::ScmpActErrno)
        .errno_ret(errno)
        .build()
}

/// The host's architecture and the 32-bit ones its kernel also runs, so 32-bit binaries in an image run too and
/// are filtered by their own system call numbers.
fn architectures() -> Vec<Arch> {
    match std::env::consts::ARCH {
        "x86_64" => vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32],
        "aarch64" => vec![Arch::ScmpArchAarch64, Arch::ScmpArchArm],
        "x86" => vec![Arch::ScmpArchX86],
        "arm" => vec![Arch::ScmpArchArm],
        "powerpc64" => vec![Arch::ScmpArchPpc64, Arch::ScmpArchPpc],
        "s390x" => vec![Arch::ScmpArchS390x, Arch::ScmpArchS390],
        "riscv64" => vec![Arch::ScmpArchRiscv64],
        // runc filters the native architecture when none is named
        _ => Vec::new(),
    }
}
