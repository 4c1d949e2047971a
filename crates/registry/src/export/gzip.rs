//! Gzip on every core, with output that depends only on the input: the same layer always compresses to the
//! same blob, so pushing one local image twice gives one manifest digest, and a registry that has the blob
//! from an earlier push is not sent it again.
//!
//! The input is cut into [`BLOCK`]-byte blocks, each deflated on its own by a pool of threads and ended with a
//! sync flush (so it ends on a byte boundary); the blocks are written in order behind one gzip header and
//! closed by an empty final block and the trailer: one ordinary gzip member, as pigz writes with `-i`. Blocks
//! that a sample shows to be incompressible are stored instead, at copying speed, the way deflate itself
//! stores a block it cannot shrink (random data, compressed archives, most model weights).

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use flate2::{Compress, Compression, FlushCompress};
use sha2::{Digest as _, Sha256};

/// Bytes per independently compressed block: large enough that restarting the dictionary costs well under
/// 1% of the ratio, small enough that a few per thread in flight stay a few MiB.
pub(crate) const BLOCK: usize = 1 << 20;

/// zlib level 1, as the containerd backend writes layers: 4-5 times the speed of the default level for blobs
/// ~10% larger on text.
const LEVEL: u32 = 1;

/// A block whose sample deflates to more than this share of its size is stored.
const STORE_ABOVE: f64 = 0.97;

/// How much of each block is sampled to decide.
const SAMPLE: usize = 64 << 10;

/// Most blocks in flight at once (read, being compressed, or waiting their turn): bounds memory to about
/// twice this many MiB, however many cores the machine has.
const MAX_IN_FLIGHT: usize = 24;

/// gzip header: no name, no mtime, no extra flags, OS unknown (as Go's `compress/gzip` writes it).
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// An empty final stored block: ends the deflate stream after the last sync-flushed block.
const LAST_BLOCK: [u8; 5] = [1, 0, 0, 0xff, 0xff];

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
pub(crate) fn compress(
    input: &mut dyn Read,
    threads: usize,
    out: &mut dyn FnMut(Bytes) -> bool,
) -> Result<Compressed, Stop> {
    let threads = threads.clamp(1, MAX_IN_FLIGHT / 2);
    let (jobs_tx, jobs_rx) = mpsc::channel::<(u64, Vec<u8>)>();
    let jobs_rx = Arc::new(Mutex::new(jobs_rx));
    let (done_tx, done_rx) = mpsc::channel::<(u64, Vec<u8>)>();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            let jobs = jobs_rx.clone();
            let done = done_tx.clone();
            scope.spawn(move || loop {
                let job = jobs.lock().map(|rx| rx.recv());
                let Ok(Ok((n, block))) = job else { return };
                if done.send((n, deflate(&block))).is_err() {
                    return;
                }
            });
        }
        drop(done_tx);
        let mut writer = Ordered::new(out);
        let result = feed(input, &jobs_tx, &done_rx, &mut writer, threads);
        // closing the job queue ends the workers, also after a failure
        drop(jobs_tx);
        result
    })
}

/// Reads blocks and hands them out, writing finished ones as their turn comes.
fn feed(
    input: &mut dyn Read,
    jobs: &mpsc::Sender<(u64, Vec<u8>)>,
    done: &mpsc::Receiver<(u64, Vec<u8>)>,
    writer: &mut Ordered<'_>,
    threads: usize,
) -> Result<Compressed, Stop> {
    let limit = (threads * 2 + 2).min(MAX_IN_FLIGHT);
    let mut diff = Sha256::new();
    let mut crc = crc32fast::Hasher::new();
    let mut input_size = 0u64;
    let mut sent = 0u64;
    if !writer.write(Bytes::from_static(&HEADER)) {
        return Err(Stop::Output);
    }
    loop {
        let block = read_block(input).map_err(Stop::Read)?;
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
    let mut tail = Vec::with_capacity(LAST_BLOCK.len() + 8);
    tail.extend_from_slice(&LAST_BLOCK);
    tail.extend_from_slice(&crc.finalize().to_le_bytes());
    // ISIZE is the input size modulo 2^32, as RFC 1952 says
    tail.extend_from_slice(&(input_size as u32).to_le_bytes());
    if !writer.write(Bytes::from(tail)) {
        return Err(Stop::Output);
    }
    Ok(Compressed {
        diff_id: format!("sha256:{:x}", diff.finalize()),
        digest: format!("sha256:{:x}", writer.hash.clone().finalize()),
        size: writer.size,
        input_size,
    })
}

/// Up to [`BLOCK`] bytes; fewer only at the end of the input.
fn read_block(input: &mut dyn Read) -> std::io::Result<Vec<u8>> {
    let mut block = Vec::with_capacity(BLOCK);
    input.take(BLOCK as u64).read_to_end(&mut block)?;
    Ok(block)
}

/// Writes compressed blocks in input order, hashing and counting what it writes.
struct Ordered<'a> {
    out: &'a mut dyn FnMut(Bytes) -> bool,
    waiting: BTreeMap<u64, Vec<u8>>,
    next: u64,
    hash: Sha256,
    size: u64,
}

impl<'a> Ordered<'a> {
    fn new(out: &'a mut dyn FnMut(Bytes) -> bool) -> Self {
        Ordered {
            out,
            waiting: BTreeMap::new(),
            next: 0,
            hash: Sha256::new(),
            size: 0,
        }
    }

    fn finished(&mut self, n: u64, data: Vec<u8>) -> Result<(), Stop> {
        self.waiting.insert(n, data);
        while let Some(data) = self.waiting.remove(&self.next) {
            self.next += 1;
            if !self.write(Bytes::from(data)) {
                return Err(Stop::Output);
            }
        }
        Ok(())
    }

    fn write(&mut self, data: Bytes) -> bool {
        self.hash.update(&data);
        self.size += data.len() as u64;
        (self.out)(data)
    }
}

/// Deflates one block on its own, ending with a sync flush (not final).
fn deflate(block: &[u8]) -> Vec<u8> {
    let sample = &block[..block.len().min(SAMPLE)];
    let level = if deflate_at(sample, LEVEL).len() as f64 > sample.len() as f64 * STORE_ABOVE {
        0
    } else {
        LEVEL
    };
    deflate_at(block, level)
}

fn deflate_at(data: &[u8], level: u32) -> Vec<u8> {
    let mut compress = Compress::new(Compression::new(level), false);
    // stored blocks add 5 bytes per 64 KiB; anything that grows more than that grows the buffer below
    let mut out = Vec::with_capacity(data.len() + data.len() / 1024 + 64);
    loop {
        let consumed = usize::try_from(compress.total_in()).unwrap_or(data.len());
        if out.capacity() - out.len() < 64 {
            out.reserve(data.len() / 4 + 64);
        }
        // compress_vec fails only on a corrupt stream state, which a fresh compressor never has
        let _ = compress.compress_vec(&data[consumed..], &mut out, FlushCompress::Sync);
        let all_in = usize::try_from(compress.total_in()).unwrap_or(0) == data.len();
        if all_in && out.len() < out.capacity() {
            return out;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;

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
}
