//! Parallel, ordered reading for the md5 stream.
//!
//! md5 consumes one byte stream in order, on one thread. Everything else
//! happens on other threads: a dispatcher hands files, in order, to a few
//! reader threads, and gives the hashing thread, in the same order, one
//! bounded channel per file on which that file's reader delivers its
//! content (and then its name bytes). Several files are thus read at once,
//! which keeps a cold disk busy and hides `open`/`close` latency of small
//! files, while the hasher only ever waits for the file it needs next. No
//! byte is read twice.
//!
//! Memory is bounded: at most [`FILES_AHEAD`] files are dispatched beyond
//! the one being hashed, each file's channel holds at most [`PER_FILE`]
//! buffers of at most [`CHUNK`] bytes (small files get buffers of their own
//! size), and all buffers read ahead of the hasher share one [`BUDGET`] of
//! bytes. Only the file being hashed may read past the budget (else the
//! readers could wait on each other forever), and its channel bounds it.
//! Without the budget, files read ahead whole waited in their channels:
//! ~100 MiB peak over a tree of 1 MiB files.

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Condvar, Mutex};

use crate::fastmd5::Md5;
use crate::hash::{Job, Run, Stats};
use crate::DigestError;

/// Largest read buffer.
const CHUNK: usize = 256 * 1024;
/// Files dispatched ahead of the one being hashed.
const FILES_AHEAD: usize = 128;
/// Buffers a file's reader may get ahead of the hasher.
const PER_FILE: usize = 8;
/// Recycled full-size buffers kept around.
const POOL: usize = 8;
/// Bytes of buffers read ahead of the hasher, in all.
const BUDGET: usize = 16 * 1024 * 1024;

/// Reader threads (`BERTH_DIGEST_READERS`, default 4).
fn readers() -> usize {
    std::env::var("BERTH_DIGEST_READERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(4)
}

/// What a reader sends about one file.
enum Piece {
    /// A buffer and how many of its bytes are stream.
    Bytes(Vec<u8>, usize),
    End,
    Failed(DigestError),
}

/// Bytes in buffers between the readers and the hasher, and which file the hasher is on.
#[derive(Default)]
struct Budget {
    state: Mutex<BudgetState>,
    changed: Condvar,
}

#[derive(Default)]
struct BudgetState {
    in_flight: usize,
    hashing: usize,
    /// The hasher is gone (done or failed): nobody waits any more.
    closed: bool,
}

impl Budget {
    /// Takes `bytes` for a buffer of file `index`, waiting while the budget is spent (never for the file being
    /// hashed); `false` once the hasher is gone.
    fn take(&self, bytes: usize, index: usize) -> bool {
        let Ok(mut state) = self.state.lock() else {
            return false;
        };
        while !state.closed && index != state.hashing && state.in_flight + bytes > BUDGET {
            state = match self.changed.wait(state) {
                Ok(state) => state,
                Err(_) => return false,
            };
        }
        state.in_flight += bytes;
        !state.closed
    }

    fn update(&self, change: impl FnOnce(&mut BudgetState)) {
        if let Ok(mut state) = self.state.lock() {
            change(&mut state);
        }
        self.changed.notify_all();
    }
}

/// Closes the budget when the hasher leaves, however it leaves, so no reader waits on it forever.
struct CloseOnDrop<'a>(&'a Budget);

impl Drop for CloseOnDrop<'_> {
    fn drop(&mut self) {
        self.0.update(|s| s.closed = true);
    }
}

/// State shared by the readers.
struct Shared<'a> {
    jobs: &'a [Job],
    work: Mutex<Receiver<(usize, SyncSender<Piece>)>>,
    pool: Mutex<Vec<Vec<u8>>>,
    bytes_read: AtomicU64,
    budget: Budget,
}

impl Shared<'_> {
    /// A buffer of `want` bytes (1 to [`CHUNK`]) to fill for file `index`, within the budget; `None` once the
    /// hasher is gone.
    fn buffer(&self, want: usize, index: usize) -> Option<Vec<u8>> {
        let want = want.clamp(1, CHUNK);
        if !self.budget.take(want, index) {
            return None;
        }
        if want == CHUNK {
            if let Some(buf) = self.pool.lock().ok().and_then(|mut p| p.pop()) {
                return Some(buf);
            }
        }
        Some(vec![0; want])
    }

    /// Gives a hashed buffer's bytes back to the budget and keeps a full-size buffer for reuse.
    fn recycle(&self, buf: Vec<u8>) {
        let bytes = buf.len();
        self.budget
            .update(|s| s.in_flight = s.in_flight.saturating_sub(bytes));
        if buf.len() == CHUNK {
            if let Ok(mut pool) = self.pool.lock() {
                if pool.len() < POOL {
                    pool.push(buf);
                }
            }
        }
    }
}

/// Hashes `jobs` into `md5` with parallel readers; see the module doc.
pub(crate) fn run(
    jobs: &[Job],
    mut md5: Md5,
    checkpoint_after: &[usize],
) -> Result<Run, DigestError> {
    let (work_tx, work_rx) = sync_channel::<(usize, SyncSender<Piece>)>(FILES_AHEAD);
    let (order_tx, order_rx) = sync_channel::<Receiver<Piece>>(FILES_AHEAD);
    let shared = Shared {
        jobs,
        work: Mutex::new(work_rx),
        pool: Mutex::new(Vec::new()),
        bytes_read: AtomicU64::new(0),
        budget: Budget::default(),
    };
    let shared = &shared;
    let mut checkpoints = Vec::new();
    let mut files_read = 0u64;
    std::thread::scope(|scope| -> Result<(), DigestError> {
        let spawn_err = |e| DigestError::io("<digest thread>", e);
        std::thread::Builder::new()
            .name("berth-digest-dispatch".to_owned())
            .spawn_scoped(scope, move || {
                for index in 0..jobs.len() {
                    let (tx, rx) = sync_channel(PER_FILE);
                    // Either send fails only when the hasher or all readers
                    // are gone, i.e. on an error: just stop.
                    if order_tx.send(rx).is_err() || work_tx.send((index, tx)).is_err() {
                        return;
                    }
                }
            })
            .map_err(spawn_err)?;
        for _ in 0..readers().min(jobs.len()) {
            std::thread::Builder::new()
                .name("berth-digest-read".to_owned())
                .spawn_scoped(scope, move || reader(shared))
                .map_err(spawn_err)?;
        }
        let mut wanted = checkpoint_after.iter().copied().peekable();
        // Owned here, so that an early return drops it (and with it every
        // dispatched file's receiver) before the scope joins the threads:
        // that fails the dispatcher's and the readers' sends, and they stop.
        let order_rx = order_rx;
        let _close = CloseOnDrop(&shared.budget);
        for (index, file) in order_rx.iter().enumerate() {
            shared.budget.update(|s| s.hashing = index);
            loop {
                match file.recv() {
                    Ok(Piece::Bytes(buf, used)) => {
                        md5.update(&buf[..used]);
                        shared.recycle(buf);
                    }
                    Ok(Piece::End) => break,
                    Ok(Piece::Failed(e)) => return Err(e),
                    Err(_) => {
                        return Err(DigestError::io(
                            &jobs[index].path,
                            std::io::Error::other("reader thread stopped"),
                        ))
                    }
                }
            }
            files_read += 1;
            while let Some(at) = wanted.next_if(|&c| c <= index) {
                if at == index {
                    checkpoints.push((index, md5.clone()));
                }
            }
        }
        Ok(())
    })?;
    Ok(Run {
        md5,
        checkpoints,
        stats: Stats {
            files_read,
            bytes_read: shared.bytes_read.load(Ordering::Relaxed),
        },
    })
}

/// A reader thread: takes the next file, streams it into its channel.
fn reader(shared: &Shared<'_>) {
    loop {
        let next = match shared.work.lock() {
            Ok(work) => work.recv(),
            Err(_) => return,
        };
        let Ok((index, tx)) = next else {
            return; // no more files
        };
        let piece = match read_file(shared, index, &tx) {
            Ok(true) => Piece::End,
            Ok(false) => return, // the hasher is gone
            Err(e) => Piece::Failed(e),
        };
        if tx.send(piece).is_err() {
            return;
        }
    }
}

/// Sends the content and then the name of `job`; `Ok(false)` if the
/// hasher went away.
fn read_file(
    shared: &Shared<'_>,
    index: usize,
    tx: &SyncSender<Piece>,
) -> Result<bool, DigestError> {
    let job = &shared.jobs[index];
    let mut file = File::open(&job.path).map_err(|e| DigestError::io(&job.path, e))?;
    // Expected bytes still to come (content as listed, then the name).
    let mut remaining = usize::try_from(job.size)
        .unwrap_or(usize::MAX)
        .saturating_add(job.name.len());
    let Some(mut buf) = shared.buffer(remaining, index) else {
        return Ok(false);
    };
    let mut used = 0;
    macro_rules! send {
        () => {{
            remaining = remaining.saturating_sub(used);
            if tx.send(Piece::Bytes(buf, used)).is_err() {
                return Ok(false);
            }
            buf = match shared.buffer(remaining.max(job.name.len()), index) {
                Some(buf) => buf,
                None => return Ok(false),
            };
            used = 0;
        }};
    }
    loop {
        if used == buf.len() {
            send!();
        }
        match file.read(&mut buf[used..]) {
            Ok(0) => break,
            Ok(n) => {
                used += n;
                shared.bytes_read.fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(DigestError::io(&job.path, e)),
        }
    }
    let mut name = job.name.as_slice();
    while !name.is_empty() {
        if used == buf.len() {
            send!();
        }
        let n = name.len().min(buf.len() - used);
        buf[used..used + n].copy_from_slice(&name[..n]);
        used += n;
        name = &name[n..];
    }
    if used > 0 && tx.send(Piece::Bytes(buf, used)).is_err() {
        return Ok(false);
    }
    Ok(true)
}
