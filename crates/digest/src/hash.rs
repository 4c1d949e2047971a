//! The streaming md5 both flytekit digests use: for each file in order, its
//! content, then its relative path with the separators removed.
//!
//! md5 is one sequential state, so the only parallelism available is to
//! overlap reading with hashing. In pipelined mode a reader thread fills
//! 256 KiB buffers with the byte stream (several small files share a
//! buffer; file names are appended in between) and hands them over a
//! bounded channel to the hashing thread, which hands them back for reuse.
//! Memory stays bounded by `POOL` buffers whatever the file sizes.

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use crate::fastmd5::Md5;

use crate::prefetch::{self, Progress};
use crate::DigestError;

/// Size of one read buffer.
const CHUNK: usize = 256 * 1024;
/// Buffers in flight between reader and hasher (bounds memory to 2 MiB).
const POOL: usize = 8;

/// One file to feed: read `path`, then hash `name`.
#[derive(Debug)]
pub(crate) struct Job {
    /// The file to read.
    pub(crate) path: PathBuf,
    /// The bytes hashed after the content (relative path without `/`).
    pub(crate) name: Vec<u8>,
    /// Size when listed (only steers read-ahead).
    pub(crate) size: u64,
}

/// How the byte stream is produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Read and hash on the calling thread.
    Inline,
    /// Read on a helper thread, hash on the calling thread.
    Pipelined,
}

impl Mode {
    /// Pipelined when more than one CPU is available, unless the
    /// `BERTH_DIGEST_PIPELINE=0` environment variable asks otherwise.
    pub(crate) fn auto() -> Mode {
        if std::env::var_os("BERTH_DIGEST_PIPELINE").is_some_and(|v| v == "0") {
            return Mode::Inline;
        }
        match std::thread::available_parallelism() {
            Ok(n) if n.get() > 1 => Mode::Pipelined,
            _ => Mode::Inline,
        }
    }
}

/// What a hashing run did (for tests and measurements).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stats {
    /// Files opened and read.
    pub(crate) files_read: u64,
    /// Content bytes read.
    pub(crate) bytes_read: u64,
}

/// md5 hex digest of the stream described by `jobs`.
pub(crate) fn md5_files(jobs: &[Job], mode: Mode) -> Result<(String, Stats), DigestError> {
    let mut hasher = Md5::default();
    let stats = match mode {
        Mode::Inline => {
            let mut emit = |buf: Vec<u8>, len: usize| {
                hasher.update(&buf[..len]);
                Some(buf)
            };
            produce(jobs, vec![0; CHUNK], &mut emit, &|_| {})?
        }
        Mode::Pipelined => pipelined(jobs, &mut hasher)?,
    };
    Ok((hex(&hasher.finalize()), stats))
}

fn pipelined(jobs: &[Job], hasher: &mut Md5) -> Result<Stats, DigestError> {
    let (full_tx, full_rx) = mpsc::sync_channel::<(Vec<u8>, usize)>(POOL);
    let (free_tx, free_rx) = mpsc::sync_channel::<Vec<u8>>(POOL);
    let progress = Progress::default();
    let progress = &progress;
    std::thread::scope(|scope| {
        // Whatever happens below, the prefetchers are told to stop.
        let _stop = progress.stop_on_drop();
        prefetch::spawn(scope, jobs, progress, prefetch::threads());
        let reader = std::thread::Builder::new()
            .name("berth-digest-read".to_owned())
            .spawn_scoped(scope, move || {
                let _stop = progress.stop_on_drop();
                let mut allocated = 1;
                let mut emit = |buf: Vec<u8>, len: usize| {
                    full_tx.send((buf, len)).ok()?;
                    match free_rx.try_recv() {
                        Ok(b) => Some(b),
                        Err(_) if allocated < POOL => {
                            allocated += 1;
                            Some(vec![0; CHUNK])
                        }
                        Err(_) => free_rx.recv().ok(),
                    }
                };
                produce(jobs, vec![0; CHUNK], &mut emit, &|i| {
                    progress.finished_job(i);
                })
            })
            .map_err(|e| DigestError::io("<reader thread>", e))?;
        for (buf, len) in full_rx {
            hasher.update(&buf[..len]);
            // The reader may have finished; a closed pool is fine.
            let _ = free_tx.send(buf);
        }
        reader
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Writes the byte stream into buffers, calling `emit(buffer, used)` for
/// each full (and the last partial) buffer; `emit` returns the next empty
/// buffer, or `None` to stop.
fn produce(
    jobs: &[Job],
    mut buf: Vec<u8>,
    emit: &mut dyn FnMut(Vec<u8>, usize) -> Option<Vec<u8>>,
    job_done: &dyn Fn(usize),
) -> Result<Stats, DigestError> {
    let mut stats = Stats::default();
    let mut used = 0;
    macro_rules! flush {
        () => {
            match emit(std::mem::take(&mut buf), used) {
                Some(next) => {
                    buf = next;
                    used = 0;
                }
                None => return Ok(stats),
            }
        };
    }
    for (index, job) in jobs.iter().enumerate() {
        let mut file = open(&job.path)?;
        stats.files_read += 1;
        loop {
            if used == buf.len() {
                flush!();
            }
            match file.read(&mut buf[used..]) {
                Ok(0) => break,
                Ok(n) => {
                    used += n;
                    stats.bytes_read += n as u64;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(DigestError::io(&job.path, e)),
            }
        }
        let mut name = job.name.as_slice();
        while !name.is_empty() {
            if used == buf.len() {
                flush!();
            }
            let n = name.len().min(buf.len() - used);
            buf[used..used + n].copy_from_slice(&name[..n]);
            used += n;
            name = &name[n..];
        }
        job_done(index);
    }
    if used > 0 {
        emit(buf, used);
    }
    Ok(stats)
}

fn open(path: &Path) -> Result<File, DigestError> {
    File::open(path).map_err(|e| DigestError::io(path, e))
}

/// Lower-case hexadecimal.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oracle(data: &[u8]) -> String {
        use ::md5::Digest;
        hex(&::md5::Md5::digest(data))
    }

    fn jobs(dir: &Path, files: &[(&str, usize)]) -> (Vec<Job>, Vec<u8>) {
        let mut all = Vec::new();
        let mut jobs = Vec::new();
        for (i, &(name, len)) in files.iter().enumerate() {
            let content: Vec<u8> = (0..len).map(|k| (k * 31 + i * 7) as u8).collect();
            let path = dir.join(name);
            std::fs::write(&path, &content).unwrap_or_else(|e| panic!("{e}"));
            all.extend_from_slice(&content);
            all.extend_from_slice(name.as_bytes());
            jobs.push(Job {
                path,
                name: name.as_bytes().to_vec(),
                size: len as u64,
            });
        }
        (jobs, all)
    }

    #[test]
    fn both_modes_hash_the_concatenated_stream() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let files = [
            ("a", 0),
            ("b", 10),
            ("c", CHUNK - 1),
            ("d", CHUNK * 3 + 5),
            ("e", 1),
        ];
        let (jobs, all) = jobs(dir.path(), &files);
        let want = oracle(&all);
        for mode in [Mode::Inline, Mode::Pipelined] {
            let (got, stats) = md5_files(&jobs, mode).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(got, want, "{mode:?}");
            assert_eq!(stats.files_read, 5);
            assert_eq!(stats.bytes_read, (CHUNK * 4 + 15) as u64);
        }
    }

    #[test]
    fn long_names_span_buffers() {
        let name = vec![b'n'; CHUNK * 2 + 3];
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("f");
        std::fs::write(&path, b"xyz").unwrap_or_else(|e| panic!("{e}"));
        let jobs = [Job {
            path,
            name: name.clone(),
            size: 3,
        }];
        let mut all = b"xyz".to_vec();
        all.extend_from_slice(&name);
        for mode in [Mode::Inline, Mode::Pipelined] {
            let got = md5_files(&jobs, mode).map(|r| r.0).unwrap_or_default();
            assert_eq!(got, oracle(&all));
        }
    }

    #[test]
    fn missing_file_is_an_error_naming_it() {
        let jobs = [Job {
            path: PathBuf::from("/nonexistent/berth/x"),
            name: Vec::new(),
            size: 0,
        }];
        for mode in [Mode::Inline, Mode::Pipelined] {
            let err = md5_files(&jobs, mode)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains("/nonexistent/berth/x"), "{err}");
        }
    }
}
