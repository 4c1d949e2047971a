//! A gzip layer file being written, with both of its digests computed on the way.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;

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

/// A layer's digests: the blob digest and size, and the diff id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerDigests {
    /// `sha256:` of the compressed bytes.
    pub digest: String,
    /// Compressed size.
    pub size: u64,
    /// `sha256:` of the uncompressed tar.
    pub diff_id: String,
}

/// The tar stream of a layer going to `W`: hashed for the diff id, then compressed, hashed and counted.
pub type LayerTar<W> = tar::Builder<HashingWriter<BlockGzip<HashingWriter<W>>>>;

/// Starts a layer's tar on `out` (a reproducible gzip header: no name, time 0).
fn start<W: Write + Send + 'static>(out: W) -> io::Result<LayerTar<W>> {
    let gzip = BlockGzip::new(HashingWriter::new(out))?;
    Ok(tar::Builder::new(HashingWriter::new(gzip)))
}

/// Ends the tar and the gzip stream: the writer and the digests.
fn end<W: Write + Send + 'static>(tar: LayerTar<W>) -> io::Result<(W, LayerDigests)> {
    let (gzip, diff_id) = tar.into_inner()?.finish();
    let compressed = gzip.finish()?;
    let size = compressed.bytes();
    let (out, digest) = compressed.finish();
    Ok((
        out,
        LayerDigests {
            digest,
            size,
            diff_id,
        },
    ))
}

/// A layer file being written: append entries to [`LayerFile::tar`], then [`LayerFile::finish`].
pub struct LayerFile {
    /// The tar stream (hashed for the diff id, then compressed and hashed for the digest).
    pub tar: LayerTar<BufWriter<File>>,
    path: PathBuf,
}

impl LayerFile {
    /// Creates `path` (a reproducible gzip header: no name, time 0).
    pub fn create(path: &Path) -> io::Result<LayerFile> {
        Ok(LayerFile {
            tar: start(BufWriter::with_capacity(1 << 20, File::create(path)?))?,
            path: path.to_path_buf(),
        })
    }

    /// Ends the tar and the gzip stream and returns its digests. The file is not synced: it is a step on the way
    /// (a store that keeps this file syncs it itself), and a sync here made a 1 GiB `COPY` wait for the disk.
    pub fn finish(self) -> io::Result<WrittenLayer> {
        let (out, digests) = end(self.tar)?;
        out.into_inner().map_err(|e| e.into_error())?;
        Ok(WrittenLayer {
            path: self.path,
            digest: digests.digest,
            size: digests.size,
            diff_id: digests.diff_id,
        })
    }
}

/// A layer written to any writer (containerd's content store, as berth makes it): append entries to
/// [`LayerStream::tar`], then [`LayerStream::finish`].
pub struct LayerStream<W: Write + Send + 'static> {
    /// The tar stream (hashed for the diff id, then compressed and hashed for the digest).
    pub tar: LayerTar<W>,
}

impl<W: Write + Send + 'static> LayerStream<W> {
    /// Starts the layer on `out`.
    pub fn new(out: W) -> io::Result<Self> {
        Ok(LayerStream { tar: start(out)? })
    }

    /// Ends the tar and the gzip stream: the writer (flushed by the caller) and the digests.
    pub fn finish(self) -> io::Result<(W, LayerDigests)> {
        end(self.tar)
    }
}

/// A gzip stream written as berth's push writes one ([`crate::deflate`]): the input is gathered in blocks of
/// [`BLOCK`] bytes, each deflated on its own, so the bytes out depend on the bytes in alone (never on how they
/// were handed over or flushed), and a layer written here is the blob berth's push would make of its tar.
///
/// The blocks are checksummed, deflated and written on a thread of their own, in order, while the writer's
/// thread goes on gathering the next ones (reading the files, hashing the tar): a `COPY` of random files kept
/// one core busy with all of it while the other waited. A few blocks are in flight at most.
pub struct BlockGzip<W: Write + Send + 'static> {
    block: Vec<u8>,
    to_worker: Option<SyncSender<Vec<u8>>>,
    spare: Receiver<Vec<u8>>,
    worker: Option<JoinHandle<io::Result<(W, flate2::Crc)>>>,
}

/// Blocks waiting for the compressing thread, besides the one it works on and the one being filled.
const BLOCKS_QUEUED: usize = 2;

impl<W: Write + Send + 'static> BlockGzip<W> {
    /// Starts the stream on `out` (a reproducible header: no name, time 0).
    pub fn new(mut out: W) -> io::Result<Self> {
        out.write_all(&HEADER)?;
        let (to_worker, blocks) = sync_channel::<Vec<u8>>(BLOCKS_QUEUED);
        let (give_back, spare) = sync_channel::<Vec<u8>>(BLOCKS_QUEUED + 2);
        let worker = std::thread::Builder::new()
            .name("berth-gzip".into())
            .spawn(move || {
                let (mut deflater, mut crc) = (BlockDeflater::new(), flate2::Crc::new());
                for block in blocks {
                    crc.update(&block);
                    out.write_all(&deflater.block(&block)?)?;
                    let _ = give_back.try_send(block);
                }
                Ok((out, crc))
            })?;
        Ok(BlockGzip {
            block: Vec::with_capacity(BLOCK),
            to_worker: Some(to_worker),
            spare,
            worker: Some(worker),
        })
    }

    /// Hands the gathered block to the compressing thread.
    fn send_block(&mut self) -> io::Result<()> {
        if self.block.is_empty() {
            return Ok(());
        }
        let mut next = self
            .spare
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(BLOCK));
        next.clear();
        let full = std::mem::replace(&mut self.block, next);
        let sent = self.to_worker.as_ref().map(|tx| tx.send(full).is_ok());
        if sent == Some(true) {
            return Ok(());
        }
        // the thread stopped: its error says why
        Err(self.join().err().unwrap_or_else(|| {
            io::Error::new(io::ErrorKind::BrokenPipe, "the gzip thread stopped")
        }))
    }

    /// Ends the compressing thread (after the blocks sent) and takes back its writer and checksum.
    fn join(&mut self) -> io::Result<(W, flate2::Crc)> {
        self.to_worker = None;
        let worker = self
            .worker
            .take()
            .ok_or_else(|| io::Error::other("the gzip stream was ended already"))?;
        worker
            .join()
            .map_err(|_| io::Error::other("the gzip thread panicked"))?
    }

    /// Writes the last block, the end of the deflate stream and the trailer; the writer it wrote to.
    pub fn finish(mut self) -> io::Result<W> {
        self.send_block()?;
        let (mut out, crc) = self.join()?;
        out.write_all(&trailer(crc.sum(), u64::from(crc.amount())))?;
        Ok(out)
    }
}

impl<W: Write + Send + 'static> Drop for BlockGzip<W> {
    /// A stream dropped unfinished (a failed layer) stops its thread.
    fn drop(&mut self) {
        if self.worker.is_some() {
            let _ = self.join();
        }
    }
}

impl<W: Write + Send + 'static> Write for BlockGzip<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let taken = buf.len().min(BLOCK - self.block.len());
        self.block.extend_from_slice(&buf[..taken]);
        if self.block.len() == BLOCK {
            self.send_block()?;
        }
        Ok(taken)
    }

    /// Nothing to do: blocks are written by the compressing thread as they fill, and a partial block waits for
    /// its end so that the output stays the same.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Passes bytes through while hashing and counting them.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Hashes what is written to `inner`.
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// How many bytes went through.
    pub fn bytes(&self) -> u64 {
        self.bytes
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
        self.bytes += n as u64;
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
