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

    /// The digest of every blob in the namespace with the value of its label `key`, if it has one, as `ctr`
    /// lists them.
    pub fn content_label(&self, key: &str) -> Vec<(String, Option<String>)> {
        let listing = self
            .listing()
            .unwrap_or_else(|e| panic!("ctr content ls: {e}"));
        label_values(&listing, key)
    }

    /// The blobs in the namespace that carry the step cache's root label (none when `ctr` fails).
    pub fn rooted(&self) -> Vec<String> {
        let listing = self.listing().unwrap_or_default();
        label_values(&listing, GC_ROOT)
            .into_iter()
            .filter_map(|(digest, value)| value.map(|_| digest))
            .collect()
    }

    /// `ctr content ls`'s output, or why there is none.
    fn listing(&self) -> Result<String, String> {
        let out = self.ctr(&["content", "ls"]).map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Sets label `key` of blob `digest` to `value` (empty: removes it).
    pub fn set_content_label(&self, digest: &str, key: &str, value: &str) {
        let out = self
            .ctr(&["content", "label", digest, &format!("{key}={value}")])
            .expect("run ctr");
        assert!(
            out.status.success(),
            "ctr content label {digest}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
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

/// Each blob of a `ctr content ls` listing with the value of its label `key`, if it has one.
fn label_values(listing: &str, key: &str) -> Vec<(String, Option<String>)> {
    let prefix = format!("{key}=");
    listing
        .lines()
        .skip(1)
        .filter_map(|line| {
            let digest = line.split_whitespace().next()?.to_string();
            // labels are printed joined by commas, and a distribution-source value holds commas too: a value ends
            // where the next containerd label starts
            let labels = line.split_whitespace().last()?;
            let value = labels.split_once(&prefix).map(|(_, rest)| {
                rest.split_once(",containerd.io/")
                    .map_or(rest, |(value, _)| value)
                    .to_string()
            });
            Some((digest, value))
        })
        .collect()
}
