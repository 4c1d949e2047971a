//! Small images made for the test, put straight into the registry, and the registry's own word on whether a tag
//! points at a complete image.

use berth_core::engine::Credentials;
use berth_core::reference::ImageRef;
use berth_core::ErrorKind;
use berth_registry::{
    bytes_stream, describe_bytes, CredentialResolver, RegistryClient, RegistryOptions, RetryPolicy,
    OCI_MANIFEST,
};
use std::time::Duration;

/// An image with one uncompressed layer holding one file of random bytes, so no engine or registry has its
/// content yet.
pub struct TestImage {
    pub layer: Vec<u8>,
    pub config: Vec<u8>,
    pub manifest: Vec<u8>,
}

impl TestImage {
    pub fn new(size: usize) -> TestImage {
        let mut data = vec![0u8; size];
        data.iter_mut().for_each(|b| *b = fastrand_byte());
        let mut tar = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_cksum();
        tar.append_data(&mut header, "payload", data.as_slice())
            .expect("tar in memory");
        let layer = tar.into_inner().expect("tar in memory");
        let (layer_digest, layer_size) = describe_bytes(&layer);
        let config = serde_json::json!({
            "architecture": arch(),
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        })
        .to_string()
        .into_bytes();
        let (config_digest, config_size) = describe_bytes(&config);
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer_size}],
        })
        .to_string()
        .into_bytes();
        TestImage {
            layer,
            config,
            manifest,
        }
    }

    pub fn manifest_digest(&self) -> String {
        describe_bytes(&self.manifest).0
    }

    /// Uploads the blobs the repository lacks, then the manifest (last, as every pusher must).
    pub async fn push(
        &self,
        client: &RegistryClient,
        image: &ImageRef,
    ) -> berth_core::Result<String> {
        for blob in [&self.layer, &self.config] {
            let (digest, size) = describe_bytes(blob);
            if !client.blob_exists(image, &digest).await? {
                let data = || std::future::ready(Ok(bytes_stream(blob.clone())));
                client.push_blob_from(image, &digest, size, data).await?;
            }
        }
        client
            .put_manifest(image, OCI_MANIFEST, &self.manifest)
            .await
    }
}

fn fastrand_byte() -> u8 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static STATE: AtomicU64 = AtomicU64::new(0);
    if STATE.load(Ordering::Relaxed) == 0 {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            | 1;
        STATE.store(seed ^ u64::from(std::process::id()), Ordering::Relaxed);
    }
    // xorshift: random enough that no two runs share layers
    let mut x = STATE.load(Ordering::Relaxed);
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    STATE.store(x, Ordering::Relaxed);
    (x >> 24) as u8
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// How long berth's clients (registry, dockerd, Podman) wait for a silent answer here: long enough for this busy
/// machine, short enough that every stall trips it quickly.
pub const IDLE: Duration = Duration::from_secs(5);

/// A registry client for `credentials`' registry, with timeouts short enough that a stalled request gives up
/// within seconds, and quick retries.
pub fn client(credentials: Credentials) -> RegistryClient {
    RegistryClient::new(options(credentials)).expect("registry client")
}

/// The options of [`client`], for engines that make their own client.
pub fn options(credentials: Credentials) -> RegistryOptions {
    RegistryOptions {
        credentials: CredentialResolver::with_vars(Default::default())
            .with_credentials(credentials),
        request_timeout: Duration::from_secs(3),
        idle_timeout: IDLE,
        connect_timeout: Duration::from_secs(3),
        retry: RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(50),
            max_delay: Duration::from_secs(2),
        },
        ..RegistryOptions::default()
    }
}

/// What is wrong with `image` in the real registry, if anything: its tag must be absent, or point at
/// `expected` (when given) with every blob present.
pub async fn corruption(
    real: &RegistryClient,
    image: &ImageRef,
    expected: Option<&str>,
) -> Option<String> {
    let manifest = match real.get_manifest(image).await {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return None,
        Err(e) => return Some(format!("cannot read {image} from the registry: {e}")),
    };
    if let Some(expected) = expected.filter(|d| *d != manifest.digest) {
        return Some(format!(
            "{image} points at {}, not the pushed {expected}",
            manifest.digest
        ));
    }
    let value: serde_json::Value = match serde_json::from_slice(&manifest.bytes) {
        Ok(v) => v,
        Err(e) => return Some(format!("{image}: manifest is not JSON: {e}")),
    };
    let mut digests: Vec<String> = value["layers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["digest"].as_str().map(str::to_string))
        .collect();
    digests.extend(value["config"]["digest"].as_str().map(str::to_string));
    for digest in digests {
        match real.blob_exists(image, &digest).await {
            Ok(true) => {}
            Ok(false) => return Some(format!("{image} names {digest}, which the registry lacks")),
            Err(e) => return Some(format!("cannot check {digest} of {image}: {e}")),
        }
    }
    None
}
