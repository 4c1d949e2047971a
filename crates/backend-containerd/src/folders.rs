//! A build's own folder in berth's state folder (`BERTH_CONTAINERD_STATE_DIR/<namespace>/builds/`), and the
//! listing that tells which of them a killed berth left.
//!
//! A build writes, under a folder of its own named for its process (`berth-build-<pid>-<start>-<random>`, see
//! [`Owner::name`]): `run/<step>`, the FIFOs a RUN step's output comes through, for as long as the step runs;
//! `tmp/<step>`, the layer file of a RUN or COPY step, from writing it until it is in the content store; and
//! `tmp/berth-context-<random>`, the copies of the context files RUN steps mount, for the whole build. The
//! build's guard removes the folder when the build ends, fails or is dropped; a killed berth's stays until the
//! next run removes it. (The step cache's records, `steps/`, and cache mounts, `cache/`, are kept between builds
//! on purpose.) Before build folders were named for their process, a build wrote `run/<step>` and `tmp/<key>`
//! straight under the state folder: such folders have an unknown owner, and are listed, never removed.

use std::path::{Path, PathBuf};

use crate::owner::Owner;
use crate::ID_PREFIX;

/// The state folder's folder of build folders.
const BUILDS: &str = "builds";
/// What a build folder's name says it is.
const WHAT: &str = "build";
/// Where builds wrote before build folders were named for their process.
const OLDER: [&str; 2] = ["run", "tmp"];

/// A fresh folder for one build of this process, under `state_dir` (created when the build first writes).
pub(crate) fn new_build_folder(state_dir: &Path) -> PathBuf {
    state_dir.join(BUILDS).join(Owner::this().name(WHAT))
}

/// One of berth's build folders, with the process that made it (`None`: made before names said it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BuildFolder {
    pub(crate) path: PathBuf,
    pub(crate) owner: Option<Owner>,
}

/// berth's build folders in `state_dir`, every owner's.
pub(crate) fn build_folders(state_dir: &Path) -> Vec<BuildFolder> {
    berth_entries(&state_dir.join(BUILDS))
        .into_iter()
        .map(|(path, name)| BuildFolder {
            owner: Owner::of_name(&name, WHAT),
            path,
        })
        .collect()
}

/// The folders builds wrote before build folders were named for their process (owner unknown).
pub(crate) fn older_folders(state_dir: &Path) -> Vec<BuildFolder> {
    OLDER
        .iter()
        .flat_map(|sub| berth_entries(&state_dir.join(sub)))
        .map(|(path, _)| BuildFolder { path, owner: None })
        .collect()
}

/// The entries of `dir` with berth's prefix: path and name (none when `dir` does not exist).
fn berth_entries(dir: &Path) -> Vec<(PathBuf, String)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| Some((e.path(), e.file_name().into_string().ok()?)))
        .filter(|(_, name)| name.starts_with(ID_PREFIX))
        .collect()
}

/// How long ago `path` last changed.
pub(crate) fn age(path: &Path) -> Option<std::time::Duration> {
    let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok()?;
    std::time::SystemTime::now().duration_since(modified).ok()
}

/// Removes a build folder; one that is gone already (another berth removed it a moment ago) is fine.
pub(crate) fn remove(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound && path.exists() => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_folders_say_their_owner_and_older_ones_none() {
        let state = tempfile::tempdir().expect("temp dir");
        let mine = new_build_folder(state.path());
        std::fs::create_dir_all(mine.join("run").join("berth-step-1")).expect("build folder");
        let older = state
            .path()
            .join("tmp")
            .join("berth-context-0123456789abcdef");
        std::fs::create_dir_all(&older).expect("older folder");
        // not berth's: left out
        std::fs::create_dir_all(state.path().join("tmp").join("other")).expect("other folder");
        std::fs::create_dir_all(state.path().join("steps")).expect("step cache");
        assert_eq!(
            build_folders(state.path()),
            vec![BuildFolder {
                path: mine.clone(),
                owner: Some(Owner::this())
            }]
        );
        assert_eq!(
            older_folders(state.path()),
            vec![BuildFolder {
                path: older,
                owner: None
            }]
        );
        remove(&mine).expect("remove");
        assert!(!mine.exists());
        remove(&mine).expect("removing a folder that is gone is fine");
    }
}
