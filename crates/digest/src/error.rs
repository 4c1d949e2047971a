//! The error type of this crate.

use std::path::PathBuf;

/// Everything that can stop a digest from being computed.
///
/// Each variant names the offending path and says what to do about it. The
/// cases where flytekit itself would crash (a non-UTF-8 file name that is
/// not ignored, a `.dockerignore` that is not UTF-8 or has an invalid
/// character range) are errors here too, so berth never invents a digest
/// flytekit could not have produced.
#[derive(thiserror::Error, Debug)]
pub enum DigestError {
    /// A file or directory could not be read or inspected.
    #[error("cannot read {}: {source}; check that it exists and is readable", path.display())]
    Io {
        /// The path that failed.
        path: PathBuf,
        /// The underlying operating-system error.
        source: std::io::Error,
    },

    /// The source root is not a directory.
    #[error("source root {} is not a directory; point source_root at the project directory", path.display())]
    NotADirectory {
        /// The path given as root.
        path: PathBuf,
    },

    /// A file that would be hashed has a name that is not valid UTF-8
    /// (flytekit fails on it with a `UnicodeEncodeError`).
    #[error("file name {} is not valid UTF-8; rename it or exclude it in .dockerignore", path.display())]
    NonUtf8Path {
        /// The offending path.
        path: PathBuf,
    },

    /// A file that would be hashed is a FIFO or a device; flytekit would
    /// block or read forever on it.
    #[error("{} is not a regular file (FIFO or device); remove it or exclude it in .dockerignore", path.display())]
    SpecialFile {
        /// The offending path.
        path: PathBuf,
    },

    /// The `.dockerignore` file cannot be used (flytekit fails on it too).
    #[error("invalid {}: {reason}; fix that line", path.display())]
    InvalidDockerignore {
        /// Path of the `.dockerignore` file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// A listed source file is not under the source root.
    #[error("{} is not under the source root {}; only files under source_root can be copied", path.display(), root.display())]
    OutsideRoot {
        /// The file.
        path: PathBuf,
        /// The source root.
        root: PathBuf,
    },

    /// An entry of an ImageSpec `copy` list does not exist (only reported by
    /// [`copy_files`](crate::copy_files); the digest silently skips it, as
    /// flytekit does).
    #[error("copy entry {} does not exist; fix the ImageSpec copy list", path.display())]
    MissingCopyEntry {
        /// The missing entry, as given.
        path: PathBuf,
    },
}

impl DigestError {
    /// Shorthand for [`DigestError::Io`].
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DigestError::Io {
            path: path.into(),
            source,
        }
    }
}
