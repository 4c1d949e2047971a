//! A layer's tar stream rebuilt byte for byte from its tar-split record and the files of its diff folder.
//!
//! containers/storage and dockerd keep, beside each layer's unpacked files, the tar-split record of the tar
//! they unpacked (vbatts/tar-split's gzipped JSON lines): segments hold the raw bytes between file contents
//! (headers, padding, the end blocks) base64-encoded, and file entries name the file whose `size` bytes come
//! next. Writing segments and file contents in order gives back the original tar, so its sha256 is the
//! layer's diff id, which the caller checks as the stream ends.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Component, Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;

/// tar-split's entry types.
const FILE: u8 = 1;
const SEGMENT: u8 = 2;

/// One line of a tar-split record.
#[derive(Deserialize)]
struct Line {
    #[serde(rename = "type")]
    kind: u8,
    #[serde(default)]
    name: Option<String>,
    /// The name as base64 bytes, for names that are not UTF-8.
    #[serde(default)]
    name_raw: Option<String>,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    payload: Option<String>,
}

/// A [`Read`] of the tar that `record` (a `.tar-split.gz` / `tar-split.json.gz` file) describes, with file
/// contents read from under `diff`.
pub(crate) struct TarSplit {
    lines: std::io::Lines<BufReader<flate2::read::GzDecoder<File>>>,
    diff: PathBuf,
    /// Bytes of the current segment not read yet.
    segment: VecDeque<u8>,
    /// The current file's contents and how many of its bytes are still to come.
    file: Option<(File, PathBuf, u64)>,
    ended: bool,
}

impl TarSplit {
    /// Opens `record`; file contents are read from under `diff` as the stream reaches them.
    pub(crate) fn open(record: &Path, diff: &Path) -> std::io::Result<TarSplit> {
        let file = File::open(record)?;
        if !diff.is_dir() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("the layer's files ({}) are not there", diff.display()),
            ));
        }
        Ok(TarSplit {
            lines: BufReader::new(flate2::read::GzDecoder::new(file)).lines(),
            diff: diff.to_path_buf(),
            segment: VecDeque::new(),
            file: None,
            ended: false,
        })
    }

    /// Moves to the next line with bytes; false at the record's end.
    fn next_entry(&mut self) -> std::io::Result<bool> {
        loop {
            let Some(line) = self.lines.next() else {
                return Ok(false);
            };
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let line: Line = serde_json::from_str(&line).map_err(|e| invalid(format!("{e}")))?;
            match line.kind {
                SEGMENT => {
                    let payload = line.payload.unwrap_or_default();
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(payload)
                        .map_err(|e| invalid(format!("a segment is not base64: {e}")))?;
                    if !bytes.is_empty() {
                        self.segment = bytes.into();
                        return Ok(true);
                    }
                }
                FILE if line.size > 0 => {
                    let name = entry_name(&line)?;
                    let path = self.diff.join(&name);
                    let file = File::open(&path).map_err(|e| {
                        std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
                    })?;
                    let length = file.metadata()?.len();
                    if length != line.size {
                        return Err(invalid(format!(
                            "{} has {length} bytes where the layer had {}",
                            path.display(),
                            line.size
                        )));
                    }
                    self.file = Some((file, path, line.size));
                    return Ok(true);
                }
                FILE => {}
                other => return Err(invalid(format!("an entry of unknown type {other}"))),
            }
        }
    }
}

impl Read for TarSplit {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if !self.segment.is_empty() {
                let n = std::io::Read::read(&mut self.segment, buf)?;
                return Ok(n);
            }
            if let Some((file, path, left)) = &mut self.file {
                if *left == 0 {
                    self.file = None;
                    continue;
                }
                let want = buf.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                let n = file.read(&mut buf[..want])?;
                if n == 0 {
                    return Err(invalid(format!("{} ended early", path.display())));
                }
                *left -= n as u64;
                return Ok(n);
            }
            if self.ended || !self.next_entry()? {
                self.ended = true;
                return Ok(0);
            }
        }
    }
}

/// The entry's path inside the diff folder: relative, without `..`, so a record never reads outside it.
fn entry_name(line: &Line) -> std::io::Result<PathBuf> {
    let name: PathBuf = match (&line.name_raw, &line.name) {
        (Some(raw), _) => {
            use std::os::unix::ffi::OsStringExt as _;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(raw)
                .map_err(|e| invalid(format!("a name is not base64: {e}")))?;
            std::ffi::OsString::from_vec(bytes).into()
        }
        (None, Some(name)) => name.into(),
        (None, None) => return Err(invalid("a file entry has no name".into())),
    };
    let mut clean = PathBuf::new();
    for part in name.components() {
        match part {
            Component::Normal(part) => clean.push(part),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(invalid(format!(
                    "the entry {} leaves the layer",
                    name.display()
                )))
            }
        }
    }
    Ok(clean)
}

fn invalid(why: String) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("tar-split record: {why}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    /// A record of `tar` as tar-split writes it: every byte outside file contents in segments.
    fn record_of(tar: &[u8], dir: &Path) -> PathBuf {
        let mut lines = String::new();
        let mut archive = tar::Archive::new(tar);
        let mut at = 0u64;
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        for entry in archive.entries().expect("test setup") {
            let entry = entry.expect("test setup");
            let start = entry.raw_file_position();
            lines += &format!(
                "{{\"type\":2,\"payload\":\"{}\"}}\n",
                b64(&tar[at as usize..start as usize])
            );
            let name = entry
                .path()
                .expect("test setup")
                .to_string_lossy()
                .to_string();
            lines += &format!(
                "{{\"type\":1,\"name\":\"{name}\",\"size\":{},\"payload\":null}}\n",
                entry.size()
            );
            at = start + entry.size();
        }
        lines += &format!(
            "{{\"type\":2,\"payload\":\"{}\"}}\n",
            b64(&tar[at as usize..])
        );
        let path = dir.join("record.gz");
        let mut gz = flate2::write::GzEncoder::new(
            File::create(&path).expect("test setup"),
            flate2::Compression::fast(),
        );
        gz.write_all(lines.as_bytes()).expect("test setup");
        gz.finish().expect("test setup");
        path
    }

    fn layer(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, data) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder
                .append_data(&mut header, name, *data)
                .expect("test setup");
        }
        builder.into_inner().expect("test setup")
    }

    #[test]
    fn rebuilds_the_layer_byte_for_byte() {
        let dir = tempfile::tempdir().expect("test setup");
        let diff = dir.path().join("diff");
        std::fs::create_dir_all(diff.join("etc")).expect("test setup");
        std::fs::write(diff.join("etc/passwd"), b"root:x:0:0").expect("test setup");
        std::fs::write(diff.join("empty"), b"").expect("test setup");
        let tar = layer(&[("etc/passwd", b"root:x:0:0"), ("empty", b"")]);
        let record = record_of(&tar, dir.path());
        let mut rebuilt = Vec::new();
        TarSplit::open(&record, &diff)
            .expect("test setup")
            .read_to_end(&mut rebuilt)
            .expect("test setup");
        assert_eq!(rebuilt, tar);
    }

    #[test]
    fn a_changed_or_missing_file_is_an_error_never_a_different_layer() {
        let dir = tempfile::tempdir().expect("test setup");
        let diff = dir.path().join("diff");
        std::fs::create_dir_all(&diff).expect("test setup");
        let tar = layer(&[("a", b"12345")]);
        let record = record_of(&tar, dir.path());
        let read = || {
            let mut out = Vec::new();
            TarSplit::open(&record, &diff)
                .expect("test setup")
                .read_to_end(&mut out)
                .map(|_| out)
        };
        assert_eq!(
            read().expect_err("an error").kind(),
            std::io::ErrorKind::NotFound
        );
        std::fs::write(diff.join("a"), b"123").expect("test setup");
        assert!(read()
            .expect_err("an error")
            .to_string()
            .contains("has 3 bytes"));
        std::fs::write(diff.join("a"), b"12345").expect("test setup");
        assert_eq!(read().expect("test setup"), tar);
    }

    #[test]
    fn names_that_leave_the_layer_are_refused() {
        let line = |name: &str| Line {
            kind: FILE,
            name: Some(name.into()),
            name_raw: None,
            size: 1,
            payload: None,
        };
        assert_eq!(
            entry_name(&line("./usr/bin/x")).expect("test setup"),
            Path::new("usr/bin/x")
        );
        assert_eq!(
            entry_name(&line("/etc/x")).expect("test setup"),
            Path::new("etc/x")
        );
        assert!(entry_name(&line("a/../../etc/shadow")).is_err());
    }
}
