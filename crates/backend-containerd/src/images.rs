//! Local images: names, reading a record's manifest and config from the content store, and inspect, tag and
//! remove over the images service.

use berth_core::engine::{ImageDetails, RemoveOptions};
use berth_core::reference::ImageRef;
use berth_core::{ErrorKind, Result};
use berth_registry::{DOCKER_MANIFEST_LIST, OCI_INDEX};
use serde_json::Value;

use crate::convert::{Daemon, Descriptor};
use crate::errors::{error, Op};
use crate::ContainerdEngine;

/// The name containerd stores `reference` under: fully qualified, with `:latest` when no tag or digest is given
/// (what `ctr` and `nerdctl` show).
pub(crate) fn image_name(reference: &str, op: Op) -> Result<String> {
    let image = ImageRef::parse(reference)
        .map_err(|e| e.with_engine(crate::ENGINE).with_operation(op.as_str()))?;
    let mut name = image.to_string();
    if image.tag.is_none() && image.digest.is_none() {
        name.push_str(":latest");
    }
    Ok(name)
}

/// The host's platform as OCI names it.
pub(crate) fn host_platform() -> (&'static str, &'static str) {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        other => other,
    };
    ("linux", arch)
}

/// Whether `media_type` is an index (multi-platform) rather than one image's manifest.
pub(crate) fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST
}

/// The entry of index `index` for the host's platform.
pub(crate) fn pick_platform(index: &Value, what: &str, op: Op) -> Result<Descriptor> {
    let (os, arch) = host_platform();
    let manifests = index["manifests"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    manifests
        .iter()
        .find(|m| m["platform"]["os"] == os && m["platform"]["architecture"] == arch)
        // an index that names no platforms (an OCI layout from `skopeo copy ... oci:`, `ctr import`) holds the
        // image of whoever wrote it: its only manifest is taken, as containerd's own matcher does
        .or_else(|| match manifests {
            [only] if only.get("platform").is_none() => Some(only),
            _ => None,
        })
        .and_then(descriptor)
        .ok_or_else(|| {
            error(
                ErrorKind::NotFound,
                op,
                format!("{what} has no image for {os}/{arch}"),
            )
            .with_hint("use an image built for this machine's platform")
        })
}

/// A descriptor from its JSON form.
pub(crate) fn descriptor(value: &Value) -> Option<Descriptor> {
    Some(Descriptor {
        media_type: value["mediaType"].as_str().unwrap_or_default().to_string(),
        digest: value["digest"].as_str()?.to_string(),
        size: value["size"].as_i64()?,
    })
}

/// An image read from the content store.
#[derive(Debug, Clone)]
pub(crate) struct LocalImage {
    /// The platform manifest.
    pub(crate) manifest: Descriptor,
    pub(crate) manifest_json: Value,
    /// The config blob.
    pub(crate) config: Descriptor,
    pub(crate) config_json: Value,
}

impl LocalImage {
    /// The layer descriptors, in order.
    pub(crate) fn layers(&self) -> Vec<Descriptor> {
        self.manifest_json["layers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(descriptor)
            .collect()
    }

    /// The uncompressed digests of the layers, from the config.
    pub(crate) fn diff_ids(&self) -> Vec<String> {
        strings(&self.config_json["rootfs"]["diff_ids"])
    }
}

/// A JSON array of strings (anything else reads as empty).
pub(crate) use berth_core::image_config::strings;

fn parse(bytes: &[u8], what: &str, op: Op) -> Result<Value> {
    serde_json::from_slice(bytes).map_err(|e| {
        error(
            ErrorKind::Protocol,
            op,
            format!("{what} in the content store is not JSON: {e}"),
        )
    })
}

/// Reads the image `target` points at (choosing the host's platform in an index).
pub(crate) async fn load(
    daemon: &Daemon,
    target: &Descriptor,
    what: &str,
    op: Op,
) -> Result<LocalImage> {
    let mut manifest = target.clone();
    let mut manifest_json = parse(&daemon.read_all(&target.digest, op).await?, what, op)?;
    if is_index(&target.media_type) || manifest_json.get("manifests").is_some() {
        manifest = pick_platform(&manifest_json, what, op)?;
        manifest_json = parse(&daemon.read_all(&manifest.digest, op).await?, what, op)?;
    }
    let config = descriptor(&manifest_json["config"]).ok_or_else(|| {
        error(
            ErrorKind::Protocol,
            op,
            format!("the manifest of {what} names no config"),
        )
    })?;
    let config_json = parse(&daemon.read_all(&config.digest, op).await?, what, op)?;
    Ok(LocalImage {
        manifest,
        manifest_json,
        config,
        config_json,
    })
}

pub(crate) fn not_found(engine: &ContainerdEngine, name: &str, op: Op) -> berth_core::Error {
    error(
        ErrorKind::NotFound,
        op,
        format!(
            "no image {name} in containerd namespace `{}`",
            engine.namespace()
        ),
    )
    .with_hint("build or pull it first (`ctr -n <namespace> images ls` lists what is there)")
}

pub(crate) async fn inspect(engine: &ContainerdEngine, reference: &str) -> Result<ImageDetails> {
    let op = Op::Inspect;
    let name = image_name(reference, op)?;
    let record = engine
        .daemon
        .get_image(&name, op)
        .await?
        .ok_or_else(|| not_found(engine, &name, op))?;
    let image = load(&engine.daemon, &record.target, &name, op).await?;
    let config = &image.config_json["config"];
    Ok(ImageDetails {
        id: image.config.digest.clone(),
        tags: engine
            .daemon
            .image_names_for(&record.target.digest, op)
            .await?,
        env: strings(&config["Env"]),
        entrypoint: strings(&config["Entrypoint"]),
        workdir: config["WorkingDir"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        user: config["User"].as_str().unwrap_or_default().to_string(),
        layers: image.diff_ids(),
    })
}

pub(crate) async fn tag(engine: &ContainerdEngine, source: &str, target: &str) -> Result<()> {
    let op = Op::Tag;
    let source_name = image_name(source, op)?;
    let target_name = image_name(target, op)?;
    let record = engine
        .daemon
        .get_image(&source_name, op)
        .await?
        .ok_or_else(|| not_found(engine, &source_name, op))?;
    engine
        .daemon
        .put_image(&target_name, &record.target, record.labels, op)
        .await
}

pub(crate) async fn remove(
    engine: &ContainerdEngine,
    reference: &str,
    _options: RemoveOptions,
) -> Result<()> {
    // containerd's records are names only: nothing else refers to one, so `force` changes nothing.
    let op = Op::Remove;
    let name = image_name(reference, op)?;
    if engine.daemon.delete_image(&name, op).await? {
        Ok(())
    } else {
        Err(not_found(engine, &name, op))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_index_without_platforms_gives_its_only_manifest() {
        let (os, arch) = host_platform();
        let entry = |digest: &str, platform: Option<(&str, &str)>| {
            let mut m = serde_json::json!({
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": digest,
                "size": 1,
            });
            if let Some((os, arch)) = platform {
                m["platform"] = serde_json::json!({"os": os, "architecture": arch});
            }
            m
        };
        let pick = |manifests: Vec<Value>| {
            pick_platform(
                &serde_json::json!({ "manifests": manifests }),
                "image",
                Op::Push,
            )
            .map(|d| d.digest)
        };
        assert_eq!(
            pick(vec![entry("sha256:a", None)]).expect("only one"),
            "sha256:a"
        );
        assert_eq!(
            pick(vec![
                entry("sha256:x", Some(("windows", "arm64"))),
                entry("sha256:h", Some((os, arch)))
            ])
            .expect("host"),
            "sha256:h"
        );
        assert_eq!(
            pick(vec![entry("sha256:x", Some(("windows", "arm64")))])
                .map(drop)
                .expect_err("no manifest for this platform")
                .kind(),
            ErrorKind::NotFound
        );
        assert!(pick(vec![entry("sha256:a", None), entry("sha256:b", None)]).is_err());
    }

    #[test]
    fn names_are_qualified_with_a_tag() {
        assert_eq!(
            image_name("busybox", Op::Inspect).ok().as_deref(),
            Some("docker.io/library/busybox:latest")
        );
        assert_eq!(
            image_name("127.0.0.1:5000/a/b:v1", Op::Inspect)
                .ok()
                .as_deref(),
            Some("127.0.0.1:5000/a/b:v1")
        );
    }
}
