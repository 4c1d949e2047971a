//! The OCI runtime spec of a RUN step, built with the `oci-spec` crate's types (what `ctr run` would generate,
//! trimmed to a build).
//!
//! What separates the step from the host (declared as [`RunIsolation`](berth_core::engine::RunIsolation) in
//! the engine's capabilities, and checked by the conformance suite): new pid, ipc, uts and mount namespaces;
//! Docker's default capability set (no `CAP_SYS_ADMIN`, `CAP_NET_ADMIN`, `CAP_SYS_PTRACE`...); a seccomp filter
//! ([`super::seccomp`]); no devices beyond runc's defaults; /proc and /sys paths masked or read-only as Docker does.
//! Not separated: the network (host networking unless the plan asks for none, so package mirrors and proxies on
//! the host's loopback work as they do for `docker build --network host`), the host's resolv.conf and hosts, and
//! user ids (the step's root is the host's root, as with rootful Docker).

use std::path::PathBuf;

use berth_core::engine::Network;
use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxDeviceCgroupBuilder,
    LinuxNamespaceBuilder, LinuxNamespaceType, LinuxResourcesBuilder, Mount, MountBuilder,
    ProcessBuilder, RootBuilder, SpecBuilder, UserBuilder,
};
use oci_spec::OciSpecError;

use crate::rootfs::User;

/// Docker's default capability set.
const CAPABILITIES: [Capability; 14] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// Host files every step sees read-only (name resolution works as on the host, as with host networking).
pub(crate) const HOST_FILES: &[&str] = &["/etc/resolv.conf", "/etc/hosts"];

/// Paths under /proc and /sys the step sees empty (Docker's list).
const MASKED: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths under /proc the step sees read-only (Docker's list).
const READ_ONLY: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// A bind mount into the step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BindMount {
    /// Host path.
    pub(crate) source: String,
    /// Path inside the container.
    pub(crate) target: String,
    pub(crate) read_only: bool,
}

/// What a RUN step runs.
#[derive(Debug, Clone)]
pub(crate) struct Process {
    pub(crate) args: Vec<String>,
    pub(crate) env: Vec<String>,
    pub(crate) cwd: String,
    pub(crate) user: User,
}

/// The spec as JSON bytes.
pub(crate) fn runtime_spec(
    id: &str,
    namespace: &str,
    process: &Process,
    binds: &[BindMount],
    network: Network,
) -> Result<Vec<u8>, OciSpecError> {
    let strings = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let mount = |destination: &str, kind: &str, source: &str, options: &[&str]| {
        MountBuilder::default()
            .destination(destination)
            .typ(kind)
            .source(source)
            .options(strings(options))
            .build()
    };
    let mut mounts: Vec<Mount> = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        )?,
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        )?,
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        )?,
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        )?,
    ];
    for file in HOST_FILES {
        mounts.push(mount(
            file,
            "bind",
            file,
            &["rbind", "ro", "nosuid", "nodev"],
        )?);
    }
    for bind in binds {
        let mode = if bind.read_only { "ro" } else { "rw" };
        mounts.push(mount(&bind.target, "bind", &bind.source, &["rbind", mode])?);
    }
    let mut namespaces = vec![
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Mount,
    ];
    if network == Network::None {
        namespaces.push(LinuxNamespaceType::Network);
    }
    let namespaces = namespaces
        .into_iter()
        .map(|kind| LinuxNamespaceBuilder::default().typ(kind).build())
        .collect::<Result<Vec<_>, _>>()?;
    let capabilities: oci_spec::runtime::Capabilities = CAPABILITIES.into_iter().collect();
    let user = UserBuilder::default()
        .uid(process.user.uid)
        .gid(process.user.gid)
        .additional_gids(process.user.additional_gids.clone())
        .build()?;
    let spec = SpecBuilder::default()
        .version("1.0.2")
        .process(
            ProcessBuilder::default()
                .terminal(false)
                .user(user)
                .args(process.args.clone())
                .env(process.env.clone())
                .cwd(&process.cwd)
                // the builders start from oci-spec's defaults: every field berth means to leave out is set empty
                // (no inheritable or ambient capabilities, which a non-root USER would otherwise keep; no
                // rlimits, so the step inherits containerd's rather than a 1024-file limit)
                .capabilities(
                    LinuxCapabilitiesBuilder::default()
                        .bounding(capabilities.clone())
                        .effective(capabilities.clone())
                        .permitted(capabilities)
                        .inheritable(oci_spec::runtime::Capabilities::new())
                        .ambient(oci_spec::runtime::Capabilities::new())
                        .build()?,
                )
                .rlimits(Vec::new())
                // setuid programs (sudo, su) work in a build, as with Docker
                .no_new_privileges(false)
                .build()?,
        )
        .root(
            RootBuilder::default()
                .path("rootfs")
                .readonly(false)
                .build()?,
        )
        .hostname("berth-build")
        .mounts(mounts)
        .linux(
            LinuxBuilder::default()
                .namespaces(namespaces)
                .cgroups_path(PathBuf::from(format!("/{namespace}/{id}")))
                .resources(
                    LinuxResourcesBuilder::default()
                        .devices(vec![LinuxDeviceCgroupBuilder::default()
                            .allow(false)
                            .access("rwm")
                            .build()?])
                        .build()?,
                )
                .masked_paths(strings(MASKED))
                .readonly_paths(strings(READ_ONLY))
                .seccomp(super::seccomp::profile()?)
                .build()?,
        )
        .build()?;
    serde_json::to_vec(&spec).map_err(|e| OciSpecError::Other(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn spec(network: Network) -> Value {
        let process = Process {
            args: vec!["/bin/sh".into(), "-c".into(), "true".into()],
            env: vec![],
            cwd: "/".into(),
            user: User {
                uid: 0,
                gid: 0,
                home: "/root".into(),
                additional_gids: vec![],
            },
        };
        let bytes = runtime_spec("x", "default", &process, &[], network).expect("spec");
        serde_json::from_slice(&bytes).expect("json")
    }

    #[test]
    fn host_network_unless_none() {
        let host = spec(Network::Default);
        assert!(!host["linux"]["namespaces"].to_string().contains("network"));
        assert!(host["linux"]["namespaces"].to_string().contains("mount"));
        let none = spec(Network::None);
        assert!(none["linux"]["namespaces"].to_string().contains("network"));
    }

    #[test]
    fn steps_get_dockers_capabilities_and_a_seccomp_filter() {
        let spec = spec(Network::Default);
        let caps = &spec["process"]["capabilities"];
        let effective = caps["effective"].to_string();
        assert!(effective.contains("CAP_CHOWN"), "{effective}");
        assert!(!effective.contains("CAP_SYS_ADMIN"), "{effective}");
        // nothing oci-spec's defaults would add: ambient capabilities (kept by a non-root USER), a file limit
        assert_eq!(caps["ambient"], serde_json::json!([]), "{caps}");
        assert_eq!(caps["inheritable"], serde_json::json!([]), "{caps}");
        assert_eq!(spec["process"]["rlimits"], serde_json::json!([]));
        let seccomp = &spec["linux"]["seccomp"];
        assert_eq!(seccomp["defaultAction"], "SCMP_ACT_ALLOW");
        let rules = seccomp["syscalls"].as_array().expect("rules");
        let refused = |name: &str| {
            rules.iter().any(|r| {
                r["action"] == "SCMP_ACT_ERRNO"
                    && r["args"].is_null()
                    && r["names"]
                        .as_array()
                        .is_some_and(|n| n.iter().any(|n| n == name))
            })
        };
        for name in ["unshare", "keyctl", "bpf", "userfaultfd", "mount", "clone3"] {
            assert!(refused(name), "{name} is not refused: {seccomp}");
        }
        assert!(!refused("clone"), "plain clone must stay allowed (fork)");
        let user_ns = rules.iter().any(|r| {
            r["names"][0] == "clone"
                && r["args"][0]["op"] == "SCMP_CMP_MASKED_EQ"
                && r["args"][0]["value"] == 0x1000_0000u64
        });
        assert!(user_ns, "clone(CLONE_NEWUSER) is not refused: {seccomp}");
    }
}
