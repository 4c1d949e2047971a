//! The OCI runtime spec of a RUN step, written by berth (what `ctr run` would generate, trimmed to a build):
//! Docker's default capabilities, the usual /proc, /dev, /sys mounts, the host's resolv.conf and hosts, host
//! networking unless the plan asks for none, and the step's bind mounts.

use berth_core::engine::Network;
use serde_json::{json, Value};

use crate::rootfs::User;

/// Docker's default capability set.
const CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Host files every step sees read-only (name resolution works as on the host, as with host networking).
pub(crate) const HOST_FILES: &[&str] = &["/etc/resolv.conf", "/etc/hosts"];

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
) -> Vec<u8> {
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}),
    ];
    for file in HOST_FILES {
        mounts.push(json!({"destination": file, "type": "bind", "source": file, "options": ["rbind", "ro", "nosuid", "nodev"]}));
    }
    for bind in binds {
        let mode = if bind.read_only { "ro" } else { "rw" };
        mounts.push(json!({"destination": bind.target, "type": "bind", "source": bind.source, "options": ["rbind", mode]}));
    }
    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
    ];
    if network == Network::None {
        namespaces.push(json!({"type": "network"}));
    }
    let spec: Value = json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {
                "uid": process.user.uid,
                "gid": process.user.gid,
                "additionalGids": process.user.additional_gids,
            },
            "args": process.args,
            "env": process.env,
            "cwd": process.cwd,
            "capabilities": {
                "bounding": CAPABILITIES,
                "effective": CAPABILITIES,
                "permitted": CAPABILITIES,
            },
            "noNewPrivileges": false,
        },
        "root": {"path": "rootfs", "readonly": false},
        "hostname": "berth-build",
        "mounts": mounts,
        "linux": {
            "namespaces": namespaces,
            "cgroupsPath": format!("/{namespace}/{id}"),
            "resources": {
                "devices": [{"allow": false, "access": "rwm"}],
            },
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
                "/sys/firmware", "/sys/devices/virtual/powercap",
            ],
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
            ],
        },
    });
    spec.to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_network_unless_none() {
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
        let host: Value = serde_json::from_slice(&runtime_spec(
            "x",
            "default",
            &process,
            &[],
            Network::Default,
        ))
        .expect("json");
        assert!(!host["linux"]["namespaces"].to_string().contains("network"));
        let none: Value =
            serde_json::from_slice(&runtime_spec("x", "default", &process, &[], Network::None))
                .expect("json");
        assert!(none["linux"]["namespaces"].to_string().contains("network"));
    }
}
