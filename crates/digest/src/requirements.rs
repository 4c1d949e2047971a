//! The `requirements` digest: sha1 of the file with Python's `bytes.strip()`
//! applied, streamed so only trailing whitespace runs are ever buffered.

use std::io::{ErrorKind, Read};
use std::path::Path;

use sha1::{Digest, Sha1};

use crate::hash::hex;
use crate::DigestError;

/// What Python's `bytes.strip()` removes: ASCII space, `\t`, `\n`, `\r`,
/// `\x0b` and `\x0c`.
fn is_py_bytes_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// sha1 hex digest of the requirements file at `path` with leading and
/// trailing ASCII whitespace removed, as flytekit's
/// `hashlib.sha1(Path(path).read_bytes().strip()).hexdigest()`.
pub fn requirements_digest(path: &Path) -> Result<String, DigestError> {
    let mut file = std::fs::File::open(path).map_err(|e| DigestError::io(path, e))?;
    let mut stripper = Stripper::default();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => stripper.feed(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(DigestError::io(path, e)),
        }
    }
    Ok(hex(&stripper.hasher.finalize()))
}

/// Feeds bytes to sha1 with leading whitespace dropped and each whitespace
/// run held back until something else follows it.
#[derive(Default)]
struct Stripper {
    hasher: Sha1,
    started: bool,
    pending: Vec<u8>,
}

impl Stripper {
    fn feed(&mut self, mut data: &[u8]) {
        if !self.started {
            let skip = data.iter().take_while(|&&b| is_py_bytes_space(b)).count();
            data = &data[skip..];
            if data.is_empty() {
                return;
            }
            self.started = true;
        }
        let tail = data
            .iter()
            .rev()
            .take_while(|&&b| is_py_bytes_space(b))
            .count();
        let (body, ws) = data.split_at(data.len() - tail);
        if !body.is_empty() {
            self.hasher.update(&self.pending);
            self.pending.clear();
            self.hasher.update(body);
        }
        self.pending.extend_from_slice(ws);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest_of(chunks: &[&[u8]]) -> String {
        let mut s = Stripper::default();
        for c in chunks {
            s.feed(c);
        }
        hex(&s.hasher.finalize())
    }

    fn sha1_hex(data: &[u8]) -> String {
        hex(&Sha1::digest(data))
    }

    #[test]
    fn strips_python_ascii_whitespace_only() {
        assert_eq!(
            digest_of(&[b" \t\r\n\x0b\x0cnumpy\n\n"]),
            sha1_hex(b"numpy")
        );
        // NUL and non-breaking space are not whitespace for bytes.strip().
        assert_eq!(digest_of(&[b"\x00a\xc2\xa0"]), sha1_hex(b"\x00a\xc2\xa0"));
        assert_eq!(digest_of(&[b" \n "]), sha1_hex(b""));
        assert_eq!(digest_of(&[]), sha1_hex(b""));
    }

    #[test]
    fn whitespace_across_chunks_is_kept_inside_and_dropped_at_the_end() {
        assert_eq!(
            digest_of(&[b"  a ", b"  ", b"\nb  ", b"\n"]),
            sha1_hex(b"a   \nb")
        );
        assert_eq!(digest_of(&[b"  ", b" x", b" "]), sha1_hex(b"x"));
    }

    #[test]
    fn known_flytekit_value() {
        // hashlib.sha1(b"  pandas==2.2\nnumpy\n\n".strip()).hexdigest()
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("requirements.txt");
        std::fs::write(&path, b"  pandas==2.2\nnumpy\n\n").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            requirements_digest(&path).unwrap_or_default(),
            "5b4f02dd9a0b862b80081b3d59fbafa69edeb526"
        );
    }
}
