//! A file's bytes for a tar entry whose header already announced its size: exactly that many, or an error
//! saying the file changed. A tar entry must hold the bytes its header counts, and a file that shrinks or
//! grows while berth reads it (a log being written, a file replaced during the build) must fail the build
//! rather than give a short entry, a corrupt archive or bytes other than those a cache key was computed from.
//! Both tar writers berth has use it: the build context for Docker and Podman, and containerd's COPY layers.

use std::fmt;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// A file that changed while berth read it (or, for a caller that checks a digest afterwards, since then).
#[derive(Debug)]
pub struct SourceChanged {
    /// The file.
    pub path: PathBuf,
    /// How: `shrank`, `grew`, or the caller's own words.
    pub how: &'static str,
}

impl fmt::Display for SourceChanged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} while berth was reading it",
            self.path.display(),
            self.how
        )
    }
}

impl std::error::Error for SourceChanged {}

/// An I/O error carrying [`SourceChanged`] (find it with `io::Error::get_ref` and a downcast).
pub fn changed(path: &Path, how: &'static str) -> io::Error {
    io::Error::other(SourceChanged {
        path: path.to_path_buf(),
        how,
    })
}

/// Reads exactly the `announced` bytes of `inner`, showing each read to `observe` (e.g. a hasher); an early
/// end or a byte after them is a [`SourceChanged`] error.
pub struct ExactReader<'a, R, F> {
    inner: R,
    remaining: u64,
    observe: F,
    path: &'a Path,
}

impl<'a, R: Read, F: FnMut(&[u8])> ExactReader<'a, R, F> {
    /// A reader of `announced` bytes of `inner`, which is the file at `path` (named in errors).
    pub fn new(inner: R, announced: u64, path: &'a Path, observe: F) -> Self {
        ExactReader {
            inner,
            remaining: announced,
            observe,
            path,
        }
    }
}

impl<R: Read, F: FnMut(&[u8])> Read for ExactReader<'_, R, F> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.remaining == 0 {
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => Err(changed(self.path, "grew")),
            };
        }
        let wanted = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..wanted])?;
        if n == 0 {
            return Err(changed(self.path, "shrank"));
        }
        self.remaining -= n as u64;
        (self.observe)(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn how(err: io::Error) -> &'static str {
        err.get_ref()
            .and_then(|e| e.downcast_ref::<SourceChanged>())
            .unwrap_or_else(|| panic!("not a changed source: {err}"))
            .how
    }

    #[test]
    fn exactly_the_announced_bytes_or_an_error() {
        let read = |data: &[u8], announced: u64| {
            let mut seen = 0;
            let mut reader = ExactReader::new(data, announced, Path::new("f"), |b| seen += b.len());
            let mut out = Vec::new();
            let result = reader.read_to_end(&mut out).map(|_| out);
            (result, seen)
        };
        let (exact, seen) = read(b"12345", 5);
        assert_eq!(exact.expect("exact"), b"12345");
        assert_eq!(seen, 5);
        assert_eq!(how(read(b"1234567", 5).0.expect_err("longer")), "grew");
        assert_eq!(how(read(b"123", 5).0.expect_err("shorter")), "shrank");
    }
}
