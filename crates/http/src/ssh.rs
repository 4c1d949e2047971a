//! Engines on another machine, reached through the system's `ssh`: one mechanism for Docker and Podman.
//!
//! An [`SshSession`] is one `ssh -M -N` master process per engine, with its control socket (and, for Podman,
//! the remote API socket forwarded as a local one) in a private folder of its own (mode 0700). Everything
//! else rides on that one authenticated connection: each Podman request is a cheap local connection to the
//! forwarded socket, each Docker connection a multiplexed `ssh -S CONTROL HOST docker system dial-stdio`
//! ([`SshSession::stdio`]), so a build pays the SSH handshake once, not per request.
//!
//! The system's `ssh` is used, not a library, so the user's `~/.ssh/config` (host aliases, keys, agents,
//! `ProxyJump`) and its host key checking apply as they do for `docker` and `podman`. `BatchMode=yes` makes it
//! fail instead of prompting (berth may run in CI, with no terminal). What ssh says on stderr is kept and
//! carried in the [`SshError`] of a failure; which failure it was is told from facts (whether the host's SSH
//! port accepts a TCP connection, the exit status of `test` on the remote socket), never from that text.

use std::fmt;
use std::future::Future as _;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::OnceCell;

/// How much of ssh's stderr an error keeps (its last bytes: the reason comes last).
const STDERR_KEEP: usize = 4096;

/// Where to connect: `[user@]host` and an optional port and key, as in `ssh://user@host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshTarget {
    /// `[user@]host`, or a `Host` alias of the user's ssh configuration.
    pub destination: String,
    /// The SSH port, when the address names one (else ssh's configuration decides, 22 by default).
    pub port: Option<u16>,
    /// A private key to offer (`CONTAINER_SSHKEY`), besides those of ssh's configuration and agent.
    pub identity: Option<PathBuf>,
}

impl SshTarget {
    /// The address as users write it: `ssh://user@host[:port]`.
    pub fn display(&self) -> String {
        match self.port {
            Some(port) => format!("ssh://{}:{port}", self.destination),
            None => format!("ssh://{}", self.destination),
        }
    }

    /// `ssh` with the options every connection takes: never prompt, the port and the key.
    fn command(&self) -> Command {
        let mut command = Command::new("ssh");
        command.args(["-o", "BatchMode=yes"]);
        if let Some(port) = self.port {
            command.arg("-p").arg(port.to_string());
        }
        if let Some(key) = &self.identity {
            command.arg("-i").arg(key);
        }
        command
    }
}

/// Which SSH failure it was: what a person fixes differs for each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SshFailure {
    /// The host's SSH port accepts no connection (the host is down, unreachable, or runs no sshd).
    Unreachable,
    /// The host answered but the session was not set up: the key was refused or the host key did not match.
    Refused,
    /// The session works but the engine's socket does not exist on the remote host.
    NoRemoteSocket,
    /// The socket exists but the remote user may not open it (not in its group, or another user's).
    RemoteSocketDenied,
    /// The remote command ended with a failure (Docker's `docker system dial-stdio`).
    RemoteCommand,
}

/// An SSH failure: which one, where, and what ssh (or the remote command) said.
#[derive(Debug, Clone)]
pub struct SshError {
    /// Which failure it was.
    pub failure: SshFailure,
    /// The address (`ssh://user@host`), plus the remote socket where one is involved.
    pub target: String,
    /// The last of what ssh printed on stderr (empty when it said nothing).
    pub stderr: String,
}

impl fmt::Display for SshError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.failure {
            SshFailure::Unreachable => "the host's SSH port accepts no connection",
            SshFailure::Refused => "ssh could not log in (key refused or host key not trusted)",
            SshFailure::NoRemoteSocket => "the engine's socket does not exist on the remote host",
            SshFailure::RemoteSocketDenied => "the remote user may not open the engine's socket",
            SshFailure::RemoteCommand => "the remote command failed",
        };
        write!(f, "{}: {what}", self.target)?;
        let said = self.stderr.trim();
        if !said.is_empty() {
            write!(f, " (ssh said: {})", said.replace('\n', "; "))?;
        }
        Ok(())
    }
}

impl std::error::Error for SshError {}

impl SshError {
    /// As an `io::Error` whose kind berth's transport reading ([`crate::transport`]) understands.
    fn into_io(self) -> io::Error {
        let kind = match self.failure {
            SshFailure::Unreachable | SshFailure::NoRemoteSocket => {
                io::ErrorKind::ConnectionRefused
            }
            SshFailure::Refused | SshFailure::RemoteSocketDenied => io::ErrorKind::PermissionDenied,
            SshFailure::RemoteCommand => io::ErrorKind::BrokenPipe,
        };
        io::Error::new(kind, self)
    }
}

/// ssh's stderr, kept as it arrives (its tail only).
#[derive(Debug, Clone, Default)]
struct Stderr(Arc<Mutex<Vec<u8>>>);

impl Stderr {
    /// Reads `pipe` to its end in a task of its own.
    fn collect(pipe: Option<tokio::process::ChildStderr>) -> Stderr {
        Stderr::collecting(pipe).0
    }

    /// [`Stderr::collect`], and the task that ends with the pipe.
    fn collecting(
        pipe: Option<tokio::process::ChildStderr>,
    ) -> (Stderr, Option<tokio::task::JoinHandle<()>>) {
        let kept = Stderr::default();
        let mut reader = None;
        if let Some(mut pipe) = pipe {
            let sink = kept.clone();
            reader = Some(tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n @ 1..) = pipe.read(&mut buf).await {
                    let mut all = sink.0.lock().unwrap_or_else(|e| e.into_inner());
                    all.extend_from_slice(&buf[..n]);
                    let excess = all.len().saturating_sub(STDERR_KEEP);
                    all.drain(..excess);
                }
            }));
        }
        (kept, reader)
    }

    fn text(&self) -> String {
        let all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&all).trim().to_string()
    }
}

/// One authenticated SSH connection to a host, alive as long as this value (its folder is removed on drop).
#[derive(Debug)]
pub struct SshSession {
    target: SshTarget,
    dir: PathBuf,
    control: PathBuf,
    forwarded: Option<PathBuf>,
    master: Child,
    stderr: Stderr,
}

impl SshSession {
    /// Logs in to `target` within `timeout`, forwarding `remote_socket` (a path on the remote host) to a local
    /// socket when given. Fails with an [`SshError`] inside the `io::Error` when ssh cannot log in.
    pub async fn open(
        target: &SshTarget,
        remote_socket: Option<&str>,
        timeout: Duration,
    ) -> io::Result<SshSession> {
        let dir = private_dir()?;
        let control = dir.join("control");
        let forwarded = remote_socket.map(|_| dir.join("engine.sock"));
        let mut command = target.command();
        command
            .args(["-M", "-N", "-o", "ControlPersist=no", "-o"])
            .arg(format!("ConnectTimeout={}", timeout.as_secs().max(1)))
            .args([
                "-o",
                "ExitOnForwardFailure=yes",
                "-o",
                "StreamLocalBindUnlink=yes",
            ])
            .arg("-S")
            .arg(&control);
        if let (Some(local), Some(remote)) = (&forwarded, remote_socket) {
            command
                .arg("-L")
                .arg(format!("{}:{remote}", local.display()));
        }
        let spawned = command
            .arg("--")
            .arg(&target.destination)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn();
        let mut master = match spawned {
            Ok(child) => child,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(io::Error::new(e.kind(), format!("cannot run ssh: {e}")));
            }
        };
        let stderr = Stderr::collect(master.stderr.take());
        let mut session = SshSession {
            target: target.clone(),
            dir,
            control,
            forwarded,
            master,
            stderr,
        };
        session.ready(timeout).await?;
        Ok(session)
    }

    /// Waits until the master has logged in (its control socket and the forwarded one exist), or fails with
    /// what went wrong when ssh exits first or `timeout` passes.
    async fn ready(&mut self, timeout: Duration) -> io::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.control.exists() && self.forwarded.as_deref().is_none_or(Path::exists) {
                return Ok(());
            }
            // the master runs until dropped: an exit here is a failure to log in or to forward
            let exited = !matches!(self.master.try_wait(), Ok(None));
            if exited || tokio::time::Instant::now() >= deadline {
                // give the stderr task a moment to read ssh's last words
                tokio::time::sleep(Duration::from_millis(50)).await;
                return Err(self.login_failure().await);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Why logging in failed: the SSH port unreachable, or reachable and the login refused.
    async fn login_failure(&self) -> io::Error {
        let failure = if ssh_port_open(&self.target).await {
            SshFailure::Refused
        } else {
            SshFailure::Unreachable
        };
        SshError {
            failure,
            target: self.target.display(),
            stderr: self.stderr.text(),
        }
        .into_io()
    }

    /// The local socket the remote engine socket is forwarded to (when [`SshSession::open`] was given one).
    pub fn forwarded_socket(&self) -> Option<&Path> {
        self.forwarded.as_deref()
    }

    /// The address this session reaches.
    pub fn target(&self) -> &SshTarget {
        &self.target
    }

    /// Runs `command` on the remote host over this session, its stdin and stdout as one byte stream (what
    /// `docker system dial-stdio` speaks); what it prints on stderr goes into the error of a failed read.
    pub fn stdio(&self, command: &[&str]) -> io::Result<SshStream> {
        let mut child = self
            .mux_command()
            .args(command)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let missing = || io::Error::other("ssh started without pipes");
        let stdin = child.stdin.take().ok_or_else(missing)?;
        let stdout = child.stdout.take().ok_or_else(missing)?;
        let (stderr, reader) = Stderr::collecting(child.stderr.take());
        // a task owns the process: it reports how it ended (after its stderr is read), and kills it when the
        // stream is dropped first
        let (ended_tx, ended) = tokio::sync::oneshot::channel();
        let (drop_tx, dropped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            tokio::select! {
                status = child.wait() => {
                    if let Some(reader) = reader {
                        let _ = tokio::time::timeout(Duration::from_secs(2), reader).await;
                    }
                    let _ = ended_tx.send(status.is_ok_and(|s| s.success()));
                }
                _ = dropped => { let _ = child.kill().await; }
            }
        });
        Ok(SshStream {
            stdin,
            stdout,
            stderr,
            ended,
            _dropped: drop_tx,
            target: self.target.display(),
        })
    }

    /// Why the remote socket cannot be used, told by `test`'s exit status on the remote host: `None` when it
    /// exists and the remote user may read and write it (the trouble is elsewhere).
    pub async fn diagnose_socket(&self, remote_socket: &str) -> Option<SshError> {
        // the remote user's shell reads the command line: the path goes in single quotes
        let path = format!("'{}'", remote_socket.replace('\'', r"'\''"));
        let test = |condition: String| {
            let mut command = self.mux_command();
            command.arg(format!("test {condition}"));
            command
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            async move { command.status().await.ok().and_then(|s| s.code()) }
        };
        let exists = test(format!("-S {path}")).await;
        let usable = test(format!("-r {path} -a -w {path}")).await;
        let failure = match (exists, usable) {
            (Some(1), _) => SshFailure::NoRemoteSocket,
            (Some(0), Some(1)) => SshFailure::RemoteSocketDenied,
            _ => return None,
        };
        Some(SshError {
            failure,
            target: format!("{} (socket {remote_socket})", self.target.display()),
            stderr: self.stderr.text(),
        })
    }

    /// What the master has said on stderr so far (a refused forward shows here).
    pub fn stderr(&self) -> String {
        self.stderr.text()
    }

    /// `ssh` through this session's control socket, up to the destination (arguments follow).
    fn mux_command(&self) -> Command {
        let mut command = Command::new("ssh");
        command
            .args(["-o", "BatchMode=yes", "-o", "ControlMaster=no", "-S"])
            .arg(&self.control)
            .arg("--")
            .arg(&self.target.destination);
        command
    }
}

impl Drop for SshSession {
    fn drop(&mut self) {
        // the master is killed by kill_on_drop; its folder (sockets only) goes with it
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A private folder for one session's sockets: `$TMPDIR/berth-ssh-PID-N`, mode 0700, short enough for a
/// unix socket path.
fn private_dir() -> io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = std::env::temp_dir();
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = base.join(format!("berth-ssh-{}-{n}", std::process::id()));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Whether the host's SSH port, as ssh's configuration resolves it (`ssh -G`), accepts a TCP connection.
async fn ssh_port_open(target: &SshTarget) -> bool {
    let mut command = target.command();
    let Ok(out) = command
        .arg("-G")
        .arg("--")
        .arg(&target.destination)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .await
    else {
        return false;
    };
    let config = String::from_utf8_lossy(&out.stdout);
    let value = |key: &str| {
        config
            .lines()
            .find_map(|line| line.strip_prefix(key)?.strip_prefix(' '))
            .map(str::to_string)
    };
    let (Some(host), Some(port)) = (value("hostname"), value("port")) else {
        return false;
    };
    let connect = tokio::net::TcpStream::connect((host.as_str(), port.parse().unwrap_or(22)));
    matches!(
        tokio::time::timeout(Duration::from_secs(5), connect).await,
        Ok(Ok(_))
    )
}

/// A remote command's stdin and stdout as one byte stream ([`SshSession::stdio`]).
pub struct SshStream {
    stdin: ChildStdin,
    stdout: ChildStdout,
    stderr: Stderr,
    /// Whether the command succeeded, once it has ended.
    ended: tokio::sync::oneshot::Receiver<bool>,
    /// Dropped with the stream: the command is killed if still running.
    _dropped: tokio::sync::oneshot::Sender<()>,
    target: String,
}

impl AsyncRead for SshStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.stdout).poll_read(cx, buf) {
            // the end of stdout: once the command has ended, a failure is an error carrying what it printed
            Poll::Ready(Ok(())) if buf.filled().len() == before => {
                match Pin::new(&mut this.ended).poll(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(Ok(false)) => Poll::Ready(Err(SshError {
                        failure: SshFailure::RemoteCommand,
                        target: this.target.clone(),
                        stderr: this.stderr.text(),
                    }
                    .into_io())),
                    Poll::Ready(_) => Poll::Ready(Ok(())),
                }
            }
            other => other,
        }
    }
}

impl AsyncWrite for SshStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stdin).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stdin).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stdin).poll_shutdown(cx)
    }
}

/// An [`SshSession`] opened on first use and then shared by every connection of one engine (Docker's
/// multiplexed `dial-stdio` commands, Podman's forwarded socket).
#[derive(Debug)]
pub struct SharedSession {
    target: SshTarget,
    remote_socket: Option<String>,
    session: OnceCell<SshSession>,
}

impl SharedSession {
    /// A session to `target`, forwarding `remote_socket` when given, not opened yet.
    pub fn new(target: SshTarget, remote_socket: Option<String>) -> SharedSession {
        SharedSession {
            target,
            remote_socket,
            session: OnceCell::new(),
        }
    }

    /// Where it connects.
    pub fn target(&self) -> &SshTarget {
        &self.target
    }

    /// The session, logging in (within `timeout`) on first use.
    pub async fn get(&self, timeout: Duration) -> io::Result<&SshSession> {
        self.session
            .get_or_try_init(|| {
                SshSession::open(&self.target, self.remote_socket.as_deref(), timeout)
            })
            .await
    }

    /// The session if it has been opened.
    pub fn opened(&self) -> Option<&SshSession> {
        self.session.get()
    }
}

/// Two shared sessions are the same setting when they reach the same place (the session itself is state).
impl PartialEq for SharedSession {
    fn eq(&self, other: &Self) -> bool {
        self.target == other.target && self.remote_socket == other.remote_socket
    }
}

impl Eq for SharedSession {}

/// The berth error for an SSH failure of `engine`'s `operation`: always `EngineUnavailable` (the engine cannot
/// be reached), with a fix for the failure it was. `setting` names where the address came from
/// (`CONTAINER_HOST`, `DOCKER_HOST`, a berth.yaml key), `key_setting` where a key may be given.
pub fn to_error(
    err: &SshError,
    engine: &str,
    operation: berth_core::Operation,
    setting: &str,
    key_setting: &str,
) -> berth_core::Error {
    let hint = match err.failure {
        SshFailure::Unreachable => format!(
            "nothing answers SSH at the host {setting} names: start the host or its sshd, check the address \
             and port (`ssh -v ...` shows where it dials), or point {setting} at another host"
        ),
        SshFailure::Refused => format!(
            "berth logs in with `ssh -o BatchMode=yes` (it never prompts): authorize your key on the host \
             (`ssh-copy-id`), name the key with {key_setting} or in ~/.ssh/config, load it in ssh-agent, and \
             trust the host key once (`ssh` to it by hand, or `ssh-keyscan` into known_hosts)"
        ),
        SshFailure::NoRemoteSocket => format!(
            "start the {engine} service on the remote host (for Podman: `podman system service --time=0 \
             unix://SOCKET`, or `systemctl --user start podman.socket` as that user), or correct the socket \
             path in {setting}"
        ),
        SshFailure::RemoteSocketDenied => format!(
            "the SSH user may not open the socket: on the remote host add that user to the socket's group \
             (`sudo usermod -aG GROUP USER`, then log in again), or log in as the user who owns the socket \
             ({setting})"
        ),
        SshFailure::RemoteCommand => format!(
            "check that `ssh HOST docker system dial-stdio` works: the docker CLI installed on the remote \
             host, its daemon running, and the SSH user allowed to use it ({setting})"
        ),
    };
    berth_core::Error::new(
        berth_core::ErrorKind::EngineUnavailable,
        format!("{engine} over SSH: {err}"),
    )
    .with_engine(engine)
    .with_operation(operation)
    .with_hint(hint)
    .with_source(err.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_connection_never_prompts_and_carries_port_and_key() {
        let target = SshTarget {
            destination: "me@box".into(),
            port: Some(2222),
            identity: Some(PathBuf::from("/k/id")),
        };
        let command = target.command();
        let args: Vec<_> = command
            .as_std()
            .get_args()
            .map(|a| a.to_string_lossy())
            .collect();
        assert_eq!(args, ["-o", "BatchMode=yes", "-p", "2222", "-i", "/k/id"]);
        assert_eq!(target.display(), "ssh://me@box:2222");
    }

    #[test]
    fn failures_map_to_transport_facts_and_keep_what_ssh_said() {
        let error = |failure| SshError {
            failure,
            target: "ssh://me@box".into(),
            stderr: "me@box: Permission denied (publickey).\n".into(),
        };
        let io = |failure| error(failure).into_io();
        use crate::transport::{transport_of, Transport};
        assert_eq!(
            transport_of(&io(SshFailure::Unreachable)),
            Transport::NoService
        );
        assert_eq!(
            transport_of(&io(SshFailure::Refused)),
            Transport::PermissionDenied
        );
        assert_eq!(
            transport_of(&io(SshFailure::RemoteSocketDenied)),
            Transport::PermissionDenied
        );
        // the SshError is found inside the io::Error, as backends look for it
        let wrapped = io(SshFailure::NoRemoteSocket);
        let found = crate::transport::find::<SshError>(&wrapped).expect("SshError inside");
        assert_eq!(found.failure, SshFailure::NoRemoteSocket);
        let said = error(SshFailure::Refused).to_string();
        assert!(
            said.starts_with("ssh://me@box: ssh could not log in"),
            "{said}"
        );
        assert!(
            said.ends_with("(ssh said: me@box: Permission denied (publickey).)"),
            "{said}"
        );
    }

    #[test]
    fn each_failure_has_its_own_fix_naming_the_setting() {
        let fix = |failure| {
            let err = SshError {
                failure,
                target: "ssh://me@box".into(),
                stderr: String::new(),
            };
            let error = to_error(
                &err,
                "podman",
                berth_core::Operation::Connect,
                "CONTAINER_HOST",
                "CONTAINER_SSHKEY",
            );
            assert_eq!(error.kind(), berth_core::ErrorKind::EngineUnavailable);
            error.hint().unwrap_or_default().to_string()
        };
        assert!(fix(SshFailure::Unreachable).contains("CONTAINER_HOST"));
        assert!(fix(SshFailure::Refused).contains("CONTAINER_SSHKEY"));
        assert!(fix(SshFailure::NoRemoteSocket).contains("podman system service"));
        assert!(fix(SshFailure::RemoteSocketDenied).contains("usermod -aG"));
        assert!(fix(SshFailure::RemoteCommand).contains("dial-stdio"));
    }
}
