//! The streaming md5 both flytekit digests use: for each file in order, its
//! content, then its relative path with the separators removed.
//!
//! md5 is one sequential state, so the only parallelism available is to
//! overlap reading with hashing: [`Mode::Pipelined`] reads on other
//! threads (see [`crate::pipeline`]); [`Mode::Inline`], here, reads and
//! hashes on the calling thread through one reused 256 KiB buffer (several
//! small files share it, names appended in between).

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};

use crate::fastmd5::Md5;
use crate::DigestError;

/// Size of the read buffer.
const CHUNK: usize = 256 * 1024;

/// One file to feed: read `path`, then hash `name`.
#[derive(Debug)]
pub(crate) struct Job {
    /// The file to read.
    pub(crate) path: PathBuf,
    /// The bytes hashed after the content (relative path without `/`).
    pub(crate) name: Vec<u8>,
    /// Size when listed (only sizes buffers and plans checkpoints).
    pub(crate) size: u64,
}

/// How the byte stream is produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Read and hash on the calling thread.
    Inline,
    /// Read on helper threads, hash on the calling thread.
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

/// The result of hashing a stream.
#[derive(Clone)]
pub(crate) struct Run {
    /// The hasher after the last job (call `finalize` for the digest).
    pub(crate) md5: Md5,
    /// The hasher right after each requested checkpoint job.
    pub(crate) checkpoints: Vec<(usize, Md5)>,
    /// What was read.
    pub(crate) stats: Stats,
}

/// Feeds the stream of `jobs` into `start`, snapshotting the hasher after
/// each job whose index is in `checkpoint_after` (sorted ascending).
pub(crate) fn md5_files(
    jobs: &[Job],
    start: Md5,
    checkpoint_after: &[usize],
    mode: Mode,
) -> Result<Run, DigestError> {
    match mode {
        Mode::Inline => inline(jobs, start, checkpoint_after),
        Mode::Pipelined => crate::pipeline::run(jobs, start, checkpoint_after),
    }
}

/// Reads and hashes on the calling thread, through one reused buffer.
fn inline(jobs: &[Job], mut md5: Md5, checkpoint_after: &[usize]) -> Result<Run, DigestError> {
    let mut stats = Stats::default();
    let mut checkpoints = Vec::new();
    let mut wanted = checkpoint_after.iter().copied().peekable();
    let mut buf = vec![0u8; CHUNK];
    let mut used = 0;
    for (index, job) in jobs.iter().enumerate() {
        let mut file = open(&job.path)?;
        stats.files_read += 1;
        loop {
            if used == buf.len() {
                md5.update(&buf);
                used = 0;
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
        md5.update(&buf[..used]);
        used = 0;
        md5.update(&job.name);
        while let Some(at) = wanted.next_if(|&c| c <= index) {
            if at == index {
                checkpoints.push((index, md5.clone()));
            }
        }
    }
    Ok(Run {
        md5,
        checkpoints,
        stats,
    })
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
            let run = md5_files(&jobs, Md5::default(), &[], mode).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(hex(&run.md5.finalize()), want, "{mode:?}");
            assert_eq!(run.stats.files_read, 5);
            assert_eq!(run.stats.bytes_read, (CHUNK * 4 + 15) as u64);
        }
    }

    #[test]
    fn checkpoints_resume_to_the_same_digest() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let files = [
            ("a", 5),
            ("b", CHUNK + 3),
            ("c", 0),
            ("d", 77),
            ("e", CHUNK * 2),
        ];
        let (jobs, all) = jobs(dir.path(), &files);
        let want = oracle(&all);
        for mode in [Mode::Inline, Mode::Pipelined] {
            let run = md5_files(&jobs, Md5::default(), &[0, 2, 3], mode)
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(hex(&run.md5.clone().finalize()), want);
            let indices: Vec<usize> = run.checkpoints.iter().map(|c| c.0).collect();
            assert_eq!(indices, [0, 2, 3], "{mode:?}");
            for (index, state) in &run.checkpoints {
                let rest = &jobs[index + 1..];
                let resumed =
                    md5_files(rest, state.clone(), &[], mode).unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(hex(&resumed.md5.finalize()), want, "after {index}");
                assert_eq!(resumed.stats.files_read, rest.len() as u64);
            }
        }
    }

    #[test]
    fn an_error_midway_stops_the_pipeline_cleanly() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let sizes: Vec<(String, usize)> = (0..300)
            .map(|i| (format!("f{i}"), (i % 3) * 1000))
            .collect();
        let names: Vec<(&str, usize)> = sizes.iter().map(|(n, s)| (n.as_str(), *s)).collect();
        let (mut jobs, _) = jobs(dir.path(), &names);
        jobs[150].path = dir.path().join("missing");
        for mode in [Mode::Inline, Mode::Pipelined] {
            let err = md5_files(&jobs, Md5::default(), &[], mode)
                .err()
                .map(|e| e.to_string());
            assert!(err.unwrap_or_default().contains("missing"), "{mode:?}");
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
            let got = md5_files(&jobs, Md5::default(), &[], mode)
                .map(|r| hex(&r.md5.finalize()))
                .unwrap_or_default();
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
            let err = md5_files(&jobs, Md5::default(), &[], mode)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains("/nonexistent/berth/x"), "{err}");
        }
    }
}
