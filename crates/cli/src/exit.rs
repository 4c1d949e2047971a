//! Exit statuses, one per kind of failure, so scripts can tell them apart.

use std::process::ExitCode;

use berth_core::ErrorKind;

/// How `berth` ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Everything worked.
    Success,
    /// The command ran and the answer is "no" (e.g. `berth exists`: some image is absent), or a build failed.
    Failure,
    /// Bad input: a malformed spec, an unknown flag or engine, a path escaping the context.
    InvalidInput,
    /// `berth exists`: the registry could not tell for some image.
    CouldNotTell,
    /// The engine could not be reached.
    EngineUnavailable,
    /// The registry refused the credentials.
    Unauthorized,
    /// A temporary failure (network, 5xx) outlasted the retries.
    Temporary,
    /// Something else went wrong (I/O, protocol).
    Error,
    /// Ctrl-C or SIGTERM stopped the work (130, as shells report SIGINT).
    Interrupted,
}

impl ExitStatus {
    /// The status for a failure of this kind.
    pub fn for_kind(kind: ErrorKind) -> Self {
        match kind {
            ErrorKind::InvalidSpec | ErrorKind::NotFound => ExitStatus::InvalidInput,
            ErrorKind::EngineUnavailable => ExitStatus::EngineUnavailable,
            ErrorKind::Unauthorized => ExitStatus::Unauthorized,
            ErrorKind::Unavailable => ExitStatus::Temporary,
            ErrorKind::BuildFailed | ErrorKind::Unsupported | ErrorKind::Cancelled => {
                ExitStatus::Failure
            }
            _ => ExitStatus::Error,
        }
    }
}

impl ExitStatus {
    /// The process exit code.
    pub fn code(self) -> u8 {
        match self {
            ExitStatus::Success => 0,
            ExitStatus::Failure => 1,
            ExitStatus::InvalidInput | ExitStatus::CouldNotTell => 2,
            ExitStatus::EngineUnavailable => 3,
            ExitStatus::Unauthorized => 4,
            ExitStatus::Temporary => 5,
            ExitStatus::Error => 6,
            ExitStatus::Interrupted => 130,
        }
    }
}

impl From<ExitStatus> for ExitCode {
    fn from(status: ExitStatus) -> Self {
        ExitCode::from(status.code())
    }
}
