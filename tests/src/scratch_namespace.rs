//! A containerd namespace a test builds in with a state folder of its own (an empty step cache), tidied when the
//! test ends: berth's step cache roots the blobs of its steps (`containerd.io/gc.root`) and drops a root only when
//! its record in the state folder expires, so a temporary state folder would leave those blobs rooted for ever
//! (the namespace outlives the test, and CI runs on one machine again and again).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::env::TestEnv;

/// The step cache's root label.
const GC_ROOT: &str = "containerd.io/gc.root";

/// A namespace only one test uses, with a fresh state folder; dropping it removes the roots of its blobs so
/// containerd's collector takes what the test's images no longer hold.
pub struct ScratchNamespace {
    address: PathBuf,
    namespace: String,
    state: tempfile::TempDir,
}

impl ScratchNamespace {
    /// `namespace` of the containerd of `env`, with a new temporary state folder.
    pub fn new(env: &TestEnv, namespace: &str) -> ScratchNamespace {
        ScratchNamespace {
            address: env.containerd_address.clone(),
            namespace: namespace.to_string(),
            state: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// The namespace to give the engine.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The state folder to give the engine.
    pub fn state(&self) -> &Path {
        self.state.path()
    }

    /// The blobs in the namespace that carry the step cache's root label.
    pub fn rooted(&self) -> Vec<String> {
        let Ok(out) = self.ctr(&["content", "ls"]) else {
            return Vec::new();
        };
        let marker = format!("{GC_ROOT}=");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|line| line.contains(&marker))
            .filter_map(|line| line.split_whitespace().next().map(str::to_string))
            .collect()
    }

    fn ctr(&self, args: &[&str]) -> std::io::Result<std::process::Output> {
        Command::new("ctr")
            .arg("--address")
            .arg(&self.address)
            .args(["-n", &self.namespace])
            .args(args)
            .output()
    }
}

impl Drop for ScratchNamespace {
    fn drop(&mut self) {
        let unset = format!("{GC_ROOT}=");
        for digest in self.rooted() {
            let _ = self.ctr(&["content", "label", &digest, &unset]);
        }
    }
}
