//! One error type for all of berth, classified by kind.
//!
//! Every failure carries what kind of failure it is (so callers decide by kind, never by message), the engine and
//! the operation it happened in, a message that says what went wrong, and where possible a hint that says what to
//! do about it. Backends map their client library's statuses to a kind in one function each.
//!
//! Whether trying again may help is an [`ErrorStatus`] beside the kind, as OpenDAL keeps it: a TLS certificate
//! nobody trusts is a protocol failure that no retry fixes, while a reset connection is worth another attempt
//! whatever operation it broke. Retry loops ask [`Error::is_temporary`], never the kind.

use std::fmt;

/// What kind of failure an [`Error`] is. Callers branch on this, never on message text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A spec, config file or argument is malformed or refers to something invalid.
    InvalidSpec,
    /// An image, repository or file that was asked for does not exist.
    NotFound,
    /// The registry or engine refused the credentials (or there were none).
    Unauthorized,
    /// The engine cannot do what was asked (feature not supported, e.g. secret mounts without BuildKit).
    Unsupported,
    /// The engine is not reachable: no socket, daemon not running, permission denied on the socket.
    EngineUnavailable,
    /// A registry, the network or a service was unavailable or failed on its side: timeouts, 429, 5xx,
    /// connection resets. Whether trying again may help is the error's [`ErrorStatus`], not this kind: errors of
    /// this kind start [`ErrorStatus::Temporary`] unless a mapping says otherwise, and end
    /// [`ErrorStatus::Persistent`] when retries did not outlast them.
    Unavailable,
    /// A build step failed (a RUN command exited non-zero, a COPY source was missing, ...).
    BuildFailed,
    /// Reading or writing a local file failed.
    Io,
    /// The engine or registry answered something berth does not understand.
    Protocol,
    /// The operation was interrupted (Ctrl-C) or cancelled.
    Cancelled,
    /// A file system ran out of space (ENOSPC): the engine's storage, or berth's own state or cache folder.
    /// The message names the place, and retrying without making room gives the same answer.
    ResourceExhausted,
}

impl ErrorKind {
    /// A short lowercase name for the kind, used in messages and JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidSpec => "invalid input",
            ErrorKind::NotFound => "not found",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::EngineUnavailable => "engine unavailable",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::BuildFailed => "build failed",
            ErrorKind::Io => "i/o error",
            ErrorKind::Protocol => "protocol error",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::ResourceExhausted => "resource exhausted",
        }
    }

    /// Whether retrying the same operation may succeed, for an error of this kind that says nothing else: the
    /// status [`Error::new`] gives it.
    pub fn default_status(self) -> ErrorStatus {
        match self {
            ErrorKind::Unavailable => ErrorStatus::Temporary,
            _ => ErrorStatus::Permanent,
        }
    }
}

/// Whether trying the same operation again may succeed (OpenDAL's `ErrorStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorStatus {
    /// Trying again gives the same answer (a refused password, a missing image, an untrusted certificate).
    Permanent,
    /// Trying again, after a pause, may succeed (a reset connection, a 503, a 429).
    Temporary,
    /// It was temporary, and retries did not outlast it.
    Persistent,
}

/// The kind of a local file error: a missing file is [`ErrorKind::NotFound`], a full file system
/// [`ErrorKind::ResourceExhausted`] (ENOSPC, and EDQUOT, which says the same to a user), anything else
/// [`ErrorKind::Io`].
pub fn io_kind(err: &std::io::Error) -> ErrorKind {
    match err.kind() {
        std::io::ErrorKind::NotFound => ErrorKind::NotFound,
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => {
            ErrorKind::ResourceExhausted
        }
        _ => ErrorKind::Io,
    }
}

/// Whether an engine's text says a file system is full: ENOSPC (and EDQUOT) as Go's syscall package and
/// libc's `strerror` print them, which is all a daemon passes on of a full disk (its own, or a build step's
/// output). Backends name their storage when it does ([`Error::out_of_space`]).
pub fn says_no_space(text: &str) -> bool {
    let m = text.to_ascii_lowercase();
    m.contains("no space left on device") || m.contains("disk quota exceeded")
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// berth's error: a kind, the engine and operation it happened in, a message, an optional hint and source.
pub struct Error {
    kind: ErrorKind,
    status: ErrorStatus,
    message: String,
    operation: Option<String>,
    engine: Option<String>,
    hint: Option<String>,
    source: Option<Source>,
}

/// Result with berth's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A new error of `kind` with a message saying what went wrong.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            status: kind.default_status(),
            message: message.into(),
            operation: None,
            engine: None,
            hint: None,
            source: None,
        }
    }

    /// Shorthand for an [`ErrorKind::InvalidSpec`] error.
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::InvalidSpec, message)
    }

    /// An [`ErrorKind::Unsupported`] error for `operation` on `engine`.
    pub fn unsupported(engine: &str, operation: &str, message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Unsupported, message)
            .with_engine(engine)
            .with_operation(operation)
    }

    /// An [`ErrorKind::Io`] error about `path`.
    pub fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        Error::new(io_kind(&source), format!("{}: {source}", path.display())).with_source(source)
    }

    /// This error as an [`ErrorKind::ResourceExhausted`] one: the file system at `place` (e.g. "Docker's
    /// storage (DockerRootDir /var/lib/docker)") has no space left. The message says so in front of what
    /// failed, `hint` says how to make room; engine, operation and source stay.
    pub fn out_of_space(mut self, place: impl fmt::Display, hint: impl Into<String>) -> Self {
        self.kind = ErrorKind::ResourceExhausted;
        self.status = ErrorStatus::Permanent;
        self.message = format!("no space left in {place}: {}", self.message);
        self.hint = Some(hint.into());
        self
    }

    /// Whether this error says a file system is full ([`says_no_space`]) and nothing has named the place
    /// yet: a backend then names its storage with [`Error::out_of_space`]. An out-of-space error that has
    /// a hint (berth's own folder, or one already named) is left as it is.
    pub fn is_unplaced_no_space(&self) -> bool {
        says_no_space(&self.message)
            && !(self.kind == ErrorKind::ResourceExhausted && self.hint.is_some())
    }

    /// Names the operation (e.g. "build", "push", "inspect") the error happened in.
    pub fn with_operation(mut self, operation: impl Into<String>) -> Self {
        self.operation = Some(operation.into());
        self
    }

    /// Names the engine (e.g. "docker", "podman", "containerd") the error happened on.
    pub fn with_engine(mut self, engine: impl Into<String>) -> Self {
        self.engine = Some(engine.into());
        self
    }

    /// Says whether trying again may help, where the kind alone does not tell (e.g. a build that raced another
    /// client's removal is [`ErrorKind::BuildFailed`] yet [`ErrorStatus::Temporary`]).
    pub fn with_status(mut self, status: ErrorStatus) -> Self {
        self.status = status;
        self
    }

    /// Marks a temporary error as having outlasted its retries; other statuses stay.
    pub fn persisted(mut self) -> Self {
        if self.status == ErrorStatus::Temporary {
            self.status = ErrorStatus::Persistent;
        }
        self
    }

    /// Says what the user can do about it.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Attaches the underlying error.
    pub fn with_source(mut self, source: impl Into<Source>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Adds context in front of the message (e.g. the spec file it concerns).
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }

    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Whether trying again may succeed.
    pub fn status(&self) -> ErrorStatus {
        self.status
    }

    /// Whether a retry loop should try again: the one question retries ask (never the kind).
    pub fn is_temporary(&self) -> bool {
        self.status == ErrorStatus::Temporary
    }

    /// What went wrong.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The operation, when known.
    pub fn operation(&self) -> Option<&str> {
        self.operation.as_deref()
    }

    /// The engine, when known.
    pub fn engine(&self) -> Option<&str> {
        self.engine.as_deref()
    }

    /// What to do about it, when known.
    pub fn hint(&self) -> Option<&str> {
        self.hint.as_deref()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.engine, &self.operation) {
            (Some(engine), Some(op)) => write!(f, "{engine} {op}: ")?,
            (Some(engine), None) => write!(f, "{engine}: ")?,
            (None, Some(op)) => write!(f, "{op}: ")?,
            (None, None) => {}
        }
        write!(f, "{} ({})", self.message, self.kind)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.kind)
            .field("status", &self.status)
            .field("message", &self.message)
            .field("operation", &self.operation)
            .field("engine", &self.engine)
            .field("hint", &self.hint)
            .field("source", &self.source)
            .finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|s| s.as_ref() as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_engine_operation_kind_and_hint() {
        let err = Error::new(
            ErrorKind::EngineUnavailable,
            "cannot connect to /run/docker.sock",
        )
        .with_engine("docker")
        .with_operation("build")
        .with_hint("start it with `dockerd`");
        assert_eq!(
            err.to_string(),
            "docker build: cannot connect to /run/docker.sock (engine unavailable)\n  hint: start it with `dockerd`"
        );
    }

    #[test]
    fn retrying_is_a_status_beside_the_kind() {
        let reset = Error::new(ErrorKind::Unavailable, "connection reset");
        assert!(reset.is_temporary());
        assert_eq!(
            Error::new(ErrorKind::Unavailable, "reset")
                .persisted()
                .status(),
            ErrorStatus::Persistent
        );
        let untrusted = Error::new(
            ErrorKind::Protocol,
            "certificate signed by unknown authority",
        );
        assert!(!untrusted.is_temporary());
        let race = Error::new(ErrorKind::BuildFailed, "layer not known")
            .with_status(ErrorStatus::Temporary);
        assert!(race.is_temporary());
        assert_eq!(race.kind(), ErrorKind::BuildFailed);
        // a permanent failure stays permanent when retries end
        assert_eq!(untrusted.persisted().status(), ErrorStatus::Permanent);
    }

    #[test]
    fn a_full_file_system_is_resource_exhausted() {
        let full = std::io::Error::from_raw_os_error(28); // ENOSPC
        let err = Error::io(std::path::Path::new("/state"), full);
        assert_eq!(err.kind(), ErrorKind::ResourceExhausted);
        let step = Error::new(
            ErrorKind::BuildFailed,
            "step `RUN x` failed: dd: No space left on device",
        );
        assert!(step.is_unplaced_no_space());
        let named = step.out_of_space("the pool p", "make room in p");
        assert!(!named.is_unplaced_no_space(), "{named}");
        let err = Error::new(ErrorKind::BuildFailed, "step `RUN x` failed")
            .with_engine("docker")
            .out_of_space("Docker's storage (/d)", "free space in /d");
        assert_eq!(err.kind(), ErrorKind::ResourceExhausted);
        assert!(!err.is_temporary());
        assert_eq!(
            err.to_string(),
            "docker: no space left in Docker's storage (/d): step `RUN x` failed (resource exhausted)\n  \
             hint: free space in /d"
        );
    }

    #[test]
    fn missing_file_is_not_found() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        assert_eq!(
            Error::io(std::path::Path::new("/x"), io).kind(),
            ErrorKind::NotFound
        );
    }
}
