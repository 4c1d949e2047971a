//! The build context of a plan as a tar stream, for the engines that take a Dockerfile and a context (Docker and
//! Podman): the rendered Dockerfile, exactly the plan's context files, and any extra entries an engine sends
//! under reserved names (Podman ships build secrets that way: libpod moves them out of the context before the
//! build starts, so they reach no `COPY` and no layer).
//!
//! The tar is written on a blocking thread into a small bounded channel whose receiving end is the request
//! body, so a context of any size costs [`CHUNK`] × [`CHANNEL_DEPTH`] bytes of memory, and the daemon's reading
//! speed sets the pace. Entries belong to uid/gid 0; generated entries (the Dockerfile, generated files, parent
//! folders) get fixed modes and a fixed mtime so identical plans give identical tars; files from disk keep
//! their mode and mtime as `docker build` would send them.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{self, Write};

use berth_core::plan::{ContextEntry, ContextSource};
use berth_core::{Error, ErrorKind, Result};
use bytes::Bytes;
pub use exact::{changed, ExactReader, SourceChanged};
use futures_util::Stream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

mod exact;
mod tree;

pub use tree::{Everything, Node, Select, Tree, Walk};

/// Name of the Dockerfile inside the context; a context file of that name is refused.
pub const DOCKERFILE_NAME: &str = ".berth.Dockerfile";
/// Prefix of the names extra entries (secrets) travel under; context files of such names are refused.
pub const SECRET_PREFIX: &str = ".berth-secret-";
/// Bytes per chunk sent to the daemon.
const CHUNK: usize = 256 * 1024;
/// Chunks buffered between the tar thread and the connection.
const CHANNEL_DEPTH: usize = 4;
/// mtime of generated entries (2000-01-01T00:00:00Z; 0 confuses some tools).
const FIXED_MTIME: u64 = 946_684_800;

/// A context tar being generated: the byte stream for the request body and the thread writing it.
pub struct ContextTar {
    /// The tar bytes; an `Err` item means the thread failed (the request should then fail too).
    pub body: std::pin::Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>,
    /// The writer thread; its error says which file could not be read.
    pub writer: JoinHandle<Result<()>>,
}

/// Starts streaming the context of a build on `engine`, `extra` entries (named by [`secret_name`]) last. Fails
/// at once for paths that cannot go into a context.
pub fn stream(
    engine: &'static str,
    dockerfile: String,
    mut entries: Vec<ContextEntry>,
    secrets: Vec<ContextEntry>,
) -> Result<ContextTar> {
    for entry in &entries {
        check_path(&entry.path).map_err(|e| e.with_engine(engine).with_operation("build"))?;
    }
    entries.extend(secrets);
    let (tx, mut rx) = mpsc::channel::<io::Result<Bytes>>(CHANNEL_DEPTH);
    let writer = tokio::task::spawn_blocking(move || {
        let sink = ChannelWriter {
            tx: tx.clone(),
            buf: Vec::with_capacity(CHUNK),
        };
        let result = write_tar(sink, &dockerfile, &entries);
        if let Err(err) = &result {
            // The body must fail rather than end, or the daemon would build from a truncated context.
            let _ = tx.blocking_send(Err(io::Error::other(err.to_string())));
        }
        result
    });
    let body = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    Ok(ContextTar {
        body: Box::pin(body),
        writer,
    })
}

/// Refuses a context path that is absolute, has empty, `.` or `..` components, or is reserved for the
/// Dockerfile and secrets berth sends.
pub fn check_path(path: &str) -> Result<()> {
    let bad = path.is_empty()
        || path.starts_with('/')
        || path
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..");
    if bad {
        return Err(Error::invalid(format!(
            "context path `{path}` must be relative, without empty, `.` or `..` components"
        )));
    }
    if path == DOCKERFILE_NAME || path.starts_with(SECRET_PREFIX) {
        return Err(Error::invalid(format!(
            "context path `{path}` is reserved for the Dockerfile and secrets berth sends"
        )));
    }
    Ok(())
}

/// The context name of the `index`th secret: one flat file name, because libpod moves it next to the
/// context folder by that name.
pub fn secret_name(index: usize) -> String {
    format!("{SECRET_PREFIX}{index}")
}

fn write_tar(sink: ChannelWriter, dockerfile: &str, entries: &[ContextEntry]) -> Result<()> {
    let mut tar = tar::Builder::new(sink);
    let io_err = |e: io::Error| {
        // The receiver went away: the request failed or was cancelled; the caller reports that instead.
        let kind = if e.kind() == io::ErrorKind::BrokenPipe {
            ErrorKind::Cancelled
        } else {
            ErrorKind::Io
        };
        Error::new(kind, format!("writing the build context: {e}")).with_source(e)
    };
    append_bytes(&mut tar, DOCKERFILE_NAME, dockerfile.as_bytes()).map_err(io_err)?;
    let mut dirs = BTreeSet::new();
    for entry in entries {
        let mut parent = String::new();
        for component in entry
            .path
            .split('/')
            .rev()
            .skip(1)
            .collect::<Vec<_>>()
            .iter()
            .rev()
        {
            if !parent.is_empty() {
                parent.push('/');
            }
            parent.push_str(component);
            if dirs.insert(parent.clone()) {
                append_dir(&mut tar, &parent).map_err(io_err)?;
            }
        }
        match &entry.source {
            ContextSource::Bytes(bytes) => {
                append_bytes(&mut tar, &entry.path, bytes).map_err(io_err)?
            }
            ContextSource::File(source) => {
                let file = File::open(source).map_err(|e| Error::io(source, e))?;
                let meta = file.metadata().map_err(|e| Error::io(source, e))?;
                if !meta.is_file() {
                    return Err(Error::invalid(format!(
                        "context entry `{}` comes from {}, which is not a regular file",
                        entry.path,
                        source.display()
                    )));
                }
                let mut header = header(tar::EntryType::Regular, meta.len(), file_mode(&meta));
                header.set_mtime(mtime(&meta));
                let reader = ExactReader::new(file, meta.len(), source, |_| {});
                tar.append_data(&mut header, &entry.path, reader)
                    .map_err(|e| {
                        if e.get_ref().is_some_and(|e| e.is::<SourceChanged>()) {
                            Error::new(ErrorKind::Io, e.to_string()).with_source(e)
                        } else {
                            io_err(e)
                        }
                    })?;
            }
        }
    }
    let mut sink = tar.into_inner().map_err(io_err)?;
    sink.flush().map_err(io_err)?;
    Ok(())
}

fn header(kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_size(size);
    header.set_mode(mode);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(FIXED_MTIME);
    header
}

fn append_bytes<W: Write>(tar: &mut tar::Builder<W>, path: &str, bytes: &[u8]) -> io::Result<()> {
    let mut header = header(tar::EntryType::Regular, bytes.len() as u64, 0o644);
    tar.append_data(&mut header, path, bytes)
}

fn append_dir<W: Write>(tar: &mut tar::Builder<W>, path: &str) -> io::Result<()> {
    let mut header = header(tar::EntryType::Directory, 0, 0o755);
    tar.append_data(&mut header, format!("{path}/"), io::empty())
}

#[cfg(unix)]
fn file_mode(meta: &std::fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o7777
}

#[cfg(not(unix))]
fn file_mode(_meta: &std::fs::Metadata) -> u32 {
    0o644
}

fn mtime(meta: &std::fs::Metadata) -> u64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(FIXED_MTIME, |d| d.as_secs())
}

/// Sends what is written in [`CHUNK`]-sized pieces, blocking while the channel is full.
struct ChannelWriter {
    tx: mpsc::Sender<io::Result<Bytes>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx
            .blocking_send(Ok(Bytes::from(chunk)))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the daemon stopped reading"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    #[tokio::test]
    async fn the_tar_holds_the_dockerfile_and_exactly_the_context() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("a.py");
        std::fs::write(&file, b"print(1)\n").expect("write");
        let entries = vec![
            ContextEntry {
                path: "src/pkg/a.py".into(),
                source: ContextSource::File(file),
            },
            ContextEntry {
                path: "requirements.txt".into(),
                source: ContextSource::Bytes(b"x==1\n".to_vec()),
            },
        ];
        let tar = stream("test", "FROM scratch\n".into(), entries, vec![]).expect("starts");
        let chunks: Vec<_> = tar.body.collect().await;
        tar.writer.await.expect("joins").expect("writes");
        let bytes: Vec<u8> = chunks
            .into_iter()
            .flat_map(|c| c.expect("chunk").to_vec())
            .collect();
        let mut archive = tar::Archive::new(&bytes[..]);
        let mut seen = Vec::new();
        for entry in archive.entries().expect("entries") {
            let entry = entry.expect("entry");
            let header = entry.header();
            assert_eq!((header.uid().ok(), header.gid().ok()), (Some(0), Some(0)));
            seen.push(entry.path().expect("path").display().to_string());
        }
        assert_eq!(
            seen,
            [
                DOCKERFILE_NAME,
                "src/",
                "src/pkg/",
                "src/pkg/a.py",
                "requirements.txt"
            ]
        );
    }

    #[test]
    fn reserved_and_escaping_paths_are_refused() {
        for bad in [
            DOCKERFILE_NAME,
            ".berth-secret-0",
            "../x",
            "/etc/passwd",
            "a//b",
            "./a",
        ] {
            let entry = ContextEntry {
                path: bad.into(),
                source: ContextSource::Bytes(vec![]),
            };
            assert!(check_path(&entry.path).is_err(), "{bad}");
        }
    }
}
