//! Sending an image's blobs several at a time, for the pushes that read blobs berth already holds compressed
//! (containerd's content store, berth's LXD store). One upload at a time leaves a fast link idle while each blob
//! starts, ends and is checked; a few at once keep it busy, as `ctr images push` does. The number is bounded, so
//! memory stays that of a few streams whatever the image's size.

use std::collections::HashSet;
use std::future::Future;

use berth_core::Result;
use futures_util::stream::{self, TryStreamExt as _};

/// How many blobs a push sends at once: enough to keep a link busy between one blob's end and the next one's
/// start, few enough that a registry's per-client limits and the machine's memory are not strained.
pub const BLOBS_AT_ONCE: usize = 4;

/// A blob an image names: its digest (`sha256:...`) and size in bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageBlob {
    /// The blob's digest.
    pub digest: String,
    /// Its size in bytes.
    pub size: u64,
}

/// Runs `send` (skip, mount or upload one blob; retries are its own) for each distinct layer, up to
/// [`BLOBS_AT_ONCE`] at a time, then for the config, so a registry that validates the config against its
/// layers finds them. The caller puts the manifest after this returns `Ok`, so a failed push never leaves a tag
/// naming missing blobs. The first failure is returned at once and the sends still in flight are dropped
/// (their uploads stop unfinished; the registry discards them); blobs already sent stay, so pushing again
/// skips them.
pub async fn send_blobs<F, Fut>(layers: &[ImageBlob], config: &ImageBlob, send: F) -> Result<()>
where
    F: Fn(ImageBlob) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    // an image may name one blob twice (empty layers, say): one upload of it is enough
    let mut seen = HashSet::new();
    let distinct = layers
        .iter()
        .filter(|b| seen.insert(b.digest.as_str()) && b.digest != config.digest);
    stream::iter(distinct.cloned().map(Ok))
        .try_for_each_concurrent(BLOBS_AT_ONCE, &send)
        .await?;
    send(config.clone()).await
}
