//! A gzip layer file being written, with both of its digests computed on the way.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

/// The gzip level of the layers berth writes: zlib's fastest, 4-5 times the speed of the default level (which
/// writes incompressible files at ~30 MB/s here) for blobs ~10% larger on text. Docker and BuildKit keep layers
/// uncompressed until they push; berth keeps them compressed, so the level is paid on every build.
pub const GZIP_LEVEL: u32 = 1;

/// Modification time of every entry of a reproducible layer (2000-01-01T00:00:00Z).
pub const FIXED_MTIME: u64 = 946_684_800;

/// A written layer: its gzip file, the compressed digest and size, and the diff id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenLayer {
    /// The gzip file.
    pub path: PathBuf,
    /// `sha256:` of the compressed bytes (the blob digest).
    pub digest: String,
    /// Compressed size.
    pub size: u64,
    /// `sha256:` of the uncompressed tar.
    pub diff_id: String,
}

type Gzip = flate2::write::GzEncoder<HashingWriter<BufWriter<File>>>;

/// A layer file being written: append entries to [`LayerFile::tar`], then [`LayerFile::finish`].
pub struct LayerFile {
    /// The tar stream (hashed for the diff id, then compressed and hashed for the digest).
    pub tar: tar::Builder<HashingWriter<Gzip>>,
    path: PathBuf,
}

impl LayerFile {
    /// Creates `path` (a reproducible gzip header: no name, time 0).
    pub fn create(path: &Path) -> io::Result<LayerFile> {
        let out = HashingWriter::new(BufWriter::with_capacity(1 << 20, File::create(path)?));
        let gzip = flate2::GzBuilder::new()
            .mtime(0)
            .write(out, flate2::Compression::new(GZIP_LEVEL));
        Ok(LayerFile {
            tar: tar::Builder::new(HashingWriter::new(gzip)),
            path: path.to_path_buf(),
        })
    }

    /// Ends the tar and the gzip stream, syncs the file and returns its digests.
    pub fn finish(self) -> io::Result<WrittenLayer> {
        let tar_hash = self.tar.into_inner()?;
        let (gzip, diff_id) = tar_hash.finish();
        let (out, digest) = gzip.finish()?.finish();
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        let size = file.metadata()?.len();
        Ok(WrittenLayer {
            path: self.path,
            digest,
            size,
            diff_id,
        })
    }
}

/// Passes bytes through while hashing them.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> HashingWriter<W> {
    /// Hashes what is written to `inner`.
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
        }
    }

    /// The inner writer and `sha256:<hex>` of everything written.
    pub fn finish(self) -> (W, String) {
        (self.inner, format!("sha256:{}", hex(self.hasher)))
    }
}

/// Lowercase hex of a finished hash.
pub(crate) fn hex(hasher: Sha256) -> String {
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
