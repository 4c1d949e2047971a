//! A push from an engine's storage against the real registry: a containers-storage folder laid out as
//! Podman's overlay driver keeps it (images.json, layers.json, the tar-split record, the diff folder, lock
//! files) pushes to the same manifest digest as the same image's docker-archive export, twice, and a layer
//! whose files changed is a `read storage` error that names no image in the registry, though the layers
//! beside it upload at the same time; a layer that cannot be read yet does not hold back the next one.

mod common;

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use berth_core::engine::{ImageStore, NoProgress, Progress, ProgressEvent};
use berth_registry::{describe_bytes, LocalImage, READ_STORAGE};
use common::{authed_client, env, image, unique_repo, Home};

/// The file a layer holds: `n` is the place in the image of the first layer with the same content, so that
/// layers of one content are one layer (one diff id), as empty layers are.
fn file(n: usize) -> String {
    format!("etc/hello-{n}.txt")
}

/// A containers-storage graph root holding an image of one layer per `contents` (base first), each one file.
struct Store {
    root: tempfile::TempDir,
    local: LocalImage,
    /// Each layer's tar, in the image's order.
    layers: Vec<Vec<u8>>,
    config: Vec<u8>,
    /// Each layer's storage id (its record's name).
    ids: Vec<String>,
    /// Each layer's one file.
    files: Vec<PathBuf>,
}

impl Store {
    fn new(contents: &[&[u8]]) -> Store {
        let root = tempfile::tempdir().expect("store");
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let hex = |d: &str| d.trim_start_matches("sha256:").to_string();
        let layers_dir = root.path().join("overlay-layers");
        let images_dir = root.path().join("overlay-images");
        let (mut layers, mut diff_ids, mut ids, mut entries) = (vec![], vec![], vec![], vec![]);
        let mut files = Vec::new();
        for (n, content) in contents.iter().enumerate() {
            let name = file(contents.iter().position(|c| c == content).unwrap_or(n));
            let mut builder = tar::Builder::new(Vec::new());
            let mut header = tar::Header::new_gnu();
            header.set_size(content.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder
                .append_data(&mut header, &name, *content)
                .expect("tar entry");
            let layer = builder.into_inner().expect("tar");
            let (diff_id, _) = describe_bytes(&layer);
            // a layer's id is its place and content, as a chain id would be: one diff id may come twice
            let (id, _) = describe_bytes(format!("{n} {diff_id}").as_bytes());
            let id = hex(&id);
            let data_at = 512usize; // one header, then the file's bytes
            let after = data_at + content.len();
            let record = format!(
                "{{\"type\":2,\"payload\":\"{}\",\"position\":0}}\n\
                 {{\"type\":1,\"name\":\"{}\",\"size\":{},\"payload\":null,\"position\":1}}\n\
                 {{\"type\":2,\"payload\":\"{}\",\"position\":2}}\n",
                b64(&layer[..data_at]),
                name,
                content.len(),
                b64(&layer[after..])
            );
            let diff = root.path().join("overlay").join(&id).join("diff/etc");
            std::fs::create_dir_all(&diff).expect("store folder");
            files.push(diff.parent().expect("diff folder").join(&name));
            std::fs::create_dir_all(&layers_dir).expect("store folder");
            std::fs::write(diff.parent().expect("diff folder").join(&name), content)
                .expect("layer file");
            std::fs::write(layers_dir.join(format!("{id}.tar-split.gz")), gzip(&record))
                .expect("record");
            let parent = ids.last().cloned().unwrap_or_default();
            entries.push(serde_json::json!({"id": id, "parent": parent, "diff-digest": diff_id}));
            layers.push(layer);
            diff_ids.push(diff_id);
            ids.push(id);
        }
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Cmd": ["/bin/true"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }))
        .expect("config");
        let (image_id, _) = describe_bytes(&config);
        let image_hex = hex(&image_id);
        std::fs::create_dir_all(images_dir.join(&image_hex)).expect("store folder");
        std::fs::write(
            layers_dir.join("layers.json"),
            serde_json::to_vec(&entries).expect("layers.json"),
        )
        .expect("layers.json");
        let top = ids.last().cloned().unwrap_or_default();
        std::fs::write(
            images_dir.join("images.json"),
            serde_json::to_vec(&serde_json::json!([{"id": image_hex, "layer": top}]))
                .expect("images.json"),
        )
        .expect("images.json");
        let key = b64(image_id.as_bytes());
        std::fs::write(images_dir.join(&image_hex).join(format!("={key}")), &config)
            .expect("config");
        for lock in [
            layers_dir.join("layers.lock"),
            images_dir.join("images.lock"),
        ] {
            std::fs::write(lock, b"").expect("lock file");
        }
        let local = LocalImage {
            id: image_id,
            diff_ids,
        };
        Store {
            root,
            local,
            layers,
            config,
            ids,
            files,
        }
    }

    fn store(&self) -> ImageStore {
        ImageStore::ContainersStorage {
            root: self.root.path().to_path_buf(),
            driver: "overlay".into(),
        }
    }

    /// Layer `n`'s file.
    fn file(&self, n: usize) -> &Path {
        &self.files[n]
    }

    /// Layer `n`'s tar-split record.
    fn record(&self, n: usize) -> PathBuf {
        self.root
            .path()
            .join("overlay-layers")
            .join(format!("{}.tar-split.gz", self.ids[n]))
    }

    /// The same image as Podman's docker-archive export streams it (each distinct layer once).
    fn archive(&self) -> Vec<u8> {
        let hex = |d: &str| d.trim_start_matches("sha256:").to_string();
        let mut builder = tar::Builder::new(Vec::new());
        let mut add = |name: String, data: &[u8]| {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder.append_data(&mut header, name, data).expect("entry");
        };
        let mut seen = std::collections::HashSet::new();
        for (diff_id, layer) in self.local.diff_ids.iter().zip(&self.layers) {
            if seen.insert(diff_id) {
                add(format!("{}.tar", hex(diff_id)), layer);
            }
        }
        add(format!("{}.json", hex(&self.local.id)), &self.config);
        builder.into_inner().expect("archive")
    }
}

fn gzip(text: &str) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(text.as_bytes()).expect("record");
    gz.finish().expect("record")
}

#[tokio::test]
async fn the_store_pushes_the_exports_manifest_and_a_changed_layer_names_nothing() {
    let Some(env) = env() else {
        return;
    };
    let home = Home::new();
    let client = authed_client(&home);
    let base = format!("hello from {}\n", unique_repo("store"));
    let middle = "a middle layer\n".repeat(1000);
    // the base comes twice, as an image naming one empty layer twice does: uploaded once, named twice
    let image_store = Store::new(&[base.as_bytes(), middle.as_bytes(), base.as_bytes()]);
    let (local, store) = (&image_store.local, image_store.store());
    assert_eq!(local.diff_ids[0], local.diff_ids[2]);

    let stored_target = image(&format!("{}/{}:v1", env.registry, unique_repo("stored")));
    let from_store = client
        .push_stored(&stored_target, local, None, 2, &store, &NoProgress)
        .await
        .expect("push from the store");
    let again = image(&format!("{}/{}:v1", env.registry, unique_repo("stored")));
    let from_store_again = client
        .push_stored(&again, local, None, 2, &store, &NoProgress)
        .await
        .expect("push from the store again");
    assert_eq!(
        from_store, from_store_again,
        "one image, one manifest digest"
    );
    let exported_target = image(&format!("{}/{}:v1", env.registry, unique_repo("exported")));
    let bytes = bytes::Bytes::from(image_store.archive());
    let from_export = client
        .push_exported(
            &exported_target,
            local,
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
            local,
            None,
            2,
            &ImageStore::Docker {
                root: image_store.root.path().to_path_buf(),
                driver: "overlay2".into(),
            },
            &NoProgress,
        )
        .await
        .expect_err("not a Docker root");
    assert_eq!(wrong.operation(), Some(READ_STORAGE), "{wrong}");

    // same size, other bytes: only the diff id check can tell; the layers beside it upload meanwhile, and the
    // error is the changed layer's, not the "stopped" of the others
    let changed = "X".repeat(middle.len());
    std::fs::write(image_store.file(1), changed).expect("change the layer");
    let failed = client
        .push_stored(&other, local, None, 2, &store, &NoProgress)
        .await
        .expect_err("a changed layer does not push");
    assert_eq!(failed.operation(), Some(READ_STORAGE), "{failed}");
    assert!(failed.message().contains("reads as"), "{failed}");
    assert!(
        client.get_manifest(&other).await.is_err(),
        "no manifest names the image"
    );
    std::fs::remove_file(image_store.file(1)).expect("remove a layer file");
    let missing = client
        .push_stored(&other, local, None, 2, &store, &NoProgress)
        .await
        .expect_err("a missing file does not push");
    assert_eq!(missing.operation(), Some(READ_STORAGE), "{missing}");
    assert!(
        client.get_manifest(&other).await.is_err(),
        "no manifest names the image"
    );
}

/// Says when a layer has sent its first bytes.
struct Started {
    layer: String,
    tx: std::sync::Mutex<Option<std::sync::mpsc::Sender<()>>>,
}

impl Progress for Started {
    fn event(&self, event: ProgressEvent) {
        if matches!(&event, ProgressEvent::Transfer { id, .. } if *id == self.layer) {
            if let Some(tx) = self.tx.lock().expect("test setup").take() {
                let _ = tx.send(());
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layer_uploads_while_the_one_before_it_cannot_be_read_yet() {
    let Some(env) = env() else {
        return;
    };
    let home = Home::new();
    let client = authed_client(&home);
    let first = format!("first layer of {}\n", unique_repo("store"));
    let image_store = Store::new(&[first.as_bytes(), b"second layer\n"]);
    let local = &image_store.local;
    // the base layer's record becomes a pipe: reading it waits until the test writes it
    let record = image_store.record(0);
    let written = std::fs::read(&record).expect("record");
    std::fs::remove_file(&record).expect("record");
    let made = std::process::Command::new("mkfifo")
        .arg(&record)
        .status()
        .expect("mkfifo");
    assert!(made.success(), "mkfifo {}", record.display());
    let (tx, rx) = std::sync::mpsc::channel();
    let progress = Started {
        layer: local.diff_ids[1].clone(),
        tx: std::sync::Mutex::new(Some(tx)),
    };
    let writer = std::thread::spawn(move || {
        // only a push that never starts the second layer waits this out (one layer at a time would wait
        // forever on the first); the record is written either way, so the push ends
        let second_started = rx.recv_timeout(std::time::Duration::from_secs(120)).is_ok();
        std::fs::write(&record, written).expect("write the pipe");
        second_started
    });
    let target = image(&format!("{}/{}:v1", env.registry, unique_repo("stored")));
    let pushed = client
        .push_stored(&target, local, None, 2, &image_store.store(), &progress)
        .await;
    // a push that ended before reading the pipe leaves its writer waiting for a reader: this one lets it go
    let _reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(image_store.record(0));
    let second_started = writer.join().expect("the pipe's writer");
    let digest = pushed.expect("push from the store");
    assert!(
        second_started,
        "the second layer started only once the first could be read"
    );
    client
        .get_manifest(&target)
        .await
        .expect("the manifest names the image");
    assert!(digest.starts_with("sha256:"), "{digest}");
}
