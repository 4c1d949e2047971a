//! Deflate in independent blocks, with output that depends only on the input: the format of every layer berth
//! compresses (its push from an engine's storage, on every core; the layers its own builders write).
//!
//! Each [`BLOCK`]-byte block is deflated on its own and ends with a sync flush, on a byte boundary, so blocks can
//! be compressed apart (on several threads) and joined behind one gzip header, then closed by [`LAST_BLOCK`] and
//! the trailer: one ordinary gzip member, as pigz writes with `-i`. Within a block, each [`PIECE`] that a sample
//! shows to be incompressible (random data, compressed archives, most model weights) is written as stored deflate
//! blocks, at copying speed, and the pieces between are deflated.

use zlib_rs::{Deflate, DeflateFlush};

/// Bytes per independently compressed block: large enough that restarting the dictionary costs well under
/// 1% of the ratio, small enough that a few per thread in flight stay a few MiB.
pub const BLOCK: usize = 1 << 20;

/// zlib level 2: zlib-rs's `deflate_fast` (greedy matching, Huffman codes chosen per deflate block, and a
/// deflate block stored when coding would not shrink it). Level 1 there is `deflate_quick`, whose fixed codes
/// leave shared libraries ~20% larger; the default level is several times slower.
pub const LEVEL: i32 = 2;

/// Raw deflate's largest window (32 KiB).
const WINDOW_BITS: u8 = 15;

/// Bytes judged at once: incompressible or not. Small enough that the stretches of compressed or random bytes
/// inside a layer are stored apart from the code around them, large enough that judging costs little.
pub const PIECE: usize = 64 << 10;

/// How much of each piece is looked at to judge it.
const SAMPLE: usize = 4 << 10;

/// A sample whose bytes carry more than this many bits each (order-0 entropy) is judged incompressible: 4 KiB of
/// random or compressed bytes measure ~7.95, text and machine code 4.5-6.5; a sample just below the line is
/// deflated, and deflate stores what it cannot shrink, so a wrong guess costs time, never size.
const STORE_ABOVE_BITS: f64 = 7.9;

/// The most bytes one stored deflate block holds.
const STORED_MAX: usize = 65_535;

/// gzip header: no name, no mtime, no extra flags, OS unknown (as Go's `compress/gzip` writes it).
pub const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// An empty final stored block: ends the deflate stream after the last sync-flushed block.
pub const LAST_BLOCK: [u8; 5] = [1, 0, 0, 0xff, 0xff];

/// The end of a gzip stream of blocks: the empty final block, then the crc32 and the input size (modulo 2^32,
/// as RFC 1952 says) of everything compressed.
pub fn trailer(crc: u32, input_size: u64) -> [u8; 13] {
    let mut end = [0u8; 13];
    end[..5].copy_from_slice(&LAST_BLOCK);
    end[5..9].copy_from_slice(&crc.to_le_bytes());
    end[9..].copy_from_slice(&(input_size as u32).to_le_bytes());
    end
}

/// One thread's compressor, reset for every block so that a block's output depends on its bytes alone.
pub struct BlockDeflater {
    stream: Deflate,
}

impl Default for BlockDeflater {
    fn default() -> Self {
        Self::new()
    }
}

impl BlockDeflater {
    /// A compressor at [`LEVEL`].
    pub fn new() -> Self {
        BlockDeflater {
            stream: Deflate::new(LEVEL, false, WINDOW_BITS),
        }
    }

    /// Deflates one block on its own, ending on a byte boundary and not final: its incompressible pieces as
    /// stored blocks, the runs of pieces between them through the compressor (sync-flushed before a stored
    /// piece, and started afresh after one, since its window would not hold the stored bytes a reader has).
    pub fn block(&mut self, block: &[u8]) -> std::io::Result<Vec<u8>> {
        self.stream.reset();
        let mut out = Vec::with_capacity(block.len() + block.len() / 1024 + 64);
        // the compressor holds input not flushed yet; it has a window to forget
        let (mut open, mut used) = (false, false);
        for piece in block.chunks(PIECE) {
            if incompressible(&piece[..piece.len().min(SAMPLE)]) {
                if open {
                    self.run(&[], &mut out, DeflateFlush::SyncFlush)?;
                    open = false;
                }
                if used {
                    self.stream.reset();
                    used = false;
                }
                store(piece, &mut out);
            } else {
                self.run(piece, &mut out, DeflateFlush::NoFlush)?;
                (open, used) = (true, true);
            }
        }
        if open {
            self.run(&[], &mut out, DeflateFlush::SyncFlush)?;
        }
        Ok(out)
    }

    /// Gives all of `input` to the compressor with `flush`, appending what it writes to `out`.
    fn run(&mut self, input: &[u8], out: &mut Vec<u8>, flush: DeflateFlush) -> std::io::Result<()> {
        let mut taken = 0;
        loop {
            let start = out.len();
            let left = input.len() - taken;
            // deflate grows data by a few bytes per 16 KiB at worst; more room is added if it ever needs it
            out.resize(start + left + left / 1024 + 64, 0);
            let (read, written) = (self.stream.total_in(), self.stream.total_out());
            let status = self
                .stream
                .compress(&input[taken..], &mut out[start..], flush);
            let wrote = usize::try_from(self.stream.total_out() - written).unwrap_or(0);
            let full = wrote == out.len() - start;
            out.truncate(start + wrote);
            taken += usize::try_from(self.stream.total_in() - read).unwrap_or(0);
            if let Err(e) = status {
                return Err(std::io::Error::other(format!(
                    "compressing a layer failed: {}",
                    e.as_str()
                )));
            }
            // a flush is complete once the compressor stops short of filling the room it was given
            if taken == input.len() && !full {
                return Ok(());
            }
        }
    }
}

/// Whether `sample` looks incompressible: its order-0 entropy is above [`STORE_ABOVE_BITS`].
fn incompressible(sample: &[u8]) -> bool {
    if sample.is_empty() {
        return false;
    }
    let mut counts = [0u32; 256];
    for &b in sample {
        counts[usize::from(b)] += 1;
    }
    let n = sample.len() as f64;
    let bits: f64 = counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum();
    bits > STORE_ABOVE_BITS
}

/// Appends `data` as stored deflate blocks (not final), at a byte boundary.
fn store(data: &[u8], out: &mut Vec<u8>) {
    for part in data.chunks(STORED_MAX) {
        let len = u16::try_from(part.len()).unwrap_or(u16::MAX);
        // BFINAL 0, BTYPE 00, then the rest of the byte is padding
        out.push(0);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(part);
    }
}
