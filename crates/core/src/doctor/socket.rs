//! Why an engine's unix socket did not answer, in specific terms: no socket (the daemon is not running), a
//! socket this user may not open (and which group would let it), or a socket nobody answers on. The engine's own
//! error supplies the start command; this adds what the file system shows. A provider may name another way to
//! build when the socket is not this user's to use (Docker names rootless Podman).

use std::path::Path;

use crate::Error;

use super::accounts::{Accounts, Identity};
use super::machine::{FileFacts, PathState};
use super::DoctorContext;

/// The socket path of a `unix://` endpoint (or a bare absolute path); `None` for tcp:// and ssh://.
pub fn socket_path(endpoint: &str) -> Option<&Path> {
    let path = endpoint.strip_prefix("unix://").unwrap_or(endpoint);
    path.starts_with('/').then(|| Path::new(path))
}

/// Why `engine` did not answer at `endpoint`: what its socket file shows (when it is a unix socket), else the
/// engine's own error and hint. `instead` is another way to build, offered when the socket is not this user's
/// to use (`use rootless Podman (...)`).
pub fn explain(
    engine: &str,
    endpoint: Option<&str>,
    error: &Error,
    context: &DoctorContext<'_>,
    instead: Option<&str>,
) -> (String, String) {
    match endpoint.and_then(socket_path) {
        Some(path) => Diagnosis {
            engine,
            socket: path,
            me: context.user,
            accounts: context.accounts,
            instead,
        }
        .of(&super::machine::path_state(path), error),
        None => (describe(error), start_fix(error)),
    }
}

/// An engine's socket that did not answer, and who asked.
#[derive(Debug, Clone, Copy)]
pub struct Diagnosis<'a> {
    /// The engine's name.
    pub engine: &'a str,
    /// Its socket.
    pub socket: &'a Path,
    /// Who asked.
    pub me: &'a Identity,
    /// The user and group databases.
    pub accounts: &'a Accounts,
    /// Another way to build, offered when the socket is not `me`'s to use.
    pub instead: Option<&'a str>,
}

impl Diagnosis<'_> {
    /// What went wrong, given what is at the socket path (`state`) and the engine's `error`, and the fix.
    pub fn of(&self, state: &PathState, error: &Error) -> (String, String) {
        diagnose(self, state, error)
    }
}

fn diagnose(d: &Diagnosis<'_>, state: &PathState, error: &Error) -> (String, String) {
    let (engine, socket, me) = (d.engine, d.socket, d.me);
    let path = socket.display();
    let start = || start_fix(error);
    match state {
        PathState::Missing => (
            format!(
                "no socket at {path}: the {engine} service is not running (or listens elsewhere)"
            ),
            start(),
        ),
        PathState::Hidden => (
            format!(
                "{} may not look into the folder holding {path} (permission denied)",
                me.name
            ),
            format!("run berth as the user whose {engine} service that is, or use one of your own"),
        ),
        PathState::Present(file) if !may_connect(file, me) => denied(d, file),
        PathState::Present(_) => (
            format!(
                "{path} exists but the {engine} service does not answer on it: {}",
                describe(error)
            ),
            start(),
        ),
    }
}

/// The engine's error without its hint (the hint goes in the fix).
pub fn describe(error: &Error) -> String {
    format!("{} ({})", error.message(), error.kind())
}

/// The engine's hint, which names the command that starts it.
pub fn start_fix(error: &Error) -> String {
    error
        .hint()
        .unwrap_or("start the engine, or point berth at one that runs")
        .to_string()
}

/// Connecting to a unix socket needs write permission on it.
fn may_connect(file: &FileFacts, me: &Identity) -> bool {
    let bits = if me.is_root() {
        return true;
    } else if file.uid == me.uid {
        file.mode >> 6
    } else if me.in_group(file.gid) {
        file.mode >> 3
    } else {
        file.mode
    };
    bits & 0o2 != 0
}

fn denied(d: &Diagnosis<'_>, file: &FileFacts) -> (String, String) {
    let (socket, me, accounts) = (d.socket, d.me, d.accounts);
    let (owner, group) = (accounts.user(file.uid), accounts.group(file.gid));
    let seen = format!(
        "permission denied on {} (owner {owner}:{group}, mode {:o})",
        socket.display(),
        file.mode & 0o777
    );
    let own_engine = d
        .instead
        .map(|way| format!("; or {way}"))
        .unwrap_or_default();
    let user = &me.name;
    if file.gid != 0 && file.mode & 0o020 != 0 {
        if accounts.lists_member(file.gid, user) {
            return (
                format!("{seen}: {user} is in group {group}, but this login session started before that"),
                format!("log in again (or run `newgrp {group}`) so the session has group {group}"),
            );
        }
        return (
            format!("{seen}: {user} is not in group {group}"),
            format!("add {user} to the {group} group: `sudo usermod -aG {group} {user}`, then log in again{own_engine}"),
        );
    }
    (
        format!("{seen}: only {owner} may use it"),
        format!("run berth as {owner} (e.g. with sudo){own_engine}"),
    )
}

#[cfg(test)]
mod tests {
    use super::super::accounts::parse_groups;
    use super::super::machine::FileKind;
    use super::*;
    use crate::ErrorKind;

    /// As Docker's provider asks: it offers rootless Podman instead.
    fn diagnose(
        engine: &str,
        socket: &Path,
        state: &PathState,
        me: &Identity,
        accounts: &Accounts,
        error: &Error,
    ) -> (String, String) {
        let instead = (engine == "docker")
            .then_some("use rootless Podman (the rootless podman section says what it needs)");
        Diagnosis {
            engine,
            socket,
            me,
            accounts,
            instead,
        }
        .of(state, error)
    }

    fn me(groups: Vec<u32>) -> Identity {
        Identity {
            name: "alice".into(),
            uid: 1000,
            gid: 1000,
            groups,
        }
    }

    fn accounts(group_file: &str) -> Accounts {
        Accounts {
            passwd: "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/sh\n"
                .into(),
            groups: parse_groups(group_file),
        }
    }

    fn socket(uid: u32, gid: u32, mode: u32) -> PathState {
        PathState::Present(FileFacts {
            uid,
            gid,
            mode,
            kind: FileKind::Socket,
        })
    }

    fn unavailable() -> Error {
        Error::new(
            ErrorKind::EngineUnavailable,
            "cannot reach the Docker daemon",
        )
        .with_hint("start the daemon (`sudo systemctl start docker`)")
    }

    const DOCKER_SOCK: &str = "/var/run/docker.sock";

    #[test]
    fn a_missing_socket_gets_the_start_command() {
        let (message, fix) = diagnose(
            "docker",
            Path::new(DOCKER_SOCK),
            &PathState::Missing,
            &me(vec![]),
            &accounts(""),
            &unavailable(),
        );
        assert!(
            message.contains("no socket at /var/run/docker.sock"),
            "{message}"
        );
        assert_eq!(fix, "start the daemon (`sudo systemctl start docker`)");
    }

    #[test]
    fn a_group_socket_names_the_group_to_join() {
        let groups = "docker:x:106:bob\n";
        let (message, fix) = diagnose(
            "docker",
            Path::new(DOCKER_SOCK),
            &socket(0, 106, 0o660),
            &me(vec![1000]),
            &accounts(groups),
            &unavailable(),
        );
        assert_eq!(
            message,
            "permission denied on /var/run/docker.sock (owner root:docker, mode 660): alice is not in group docker"
        );
        assert!(fix.starts_with("add alice to the docker group: `sudo usermod -aG docker alice`, then log in again; or use rootless Podman"), "{fix}");
        // Listed in /etc/group but not in this process's groups: the session predates the change.
        let (message, fix) = diagnose(
            "docker",
            Path::new(DOCKER_SOCK),
            &socket(0, 106, 0o660),
            &me(vec![1000]),
            &accounts("docker:x:106:bob,alice\n"),
            &unavailable(),
        );
        assert!(
            message.contains("this login session started before that"),
            "{message}"
        );
        assert!(fix.contains("newgrp docker"), "{fix}");
    }

    #[test]
    fn members_owners_and_root_may_connect_and_then_the_service_is_the_problem() {
        let accounts = accounts("docker:x:106:alice\n");
        for (who, state) in [
            (me(vec![106]), socket(0, 106, 0o660)),
            (me(vec![]), socket(1000, 1000, 0o600)),
            (
                Identity {
                    name: "root".into(),
                    uid: 0,
                    gid: 0,
                    groups: vec![],
                },
                socket(1000, 1000, 0o600),
            ),
        ] {
            let (message, fix) = diagnose(
                "docker",
                Path::new(DOCKER_SOCK),
                &state,
                &who,
                &accounts,
                &unavailable(),
            );
            assert!(message.contains("does not answer"), "{message}");
            assert!(fix.contains("systemctl start docker"), "{fix}");
        }
    }

    #[test]
    fn an_owner_only_socket_says_whose_it_is() {
        let (message, fix) = diagnose(
            "podman",
            Path::new("/run/podman/podman.sock"),
            &socket(0, 0, 0o600),
            &me(vec![]),
            &accounts(""),
            &unavailable(),
        );
        assert!(message.ends_with("only root may use it"), "{message}");
        assert_eq!(fix, "run berth as root (e.g. with sudo)");
    }

    #[test]
    fn only_unix_endpoints_have_a_socket_file() {
        assert_eq!(
            socket_path("unix:///run/podman/podman.sock"),
            Some(Path::new("/run/podman/podman.sock"))
        );
        assert_eq!(
            socket_path("/var/run/docker.sock"),
            Some(Path::new(DOCKER_SOCK))
        );
        assert_eq!(socket_path("tcp://10.0.0.2:2376"), None);
    }
}
