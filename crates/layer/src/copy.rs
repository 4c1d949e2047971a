//! COPY steps as layers berth writes itself: the selected context files under their destination, entries sorted,
//! every entry with a fixed modification time and the step's owner, and only the parent folders the image lacks,
//! so the same files on the same parent always give the same layer digest.
//!
//! A context file can change while a build reads it (an editor saving, a log growing). Each file is hashed once,
//! for the step cache's key, and the layer must hold exactly those bytes: the tar header announces the size the
//! open file has, the reader gives exactly that many bytes and fails if the file ends early or goes on past it,
//! and what was written is hashed again and compared. A file that changed fails the step with its name, instead of
//! a corrupt layer or a cache entry whose key describes other contents.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use berth_core::image_config::normalize;
use berth_core::plan::{ContextEntry, ContextSource, CopyStep};
use berth_core::{Error, ErrorKind, Result};
use sha2::{Digest as _, Sha256};

use crate::file::hex;
use crate::memo::{Memo, Stamp};
use crate::{HashingWriter, LayerDigests, LayerFile, LayerStream, WrittenLayer, FIXED_MTIME};

/// A build error (the caller names its engine).
fn error(kind: ErrorKind, message: impl Into<String>) -> Error {
    Error::new(kind, message).with_operation("build")
}

/// A context file that cannot be read.
fn io_error(path: &Path, err: io::Error) -> Error {
    Error::io(path, err).with_operation("build")
}

/// One file the step copies.
#[derive(Debug, Clone)]
pub struct CopiedFile {
    /// Absolute path in the image.
    pub target: String,
    /// Where its bytes come from.
    pub source: ContextSource,
    /// Permission bits.
    pub mode: u32,
    /// The contents' sha256 (hex) when they were collected: the step cache key's, and what the layer must hold.
    pub digest: String,
}

/// The files `step` copies, by destination (sorted), with their modes and contents' digests.
pub fn collect(
    context: &[ContextEntry],
    step: &CopyStep,
    workdir: &str,
) -> Result<Vec<CopiedFile>> {
    collect_remembered(context, step, workdir, None)
}

/// The folder of an engine's state folder that holds the [`crate::memo`] records.
pub const DIGESTS_FOLDER: &str = "copy-digests";

/// [`collect`], reading only the files whose digests `memo` (a folder of [`crate::memo`] records) does not
/// hold, and recording the digests there.
pub fn collect_remembered(
    context: &[ContextEntry],
    step: &CopyStep,
    workdir: &str,
    memo: Option<&Path>,
) -> Result<Vec<CopiedFile>> {
    let destination = normalize(Path::new(workdir), &step.destination);
    let into_dir = step.destination.ends_with('/') || step.sources.len() > 1;
    let mut files = BTreeMap::new();
    let mut identities = BTreeMap::new();
    for source in &step.sources {
        let source = source.trim_end_matches('/');
        let mut matched = false;
        for entry in context {
            let relative = if source == "." || source.is_empty() {
                Some(entry.path.as_str())
            } else if entry.path == source {
                let name = entry.path.rsplit('/').next().unwrap_or(&entry.path);
                if into_dir {
                    Some(name)
                } else {
                    None
                }
            } else {
                entry
                    .path
                    .strip_prefix(source)
                    .and_then(|r| r.strip_prefix('/'))
            };
            let target = match relative {
                Some(rel) => format!("{}/{rel}", destination.trim_end_matches('/')),
                None if entry.path == source => destination.clone(),
                None => continue,
            };
            matched = true;
            let (mode, identity) = match &entry.source {
                ContextSource::File(path) => {
                    let meta = std::fs::metadata(path).map_err(|e| io_error(path, e))?;
                    (meta.permissions().mode() & 0o7777, Some(Stamp::of(&meta)))
                }
                ContextSource::Bytes(_) => (0o644, None),
            };
            identities.insert(target.clone(), identity);
            files.insert(
                target.clone(),
                CopiedFile {
                    target,
                    source: entry.source.clone(),
                    mode,
                    digest: String::new(),
                },
            );
        }
        if !matched {
            return Err(error(
                ErrorKind::BuildFailed,
                format!("COPY: `{source}` is not in the build context"),
            )
            .with_hint("check the `copy` and `source_root` entries of the spec"));
        }
    }
    let mut files: Vec<CopiedFile> = files.into_values().collect();
    let identities: Vec<Option<Stamp>> = identities.into_values().collect();
    let names: Vec<(&str, &str)> = files
        .iter()
        .map(|f| match &f.source {
            ContextSource::File(path) => (path.to_str().unwrap_or(""), f.target.as_str()),
            ContextSource::Bytes(_) => ("", f.target.as_str()),
        })
        .collect();
    let memo = Memo::load(memo, &names);
    let mut unknown = Vec::new();
    for (i, (file, identity)) in files.iter_mut().zip(&identities).enumerate() {
        match identity.as_ref().and_then(|id| memo.digest(i, id)) {
            Some(digest) => file.digest = digest.to_string(),
            None => unknown.push(i),
        }
    }
    if unknown.is_empty() {
        memo.touch();
        return Ok(files);
    }
    let digests = digest_all(&files, &unknown)?;
    for (i, digest) in unknown.into_iter().zip(digests) {
        files[i].digest = digest;
    }
    let record: Vec<_> = files
        .iter()
        .zip(&identities)
        .map(|(f, id)| id.map(|id| (id, f.digest.as_str())))
        .collect();
    memo.save(&record);
    Ok(files)
}

/// The contents' digests of `files[i]` for each `i` of `which`, in order, read on a few threads (a `COPY` of a
/// 1 GiB tree hashed on one core before its layer could start).
fn digest_all(files: &[CopiedFile], which: &[usize]) -> Result<Vec<String>> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 4)
        .min(which.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let work = || {
        let mut done = Vec::new();
        loop {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some(file) = which.get(i).map(|&f| &files[f]) else {
                return Ok(done);
            };
            done.push((i, content_digest(&file.source)?));
        }
    };
    let parts: Vec<Result<Vec<(usize, String)>>> = std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..threads).map(|_| scope.spawn(work)).collect();
        let mut parts = vec![work()];
        parts.extend(helpers.into_iter().map(|h| {
            h.join()
                .unwrap_or_else(|_| Err(error(ErrorKind::Io, "a hashing thread panicked")))
        }));
        parts
    });
    let mut digests = vec![String::new(); which.len()];
    for part in parts {
        for (i, digest) in part? {
            digests[i] = digest;
        }
    }
    Ok(digests)
}

/// The folders a layer with `files` needs, parents first.
pub fn folders(files: &[CopiedFile]) -> Vec<String> {
    let mut dirs = std::collections::BTreeSet::new();
    for file in files {
        let mut path = Path::new(&file.target).parent();
        while let Some(dir) = path {
            if dir == Path::new("/") {
                break;
            }
            dirs.insert(dir.to_string_lossy().into_owned());
            path = dir.parent();
        }
    }
    dirs.into_iter().collect()
}

/// A file's content hash, for the step cache.
pub fn content_digest(source: &ContextSource) -> Result<String> {
    let mut hasher = Sha256::new();
    match source {
        ContextSource::Bytes(bytes) => hasher.update(bytes),
        ContextSource::File(path) => {
            let mut file = File::open(path).map_err(|e| io_error(path, e))?;
            io::copy(&mut file, &mut hasher).map_err(|e| io_error(path, e))?;
        }
    }
    Ok(hex(hasher))
}

pub use berth_context::SourceChanged;
use berth_context::{changed, ExactReader};

/// Where a COPY layer's entries also land while the layer is written: a snapshot folder the engine fills in the
/// same pass, so that it need not unpack the layer again. Entries come parents first; every folder or file is
/// created by the layer (nothing to replace). The receiver sets what the tar header says: mode, owner and times.
pub trait Unpack {
    /// Folder `name` (relative, no trailing `/`), as `header` describes it.
    fn folder(&mut self, name: &str, header: &tar::Header) -> io::Result<()>;
    /// Regular file `name`, created with `header`'s mode and owner, for its bytes to be written into.
    fn file(&mut self, name: &str, header: &tar::Header) -> io::Result<File>;
    /// Every entry is written: set the times the entries' writing changed.
    fn finish(&mut self) -> io::Result<()>;
}

/// Appends regular file `source` as `name`, checking that the bytes written are the ones `digest` describes, and
/// copying them into `copy` on the way.
fn append_file<W: Write>(
    tar: &mut tar::Builder<W>,
    header: &mut tar::Header,
    name: &str,
    source: &Path,
    digest: &str,
    copy: Option<File>,
) -> io::Result<()> {
    let file = File::open(source)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(changed(source, "stopped being a regular file"));
    }
    header.set_size(meta.len());
    let mut hasher = Sha256::new();
    let reader = ExactReader::new(file, meta.len(), source, |bytes| hasher.update(bytes));
    match copy {
        Some(out) => {
            let mut tee = Tee {
                inner: reader,
                out: io::BufWriter::with_capacity(1 << 18, out),
            };
            tar.append_data(header, name, &mut tee)?;
            finish_copy(tee.out)?;
        }
        None => tar.append_data(header, name, reader)?,
    }
    if hex(hasher) != digest {
        return Err(changed(
            source,
            "changed after it was hashed for the step cache, or",
        ));
    }
    Ok(())
}

/// Reads `inner` and writes what it read to `out`.
struct Tee<R, W> {
    inner: R,
    out: W,
}

impl<R: io::Read, W: Write> io::Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.out.write_all(&buf[..n])?;
        Ok(n)
    }
}

/// Flushes a copied file and gives it the layer's fixed times (writing it moved them).
fn finish_copy(out: io::BufWriter<File>) -> io::Result<()> {
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.set_times(fixed_times())?;
    Ok(())
}

/// Access and modification time [`FIXED_MTIME`], as containerd's unpacker sets a layer entry's times.
pub fn fixed_times() -> std::fs::FileTimes {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(FIXED_MTIME);
    std::fs::FileTimes::new()
        .set_accessed(time)
        .set_modified(time)
}

/// Writes the layer into `dir`: `folders` (those the image lacks) then `files`, sorted, owned by `owner`.
pub fn write_layer(
    files: &[CopiedFile],
    folders: &[String],
    owner: (u32, u32),
    dir: &Path,
) -> io::Result<WrittenLayer> {
    write_layer_into(files, folders, owner, dir, None)
}

/// [`write_layer`], placing every entry in `unpack` as well in the same pass (each file is read once).
pub fn write_layer_into(
    files: &[CopiedFile],
    folders: &[String],
    owner: (u32, u32),
    dir: &Path,
    unpack: Option<&mut dyn Unpack>,
) -> io::Result<WrittenLayer> {
    let mut layer = LayerFile::create(&dir.join("layer.tar.gz"))?;
    append_entries(&mut layer.tar, files, folders, owner, unpack)?;
    layer.finish()
}

/// [`write_layer_into`], the layer going to `out` instead of a file: the writer and the layer's digests.
pub fn stream_layer_into<W: Write + Send + 'static>(
    files: &[CopiedFile],
    folders: &[String],
    owner: (u32, u32),
    out: W,
    unpack: Option<&mut dyn Unpack>,
) -> io::Result<(W, LayerDigests)> {
    let mut layer = LayerStream::new(out)?;
    append_entries(&mut layer.tar, files, folders, owner, unpack)?;
    layer.finish()
}

/// The diff id of the layer [`write_layer_into`] would write, placing every entry in `unpack` as well: the tar is
/// hashed, not compressed or kept (for a layer whose blob the engine may hold already).
pub fn diff_id_into(
    files: &[CopiedFile],
    folders: &[String],
    owner: (u32, u32),
    unpack: Option<&mut dyn Unpack>,
) -> io::Result<String> {
    let mut tar = tar::Builder::new(HashingWriter::new(io::sink()));
    append_entries(&mut tar, files, folders, owner, unpack)?;
    let (_, diff_id) = tar.into_inner()?.finish();
    Ok(diff_id)
}

/// Appends the layer's entries to `tar`: `folders` then `files`, sorted, owned by `owner`, each placed in
/// `unpack` as well.
fn append_entries<W: Write>(
    tar: &mut tar::Builder<W>,
    files: &[CopiedFile],
    folders: &[String],
    owner: (u32, u32),
    mut unpack: Option<&mut dyn Unpack>,
) -> io::Result<()> {
    let mut entries: BTreeMap<String, Option<&CopiedFile>> = BTreeMap::new();
    for folder in folders {
        entries.insert(folder.trim_start_matches('/').to_string(), None);
    }
    for file in files {
        entries.insert(file.target.trim_start_matches('/').to_string(), Some(file));
    }
    for (name, file) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_uid(u64::from(owner.0));
        header.set_gid(u64::from(owner.1));
        header.set_mtime(FIXED_MTIME);
        match file {
            None => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_size(0);
                if let Some(unpack) = unpack.as_deref_mut() {
                    unpack.folder(&name, &header)?;
                }
                tar.append_data(&mut header, format!("{name}/"), io::empty())?;
            }
            Some(file) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(file.mode);
                let copy = match unpack.as_deref_mut() {
                    Some(unpack) => Some(unpack.file(&name, &header)?),
                    None => None,
                };
                match &file.source {
                    ContextSource::Bytes(bytes) => {
                        header.set_size(bytes.len() as u64);
                        if let Some(out) = copy {
                            let mut out = io::BufWriter::new(out);
                            out.write_all(bytes)?;
                            finish_copy(out)?;
                        }
                        tar.append_data(&mut header, &name, bytes.as_slice())?;
                    }
                    ContextSource::File(source) => {
                        append_file(tar, &mut header, &name, source, &file.digest, copy)?;
                    }
                }
            }
        }
    }
    if let Some(unpack) = unpack {
        unpack.finish()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, bytes: &str) -> ContextEntry {
        ContextEntry {
            path: path.into(),
            source: ContextSource::Bytes(bytes.as_bytes().to_vec()),
        }
    }

    #[test]
    fn folders_copy_their_contents_and_files_keep_their_names() {
        let context = vec![
            entry("tree/a.txt", "a"),
            entry("tree/sub/b.txt", "b"),
            entry("single.txt", "s"),
        ];
        let step = CopyStep {
            sources: vec!["tree".into()],
            destination: "/opt/ctx/".into(),
            chown: None,
        };
        let files = collect(&context, &step, "/").expect("collect");
        let targets: Vec<&str> = files.iter().map(|f| f.target.as_str()).collect();
        assert_eq!(targets, ["/opt/ctx/a.txt", "/opt/ctx/sub/b.txt"]);
        assert_eq!(folders(&files), ["/opt", "/opt/ctx", "/opt/ctx/sub"]);
        let step = CopyStep {
            sources: vec!["single.txt".into()],
            destination: "/root/".into(),
            chown: None,
        };
        assert_eq!(
            collect(&context, &step, "/").expect("collect")[0].target,
            "/root/single.txt"
        );
        let step = CopyStep {
            sources: vec!["single.txt".into()],
            destination: "renamed".into(),
            chown: None,
        };
        assert_eq!(
            collect(&context, &step, "/srv").expect("collect")[0].target,
            "/srv/renamed"
        );
        let step = CopyStep {
            sources: vec!["missing".into()],
            destination: "/x/".into(),
            chown: None,
        };
        assert!(collect(&context, &step, "/").is_err());
    }

    #[test]
    fn the_same_files_give_the_same_layer() {
        let context = vec![entry("b.txt", "b"), entry("a.txt", "a")];
        let step = CopyStep {
            sources: vec![".".into()],
            destination: "/app/".into(),
            chown: None,
        };
        let files = collect(&context, &step, "/").expect("collect");
        let write = || {
            let dir = tempfile::tempdir().expect("temp dir");
            let layer = write_layer(&files, &folders(&files), (0, 0), dir.path()).expect("write");
            (layer.digest, layer.diff_id)
        };
        assert_eq!(write(), write());
    }

    fn changed_how(err: io::Error) -> &'static str {
        err.get_ref()
            .and_then(|e| e.downcast_ref::<SourceChanged>())
            .unwrap_or_else(|| panic!("not a changed source: {err}"))
            .how
    }

    #[test]
    fn a_file_that_changes_fails_the_layer_instead_of_corrupting_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("app.log");
        std::fs::write(&path, "first version\n").expect("write");
        let context = vec![ContextEntry {
            path: "app.log".into(),
            source: ContextSource::File(path.clone()),
        }];
        let step = CopyStep {
            sources: vec!["app.log".into()],
            destination: "/srv/".into(),
            chown: None,
        };
        let files = collect(&context, &step, "/").expect("collect");
        let out = tempfile::tempdir().expect("out");
        write_layer(&files, &[], (0, 0), out.path()).expect("unchanged");
        // changed after the step cache's key was computed from it
        std::fs::write(&path, "second version, longer\n").expect("rewrite");
        let err = write_layer(&files, &[], (0, 0), out.path()).expect_err("changed");
        assert!(changed_how(err).starts_with("changed after"));
        // a file whose size says 0 but which gives bytes: what a file growing during the copy looks like
        let growing = vec![CopiedFile {
            target: "/srv/status".into(),
            source: ContextSource::File("/proc/self/status".into()),
            mode: 0o644,
            digest: String::new(),
        }];
        let err = write_layer(&growing, &[], (0, 0), out.path()).expect_err("grew");
        assert_eq!(changed_how(err), "grew");
    }
}
