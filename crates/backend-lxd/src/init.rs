//! The build container's first process. LXD starts `/sbin/init` by default, which most images berth builds on
//! lack (a debootstrap'd Debian, distroless, scratch), and a build container needs nothing from an init but to
//! stay alive while steps run through exec. berth writes a static program of 129 to 152 bytes that waits
//! forever (`pause()`, or `ppoll()` with nothing to poll, in a loop) into its state folder, mounts it read-only at
//! `/dev/.berth-init` (the container's `/dev` is a tmpfs: nothing reaches the root folder or a layer) and names it
//! in `lxc.init.cmd`. The program is the server's architecture's: x86_64, aarch64, riscv64 or ppc64le (the 64-bit
//! little-endian ones LXD runs on; 32-bit ARM, i686 and big-endian s390x would each need another ELF layout).
//!
//! On a remote server the program is pushed into the root folder instead ([`PUSHED_NAME`]).
//!
//! Pointing `lxc.init.cmd` at something of the image instead (`/bin/sh -c 'sleep inf'`) would need a shell and
//! a `sleep` in every base, which distroless and scratch bases lack; `lxc.execute` (application containers) is
//! not something LXD's API offers.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use berth_core::{Error, Operation, Result};

use crate::errors::io_error;

/// Where the program appears in the container.
pub(crate) const INIT_PATH: &str = "/dev/.berth-init";

/// The name of the program in the root folder of a container on a remote server: berth cannot give that server
/// a disk device from this machine's files, so it pushes the program through the file API before the first
/// start (`/dev` would hide it then). The export a remote step's layer is read from leaves it out.
pub(crate) const PUSHED_NAME: &str = ".berth-init";

/// A program for one architecture: the ELF machine, its flags, and the code, which asks the kernel to wait
/// with nothing to wait for and no time limit (`pause()` where the architecture has it, else `ppoll(NULL, 0, NULL,
/// NULL, 0)`: the generic system call table has no `pause`) and does it again whenever a signal ends the wait.
struct Program {
    machine: u16,
    flags: u32,
    code: &'static [u8],
}

/// The programs, by the architecture name LXD reports (`environment.kernel_architecture`, the kernel's `uname -m`).
/// Each is little-endian 64-bit; checked by `tests::each_program_waits_under_its_architecture` (qemu-user).
fn program(architecture: &str) -> Option<Program> {
    Some(match architecture {
        // mov eax, 34 (pause); syscall; jmp back
        "x86_64" => Program {
            machine: 0x3e,
            flags: 0,
            code: &[0xb8, 0x22, 0, 0, 0, 0x0f, 0x05, 0xeb, 0xf7],
        },
        // mov x0..x4, #0; mov x8, #73 (ppoll); svc #0; b back
        "aarch64" => Program {
            machine: 0xb7,
            flags: 0,
            code: &AARCH64,
        },
        // li a0..a4, 0; li a7, 73 (ppoll); ecall; j back
        "riscv64" => Program {
            machine: 0xf3,
            flags: 0,
            code: &RISCV64,
        },
        // li r3..r7, 0; li r0, 281 (ppoll); sc; b back. Flags 2: the ELFv2 ABI, whose entry is an address (the
        // kernel reads a function descriptor there otherwise)
        "ppc64le" => Program {
            machine: 0x15,
            flags: 2,
            code: &PPC64LE,
        },
        _ => return None,
    })
}

const AARCH64: [u8; 32] = words([
    0xd280_0000,
    0xd280_0001,
    0xd280_0002,
    0xd280_0003,
    0xd280_0004,
    0xd280_0928,
    0xd400_0001,
    0x17ff_fff9,
]);
const RISCV64: [u8; 32] = words([
    0x0000_0513,
    0x0000_0593,
    0x0000_0613,
    0x0000_0693,
    0x0000_0713,
    0x0490_0893,
    0x0000_0073,
    0xfe5f_f06f,
]);
const PPC64LE: [u8; 32] = words([
    0x3860_0000,
    0x3880_0000,
    0x38a0_0000,
    0x38c0_0000,
    0x38e0_0000,
    0x3800_0119,
    0x4400_0002,
    0x4bff_ffe4,
]);

/// Eight 32-bit instructions as little-endian bytes.
const fn words(instructions: [u32; 8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 8 {
        let bytes = instructions[i].to_le_bytes();
        let mut j = 0;
        while j < 4 {
            out[i * 4 + j] = bytes[j];
            j += 1;
        }
        i += 1;
    }
    out
}

/// An ELF64 little-endian executable of one loadable segment holding the program's code (entry right after the
/// headers).
fn elf(program: &Program) -> Vec<u8> {
    let Program {
        machine,
        flags,
        code,
    } = *program;
    const BASE: u64 = 0x40_0000;
    const HEADERS: u64 = 64 + 56;
    let size = HEADERS + code.len() as u64;
    let mut out = Vec::with_capacity(size as usize);
    out.extend_from_slice(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0"); // 64-bit, little-endian, version 1
    out.extend_from_slice(&2u16.to_le_bytes()); // executable
    out.extend_from_slice(&machine.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&(BASE + HEADERS).to_le_bytes()); // entry
    out.extend_from_slice(&64u64.to_le_bytes()); // program headers at
    out.extend_from_slice(&0u64.to_le_bytes()); // no section headers
    out.extend_from_slice(&flags.to_le_bytes());
    for half in [64u16, 56, 1, 0, 0, 0] {
        out.extend_from_slice(&half.to_le_bytes()); // header sizes and counts
    }
    out.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    out.extend_from_slice(&5u32.to_le_bytes()); // read + execute
    out.extend_from_slice(&0u64.to_le_bytes()); // from file offset 0
    out.extend_from_slice(&BASE.to_le_bytes());
    out.extend_from_slice(&BASE.to_le_bytes());
    out.extend_from_slice(&size.to_le_bytes());
    out.extend_from_slice(&size.to_le_bytes());
    out.extend_from_slice(&0x1000u64.to_le_bytes());
    out.extend_from_slice(code);
    out
}

/// The architectures berth has a program for.
pub(crate) const ARCHITECTURES: [&str; 4] = ["x86_64", "aarch64", "riscv64", "ppc64le"];

/// Writes the program for an LXD server of `architecture` into `state_dir` (once) and returns its path.
pub(crate) fn install(state_dir: &Path, architecture: &str) -> Result<PathBuf> {
    let op = Operation::Build;
    let Some(program) = program(architecture) else {
        return Err(Error::unsupported(
            crate::ENGINE,
            op.as_str(),
            format!("berth's LXD builder has no init program for an {architecture} LXD server"),
        )
        .with_hint(format!(
            "build on an LXD server of one of {}, or with another engine",
            ARCHITECTURES.join(", ")
        )));
    };
    let code = elf(&program);
    let path = state_dir.join(format!("init-{architecture}"));
    if std::fs::read(&path).is_ok_and(|existing| existing == code) {
        return Ok(path);
    }
    std::fs::create_dir_all(state_dir).map_err(|e| io_error(op, state_dir.display(), e))?;
    let tmp = state_dir.join(format!("init.{}", crate::instance::unique_name()));
    std::fs::write(&tmp, &code)
        .and_then(|()| std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)))
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| io_error(op, path.display(), e))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt as _;

    /// How to run a program of `architecture` here: directly on its own machine, else under qemu-user.
    fn runner(architecture: &str) -> Vec<String> {
        if architecture == std::env::consts::ARCH {
            return Vec::new();
        }
        let qemu = format!("qemu-{architecture}-static");
        assert!(
            std::process::Command::new(&qemu)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success()),
            "{qemu} is missing: install Debian's qemu-user-static (scripts/env/up.sh does)"
        );
        vec![qemu]
    }

    /// The program of each architecture starts, waits (asleep in the kernel: it does not spin), survives being
    /// stopped and continued, and ends only when killed. Under qemu-user (`-strace`) each shows the one system
    /// call it makes: `pause` or `ppoll(0,0,0,0,0,0)`.
    #[test]
    fn each_program_waits_under_its_architecture() {
        let dir = tempfile::tempdir().expect("dir");
        for architecture in ARCHITECTURES {
            let path = install(dir.path(), architecture).expect("a program");
            let mut argv = runner(architecture);
            argv.push(path.display().to_string());
            let mut child = std::process::Command::new(&argv[0])
                .args(&argv[1..])
                .spawn()
                .expect("the program starts");
            std::thread::sleep(std::time::Duration::from_millis(500));
            // stopped and continued, as a frozen container is: the wait starts again, the program stays
            for signal in ["-STOP", "-CONT"] {
                let sent = std::process::Command::new("kill")
                    .args([signal, &child.id().to_string()])
                    .status()
                    .expect("kill");
                assert!(sent.success());
            }
            std::thread::sleep(std::time::Duration::from_millis(500));
            assert!(
                child.try_wait().expect("wait").is_none(),
                "the {architecture} program exited"
            );
            let stat = std::fs::read_to_string(format!("/proc/{}/stat", child.id())).expect("stat");
            let fields: Vec<&str> = stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .collect();
            // the state after the name: S, asleep in the kernel (a program that spins is R, one that stopped T)
            assert_eq!(
                fields.first(),
                Some(&"S"),
                "the {architecture} program is not waiting: {stat}"
            );
            child.kill().expect("kill");
            child.wait().expect("reaped");
        }
        assert_eq!(
            std::fs::metadata(dir.path().join("init-aarch64"))
                .expect("aarch64")
                .mode()
                & 0o777,
            0o755
        );
    }

    #[test]
    fn other_servers_are_refused_with_the_list() {
        let dir = tempfile::tempdir().expect("dir");
        let err = install(dir.path(), "s390x").expect_err("no program for s390x");
        assert_eq!(err.kind(), berth_core::ErrorKind::Unsupported);
        assert!(err.to_string().contains("s390x"), "{err}");
    }
}
