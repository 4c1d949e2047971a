//! A gzip layer file being written, with both of its digests computed on the way.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::deflate::{trailer, BlockDeflater, BLOCK, HEADER};

/// The gzip level of the deflated parts of the layers berth writes (zlib-rs's level 2, see [`crate::deflate`]).
/// Docker and BuildKit keep layers uncompressed until they push; berth keeps them compressed, so compressing is
/// paid on every build: incompressible pieces are stored, at copying speed, instead of deflated (zlib level 1
/// deflated the bench's random files at under 100 MB/s, most of a 1 GiB `COPY` step's time).
pub const GZIP_LEVEL: u32 = crate::deflate::LEVEL as u32;

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

type Gzip = BlockGzip<HashingWriter<BufWriter<File>>>;

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
        let gzip = BlockGzip::new(out)?;
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

/// A gzip stream written as berth's push writes one ([`crate::deflate`]): the input is gathered in blocks of
/// [`BLOCK`] bytes, each deflated on its own, so the bytes out depend on the bytes in alone (never on how they
/// were handed over or flushed), and a layer written here is the blob berth's push would make of its tar.
pub struct BlockGzip<W: Write> {
    out: W,
    block: Vec<u8>,
    deflater: BlockDeflater,
    crc: flate2::Crc,
}

impl<W: Write> BlockGzip<W> {
    /// Starts the stream on `out` (a reproducible header: no name, time 0).
    pub fn new(mut out: W) -> io::Result<Self> {
        out.write_all(&HEADER)?;
        Ok(BlockGzip {
            out,
            block: Vec::with_capacity(BLOCK),
            deflater: BlockDeflater::new(),
            crc: flate2::Crc::new(),
        })
    }

    fn write_block(&mut self) -> io::Result<()> {
        if self.block.is_empty() {
            return Ok(());
        }
        self.crc.update(&self.block);
        let deflated = self.deflater.block(&self.block)?;
        self.block.clear();
        self.out.write_all(&deflated)
    }

    /// Writes the last block, the end of the deflate stream and the trailer; the writer it wrote to.
    pub fn finish(mut self) -> io::Result<W> {
        self.write_block()?;
        self.out
            .write_all(&trailer(self.crc.sum(), u64::from(self.crc.amount())))?;
        Ok(self.out)
    }
}

impl<W: Write> Write for BlockGzip<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let taken = buf.len().min(BLOCK - self.block.len());
        self.block.extend_from_slice(&buf[..taken]);
        if self.block.len() == BLOCK {
            self.write_block()?;
        }
        Ok(taken)
    }

    /// Flushes what was written out already; a partial block waits for its end, so the output stays the same.
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
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

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;

    fn gzip(data: &[u8], chunk: usize) -> Vec<u8> {
        let mut gz = BlockGzip::new(Vec::new()).expect("header");
        for part in data.chunks(chunk) {
            gz.write_all(part).expect("write");
            gz.flush().expect("flush");
        }
        gz.finish().expect("finish")
    }

    /// Random stretches among text, over several blocks, as a layer of wheels and code has them.
    fn mixed() -> Vec<u8> {
        let mut rng = fastrand::Rng::with_seed(3);
        let mut data = Vec::new();
        while data.len() < 3 * BLOCK + 12_345 {
            if rng.bool() {
                data.extend((0..100_000).map(|_| rng.u8(..)));
            } else {
                data.extend(b"def layer(self):\n    return self.files\n".repeat(3_000));
            }
        }
        data
    }

    #[test]
    fn the_stream_is_gzip_of_the_input_whatever_the_writes() {
        let data = mixed();
        let whole = gzip(&data, data.len());
        assert_eq!(
            gzip(&data, 1_000),
            whole,
            "output depends on the bytes alone"
        );
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&whole[..])
            .read_to_end(&mut back)
            .expect("valid gzip");
        assert_eq!(back, data);
    }

    #[test]
    fn random_bytes_are_stored_and_text_is_deflated() {
        let mut rng = fastrand::Rng::with_seed(5);
        let random: Vec<u8> = (0..2 * BLOCK).map(|_| rng.u8(..)).collect();
        let stored = gzip(&random, 64 << 10).len();
        // stored blocks add 5 bytes per 65,535 (10 per 64 KiB piece), plus header and trailer
        assert!(
            stored < random.len() + random.len() / 5_000 + 64,
            "{stored}"
        );
        let text = b"INFO request served in 3 ms\n".repeat(100_000);
        assert!(gzip(&text, 4096).len() < text.len() / 20);
    }
}
