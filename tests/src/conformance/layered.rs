//! Images made by a test itself: a fixture image with one more layer whose entries the test writes, pushed to the
//! test registry with skopeo. This is how a test gets a base or helper image shaped as no build would make it (links
//! to host paths where `/etc` or `/root` should be) without trusting the engine under test to produce it.

use std::path::Path;

use sha2::{Digest as _, Sha256};

use super::registry::{copy_to_dir, skopeo};
use crate::env::TestEnv;

/// An entry of the added layer.
#[derive(Debug, Clone)]
pub enum Entry {
    /// A folder, mode 0755.
    Dir(String),
    /// A regular file, mode 0644, with these contents.
    File(String, Vec<u8>),
    /// A symbolic link to this target.
    Link(String, String),
}

/// Pushes `base` plus one layer holding `entries` (in that order) to the registry as `reference`.
pub fn push_with_layer(env: &TestEnv, base: &str, entries: &[Entry], reference: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let image = dir.path().join("image");
    copy_to_dir(env, base, &image);
    let tar = layer_tar(entries);
    let diff_id = format!("sha256:{:x}", Sha256::digest(&tar));
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gzip, &tar).expect("gzip");
    let blob = gzip.finish().expect("gzip");
    let blob_digest = write_blob(&image, &blob);

    let manifest_path = image.join("manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).expect("manifest")).expect("json");
    let config_hex = manifest["config"]["digest"]
        .as_str()
        .and_then(|d| d.strip_prefix("sha256:"))
        .expect("config digest")
        .to_string();
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(image.join(&config_hex)).expect("config"))
            .expect("json");
    config["rootfs"]["diff_ids"]
        .as_array_mut()
        .expect("diff_ids")
        .push(diff_id.into());
    let config_bytes = serde_json::to_vec(&config).expect("json");
    let config_digest = write_blob(&image, &config_bytes);
    manifest["config"]["digest"] = config_digest.into();
    manifest["config"]["size"] = config_bytes.len().into();
    let layers = manifest["layers"].as_array_mut().expect("layers");
    let media_type = layers
        .last()
        .and_then(|l| l["mediaType"].as_str())
        .unwrap_or("application/vnd.oci.image.layer.v1.tar+gzip")
        .to_string();
    layers.push(serde_json::json!({
        "mediaType": media_type,
        "size": blob.len(),
        "digest": blob_digest,
    }));
    std::fs::write(&manifest_path, serde_json::to_vec(&manifest).expect("json")).expect("manifest");
    skopeo(&[
        "copy",
        "--quiet",
        "--dest-creds",
        &env.creds_arg(),
        "--dest-tls-verify=false",
        &format!("dir:{}", image.display()),
        &format!("docker://{reference}"),
    ])
    .unwrap_or_else(|e| panic!("cannot push {reference}: {e}"));
}

/// The layer as an uncompressed tar.
fn layer_tar(entries: &[Entry]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for entry in entries {
        let mut header = tar::Header::new_gnu();
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        match entry {
            Entry::Dir(path) => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_size(0);
                tar.append_data(&mut header, path, std::io::empty())
            }
            Entry::File(path, data) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(0o644);
                header.set_size(data.len() as u64);
                tar.append_data(&mut header, path, data.as_slice())
            }
            Entry::Link(path, target) => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_mode(0o777);
                header.set_size(0);
                tar.append_link(&mut header, path, target)
            }
        }
        .unwrap_or_else(|e| panic!("layer entry {entry:?}: {e}"));
    }
    tar.into_inner().expect("tar")
}

/// Writes `bytes` into skopeo's `dir:` layout under its digest and returns the digest.
fn write_blob(image: &Path, bytes: &[u8]) -> String {
    let hex = format!("{:x}", Sha256::digest(bytes));
    std::fs::write(image.join(&hex), bytes).expect("blob");
    format!("sha256:{hex}")
}
