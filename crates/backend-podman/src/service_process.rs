//! The process of a Podman service on this host: where its builds' RUN steps run (its user namespace) and its
//! temporary folder (its `TMPDIR`).
//!
//! A service is a `podman system service` process of the service's user. It may have been started with its
//! socket on the command line or by socket activation (no socket named): a process that names the socket wins,
//! else the only service of that user. A rootless service is two processes (measured on Podman 4.3.1): the one
//! started, in the machine's user namespace, and the one it re-executes inside the user's namespace (joined
//! with its pause process), which serves; both name the socket. The one that serves is the one whose child is
//! no service process, and it is the one that starts buildah's steps: a RUN step of the rootless service runs
//! in its user namespace (`buildah-oci-runtime`, a child of it, starts the step), one of a rootful service in
//! the machine's.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

/// One `podman system service` process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServiceProcess {
    /// Its pid.
    pub(crate) pid: u32,
    /// Its parent's pid.
    parent: u32,
    /// Whether its command line names the socket asked for.
    names_socket: bool,
    /// Its `TMPDIR`, when set and readable.
    pub(crate) tmpdir: Option<PathBuf>,
}

impl ServiceProcess {
    /// Its user namespace, where its RUN steps run (`user:[INODE]`), when berth may read it.
    pub(crate) fn user_namespace(&self) -> Option<String> {
        user_namespace(self.pid)
    }
}

/// The user namespace of process `pid` (`user:[INODE]`, as `/proc/PID/ns/user` reads), when berth may read it
/// (its own user's processes, or every one for root).
pub(crate) fn user_namespace(pid: u32) -> Option<String> {
    let link = std::fs::read_link(format!("/proc/{pid}/ns/user")).ok()?;
    Some(link.to_string_lossy().into_owned())
}

/// The process of the Podman service of `uid` that serves `socket`, if it can be found on this host.
pub(crate) fn find(uid: u32, socket: &Path) -> Option<ServiceProcess> {
    pick(service_processes(uid, socket))
}

/// The serving one of `found`: of the processes that no other found process has as its parent (a rootless
/// service's re-executed process, not the one started), the one naming the socket, else the only one.
fn pick(found: Vec<ServiceProcess>) -> Option<ServiceProcess> {
    let mut serving: Vec<ServiceProcess> = found
        .iter()
        .filter(|p| !found.iter().any(|child| child.parent == p.pid))
        .cloned()
        .collect();
    if let Some(named) = serving.iter().position(|p| p.names_socket) {
        return Some(serving.swap_remove(named));
    }
    match serving.len() {
        1 => serving.pop(),
        _ => None,
    }
}

/// Every `podman system service` process of `uid` on this host; whether each names `socket`.
fn service_processes(uid: u32, socket: &Path) -> Vec<ServiceProcess> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let socket = socket.to_string_lossy();
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let dir = PathBuf::from(format!("/proc/{pid}"));
            if std::fs::metadata(&dir).map(|m| m.uid()).ok() != Some(uid) {
                return None;
            }
            let cmdline = std::fs::read(dir.join("cmdline")).ok()?;
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            let is_service = args.first().is_some_and(|a| a.ends_with(b"podman"))
                && args
                    .windows(2)
                    .any(|w| w[0] == b"system" && w[1] == b"service");
            if !is_service {
                return None;
            }
            Some(ServiceProcess {
                pid,
                parent: parent(&dir)?,
                names_socket: args
                    .iter()
                    .any(|a| String::from_utf8_lossy(a).ends_with(socket.as_ref())),
                tmpdir: tmpdir(&dir),
            })
        })
        .collect()
}

/// The parent pid in `/proc/PID/stat` (the field after the command's closing parenthesis and the state).
fn parent(dir: &Path) -> Option<u32> {
    let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// `TMPDIR` in the process's environment, when set and readable.
fn tmpdir(dir: &Path) -> Option<PathBuf> {
    let env = std::fs::read(dir.join("environ")).ok()?;
    env.split(|b| *b == 0)
        .find_map(|var| var.strip_prefix(b"TMPDIR="))
        .filter(|v| !v.is_empty())
        .map(|v| PathBuf::from(String::from_utf8_lossy(v).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process(pid: u32, parent: u32, names_socket: bool) -> ServiceProcess {
        ServiceProcess {
            pid,
            parent,
            names_socket,
            tmpdir: None,
        }
    }

    #[test]
    fn a_rootless_service_is_the_process_it_re_executes() {
        // the one started (in the machine's namespace) and its re-executed child (in the user's): the child serves
        let rootless = vec![process(16801, 1, true), process(16819, 16801, true)];
        assert_eq!(pick(rootless).map(|p| p.pid), Some(16819));
        // socket activation: neither names the socket, and they are still one service
        let activated = vec![process(10, 1, false), process(11, 10, false)];
        assert_eq!(pick(activated).map(|p| p.pid), Some(11));
    }

    #[test]
    fn the_service_naming_the_socket_wins_and_two_unnamed_ones_are_none() {
        let two = vec![process(5, 1, false), process(6, 1, true)];
        assert_eq!(pick(two).map(|p| p.pid), Some(6));
        assert_eq!(pick(vec![process(5, 1, false), process(6, 1, false)]), None);
        assert_eq!(pick(Vec::new()), None);
    }

    #[test]
    fn this_process_has_a_user_namespace() {
        let own = user_namespace(std::process::id()).expect("own namespace");
        assert!(own.starts_with("user:["), "{own}");
    }
}
