//! A push from an engine's storage against the real registry: a containers-storage folder laid out as
//! Podman's overlay driver keeps it (images.json, layers.json, the tar-split record, the diff folder, lock
//! files) pushes to the same manifest digest as the same image's docker-archive export, and a layer whose
//! files changed is a `read storage` error that names no image in the registry.

mod common;

use std::io::Write as _;
use std::path::Path;

use base64::Engine as _;
use berth_core::engine::{ImageStore, NoProgress};
use berth_registry::{describe_bytes, LocalImage, READ_STORAGE};
use common::{authed_client, env, image, unique_repo, Home};

const FILE: &str = "etc/hello.txt";

/// A one-layer image written into a containers-storage graph root under `root`; returns the local image.
fn write_store(root: &Path, content: &[u8]) -> (LocalImage, Vec<u8>, Vec<u8>) {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(content.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    builder
        .append_data(&mut header, FILE, content)
        .expect("tar entry");
    let layer = builder.into_inner().expect("tar");
    let (diff_id, _) = describe_bytes(&layer);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/true"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }))
    .expect("config");
    let (id, _) = describe_bytes(&config);
    let hex = |d: &str| d.trim_start_matches("sha256:").to_string();
    let layer_id = hex(&diff_id);
    let image_id = hex(&id);

    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let data_at = 512usize; // one header, then the file's bytes
    let after = data_at + content.len();
    let record = format!(
        "{{\"type\":2,\"payload\":\"{}\",\"position\":0}}\n\
         {{\"type\":1,\"name\":\"{FILE}\",\"size\":{},\"payload\":null,\"position\":1}}\n\
         {{\"type\":2,\"payload\":\"{}\",\"position\":2}}\n",
        b64(&layer[..data_at]),
        content.len(),
        b64(&layer[after..])
    );
    let layers = root.join("overlay-layers");
    let images = root.join("overlay-images");
    let diff = root.join("overlay").join(&layer_id).join("diff/etc");
    for dir in [&layers, &images.join(&image_id), &diff] {
        std::fs::create_dir_all(dir).expect("store folder");
    }
    std::fs::write(diff.join("hello.txt"), content).expect("layer file");
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(layers.join(format!("{layer_id}.tar-split.gz"))).expect("record"),
        flate2::Compression::fast(),
    );
    gz.write_all(record.as_bytes()).expect("record");
    gz.finish().expect("record");
    std::fs::write(
        layers.join("layers.json"),
        serde_json::to_vec(&serde_json::json!([{"id": layer_id, "diff-digest": diff_id}]))
            .expect("layers.json"),
    )
    .expect("layers.json");
    std::fs::write(
        images.join("images.json"),
        serde_json::to_vec(&serde_json::json!([{"id": image_id, "layer": layer_id}]))
            .expect("images.json"),
    )
    .expect("images.json");
    let key = b64(format!("sha256:{image_id}").as_bytes());
    std::fs::write(images.join(&image_id).join(format!("={key}")), &config).expect("config");
    for lock in [layers.join("layers.lock"), images.join("images.lock")] {
        std::fs::write(lock, b"").expect("lock file");
    }
    let local = LocalImage {
        id,
        diff_ids: vec![diff_id],
    };
    (local, layer, config)
}

/// The same image as Podman's docker-archive export streams it.
fn archive(local: &LocalImage, layer: &[u8], config: &[u8]) -> Vec<u8> {
    let hex = |d: &str| d.trim_start_matches("sha256:").to_string();
    let mut builder = tar::Builder::new(Vec::new());
    let mut add = |name: String, data: &[u8]| {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, name, data).expect("entry");
    };
    add(format!("{}.tar", hex(&local.diff_ids[0])), layer);
    add(format!("{}.json", hex(&local.id)), config);
    builder.into_inner().expect("archive")
}

#[tokio::test]
async fn the_store_pushes_the_exports_manifest_and_a_changed_layer_names_nothing() {
    let Some(env) = env() else {
        return;
    };
    let home = Home::new();
    let client = authed_client(&home);
    let root = tempfile::tempdir().expect("store");
    let content = format!("hello from {}\n", unique_repo("store"));
    let (local, layer, config) = write_store(root.path(), content.as_bytes());
    let store = ImageStore::ContainersStorage {
        root: root.path().to_path_buf(),
        driver: "overlay".into(),
    };

    let stored_target = image(&format!("{}/{}:v1", env.registry, unique_repo("stored")));
    let from_store = client
        .push_stored(&stored_target, &local, None, 2, &store, &NoProgress)
        .await
        .expect("push from the store");
    let exported_target = image(&format!("{}/{}:v1", env.registry, unique_repo("exported")));
    let bytes = bytes::Bytes::from(archive(&local, &layer, &config));
    let from_export = client
        .push_exported(
            &exported_target,
            &local,
            None,
            2,
            || async move {
                let stream: berth_core::engine::ExportStream =
                    Box::pin(futures_util::stream::iter([Ok(bytes)]));
                Ok(stream)
            },
            &NoProgress,
        )
        .await
        .expect("push from the export");
    assert_eq!(from_store, from_export, "one image, one manifest digest");

    let other = image(&format!("{}/{}:v1", env.registry, unique_repo("stored")));
    let wrong = client
        .push_stored(
            &other,
            &local,
            None,
            2,
            &ImageStore::Docker {
                root: root.path().to_path_buf(),
                driver: "overlay2".into(),
            },
            &NoProgress,
        )
        .await
        .expect_err("not a Docker root");
    assert_eq!(wrong.operation(), Some(READ_STORAGE), "{wrong}");

    // same size, other bytes: only the diff id check can tell
    let changed = "X".repeat(content.len());
    let hex = local.diff_ids[0].trim_start_matches("sha256:");
    std::fs::write(
        root.path()
            .join("overlay")
            .join(hex)
            .join("diff")
            .join(FILE),
        changed,
    )
    .expect("change the layer");
    let failed = client
        .push_stored(&other, &local, None, 2, &store, &NoProgress)
        .await
        .expect_err("a changed layer does not push");
    assert_eq!(failed.operation(), Some(READ_STORAGE), "{failed}");
    assert!(failed.message().contains("reads as"), "{failed}");
    assert!(
        client.get_manifest(&other).await.is_err(),
        "no manifest names the image"
    );
    std::fs::remove_file(
        root.path()
            .join("overlay")
            .join(hex)
            .join("diff")
            .join(FILE),
    )
    .expect("remove a layer file");
    let missing = client
        .push_stored(&other, &local, None, 2, &store, &NoProgress)
        .await
        .expect_err("a missing file does not push");
    assert_eq!(missing.operation(), Some(READ_STORAGE), "{missing}");
}
