//! The build context served through the BuildKit session's file sync (`moby.filesync.v1.FileSync/DiffCopy`), as
//! the docker CLI serves its context folder, instead of a tar in the `/build` request body.
//!
//! With a tar, dockerd hands BuildKit the body as a remote tarball to store and extract before any `COPY` reads
//! it, on every build. With file sync BuildKit keeps the files of the last sync of the same local source and
//! compares: berth sends one `STAT` packet per file and folder (the nodes of a walk of [`berth_context::Tree`]:
//! the same entries as the tar, those the request asks for), an empty `STAT` to end the walk, and then the bytes only of the files BuildKit asks for
//! with `REQ` (new ones, and those whose size, mode or mtime changed), as `DATA` packets ending with an empty
//! one; BuildKit's `FIN` ends the exchange. A file read must still have the size its `STAT` announced, or the
//! sync fails the build (a file changing while read, as with the tar). Folders and generated files are fixed
//! as in the tar, so identical plans still give identical images.
//!
//! Memory stays flat whatever the context's size: the walk hands out one node at a time (a file is looked at
//! when its `STAT` is due), and what a sync keeps is one small record per file sent, to find a requested file
//! by its id.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use berth_context::{ExactReader, Node, SourceChanged, Tree};
use berth_core::plan::{ContextEntry, ContextSource};
use berth_core::{Error, ErrorKind};
use bollard::fsutil::types::packet::PacketType;
use bollard::fsutil::types::{Packet, Stat};
use bollard::moby::filesync::packet::file_sync_server::FileSync;
use tokio::sync::mpsc;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status, Streaming};

use crate::syncfilter::Filter;

/// The local source names the Dockerfile frontend asks for with `remote=client-session`.
const LOCAL_NAMES: [&str; 2] = ["context", "dockerfile"];
/// Bytes per `DATA` packet: 32 KiB, the size of fsutil's copy buffer (the docker CLI's packets). Each packet is
/// one gRPC message the daemon decodes and one write to the file it fills, so 16 KiB packets cost it twice the
/// work per byte. No larger: the daemon's gRPC client starts with a 64 KiB connection window, and the h2 sender
/// hands window to the stream that asked first; a stream asking for more than the window at once stays first and
/// keeps it all, so the daemon's health checks, answered on the same connection, would wait behind the whole
/// transfer and BuildKit (v0.8: one check a second, 10 s to answer) drops the session mid-transfer. tonic hands h2
/// at least 32 KiB at a time whatever the packet size (its yield threshold), so this asks no more than 16 KiB did.
const CHUNK: usize = 32 * 1024;
/// Files read at once; BuildKit asks for many together.
const PARALLEL: usize = 4;
/// Packets queued towards the connection: memory stays under `CHUNK × (QUEUE + PARALLEL)`.
const QUEUE: usize = 32;

/// What the syncs of one build did, read by the build once the daemon has answered.
#[derive(Debug, Default)]
pub(crate) struct SyncReport {
    /// File bytes sent in `DATA` packets.
    sent: AtomicU64,
    /// File bytes of the context (the most any sync of the `context` source announced).
    total: AtomicU64,
    /// The first file that could not be sent as announced.
    failure: Mutex<Option<Error>>,
}

impl SyncReport {
    /// Bytes of file content sent, and the context's size in bytes.
    pub(crate) fn sent(&self) -> (u64, u64) {
        (
            self.sent.load(Ordering::Relaxed),
            self.total.load(Ordering::Relaxed),
        )
    }

    /// Why a sync failed on berth's side (a context file unreadable or changed while read), if it did.
    pub(crate) fn take_failure(&self) -> Option<Error> {
        self.failure.lock().ok().and_then(|mut f| f.take())
    }

    fn fail(&self, error: Error) {
        if let Ok(mut slot) = self.failure.lock() {
            slot.get_or_insert(error);
        }
    }
}

/// The file-sync service of one build's session.
pub(crate) struct ContextSync {
    tree: Arc<Tree>,
    report: Arc<SyncReport>,
}

impl ContextSync {
    /// Serves `dockerfile` and `entries`; fails at once for paths that cannot go into a context.
    pub(crate) fn new(dockerfile: &str, entries: Vec<ContextEntry>) -> berth_core::Result<Self> {
        Ok(ContextSync {
            tree: Arc::new(Tree::new(dockerfile, entries)?),
            report: Arc::default(),
        })
    }

    /// Where the syncs report.
    pub(crate) fn report(&self) -> Arc<SyncReport> {
        Arc::clone(&self.report)
    }

    /// The session's shared key: BuildKit finds the files of an earlier sync by it (with the source's name),
    /// so it names where the context comes from, as the docker CLI's names the context folder.
    pub(crate) fn shared_key(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut common: Option<std::path::PathBuf> = None;
        for entry in self.tree.entries() {
            if let ContextSource::File(path) = &entry.source {
                let dir = path.parent().unwrap_or(path).to_path_buf();
                common = Some(match common {
                    None => dir,
                    Some(c) => c
                        .ancestors()
                        .find(|a| dir.starts_with(a))
                        .map(|a| a.to_path_buf())
                        .unwrap_or_default(),
                });
            }
        }
        let seed = common.map_or_else(|| "berth".to_string(), |c| c.display().to_string());
        let digest = Sha256::digest(seed.as_bytes());
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }
}

#[tonic::async_trait]
impl FileSync for ContextSync {
    type DiffCopyStream = futures_util::stream::BoxStream<'static, Result<Packet, Status>>;
    type TarStreamStream = futures_util::stream::BoxStream<'static, Result<Packet, Status>>;

    async fn diff_copy(
        &self,
        request: Request<Streaming<Packet>>,
    ) -> Result<Response<Self::DiffCopyStream>, Status> {
        let meta = request.metadata();
        let name = values(meta, "dir-name")
            .into_iter()
            .next()
            .unwrap_or_default();
        if !LOCAL_NAMES.contains(&name.as_str()) {
            return Err(Status::not_found(format!(
                "berth serves no local source named `{name}`"
            )));
        }
        let mut includes = values(meta, "include-patterns");
        includes.extend(values(meta, "followpaths"));
        let filter = Filter::new(includes, values(meta, "exclude-patterns"));
        let (tx, mut rx) = mpsc::channel(QUEUE);
        let files = Arc::new(Mutex::new(Vec::new()));
        let sync = Sync {
            tree: Arc::clone(&self.tree),
            files: Arc::clone(&files),
            tx,
            report: Arc::clone(&self.report),
        };
        // looking at the files of a large context is blocking work; it ends when the daemon stops listening
        let walk = sync.clone();
        let context = name == "context";
        tokio::task::spawn_blocking(move || walk.walk(&filter, context));
        tokio::spawn(serve(sync, request.into_inner()));
        let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn tar_stream(
        &self,
        _request: Request<Streaming<Packet>>,
    ) -> Result<Response<Self::TarStreamStream>, Status> {
        Err(Status::unimplemented("berth serves DiffCopy"))
    }
}

type Sender = mpsc::Sender<Result<Packet, Status>>;

/// What the `STAT` walk, the request reader and the file readers of one sync share.
#[derive(Clone)]
struct Sync {
    tree: Arc<Tree>,
    /// The files announced so far, in id order: (id, entry in the tree, size announced).
    files: Arc<Mutex<Vec<(u32, u32, u64)>>>,
    tx: Sender,
    report: Arc<SyncReport>,
}

impl Sync {
    /// Sends the `STAT` of every node `filter` lets through, then the empty one; `context`: counts the bytes
    /// announced as the context's size. A file that cannot be looked at fails the sync.
    fn walk(&self, filter: &Filter, context: bool) {
        let mut total = 0;
        for (id, node) in self.tree.walk(filter).enumerate() {
            let node = match node {
                Ok(node) => node,
                Err(e) => {
                    let status = Status::failed_precondition(e.to_string());
                    self.report.fail(e);
                    let _ = self.tx.blocking_send(Err(status));
                    return;
                }
            };
            let Ok(id) = u32::try_from(id) else {
                let _ = self.tx.blocking_send(Err(Status::resource_exhausted(
                    "the context holds more than 2^32 files and folders",
                )));
                return;
            };
            if let Some(entry) = node.entry {
                total += node.size;
                // recorded before its `STAT` goes: BuildKit may ask for it as soon as it is read
                if let Ok(mut files) = self.files.lock() {
                    files.push((id, entry as u32, node.size));
                }
            }
            if self.tx.blocking_send(Ok(stat(&node))).is_err() {
                return;
            }
        }
        if context {
            self.report.total.fetch_max(total, Ordering::Relaxed);
        }
        let _ = self.tx.blocking_send(Ok(packet(PacketType::PacketStat)));
    }

    /// The entry and announced size of the file sent with `id`.
    fn file(&self, id: u32) -> Option<(usize, u64)> {
        let files = self.files.lock().ok()?;
        let at = files.binary_search_by_key(&id, |(id, _, _)| *id).ok()?;
        let (_, entry, size) = files[at];
        Some((entry as usize, size))
    }
}

/// Raised when the sync's request loop ends, however it ends.
struct Ended(Arc<std::sync::atomic::AtomicBool>);

impl Drop for Ended {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// One sync's requests, while its walk sends the `STAT`s (on a thread of its own), until BuildKit's `FIN`.
/// BuildKit asks for files while the `STAT`s still come, and stops reading them while its requests wait, so
/// both go at once. Requests are read as they come and queued for the readers of files: HTTP/2 counts unread
/// request bytes against the whole connection's window, and a connection whose window is full carries nothing
/// else, not even BuildKit's health checks (unanswered for 10 s, BuildKit drops the session).
///
/// The readers are `PARALLEL` threads that each read file after file for the whole sync. One blocking task per
/// file made the runtime start a new thread whenever the last one had not gone back to idle in time (57 threads
/// in one 1 GiB sync), each with an allocator arena of its own holding freed packets: 15 MiB more RSS by the end.
async fn serve(sync: Sync, mut inbound: Streaming<Packet>) {
    // one small entry per requested file: at most the context's file count
    let (requests, queue) = std::sync::mpsc::channel::<(u32, usize, u64)>();
    let queue = Arc::new(Mutex::new(queue));
    // tells the readers to leave the files still queued when the sync ends early (the daemon gone or failing)
    let ended = Ended(Arc::default());
    for _ in 0..PARALLEL {
        let (queue, sync, ended) = (Arc::clone(&queue), sync.clone(), Arc::clone(&ended.0));
        tokio::task::spawn_blocking(move || loop {
            // the lock is held while waiting, so the one reader waiting takes the next request
            let next = match queue.lock() {
                Ok(queue) => queue.recv(),
                Err(_) => return,
            };
            let Ok((id, entry, size)) = next else {
                return;
            };
            if ended.load(Ordering::Relaxed) {
                return;
            }
            send_file(&sync, id, entry, size);
        });
    }
    // the daemon going away (build cancelled or failed) ends the loop; it has said why elsewhere
    while let Ok(Some(message)) = inbound.message().await {
        match PacketType::try_from(message.r#type) {
            Ok(PacketType::PacketReq) => {
                let Some((entry, size)) = sync.file(message.id) else {
                    let _ = sync
                        .tx
                        .send(Err(Status::invalid_argument(format!(
                            "no file with id {}",
                            message.id
                        ))))
                        .await;
                    return;
                };
                if requests.send((message.id, entry, size)).is_err() {
                    return;
                }
            }
            Ok(PacketType::PacketFin) => {
                let _ = sync.tx.send(Ok(packet(PacketType::PacketFin))).await;
                return;
            }
            Ok(PacketType::PacketErr) => {
                // BuildKit failed writing what it received; the build's own error says so
                return;
            }
            _ => {}
        }
    }
}

/// Sends the `size` bytes of the tree's entry `entry` as `DATA` packets of `id`, then the empty one; on a
/// failure, the error instead.
fn send_file(sync: &Sync, id: u32, entry: usize, size: u64) {
    let (tx, report) = (&sync.tx, &sync.report);
    let data = |bytes: Vec<u8>| Packet {
        id,
        data: bytes,
        ..packet(PacketType::PacketData)
    };
    let send = |chunk: Vec<u8>| {
        report.sent.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        tx.blocking_send(Ok(data(chunk))).is_ok()
    };
    let result = match sync.tree.entry(entry).map(|e| &e.source) {
        None => Ok(true),
        Some(ContextSource::Bytes(bytes)) => {
            Ok(bytes.chunks(CHUNK).all(|chunk| send(chunk.to_vec())))
        }
        Some(ContextSource::File(source)) => read_file(source, size, send),
    };
    match result {
        Ok(true) => {
            let _ = tx.blocking_send(Ok(data(Vec::new())));
        }
        // the connection is gone: nothing to tell
        Ok(false) => {}
        Err(error) => {
            let status = Status::data_loss(error.to_string());
            report.fail(error);
            let _ = tx.blocking_send(Err(status));
        }
    }
}

/// Reads exactly `size` bytes of `source` in chunks given to `send` (which says whether to go on); `false`
/// when `send` stopped it.
fn read_file(
    source: &std::path::Path,
    size: u64,
    mut send: impl FnMut(Vec<u8>) -> bool,
) -> berth_core::Result<bool> {
    use std::io::Read;
    let file = std::fs::File::open(source).map_err(|e| Error::io(source, e))?;
    let mut reader = ExactReader::new(file, size, source, |_| {});
    loop {
        let mut chunk = vec![0u8; CHUNK];
        let mut filled = 0;
        while filled < CHUNK {
            match reader.read(&mut chunk[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let changed = e.get_ref().is_some_and(|e| e.is::<SourceChanged>());
                    return Err(if changed {
                        Error::new(ErrorKind::Io, e.to_string()).with_source(e)
                    } else {
                        Error::io(source, e)
                    });
                }
            }
        }
        if filled == 0 {
            return Ok(true);
        }
        chunk.truncate(filled);
        if !send(chunk) {
            return Ok(false);
        }
    }
}

fn packet(kind: PacketType) -> Packet {
    Packet {
        r#type: kind as i32,
        ..Packet::default()
    }
}

/// The `STAT` of `node` as fsutil writes it: Go's `os.FileMode` bits, owner root, mtime in nanoseconds.
fn stat(node: &Node) -> Packet {
    const GO_DIR: u32 = 1 << 31;
    const GO_SETUID: u32 = 1 << 23;
    const GO_SETGID: u32 = 1 << 22;
    const GO_STICKY: u32 = 1 << 20;
    let mut mode = node.mode & 0o777;
    for (unix, go) in [
        (0o4000, GO_SETUID),
        (0o2000, GO_SETGID),
        (0o1000, GO_STICKY),
    ] {
        if node.mode & unix != 0 {
            mode |= go;
        }
    }
    let dir = node.entry.is_none();
    if dir {
        mode |= GO_DIR;
    }
    Packet {
        stat: Some(Stat {
            path: node.path.clone(),
            mode,
            size: if dir { 0 } else { node.size as i64 },
            mod_time: node.mtime_ns,
            ..Stat::default()
        }),
        ..packet(PacketType::PacketStat)
    }
}

/// The values of request header `key`, decoded when BuildKit marked them encoded (`KEY-encoded: 1`, for
/// names outside ASCII).
fn values(meta: &MetadataMap, key: &str) -> Vec<String> {
    let encoded = meta
        .get(format!("{key}-encoded").as_str())
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| matches!(v, "1" | "t" | "true" | "TRUE" | "True"));
    meta.get_all(key)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(|v| if encoded { unescape(v) } else { v.to_string() })
        .collect()
}

/// Go's `url.QueryUnescape`: `+` is a space, `%XX` a byte.
fn unescape(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_carry_go_file_modes() {
        let node = |mode, entry| Node {
            path: "p".into(),
            mode,
            size: 3,
            mtime_ns: 5,
            entry,
        };
        let mode = |n: &Node| stat(n).stat.map(|s| (s.mode, s.size)).unwrap_or_default();
        assert_eq!(mode(&node(0o755, None)), ((1 << 31) | 0o755, 0));
        assert_eq!(mode(&node(0o4755, Some(0))), ((1 << 23) | 0o755, 3));
    }

    #[test]
    fn encoded_header_values_are_decoded() {
        assert_eq!(unescape("caf%C3%A9+x%2Fy"), "café x/y");
        assert_eq!(unescape("100%"), "100%");
    }
}
