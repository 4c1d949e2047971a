//! Exit statuses, one per kind of failure, so scripts can tell them apart.

use std::process::ExitCode;

use berth_core::ErrorKind;

/// How `berth` ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Everything worked.
    Success = 0,
    /// The command ran and the answer is "no" (e.g. `berth exists`: some image is absent), or a build failed.
    Failure = 1,
    /// Bad input: a malformed spec, an unknown flag or engine, a path escaping the context.
    InvalidInput = 2,
    /// The engine could not be reached.
    EngineUnavailable = 3,
    /// The registry refused the credentials.
    Unauthorized = 4,
    /// A temporary failure (network, 5xx) outlasted the retries.
    Temporary = 5,
    /// Something else went wrong (I/O, protocol).
    Error = 6,
}

impl ExitStatus {
    /// The status for a failure of this kind.
    pub fn for_kind(kind: ErrorKind) -> Self {
        match kind {
            ErrorKind::InvalidSpec | ErrorKind::NotFound => ExitStatus::InvalidInput,
            ErrorKind::EngineUnavailable => ExitStatus::EngineUnavailable,
            ErrorKind::Unauthorized => ExitStatus::Unauthorized,
            ErrorKind::Temporary => ExitStatus::Temporary,
            ErrorKind::BuildFailed | ErrorKind::Unsupported | ErrorKind::Cancelled => {
                ExitStatus::Failure
            }
            _ => ExitStatus::Error,
        }
    }
}

impl From<ExitStatus> for ExitCode {
    fn from(status: ExitStatus) -> Self {
        ExitCode::from(status as u8)
    }
}
