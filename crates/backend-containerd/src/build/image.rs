//! Writing the built image: the config blob (with the snapshot it keeps alive), an OCI manifest naming the
//! layers, and an image record per tag.

use std::collections::HashMap;

use berth_core::engine::BuiltImage;
use berth_core::{ErrorKind, Result};
use berth_registry::OCI_MANIFEST;
use serde_json::json;

use super::Builder;
use crate::convert::{BlobStream, Descriptor};
use crate::errors::{error, Op};
use crate::labels::{self, sha256};
use crate::pull::{write, Pulled};
use berth_core::image_config::ImageConfig;

/// OCI image config media type.
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

/// Writes config and manifest and points every name at the manifest.
pub(super) async fn finish(
    builder: &Builder<'_>,
    base: &Pulled,
    config: &ImageConfig,
    layers: &[(Descriptor, String)],
    top: Option<&str>,
    created: &str,
    names: &[String],
) -> Result<BuiltImage> {
    let daemon = &builder.daemon;
    let diff_ids: Vec<String> = layers.iter().map(|(_, d)| d.clone()).collect();
    let config_bytes =
        serde_json::to_vec(&config.to_blob(&base.image.config_json, &diff_ids, created)).map_err(
            |e| {
                error(
                    ErrorKind::Protocol,
                    Op::Build,
                    format!("cannot write the image config: {e}"),
                )
            },
        )?;
    let config_blob = Descriptor {
        media_type: OCI_CONFIG.to_string(),
        digest: sha256(&config_bytes),
        size: config_bytes.len() as i64,
    };
    let mut config_labels = HashMap::new();
    if let Some(top) = top {
        config_labels.insert(labels::snapshot_ref(&daemon.snapshotter), top.to_string());
    }
    write(
        daemon,
        builder.guard,
        &config_blob,
        config_labels,
        bytes_stream(config_bytes),
        Op::Build,
    )
    .await?;

    let json_descriptor =
        |d: &Descriptor| json!({"mediaType": d.media_type, "digest": d.digest, "size": d.size});
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": json_descriptor(&config_blob),
        "layers": layers.iter().map(|(d, _)| json_descriptor(d)).collect::<Vec<_>>(),
    });
    let manifest_bytes = serde_json::to_vec(&manifest).map_err(|e| {
        error(
            ErrorKind::Protocol,
            Op::Build,
            format!("cannot write the manifest: {e}"),
        )
    })?;
    let manifest_blob = Descriptor {
        media_type: OCI_MANIFEST.to_string(),
        digest: sha256(&manifest_bytes),
        size: manifest_bytes.len() as i64,
    };
    let mut manifest_labels =
        HashMap::from([(labels::REF_CONFIG.to_string(), config_blob.digest.clone())]);
    for (i, (layer, _)) in layers.iter().enumerate() {
        manifest_labels.insert(
            format!("{}.l.{i}", labels::REF_CONTENT),
            layer.digest.clone(),
        );
    }
    write(
        daemon,
        builder.guard,
        &manifest_blob,
        manifest_labels,
        bytes_stream(manifest_bytes),
        Op::Build,
    )
    .await?;
    for name in names {
        daemon
            .put_image(name, &manifest_blob, HashMap::new(), Op::Build)
            .await?;
    }
    Ok(BuiltImage {
        id: config_blob.digest,
    })
}

fn bytes_stream(bytes: Vec<u8>) -> BlobStream {
    Box::pin(futures_util::stream::iter([Ok(bytes::Bytes::from(bytes))]))
}

/// The OCI media type of a layer blob (Docker's gzip layers are the same bytes under another name).
pub(super) fn oci_layer_type(media_type: &str) -> String {
    match media_type {
        "application/vnd.docker.image.rootfs.diff.tar.gzip" => {
            "application/vnd.oci.image.layer.v1.tar+gzip"
        }
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => {
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        }
        other => other,
    }
    .to_string()
}
