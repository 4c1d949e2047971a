//! `berth.lock`: each task of a project mapped to an immutable `registry/name:tag@sha256:...`, written next to
//! `berth.yaml` after a build in which every image reached its registry, for a deploy step or orchestrator to pull
//! by digest. `berth build --check` compares it with what the specs name now, offline.
//!
//! The file is JSON with sorted keys, so it diffs cleanly in review:
//! `{"version": 1, "default_image": "...@sha256:...", "images": {...}, "tasks": {...}}`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use berth_core::{Error, ErrorKind, Result};

/// The lock file's name, next to the project file.
pub const LOCK_FILE: &str = "berth.lock";
/// The format version written and understood.
const VERSION: u64 = 1;

/// A lock: references by image and by task.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lock {
    /// The default image, when a task runs in it.
    pub default_image: Option<String>,
    /// Project image name to reference.
    pub images: BTreeMap<String, String>,
    /// Task name to reference.
    pub tasks: BTreeMap<String, String>,
}

impl Lock {
    /// The lock as written to disk.
    pub fn to_json(&self) -> String {
        let mut root = serde_json::Map::new();
        root.insert("version".into(), VERSION.into());
        if let Some(default) = &self.default_image {
            root.insert("default_image".into(), default.clone().into());
        }
        let map = |m: &BTreeMap<String, String>| {
            serde_json::Value::Object(
                m.iter()
                    .map(|(k, v)| (k.clone(), v.clone().into()))
                    .collect(),
            )
        };
        root.insert("images".into(), map(&self.images));
        root.insert("tasks".into(), map(&self.tasks));
        let mut text =
            serde_json::to_string_pretty(&serde_json::Value::Object(root)).expect("serializes");
        text.push('\n');
        text
    }

    /// Parses a lock file's text.
    pub fn parse(text: &str, path: &Path) -> Result<Lock> {
        let bad = |why: String| {
            Error::invalid(format!("{}: {why}", path.display()))
                .with_hint("delete it and run `berth build` to write a fresh one")
        };
        let root: serde_json::Value =
            serde_json::from_str(text).map_err(|e| bad(format!("not a berth lock file: {e}")))?;
        if root["version"].as_u64() != Some(VERSION) {
            return Err(bad(format!("unknown lock version {}", root["version"])));
        }
        let map = |key: &str| -> Result<BTreeMap<String, String>> {
            match &root[key] {
                serde_json::Value::Null => Ok(BTreeMap::new()),
                serde_json::Value::Object(m) => m
                    .iter()
                    .map(|(k, v)| match v.as_str() {
                        Some(s) => Ok((k.clone(), s.to_string())),
                        None => Err(bad(format!("`{key}.{k}` is not a reference"))),
                    })
                    .collect(),
                _ => Err(bad(format!("`{key}` is not a mapping"))),
            }
        };
        Ok(Lock {
            default_image: root["default_image"].as_str().map(str::to_string),
            images: map("images")?,
            tasks: map("tasks")?,
        })
    }

    /// Reads `path`, if it exists.
    pub fn read(path: &Path) -> Result<Option<Lock>> {
        match std::fs::read_to_string(path) {
            Ok(text) => Lock::parse(&text, path).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(path, e)),
        }
    }

    /// Writes `path` whole or not at all (a temporary file renamed over it).
    pub fn write(&self, path: &Path) -> Result<()> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut tmp = tempfile_in(dir)?;
        tmp.1
            .write_all(self.to_json().as_bytes())
            .and_then(|()| tmp.1.sync_all())
            .map_err(|e| Error::io(&tmp.0, e))?;
        std::fs::rename(&tmp.0, path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp.0);
            Error::io(path, e)
        })
    }

    /// How this lock differs from what the specs name now (`expected` holds names without digests): one line
    /// per task or image whose name changed, appeared or disappeared. Empty when the lock is current.
    pub fn differences(&self, expected: &Lock) -> Vec<String> {
        let mut out = Vec::new();
        let name = |reference: &str| reference.split('@').next().unwrap_or_default().to_string();
        let mut compare = |what: &str,
                           locked: &BTreeMap<String, String>,
                           wanted: &BTreeMap<String, String>| {
            for (key, want) in wanted {
                match locked.get(key) {
                    None => out.push(format!("{what} `{key}` is not in the lock (wants {want})")),
                    Some(have) if name(have) != *want => out.push(format!(
                        "{what} `{key}`: the lock has {have}, the specs now give {want}"
                    )),
                    Some(_) => {}
                }
            }
            for key in locked.keys().filter(|k| !wanted.contains_key(*k)) {
                out.push(format!(
                    "{what} `{key}` is in the lock but no longer in berth.yaml"
                ));
            }
        };
        compare("task", &self.tasks, &expected.tasks);
        compare("image", &self.images, &expected.images);
        if let Some(want) = &expected.default_image {
            if self.default_image.as_deref().map(name).as_ref() != Some(want) {
                out.push(format!(
                    "the default image: the lock has {}, now {want}",
                    self.default_image.as_deref().unwrap_or("none")
                ));
            }
        }
        out
    }
}

/// A new file in `dir` that no one else has opened.
fn tempfile_in(dir: &Path) -> Result<(PathBuf, std::fs::File)> {
    for attempt in 0..100u32 {
        let path = dir.join(format!(".{LOCK_FILE}.{}.{attempt}.tmp", std::process::id()));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(file) => return Ok((path, file)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::io(&path, e)),
        }
    }
    Err(Error::new(
        ErrorKind::Io,
        format!("cannot create a temporary lock file in {}", dir.display()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock(tasks: &[(&str, &str)]) -> Lock {
        Lock {
            default_image: None,
            images: BTreeMap::new(),
            tasks: tasks
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn round_trips_and_writes_atomically() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join(LOCK_FILE);
        let mut written = lock(&[("train", "r/x:1@sha256:aa")]);
        written.default_image = Some("r/d:1@sha256:bb".into());
        written.write(&path).expect("write");
        assert_eq!(Lock::read(&path).expect("read"), Some(written));
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).expect("ls").collect();
        assert_eq!(leftovers.len(), 1, "no temporary file is left");
    }

    #[test]
    fn differences_name_what_changed() {
        let locked = lock(&[("a", "r/x:1@sha256:aa"), ("gone", "r/y:1@sha256:bb")]);
        assert!(locked
            .differences(&lock(&[("a", "r/x:1"), ("gone", "r/y:1")]))
            .is_empty());
        let diff = locked.differences(&lock(&[("a", "r/x:2"), ("new", "r/z:1")]));
        assert_eq!(diff.len(), 3, "{diff:?}");
        assert!(
            diff[0].contains("the lock has r/x:1@sha256:aa, the specs now give r/x:2"),
            "{diff:?}"
        );
        assert!(diff[1].contains("`new` is not in the lock"), "{diff:?}");
        assert!(
            diff[2].contains("`gone` is in the lock but no longer"),
            "{diff:?}"
        );
    }

    #[test]
    fn a_foreign_file_is_a_clear_error() {
        let err =
            Lock::parse("{\"version\": 7}", Path::new("berth.lock")).expect_err("unknown version");
        assert!(err.to_string().contains("unknown lock version 7"), "{err}");
    }
}
