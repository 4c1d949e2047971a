//! Behaviours against the registry (push, pull, credentials), and the registry's own view of an image, read with
//! skopeo (installed by `scripts/env/up.sh`) so the suite never trusts the engine under test about what it pushed.

use std::io::Read;
use std::path::Path;
use std::process::Command;

use berth_core::engine::{ContainerEngine, NoProgress, RemoveOptions, TransferOptions};
use berth_core::ErrorKind;

use super::support::{
    build_and_push, build_ok, build_options, expect_kind, image_ref, inspect_ok, plan, run,
    transfer_options, unique, Cleanup,
};
use crate::env::TestEnv;

pub(crate) fn skopeo(args: &[&str]) -> Result<String, String> {
    let out = Command::new("skopeo").args(args).output().map_err(|e| {
        format!("cannot run skopeo ({e}); run scripts/env/up.sh first, it installs skopeo")
    })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!(
            "skopeo {} failed ({}): {}",
            args.first().copied().unwrap_or_default(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The manifest digest the registry serves for `reference`.
pub fn remote_digest(env: &TestEnv, reference: &str) -> String {
    try_remote_digest(env, reference)
        .unwrap_or_else(|e| panic!("the registry has no {reference}: {e}"))
}

/// The manifest digest the registry serves for `reference`, or why it serves none.
pub fn try_remote_digest(env: &TestEnv, reference: &str) -> Result<String, String> {
    let creds = env.creds_arg();
    skopeo(&[
        "inspect",
        "--creds",
        &creds,
        "--tls-verify=false",
        "--format",
        "{{.Digest}}",
        &format!("docker://{reference}"),
    ])
}

/// Deletes `reference`'s manifest from the registry.
pub fn delete(env: &TestEnv, reference: &str) -> Result<(), String> {
    let creds = env.creds_arg();
    skopeo(&[
        "delete",
        "--creds",
        &creds,
        "--tls-verify=false",
        &format!("docker://{reference}"),
    ])
    .map(drop)
}

/// An image as the registry stores it, blobs decompressed.
pub struct RegistryImage {
    /// The manifest, as served.
    pub manifest: Vec<u8>,
    /// The config blob.
    pub config: Vec<u8>,
    /// Each layer: digest, media type and its uncompressed tar.
    pub layers: Vec<(String, String, Vec<u8>)>,
}

impl RegistryImage {
    /// Which parts (manifest, config, layer digests) contain `needle`.
    pub fn parts_containing(&self, needle: &[u8]) -> Vec<String> {
        let mut parts = Vec::new();
        if contains(&self.manifest, needle) {
            parts.push("manifest".to_string());
        }
        if contains(&self.config, needle) {
            parts.push("config".to_string());
        }
        for (digest, _, tar) in &self.layers {
            if contains(tar, needle) {
                parts.push(format!("layer {digest}"));
            }
        }
        parts
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Copies `reference` from the registry into `dest` in skopeo's `dir:` layout (manifest.json, blobs by digest).
pub(crate) fn copy_to_dir(env: &TestEnv, reference: &str, dest: &Path) {
    let creds = env.creds_arg();
    skopeo(&[
        "copy",
        "--quiet",
        "--src-creds",
        &creds,
        "--src-tls-verify=false",
        &format!("docker://{reference}"),
        &format!("dir:{}", dest.display()),
    ])
    .unwrap_or_else(|e| panic!("cannot download {reference} from the registry: {e}"));
}

/// Downloads `reference` from the registry with skopeo (`dir:` layout) and decompresses its layers.
pub fn download(env: &TestEnv, reference: &str) -> RegistryImage {
    let dir = tempfile::tempdir().expect("temp dir");
    let dest = dir.path().join("image");
    copy_to_dir(env, reference, &dest);
    let manifest = std::fs::read(dest.join("manifest.json")).expect("skopeo wrote manifest.json");
    let parsed: serde_json::Value =
        serde_json::from_slice(&manifest).expect("the manifest is JSON");
    let blob = |digest: &str| {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        std::fs::read(dest.join(hex))
            .unwrap_or_else(|e| panic!("blob {digest} of {reference}: {e}"))
    };
    let config_digest = parsed["config"]["digest"]
        .as_str()
        .unwrap_or_else(|| panic!("{reference}: manifest without config digest: {parsed}"));
    let config = blob(config_digest);
    let layers = parsed["layers"]
        .as_array()
        .unwrap_or_else(|| panic!("{reference}: manifest without layers: {parsed}"))
        .iter()
        .map(|layer| {
            let digest = layer["digest"].as_str().unwrap_or_default().to_string();
            let media_type = layer["mediaType"].as_str().unwrap_or_default().to_string();
            let tar = decompress(&digest, &media_type, blob(&digest), &dest);
            (digest, media_type, tar)
        })
        .collect();
    RegistryImage {
        manifest,
        config,
        layers,
    }
}

/// A layer blob as a plain tar, whatever its compression; a format the suite cannot read is a failure, never a
/// silent "not found".
fn decompress(digest: &str, media_type: &str, bytes: Vec<u8>, dir: &Path) -> Vec<u8> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(bytes.as_slice())
            .read_to_end(&mut out)
            .unwrap_or_else(|e| panic!("layer {digest} ({media_type}) is not valid gzip: {e}"));
        return out;
    }
    if bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        let out = Command::new("zstd")
            .args(["-dc", "--"])
            .arg(dir.join(hex))
            .output()
            .unwrap_or_else(|e| panic!("layer {digest} is zstd and `zstd` cannot run: {e}"));
        assert!(out.status.success(), "zstd -dc of layer {digest} failed");
        return out.stdout;
    }
    let is_tar = bytes.len() >= 262 && &bytes[257..262] == b"ustar"
        || bytes.len() >= 1024 && bytes.iter().all(|b| *b == 0);
    assert!(
        is_tar,
        "layer {digest} ({media_type}) is neither gzip, zstd nor a tar: the suite cannot search it"
    );
    bytes
}

/// Behaviour 7: Push then pull round-trips: the pushed image reaches the registry under the digest `push` returns; after the
/// local copy is removed, `pull` brings back an image with the same layers and config.
pub async fn push_pull_round_trip(engine: &dyn ContainerEngine, env: &TestEnv) {
    let mut cleanup = Cleanup::new(engine, env);
    let reference = image_ref(env, "push-pull", "v1");
    let token = unique("content");
    let plan = plan(
        &env.busybox_image,
        vec![
            run(format!("echo {token} > /pushed")),
            berth_core::plan::Step::Env(vec![("BERTH_PUSHED".into(), token.clone())]),
            berth_core::plan::Step::Entrypoint(vec!["/bin/cat".into(), "/pushed".into()]),
        ],
    );
    build_ok(engine, &mut cleanup, &plan, &build_options(env, &reference)).await;
    let before = inspect_ok(engine, &reference).await;

    cleanup.pushed(&reference);
    let pushed = engine
        .push(&reference, &transfer_options(env), &NoProgress)
        .await
        .unwrap_or_else(|e| panic!("push {reference}: {e}"));
    let remote = remote_digest(env, &reference);
    assert_eq!(
        pushed.digest, remote,
        "push returned {} but the registry serves {reference} as {remote}",
        pushed.digest
    );

    engine
        .remove(&reference, RemoveOptions::default())
        .await
        .unwrap_or_else(|e| panic!("remove {reference} after the push: {e}"));
    expect_kind(
        engine.inspect(&reference).await,
        ErrorKind::NotFound,
        "inspect after remove (before the pull)",
    );

    engine
        .pull(&reference, &transfer_options(env), &NoProgress)
        .await
        .unwrap_or_else(|e| panic!("pull {reference}: {e}"));
    let after = inspect_ok(engine, &reference).await;
    assert_eq!(
        after.layers, before.layers,
        "the pulled image's layers differ from the pushed ones"
    );
    assert_eq!(after.env, before.env, "the pulled image's env differs");
    assert_eq!(
        after.entrypoint, before.entrypoint,
        "the pulled image's entrypoint differs"
    );
    assert!(
        after.tags.contains(&reference),
        "the pulled image is not tagged {reference}: {:?}",
        after.tags
    );
}

/// Behaviour 9c: Pushing with a wrong password is [`ErrorKind::Unauthorized`].
pub async fn push_with_wrong_password_is_unauthorized(engine: &dyn ContainerEngine, env: &TestEnv) {
    let mut cleanup = Cleanup::new(engine, env);
    let reference = image_ref(env, "wrong-password", "v1");
    let plan = plan(
        &env.busybox_image,
        vec![run(format!("echo {} > /x", unique("content")))],
    );
    build_ok(engine, &mut cleanup, &plan, &build_options(env, &reference)).await;
    cleanup.pushed(&reference); // in case the push wrongly succeeds
    let options = TransferOptions {
        credentials: Some(env.wrong_credentials()),
        insecure: true,
    };
    let err = expect_kind(
        engine.push(&reference, &options, &NoProgress).await,
        ErrorKind::Unauthorized,
        "push with a wrong password",
    );
    assert!(
        !err.to_string()
            .contains(env.wrong_credentials().password.expose()),
        "the error shows the password: {err}"
    );
}

/// Behaviour 9d: Pulling with a wrong password is [`ErrorKind::Unauthorized`].
pub async fn pull_with_wrong_password_is_unauthorized(engine: &dyn ContainerEngine, env: &TestEnv) {
    let options = TransferOptions {
        credentials: Some(env.wrong_credentials()),
        insecure: true,
    };
    // A reference that exists in the registry but not locally, so the engine must ask the registry.
    let mut cleanup = Cleanup::new(engine, env);
    let reference = image_ref(env, "pull-wrong-password", "v1");
    let plan = plan(
        &env.busybox_image,
        vec![run(format!("echo {} > /x", unique("content")))],
    );
    build_and_push(engine, &mut cleanup, env, &plan, &reference).await;
    engine
        .remove(&reference, RemoveOptions { force: true })
        .await
        .unwrap_or_else(|e| panic!("remove {reference}: {e}"));
    expect_kind(
        engine.pull(&reference, &options, &NoProgress).await,
        ErrorKind::Unauthorized,
        "pull with a wrong password",
    );
}

/// Behaviour 9e: Pulling, with valid credentials, a repository the registry does not have is [`ErrorKind::NotFound`].
pub async fn pull_missing_is_not_found(engine: &dyn ContainerEngine, env: &TestEnv) {
    let reference = image_ref(env, "never-pushed", "v1");
    expect_kind(
        engine
            .pull(&reference, &transfer_options(env), &NoProgress)
            .await,
        ErrorKind::NotFound,
        "pull of a repository that does not exist",
    );
    // A missing tag in an existing repository is NotFound too.
    let repo = env
        .busybox_image
        .rsplit_once(':')
        .map(|(repo, _)| repo)
        .unwrap_or(&env.busybox_image);
    let missing_tag = format!("{repo}:{}", unique("no-such-tag"));
    expect_kind(
        engine
            .pull(&missing_tag, &transfer_options(env), &NoProgress)
            .await,
        ErrorKind::NotFound,
        "pull of a tag that does not exist in an existing repository",
    );
}

/// A file system entry after applying an image's layers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// A folder.
    Dir,
    /// A regular file: contents and permission bits (with setuid/setgid/sticky).
    File(Vec<u8>, u32),
    /// A symbolic link and its target.
    Symlink(String),
}

/// The file system `image`'s layers give, applied in order as the OCI image spec says: `.wh.<name>` deletes
/// `name` (and what is under it) from lower layers, `.wh..wh..opq` empties its folder of lower layers' entries,
/// hard links copy their target's contents. Paths are relative (`etc/passwd`).
pub fn apply_layers(image: &RegistryImage) -> std::collections::BTreeMap<String, Applied> {
    let mut tree = std::collections::BTreeMap::<String, Applied>::new();
    let under = |path: &str, dir: &str| path == dir || path.starts_with(&format!("{dir}/"));
    for (digest, _, tar) in &image.layers {
        let mut entries = Vec::new();
        let mut archive = tar::Archive::new(tar.as_slice());
        for entry in archive.entries().expect("the layer is a tar") {
            let mut entry = entry.unwrap_or_else(|e| panic!("layer {digest}: {e}"));
            let path = entry
                .path()
                .expect("entry path")
                .to_string_lossy()
                .into_owned();
            let path = path.trim_start_matches("./").trim_matches('/').to_string();
            let header = entry.header().clone();
            let mut body = Vec::new();
            entry.read_to_end(&mut body).expect("entry body");
            let link = entry
                .link_name()
                .ok()
                .flatten()
                .map(|l| l.to_string_lossy().into_owned());
            entries.push((path, header, body, link));
        }
        // whiteouts act on the layers below, before this layer's own entries land
        for (path, ..) in &entries {
            let (parent, name) = path.rsplit_once('/').unwrap_or(("", path.as_str()));
            if name == ".wh..wh..opq" {
                tree.retain(|p, _| !(p.starts_with(&format!("{parent}/")) || parent.is_empty()));
            } else if let Some(hidden) = name.strip_prefix(".wh.") {
                let hidden = if parent.is_empty() {
                    hidden.to_string()
                } else {
                    format!("{parent}/{hidden}")
                };
                tree.retain(|p, _| !under(p, &hidden));
            }
        }
        for (path, header, body, link) in entries {
            let name = path.rsplit('/').next().unwrap_or_default();
            if name.starts_with(".wh.") || path.is_empty() {
                continue;
            }
            let mode = header.mode().unwrap_or(0) & 0o7777;
            let applied = match header.entry_type() {
                tar::EntryType::Directory => Applied::Dir,
                tar::EntryType::Symlink => Applied::Symlink(link.unwrap_or_default()),
                tar::EntryType::Link => {
                    let target = link.unwrap_or_default();
                    let target = target.trim_start_matches("./").trim_start_matches('/');
                    tree.get(target).cloned().unwrap_or_else(|| {
                        panic!("layer {digest}: hard link {path} to missing {target}")
                    })
                }
                _ => Applied::File(body, mode),
            };
            tree.insert(path, applied);
        }
    }
    tree
}
