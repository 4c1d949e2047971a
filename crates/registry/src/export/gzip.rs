//! Gzip on every core, with output that depends only on the input: the same layer always compresses to the
//! same blob, so pushing one local image twice gives one manifest digest, and a registry that has the blob
//! from an earlier push is not sent it again.
//!
//! The input is cut into [`BLOCK`]-byte blocks, each deflated on its own by a pool of threads and ended with a
//! sync flush (so it ends on a byte boundary); the blocks are written in order behind one gzip header and
//! closed by an empty final block and the trailer: one ordinary gzip member, as pigz writes with `-i`. Within a
//! block, each [`PIECE`](berth_layer::deflate::PIECE) that a sample shows to be incompressible (random data, compressed archives, most model
//! weights) is written as stored deflate blocks, at copying speed, and the pieces between are deflated: a layer
//! that mixes both (a wheel's compressed members beside its code) shrinks as far as its compressible parts allow,
//! where judging whole blocks stored them with their incompressible neighbours.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use berth_layer::deflate::{BlockDeflater as Deflater, BLOCK, HEADER};
use bytes::Bytes;
use sha2::{Digest as _, Sha256};

/// Most blocks in flight at once (read, being compressed, or waiting their turn): bounds memory to about
/// twice this many MiB, however many cores the machine has.
const MAX_IN_FLIGHT: usize = 24;

/// Pieces of output waiting for their hasher: one being hashed and one ready next is enough to keep it busy.
const HASH_QUEUE: usize = 2;

/// What compressing a layer found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Compressed {
    /// sha256 of the input: the layer's diff id.
    pub(crate) diff_id: String,
    /// sha256 of the gzip stream: the blob's digest.
    pub(crate) digest: String,
    /// Bytes of gzip.
    pub(crate) size: u64,
    /// Bytes of input.
    pub(crate) input_size: u64,
}

/// Why compressing stopped early.
#[derive(Debug)]
pub(crate) enum Stop {
    /// Reading the input failed.
    Read(std::io::Error),
    /// The consumer of the output gave up (its own error explains why).
    Output,
}

/// Compresses all of `input` on `threads` threads, giving the gzip stream to `out` in order, in pieces of
/// about [`BLOCK`] bytes or less.
///
/// Two sha256 passes are most of the work when the input is incompressible (a profile of a 200 MB random
/// layer: over half the CPU time; storing it is a copy): the output's (the blob digest) runs on a thread of its
/// own, beside the input's (the diff id) and the crc32 on the thread that reads the input, while the block is
/// still in that core's cache, so that the two run on two cores at once instead of one after the other.
pub(crate) fn compress(
    input: &mut dyn Read,
    threads: usize,
    out: &mut dyn FnMut(Bytes) -> bool,
) -> Result<Compressed, Stop> {
    let threads = threads.clamp(1, MAX_IN_FLIGHT / 2);
    let (jobs_tx, jobs_rx) = mpsc::channel::<(u64, Block)>();
    let jobs_rx = Arc::new(Mutex::new(jobs_rx));
    let (done_tx, done_rx) = mpsc::channel::<(u64, std::io::Result<Vec<u8>>)>();
    let (hash_tx, hash_rx) = mpsc::sync_channel::<Bytes>(HASH_QUEUE);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            let jobs = jobs_rx.clone();
            let done = done_tx.clone();
            scope.spawn(move || {
                let mut deflater = Deflater::new();
                loop {
                    let job = jobs.lock().map(|rx| rx.recv());
                    let Ok(Ok((n, block))) = job else { return };
                    if done.send((n, deflater.block(&block.data))).is_err() {
                        return;
                    }
                }
            });
        }
        drop(done_tx);
        // ends when the writer, which holds the sender, is dropped or done
        let hasher = scope.spawn(move || {
            let mut hash = Sha256::new();
            for data in hash_rx {
                hash.update(&data);
            }
            hash.finalize()
        });
        let mut writer = Ordered::new(out, hash_tx);
        let result = feed(input, &jobs_tx, &done_rx, &mut writer, threads);
        // closing the job queue ends the workers, also after a failure
        drop(jobs_tx);
        let Fed {
            input_size,
            diff,
            crc,
        } = result?;
        let tail = berth_layer::deflate::trailer(crc, input_size).to_vec();
        if !writer.write(Bytes::from(tail)) {
            return Err(Stop::Output);
        }
        let size = writer.size;
        drop(writer);
        let digest = hasher
            .join()
            .map_err(|_| Stop::Read(std::io::Error::other("hashing a layer failed")))?;
        Ok(Compressed {
            diff_id: format!("sha256:{diff:x}"),
            digest: format!("sha256:{digest:x}"),
            size,
            input_size,
        })
    })
}

/// What [`feed`] read: its size, sha256 and crc32.
struct Fed {
    input_size: u64,
    diff: sha2::digest::Output<Sha256>,
    crc: u32,
}

/// Reads blocks, hashes them and hands them to the workers, writing finished ones as their turn comes.
fn feed(
    input: &mut dyn Read,
    jobs: &mpsc::Sender<(u64, Block)>,
    done: &mpsc::Receiver<(u64, std::io::Result<Vec<u8>>)>,
    writer: &mut Ordered<'_>,
    threads: usize,
) -> Result<Fed, Stop> {
    let limit = (threads * 2 + 2).min(MAX_IN_FLIGHT);
    let (mut diff, mut crc) = (Sha256::new(), crc32fast::Hasher::new());
    let mut input_size = 0u64;
    let mut sent = 0u64;
    // buffers of blocks the workers are done with, read into again
    let (spare_tx, spare_rx) = mpsc::channel::<Vec<u8>>();
    if !writer.write(Bytes::from_static(&HEADER)) {
        return Err(Stop::Output);
    }
    loop {
        let reuse = spare_rx.try_recv().unwrap_or_default();
        let block = read_block(input, reuse).map_err(Stop::Read)?;
        if block.is_empty() {
            break;
        }
        diff.update(&block);
        crc.update(&block);
        input_size += block.len() as u64;
        let last = block.len() < BLOCK;
        while sent - writer.next >= limit as u64 {
            let (n, data) = done.recv().map_err(|_| Stop::Output)?;
            writer.finished(n, data)?;
        }
        let block = Block {
            data: block,
            back: spare_tx.clone(),
        };
        jobs.send((sent, block)).map_err(|_| Stop::Output)?;
        sent += 1;
        while let Ok((n, data)) = done.try_recv() {
            writer.finished(n, data)?;
        }
        if last {
            break;
        }
    }
    while writer.next < sent {
        let (n, data) = done.recv().map_err(|_| Stop::Output)?;
        writer.finished(n, data)?;
    }
    Ok(Fed {
        input_size,
        diff: diff.finalize(),
        crc: crc.finalize(),
    })
}

/// Up to [`BLOCK`] bytes, read into `reuse` when it is a whole block's buffer from before; fewer only at the end
/// of the input. Reading into a buffer whose bytes are initialized already spares the zeroing of each read's
/// room and the small first reads that `read_to_end` does, and reusing one the page faults of a new one.
fn read_block(input: &mut dyn Read, reuse: Vec<u8>) -> std::io::Result<Vec<u8>> {
    let mut block = if reuse.len() == BLOCK {
        reuse
    } else {
        vec![0u8; BLOCK]
    };
    let mut filled = 0;
    while filled < BLOCK {
        match input.read(&mut block[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    block.truncate(filled);
    Ok(block)
}

/// A block of input on its way to a worker; its buffer goes back to the reader once the worker is done with it.
struct Block {
    data: Vec<u8>,
    back: mpsc::Sender<Vec<u8>>,
}

impl Drop for Block {
    fn drop(&mut self) {
        // after the reader has finished nobody takes it, and it is freed
        let _ = self.back.send(std::mem::take(&mut self.data));
    }
}

/// Writes compressed blocks in input order, counting what it writes and giving it to the output's hasher.
struct Ordered<'a> {
    out: &'a mut dyn FnMut(Bytes) -> bool,
    waiting: BTreeMap<u64, Vec<u8>>,
    next: u64,
    hash: mpsc::SyncSender<Bytes>,
    size: u64,
}

impl<'a> Ordered<'a> {
    fn new(out: &'a mut dyn FnMut(Bytes) -> bool, hash: mpsc::SyncSender<Bytes>) -> Self {
        Ordered {
            out,
            waiting: BTreeMap::new(),
            next: 0,
            hash,
            size: 0,
        }
    }

    fn finished(&mut self, n: u64, data: std::io::Result<Vec<u8>>) -> Result<(), Stop> {
        self.waiting.insert(n, data.map_err(Stop::Read)?);
        while let Some(data) = self.waiting.remove(&self.next) {
            self.next += 1;
            if !self.write(Bytes::from(data)) {
                return Err(Stop::Output);
            }
        }
        Ok(())
    }

    fn write(&mut self, data: Bytes) -> bool {
        self.size += data.len() as u64;
        // waits while the hasher is HASH_QUEUE pieces behind, which bounds what is held for it
        self.hash.send(data.clone()).is_ok() && (self.out)(data)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;
    use berth_layer::deflate::PIECE;

    fn gzip(data: &[u8], threads: usize) -> (Vec<u8>, Compressed) {
        let mut out = Vec::new();
        let found = compress(&mut &data[..], threads, &mut |b| {
            out.extend_from_slice(&b);
            true
        })
        .expect("test setup");
        (out, found)
    }

    fn mixed(len: usize) -> Vec<u8> {
        let mut rng = fastrand::Rng::with_seed(7);
        let mut data = Vec::with_capacity(len);
        while data.len() < len {
            if rng.bool() {
                data.extend((0..70_000).map(|_| rng.u8(..)));
            } else {
                data.extend(b"text that repeats itself, as source files do\n".repeat(2_000));
            }
        }
        data.truncate(len);
        data
    }

    #[test]
    fn any_gzip_reader_gets_the_input_back() {
        for len in [0, 1, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 12_345] {
            let data = mixed(len);
            let (gz, found) = gzip(&data, 3);
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(&gz[..])
                .read_to_end(&mut back)
                .expect("test setup");
            assert_eq!(back, data, "length {len}");
            assert_eq!(found.size, gz.len() as u64);
            assert_eq!(found.input_size, len as u64);
            assert_eq!(found.diff_id, crate::sha256_digest(&data));
            assert_eq!(found.digest, crate::sha256_digest(&gz));
            // one member: a reader that stops after the first member sees everything too
            let mut single = Vec::new();
            flate2::bufread::GzDecoder::new(&gz[..])
                .read_to_end(&mut single)
                .expect("test setup");
            assert_eq!(single.len(), len);
        }
    }

    #[test]
    fn the_output_depends_on_the_input_only() {
        let data = mixed(5 * BLOCK + 99);
        let (one, _) = gzip(&data, 1);
        let (four, _) = gzip(&data, 4);
        assert_eq!(one, four);
    }

    #[test]
    fn text_shrinks_and_random_data_is_stored_at_almost_its_size() {
        let text = b"import torch\nprint(torch.__version__)\n".repeat(100_000);
        let (_, found) = gzip(&text, 2);
        assert!(found.size * 10 < text.len() as u64, "{found:?}");
        let mut rng = fastrand::Rng::with_seed(1);
        let random: Vec<u8> = (0..3 * BLOCK).map(|_| rng.u8(..)).collect();
        let (_, found) = gzip(&random, 2);
        assert!(found.size > random.len() as u64, "{found:?}");
        assert!(found.size < random.len() as u64 + 1024, "{found:?}");
    }

    #[test]
    fn a_block_mixing_random_and_text_stores_only_its_random_pieces() {
        // every block starts with a random piece, as a judgement by the block's first bytes would see it
        let mut rng = fastrand::Rng::with_seed(3);
        let mut data = Vec::new();
        for i in 0..(4 * BLOCK / PIECE) {
            if i % 2 == 0 {
                data.extend((0..PIECE).map(|_| rng.u8(..)));
            } else {
                let line = b"def forward(self, x): return self.linear(x)\n";
                data.extend(line.iter().cycle().take(PIECE));
            }
        }
        let (gz, found) = gzip(&data, 2);
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut back)
            .expect("test setup");
        assert_eq!(back, data);
        // the random half at its size (plus a few bytes per stored block), the text half almost nothing
        assert!(found.size < data.len() as u64 * 52 / 100, "{found:?}");
    }

    #[test]
    fn a_failing_reader_or_consumer_stops_it() {
        struct Failing;
        impl std::io::Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("gone"))
            }
        }
        assert!(matches!(
            compress(&mut Failing, 2, &mut |_| true),
            Err(Stop::Read(_))
        ));
        let data = mixed(4 * BLOCK);
        let mut calls = 0;
        let stopped = compress(&mut &data[..], 2, &mut |_| {
            calls += 1;
            calls < 2
        });
        assert!(matches!(stopped, Err(Stop::Output)));
    }

    #[test]
    fn the_bytes_are_the_ones_earlier_versions_wrote() {
        // pushed blobs keep their digests across versions (the memory cache and registries hold them): a
        // change to how the bytes are computed must leave them as they were, or say so with a new format
        let data = mixed(3 * BLOCK + 12_345);
        let (_, found) = gzip(&data, 2);
        assert_eq!(
            found.digest,
            "sha256:2230273112f5d690aa18d4ace2c0dadfadb6019fca4a5d6372b099724b0ca587"
        );
    }
}
