//! Blob and manifest primitives against the real registry: an image built here (one layer, a config, a
//! manifest) is pushed, read back by skopeo and by berth, and its blobs mounted into another repository.

mod common;

use berth_core::reference::ImageRef;
use berth_registry::{
    bytes_stream, describe_bytes, sha256_digest, Existence, RegistryClient, RegistryOptions,
    OCI_MANIFEST,
};
use common::{authed_client, env, image, skopeo, unique_repo, Home};

/// A one-file tar archive (ustar), the smallest real layer.
fn tar_with_file(name: &str, content: &[u8]) -> Vec<u8> {
    fn octal(field: &mut [u8], value: u64) {
        let text = format!("{value:0width$o}\0", width = field.len() - 1);
        field.copy_from_slice(text.as_bytes());
    }
    let mut header = [0u8; 512];
    header[..name.len()].copy_from_slice(name.as_bytes());
    octal(&mut header[100..108], 0o644);
    octal(&mut header[108..116], 0);
    octal(&mut header[116..124], 0);
    octal(&mut header[124..136], content.len() as u64);
    octal(&mut header[136..148], 0);
    header[148..156].fill(b' ');
    header[156] = b'0';
    header[257..263].copy_from_slice(b"ustar\0");
    header[263..265].copy_from_slice(b"00");
    let sum: u64 = header.iter().map(|b| u64::from(*b)).sum();
    header[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    let mut tar = header.to_vec();
    tar.extend_from_slice(content);
    tar.resize(tar.len().div_ceil(512) * 512, 0);
    tar.extend_from_slice(&[0u8; 1024]);
    tar
}

struct TestImage {
    layer: Vec<u8>,
    config: Vec<u8>,
    manifest: Vec<u8>,
}

fn build_image() -> TestImage {
    let nonce = unique_repo("nonce");
    let layer = tar_with_file(
        "hello.txt",
        format!("hello from berth {nonce}\n").as_bytes(),
    );
    let (layer_digest, layer_size) = describe_bytes(&layer);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/hello.txt"]},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    }))
    .expect("config json");
    let (config_digest, config_size) = describe_bytes(&config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer_size}],
    }))
    .expect("manifest json");
    TestImage {
        layer,
        config,
        manifest,
    }
}

async fn push(client: &RegistryClient, target: &ImageRef, blob: &[u8]) {
    let (digest, size) = describe_bytes(blob);
    client
        .push_blob(target, &digest, size, bytes_stream(blob.to_vec()))
        .await
        .unwrap_or_else(|e| panic!("push blob {digest}: {e}"));
}

#[tokio::test]
async fn a_pushed_image_reads_back_through_skopeo_and_berth() {
    let Some(env) = env() else {
        return;
    };
    let home = Home::new();
    let client = authed_client(&home);
    // a second client that uploads in 700-byte chunks: the 2 KiB layer goes as PATCH, PATCH, PUT
    let chunked = RegistryClient::new(RegistryOptions {
        credentials: home.resolver(&[]).with_credentials(env.credentials()),
        chunk_size: Some(700),
        ..RegistryOptions::default()
    })
    .expect("client");
    let target = image(&format!("{}/{}:v1", env.registry, unique_repo("push")));
    let img = build_image();
    let (layer_digest, _) = describe_bytes(&img.layer);
    let (config_digest, _) = describe_bytes(&img.config);

    assert!(!client
        .blob_exists(&target, &layer_digest)
        .await
        .expect("check blob"));
    push(&chunked, &target, &img.layer).await;
    push(&client, &target, &img.config).await;
    assert!(client
        .blob_exists(&target, &layer_digest)
        .await
        .expect("check blob"));
    assert!(client
        .blob_exists(&target, &config_digest)
        .await
        .expect("check blob"));

    let digest = client
        .put_manifest(&target, OCI_MANIFEST, &img.manifest)
        .await
        .expect("put manifest");
    assert_eq!(digest, sha256_digest(&img.manifest));

    // skopeo, independent of berth, sees the image
    let creds = env.creds_arg();
    let docker_ref = format!("docker://{target}");
    let base = ["inspect", "--tls-verify=false", "--creds", creds.as_str()];
    let raw = skopeo(&[&base[..], &["--raw", &docker_ref]].concat());
    assert_eq!(raw.as_bytes(), img.manifest.as_slice());
    let inspected = skopeo(
        &[
            &base[..],
            &["--format", "{{.Digest}} {{.Layers}}", &docker_ref],
        ]
        .concat(),
    );
    assert_eq!(inspected, format!("{digest} [{layer_digest}]"));

    // and so does berth
    let found = client.exists(&target).await;
    assert_eq!(found.digest(), Some(digest.as_str()), "{found:?}");
    let manifest = client.get_manifest(&target).await.expect("get manifest");
    assert_eq!(
        (
            manifest.media_type.as_str(),
            manifest.digest.as_str(),
            &manifest.bytes[..]
        ),
        (OCI_MANIFEST, digest.as_str(), img.manifest.as_slice())
    );
    let by_digest = client
        .get_manifest(&target.with_digest(&digest))
        .await
        .expect("get manifest by digest");
    assert_eq!(by_digest.bytes, manifest.bytes);
    let layer = client
        .get_blob(&target, &layer_digest)
        .await
        .expect("get blob");
    assert_eq!(layer.size(), Some(img.layer.len() as u64));
    assert_eq!(layer.into_bytes().await.expect("read blob"), img.layer);
}

#[tokio::test]
async fn blobs_mount_across_repositories() {
    let Some(env) = env() else {
        return;
    };
    let home = Home::new();
    let client = authed_client(&home);
    let source = image(&format!(
        "{}/{}:v1",
        env.registry,
        unique_repo("mount-from")
    ));
    let img = build_image();
    push(&client, &source, &img.layer).await;
    push(&client, &source, &img.config).await;
    client
        .put_manifest(&source, OCI_MANIFEST, &img.manifest)
        .await
        .expect("put manifest");

    let target = image(&format!("{}/{}:v1", env.registry, unique_repo("mount-to")));
    for blob in [&img.layer, &img.config] {
        let (digest, _) = describe_bytes(blob);
        assert!(!client
            .blob_exists(&target, &digest)
            .await
            .expect("check blob"));
        let mounted = client
            .mount_blob(&target, &source.repository, &digest)
            .await
            .expect("mount");
        assert!(mounted, "{digest} should mount from {}", source.repository);
        assert!(client
            .blob_exists(&target, &digest)
            .await
            .expect("check blob"));
    }
    let digest = client
        .put_manifest(&target, OCI_MANIFEST, &img.manifest)
        .await
        .expect("manifest over mounted blobs");
    assert!(
        matches!(client.exists(&target).await, Existence::Present { digest: d } if d == digest)
    );

    // a blob the source does not have is not mounted; the caller uploads it instead
    let (unknown, _) = describe_bytes(unique_repo("no-such-blob").as_bytes());
    let mounted = client
        .mount_blob(&target, &source.repository, &unknown)
        .await
        .expect("mount answer");
    assert!(!mounted);
}
