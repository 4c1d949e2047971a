//! The service's facts (`/libpod/info`) remembered between berth runs.
//!
//! Podman 4.3 takes 0.25-0.3 s to answer `/libpod/info` here (it runs conmon, the OCI runtime and slirp4netns
//! for their versions and counts its store), and berth asked it in every run that pushes from the storage (the
//! graph root) or finds build containers to check (where their records are): a fifth of pushing a 200 MB
//! layer. What berth reads from it (version, rootless, graph root and driver, the copy folder) is fixed for the
//! life of the service process, which reads its configuration when it starts. So a record in berth's cache
//! folder keeps them with the serving process's pid and start time, and only that process's answers are taken
//! from it: a service started again (another pid, or the same pid at another time) is asked again, as is one
//! berth cannot find on this host (another PID namespace, over SSH). Writing is best effort: a record that
//! cannot be written costs the next run the request, nothing else.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::connect::Service;

/// The running service process a record belongs to: pid and start time (clock ticks after boot).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ServiceIdentity {
    pid: u32,
    start: u64,
}

impl ServiceIdentity {
    /// The process serving `socket` for `uid` on this host, if berth can find it.
    pub(crate) fn of(uid: u32, socket: &Path) -> Option<ServiceIdentity> {
        let process = crate::service_process::find(uid, socket)?;
        let start = berth_core::process::start_time(process.pid)?;
        Some(ServiceIdentity {
            pid: process.pid,
            start,
        })
    }
}

/// The record's file for the service at `socket`: one per socket path.
fn record(dir: &Path, socket: &Path) -> PathBuf {
    let name: String = socket
        .to_string_lossy()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    dir.join(format!("{name}.json"))
}

/// The facts remembered for the service at `socket`, if they are `identity`'s.
pub(crate) fn recall(dir: &Path, socket: &Path, identity: ServiceIdentity) -> Option<Service> {
    let bytes = std::fs::read(record(dir, socket)).ok()?;
    let value: Value = serde_json::from_slice(&bytes).ok()?;
    if value["pid"].as_u64() != Some(u64::from(identity.pid))
        || value["start"].as_u64() != Some(identity.start)
    {
        return None;
    }
    let text = |key: &str| value[key].as_str().map(str::to_string);
    Some(Service {
        version: text("version")?,
        rootless: value["rootless"].as_bool()?,
        graph_root: text("graph_root")?,
        graph_driver: text("graph_driver")?,
        image_copy_tmp_dir: text("image_copy_tmp_dir")?,
    })
}

/// Remembers `service` as `identity`'s answers (best effort; the file is replaced whole, never half-written).
pub(crate) fn remember(dir: &Path, socket: &Path, identity: ServiceIdentity, service: &Service) {
    let value = json!({
        "pid": identity.pid,
        "start": identity.start,
        "version": service.version,
        "rootless": service.rootless,
        "graph_root": service.graph_root,
        "graph_driver": service.graph_driver,
        "image_copy_tmp_dir": service.image_copy_tmp_dir,
    });
    let path = record(dir, socket);
    let partial = path.with_extension(format!("json.{}.tmp", std::process::id()));
    let written = std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(&partial, value.to_string()))
        .and_then(|()| std::fs::rename(&partial, &path));
    if written.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(version: &str) -> Service {
        Service {
            version: version.into(),
            rootless: true,
            graph_root: "/home/u/.local/share/containers/storage".into(),
            graph_driver: "overlay".into(),
            image_copy_tmp_dir: "/var/tmp".into(),
        }
    }

    #[test]
    fn facts_are_recalled_only_for_the_process_that_gave_them() {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = Path::new("/run/user/1000/podman/podman.sock");
        let first = ServiceIdentity {
            pid: 42,
            start: 1000,
        };
        assert!(recall(dir.path(), socket, first).is_none(), "nothing yet");
        remember(dir.path(), socket, first, &service("4.3.1"));
        let recalled = recall(dir.path(), socket, first).expect("remembered");
        assert_eq!(recalled.version, "4.3.1");
        assert_eq!(
            recalled.graph_root,
            "/home/u/.local/share/containers/storage"
        );
        assert!(recalled.rootless);
        // the same pid started again, and another process
        assert!(recall(
            dir.path(),
            socket,
            ServiceIdentity {
                pid: 42,
                start: 2000
            }
        )
        .is_none());
        assert!(recall(
            dir.path(),
            socket,
            ServiceIdentity {
                pid: 43,
                start: 1000
            }
        )
        .is_none());
        // another socket has a record of its own
        assert!(recall(dir.path(), Path::new("/run/podman/podman.sock"), first).is_none());
        let files: Vec<_> = std::fs::read_dir(dir.path())
            .expect("dir")
            .flatten()
            .collect();
        assert_eq!(files.len(), 1, "one record, no partial file left");
    }

    #[test]
    fn a_damaged_record_is_asked_again() {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = Path::new("/run/podman/podman.sock");
        let identity = ServiceIdentity { pid: 7, start: 9 };
        std::fs::write(
            record(dir.path(), socket),
            r#"{"pid": 7, "start": 9, "version": "4.3.1"}"#,
        )
        .expect("write");
        assert!(recall(dir.path(), socket, identity).is_none());
    }
}
