//! What `berth doctor` learns from this machine: files read, paths looked at, programs found on `PATH`. The
//! checks themselves are pure functions over what these return, so they are tested with written-out inputs.

use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};

use super::accounts::{self, Accounts, Identity};
use super::rootless::{Executable, RootlessFacts, ServiceAnswer, SUBGID, SUBUID};
use crate::env_vars::EnvVars;

/// What kind of file is at a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A folder.
    Dir,
    /// A unix socket.
    Socket,
    /// Anything else (a regular file, a device).
    Other,
}

/// Owner, group, permission bits and kind of a file (symlinks followed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileFacts {
    /// Owner uid.
    pub uid: u32,
    /// Group gid.
    pub gid: u32,
    /// Permission bits, setuid included (`0o4755`).
    pub mode: u32,
    /// What it is.
    pub kind: FileKind,
}

/// What is at a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathState {
    /// Nothing.
    Missing,
    /// A folder on the way may not be searched by this user, so nobody can tell.
    Hidden,
    /// A file.
    Present(FileFacts),
}

/// Looks at `path`.
pub fn path_state(path: &Path) -> PathState {
    match std::fs::metadata(path) {
        Ok(meta) => {
            let file_type = meta.file_type();
            let kind = if file_type.is_dir() {
                FileKind::Dir
            } else if file_type.is_socket() {
                FileKind::Socket
            } else {
                FileKind::Other
            };
            PathState::Present(FileFacts {
                uid: meta.uid(),
                gid: meta.gid(),
                mode: meta.mode() & 0o7777,
                kind,
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => PathState::Hidden,
        Err(_) => PathState::Missing,
    }
}

/// A file's text, or why it could not be read.
pub fn read(path: &str) -> Result<String, std::io::ErrorKind> {
    std::fs::read_to_string(path).map_err(|e| e.kind())
}

/// The first `name` on `PATH`, as a shell would find it (a file with an execute bit, followed if a symlink).
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os(EnvVars::PATH)?;
    std::env::split_paths(&path)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(name))
        .find(|candidate| {
            std::fs::metadata(candidate).is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0)
        })
}

/// A non-empty environment variable.
pub fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The user and group databases (empty when unreadable: names then print as numbers).
pub fn accounts() -> Accounts {
    Accounts {
        passwd: read("/etc/passwd").unwrap_or_default(),
        groups: accounts::parse_groups(&read("/etc/group").unwrap_or_default()),
    }
}

/// Who this process runs as: ids from `/proc/self/status` (else the owner of `/proc/self`), name from
/// `/etc/passwd`, else `$USER`.
pub fn identity(accounts: &Accounts) -> Identity {
    let (uid, gid, groups) = read("/proc/self/status")
        .ok()
        .and_then(|text| accounts::ids_from_proc_status(&text))
        .unwrap_or_else(|| {
            let meta = std::fs::metadata("/proc/self");
            let (uid, gid) = meta.map_or((u32::MAX, u32::MAX), |m| (m.uid(), m.gid()));
            (uid, gid, Vec::new())
        });
    let name = accounts::user_name(&accounts.passwd, uid)
        .or_else(|| env(EnvVars::USER))
        .unwrap_or_else(|| uid.to_string());
    Identity {
        name,
        uid,
        gid,
        groups,
    }
}

/// Everything the rootless checks look at, for `user`: files, programs on `PATH`, the runtime folder, and the
/// user's Podman service (asked only when the runtime folder is usable).
pub async fn rootless_facts(user: Identity) -> RootlessFacts {
    let executable = |name: &str| {
        let path = find_on_path(name)?;
        match path_state(&path) {
            PathState::Present(file) => Some(Executable { path, file }),
            _ => None,
        }
    };
    let runtime_dir = env(EnvVars::XDG_RUNTIME_DIR).map(|dir| {
        let state = path_state(Path::new(&dir));
        (PathBuf::from(dir), state)
    });
    let mut cache_problem = None;
    let service = match &runtime_dir {
        Some((dir, PathState::Present(file))) if file.kind == FileKind::Dir => {
            let path = dir.join("podman").join("podman.sock");
            cache_problem = berth_backend_podman::cache::cache_folder_problem(user.uid, &path);
            match ask_service(&path).await {
                Ok((version, rootless)) => ServiceAnswer::Answered { version, rootless },
                Err(error) => ServiceAnswer::Failed {
                    socket: path_state(&path),
                    path,
                    error,
                },
            }
        }
        _ => ServiceAnswer::NotAsked,
    };
    RootlessFacts {
        subuid: read(SUBUID),
        subgid: read(SUBGID),
        newuidmap: executable("newuidmap"),
        newgidmap: executable("newgidmap"),
        podman: find_on_path("podman"),
        runtime_dir,
        service,
        os_release: read("/etc/os-release").ok(),
        cache_problem,
        user,
    }
}

async fn ask_service(socket: &Path) -> berth_core::Result<(String, bool)> {
    // the user's own service, whatever the environment names: the socket is the Podman provider's address
    let podman: berth_engines::EngineKind = "podman".parse()?;
    let settings = berth_core::provider::ConnectSettings::default()
        .set(podman.info().address.key, socket.display().to_string());
    let info = podman.provider().connect(&settings).await?.info().await?;
    Ok((info.version, info.capabilities.rootless))
}
