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
    ("linux", berth_core::platform::host_arch())
}

/// Whether `media_type` is an index (multi-platform) rather than one image's manifest.
pub(crate) fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST
}

/// The entry of index `index` for the host's platform, read with oci-spec's `ImageIndex` (an entry without its
/// digest or size is an error, not an entry passed over).
pub(crate) fn pick_platform(index: &Value, what: &str, op: Op) -> Result<Descriptor> {
    let (os, arch) = host_platform();
    let typed: oci_spec::image::ImageIndex =
        serde_json::from_value(index.clone()).map_err(|e| {
            error(
                ErrorKind::Protocol,
                op,
                format!("the index of {what} is not a valid image index: {e}"),
            )
        })?;
    berth_layer::oci::for_platform(typed.manifests(), os, arch)
        .map(from_oci)
        .ok_or_else(|| {
            error(
                ErrorKind::NotFound,
                op,
                format!("{what} has no image for {os}/{arch}"),
            )
            .with_hint("use an image built for this machine's platform")
        })
}

/// berth's descriptor from oci-spec's.
fn from_oci(d: &oci_spec::image::Descriptor) -> Descriptor {
    Descriptor {
        media_type: d.media_type().to_string(),
        digest: d.digest().to_string(),
        size: i64::try_from(d.size()).unwrap_or(i64::MAX),
    }
}

/// A manifest's config and layer descriptors, read with oci-spec's types: a descriptor without its media type,
/// a well-formed digest or its size is refused rather than left out (a layer silently dropped from the list
/// gave an image missing that layer, or a count mismatch far from the cause).
pub(crate) fn manifest_parts(
    manifest: &Value,
    what: &str,
    op: Op,
) -> Result<(Descriptor, Vec<Descriptor>)> {
    let typed: oci_spec::image::ImageManifest =
        serde_json::from_value(manifest.clone()).map_err(|e| {
            error(
                ErrorKind::Protocol,
                op,
                format!("the manifest of {what} is not a valid image manifest: {e}"),
            )
        })?;
    Ok((
        from_oci(typed.config()),
        typed.layers().iter().map(from_oci).collect(),
    ))
}

/// An image read from the content store.
#[derive(Debug, Clone)]
pub(crate) struct LocalImage {
    /// The platform manifest.
    pub(crate) manifest: Descriptor,
    /// The layers the manifest names, in order ([`manifest_parts`]).
    pub(crate) layers: Vec<Descriptor>,
    /// The config blob.
    pub(crate) config: Descriptor,
    pub(crate) config_json: Value,
}

impl LocalImage {
    /// The layer descriptors, in order.
    pub(crate) fn layers(&self) -> Vec<Descriptor> {
        self.layers.clone()
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
    let (config, layers) = manifest_parts(&manifest_json, what, op)?;
    let config_json = parse(&daemon.read_all(&config.digest, op).await?, what, op)?;
    Ok(LocalImage {
        manifest,
        layers,
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

    fn manifest(layer: Value) -> Value {
        let hex = |c: &str| c.repeat(64);
        let mut layer = layer;
        layer["digest"] = format!("sha256:{}", hex("b")).into();
        serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "digest": format!("sha256:{}", hex("a")),
                "size": 7,
            },
            "layers": [layer],
        })
    }

    #[test]
    fn a_manifest_gives_its_config_and_layers() {
        let gzip = "application/vnd.docker.image.rootfs.diff.tar.gzip";
        let (config, layers) = manifest_parts(
            &manifest(serde_json::json!({"mediaType": gzip, "size": 42})),
            "x",
            Op::Pull,
        )
        .expect("valid");
        assert_eq!(config.size, 7);
        assert_eq!(layers.len(), 1);
        assert_eq!(layers[0].media_type, gzip);
        assert_eq!(layers[0].size, 42);
        assert_eq!(layers[0].digest, format!("sha256:{}", "b".repeat(64)));
    }

    #[test]
    fn a_layer_without_size_is_refused_not_left_out() {
        let sizeless = manifest(serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
        }));
        let err = manifest_parts(&sizeless, "x", Op::Pull).expect_err("no size");
        assert_eq!(err.kind(), ErrorKind::Protocol, "{err}");
        assert!(err.message().contains("size"), "{err}");
    }

    #[test]
    fn an_index_without_platforms_gives_its_only_manifest() {
        let (os, arch) = host_platform();
        let digest = |c: &str| format!("sha256:{}", c.repeat(64));
        let entry = |c: &str, platform: Option<(&str, &str)>| {
            let mut m = serde_json::json!({
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": digest(c),
                "size": 1,
            });
            if let Some((os, arch)) = platform {
                m["platform"] = serde_json::json!({"os": os, "architecture": arch});
            }
            m
        };
        let pick = |manifests: Vec<Value>| {
            pick_platform(
                &serde_json::json!({ "schemaVersion": 2, "manifests": manifests }),
                "image",
                Op::Push,
            )
            .map(|d| d.digest)
        };
        assert_eq!(pick(vec![entry("a", None)]).expect("only one"), digest("a"));
        assert_eq!(
            pick(vec![
                entry("b", Some(("windows", "arm64"))),
                entry("c", Some((os, arch)))
            ])
            .expect("host"),
            digest("c")
        );
        assert_eq!(
            pick(vec![entry("b", Some(("windows", "arm64")))])
                .map(drop)
                .expect_err("no manifest for this platform")
                .kind(),
            ErrorKind::NotFound
        );
        assert!(pick(vec![entry("a", None), entry("b", None)]).is_err());
        // an entry without its size is refused, not passed over for the next one
        let mut sizeless = entry("d", Some((os, arch)));
        sizeless.as_object_mut().map(|m| m.remove("size"));
        let err = pick(vec![sizeless, entry("c", Some((os, arch)))]).expect_err("no size");
        assert_eq!(err.kind(), ErrorKind::Protocol, "{err}");
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
