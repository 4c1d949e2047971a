//! Reading an engine's export stream: a blocking reader over the async stream, and what each tar entry is.
//!
//! Three layouts arrive: dockerd 20.10's `docker save` (`<v1 id>/layer.tar`, `<config hex>.json`,
//! `manifest.json` last), Podman's `docker-archive` (`<diff id hex>.tar`, the config, then the same legacy
//! folders as symlinks) and the OCI layout newer dockerd writes (`blobs/sha256/<hex>` for layers and config).

use std::collections::HashSet;
use std::io::Read;

use berth_core::engine::ExportStream;
use berth_core::{Error, Result};
use bytes::Bytes;
use futures_util::StreamExt as _;

/// A blocking [`Read`] over an export stream, which a task feeds through a small channel (a few of the
/// engine's chunks at most are held).
pub(crate) struct StreamReader {
    chunks: tokio::sync::mpsc::Receiver<Result<Bytes>>,
    current: Bytes,
}

impl StreamReader {
    /// Starts reading `stream` on the current runtime.
    pub(crate) fn spawn(mut stream: ExportStream) -> Self {
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        tokio::spawn(async move {
            while let Some(item) = stream.next().await {
                let failed = item.is_err();
                if tx.send(item).await.is_err() || failed {
                    return;
                }
            }
        });
        StreamReader {
            chunks: rx,
            current: Bytes::new(),
        }
    }
}

impl Read for StreamReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.chunks.blocking_recv() {
                None => return Ok(0),
                Some(Ok(chunk)) => self.current = chunk,
                // the engine's error travels inside the I/O error, to be taken out by `engine_error`
                Some(Err(e)) => return Err(std::io::Error::other(e)),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// The engine's error inside an I/O error from [`StreamReader`], if that is what it holds.
pub(crate) fn engine_error(e: std::io::Error) -> std::result::Result<Error, std::io::Error> {
    if e.get_ref().is_some_and(|inner| inner.is::<Error>()) {
        if let Some(inner) = e.into_inner() {
            return inner
                .downcast::<Error>()
                .map(|b| *b)
                .map_err(std::io::Error::other);
        }
        return Err(std::io::Error::other("export failed"));
    }
    Err(e)
}

/// What a tar entry of an export is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Entry {
    /// A layer, and what its name says of it.
    Layer(LayerName),
    /// The image config.
    Config,
    /// `manifest.json`, which says which folder holds which layer.
    Manifest,
    /// Anything else (`repositories`, legacy `json` files, OCI index and manifests).
    Other,
}

/// How a layer entry is named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LayerName {
    /// By its diff id (`<hex>.tar`, `blobs/sha256/<hex>`).
    DiffId(String),
    /// By a Docker save folder (`<v1 id>/layer.tar`): the diff id is known only once it is read, or from memory.
    Folder(String),
}

/// Classifies the regular file at `path`; `config` is the config's digest, `layers` the image's diff ids.
pub(crate) fn classify(path: &str, config: &str, layers: &HashSet<String>) -> Entry {
    let config_hex = config.strip_prefix("sha256:").unwrap_or(config);
    let digest_of = |hex: &str| {
        let digest = format!("sha256:{hex}");
        crate::export::memory::is_digest(&digest).then_some(digest)
    };
    if path == "manifest.json" {
        return Entry::Manifest;
    }
    if let Some(hex) = path.strip_prefix("blobs/sha256/") {
        return match digest_of(hex) {
            Some(_) if hex == config_hex => Entry::Config,
            Some(d) if layers.contains(&d) => Entry::Layer(LayerName::DiffId(d)),
            _ => Entry::Other,
        };
    }
    if let Some(hex) = path.strip_suffix(".json") {
        return if hex == config_hex && digest_of(hex).is_some() {
            Entry::Config
        } else {
            Entry::Other
        };
    }
    if let Some(hex) = path.strip_suffix(".tar") {
        if let Some(d) = digest_of(hex) {
            return Entry::Layer(LayerName::DiffId(d));
        }
    }
    if let Some(folder) = path.strip_suffix("/layer.tar") {
        if digest_of(folder).is_some() {
            return Entry::Layer(LayerName::Folder(folder.to_string()));
        }
    }
    Entry::Other
}

/// The layer paths of `manifest.json`'s first image, in order.
pub(crate) fn manifest_layers(json: &[u8]) -> Vec<String> {
    let parsed: serde_json::Value = serde_json::from_slice(json).unwrap_or_default();
    parsed[0]["Layers"]
        .as_array()
        .map(|layers| {
            layers
                .iter()
                .filter_map(|l| l.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    const C: &str = "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";

    #[test]
    fn knows_the_entries_of_each_layout() {
        let config = format!("sha256:{C}");
        let layers = HashSet::from([format!("sha256:{A}")]);
        let kind = |path: &str| classify(path, &config, &layers);
        // dockerd 20.10
        assert_eq!(
            kind(&format!("{B}/layer.tar")),
            Entry::Layer(LayerName::Folder(B.into()))
        );
        assert_eq!(kind(&format!("{B}/json")), Entry::Other);
        assert_eq!(kind(&format!("{C}.json")), Entry::Config);
        assert_eq!(kind("manifest.json"), Entry::Manifest);
        assert_eq!(kind("repositories"), Entry::Other);
        // Podman's docker-archive
        assert_eq!(
            kind(&format!("{A}.tar")),
            Entry::Layer(LayerName::DiffId(format!("sha256:{A}")))
        );
        // OCI layout: only blobs the image names as layers or config count
        assert_eq!(
            kind(&format!("blobs/sha256/{A}")),
            Entry::Layer(LayerName::DiffId(format!("sha256:{A}")))
        );
        assert_eq!(kind(&format!("blobs/sha256/{C}")), Entry::Config);
        assert_eq!(kind(&format!("blobs/sha256/{B}")), Entry::Other);
        assert_eq!(kind("../x.tar"), Entry::Other);
        assert_eq!(kind("index.json"), Entry::Other);
    }

    #[test]
    fn reads_the_layer_order_of_manifest_json() {
        let json =
            format!(r#"[{{"Config":"{C}.json","Layers":["{A}/layer.tar","{B}/layer.tar"]}}]"#);
        assert_eq!(
            manifest_layers(json.as_bytes()),
            [format!("{A}/layer.tar"), format!("{B}/layer.tar")]
        );
        assert!(manifest_layers(b"not json").is_empty());
    }
}
