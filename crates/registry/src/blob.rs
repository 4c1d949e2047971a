//! Blobs (layers and configs): check whether one is there, and stream one down with its digest verified.
//! Uploads and mounts are in `upload.rs`.

use std::pin::Pin;
use std::task::{Context, Poll};

use berth_core::reference::ImageRef;
use berth_core::{Error, ErrorKind, Result};
use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt as _};
use reqwest::StatusCode;
use sha2::{Digest as _, Sha256};

use crate::body::MAX_IN_MEMORY_BLOB_BYTES;
use crate::client::{Call, RegistryClient};
use crate::manifest::pull_scope;
use crate::retry::with_retry;

/// A blob being downloaded: a stream of chunks whose sha256 is checked against the digest at the end.
pub struct Blob {
    size: Option<u64>,
    inner: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    hasher: Option<Sha256>,
    expected: String,
    target: String,
}

impl std::fmt::Debug for Blob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blob")
            .field("target", &self.target)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl Blob {
    /// The size the registry announced, if it did.
    pub fn size(&self) -> Option<u64> {
        self.size
    }

    /// Reads the whole blob into memory (for configs and small layers): at most
    /// [`MAX_IN_MEMORY_BLOB_BYTES`], whatever size the registry announces or sends.
    pub async fn into_bytes(mut self) -> Result<Bytes> {
        let too_large = |target: &str| {
            Error::new(
                ErrorKind::Protocol,
                format!(
                    "{target}: the blob is larger than the {} MiB berth reads into memory",
                    MAX_IN_MEMORY_BLOB_BYTES >> 20
                ),
            )
            .with_engine(crate::classify::ENGINE)
            .with_operation("get blob")
        };
        if self.size.is_some_and(|n| n > MAX_IN_MEMORY_BLOB_BYTES) {
            return Err(too_large(&self.target));
        }
        let mut all = BytesMut::new();
        while let Some(chunk) = self.next().await {
            all.extend_from_slice(&chunk?);
            if all.len() as u64 > MAX_IN_MEMORY_BLOB_BYTES {
                return Err(too_large(&self.target));
            }
        }
        Ok(all.freeze())
    }
}

impl Stream for Blob {
    type Item = Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        match this.inner.as_mut().poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(chunk))) => {
                if let Some(hasher) = &mut this.hasher {
                    hasher.update(&chunk);
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => {
                // the URL may be a signed redirect to object storage
                let e = e.without_url();
                Poll::Ready(Some(Err(Error::new(
                    ErrorKind::Unavailable,
                    format!("{}: download interrupted: {e}", this.target),
                )
                .with_engine(crate::classify::ENGINE)
                .with_operation("get blob")
                .with_source(e))))
            }
            Poll::Ready(None) => {
                let Some(hasher) = this.hasher.take() else {
                    return Poll::Ready(None);
                };
                let hex: String = hasher
                    .finalize()
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                let actual = format!("sha256:{hex}");
                if actual == this.expected {
                    Poll::Ready(None)
                } else {
                    Poll::Ready(Some(Err(Error::new(
                        ErrorKind::Protocol,
                        format!(
                            "{}: the blob's sha256 is {actual}, not {}",
                            this.target, this.expected
                        ),
                    )
                    .with_engine(crate::classify::ENGINE)
                    .with_operation("get blob"))))
                }
            }
        }
    }
}

pub(crate) fn blob_call<'a>(
    op: &'static str,
    image: &'a ImageRef,
    digest: &str,
    scopes: Vec<String>,
) -> Call<'a> {
    Call {
        op,
        registry: &image.registry,
        target: format!("{}/{}@{digest}", image.registry, image.repository),
        scopes,
    }
}

impl RegistryClient {
    /// Whether the blob `digest` is in `image`'s repository (its tag or digest is ignored).
    pub async fn blob_exists(&self, image: &ImageRef, digest: &str) -> Result<bool> {
        let call = blob_call(
            "check blob",
            image,
            digest,
            vec![pull_scope(&image.repository)],
        );
        let timeout = self.inner.options.request_timeout;
        let result = with_retry(&self.inner.options.retry, || async {
            let response = self
                .send(&call, true, |http, base| {
                    http.head(format!("{base}/v2/{}/blobs/{digest}", image.repository))
                        .timeout(timeout)
                })
                .await?;
            match response.status() {
                s if s.is_success() => Ok(true),
                StatusCode::NOT_FOUND => Ok(false),
                _ => Err(self.failure(&call, response).await),
            }
        })
        .await;
        match result {
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            other => other,
        }
    }

    /// Starts downloading blob `digest` from `image`'s repository; the stream checks the digest at its end.
    pub async fn get_blob(&self, image: &ImageRef, digest: &str) -> Result<Blob> {
        let call = blob_call(
            "get blob",
            image,
            digest,
            vec![pull_scope(&image.repository)],
        );
        let response = with_retry(&self.inner.options.retry, || async {
            let response = self
                .send(&call, true, |http, base| {
                    http.get(format!("{base}/v2/{}/blobs/{digest}", image.repository))
                })
                .await?;
            if response.status().is_success() {
                Ok(response)
            } else {
                Err(self.failure(&call, response).await)
            }
        })
        .await?;
        Ok(Blob {
            size: response.content_length(),
            hasher: digest.starts_with("sha256:").then(Sha256::new),
            inner: Box::pin(response.bytes_stream()),
            expected: digest.to_string(),
            target: call.target,
        })
    }
}
