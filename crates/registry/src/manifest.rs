//! Manifests: does an image exist (by `HEAD`), fetch one, store one.

use berth_core::reference::ImageRef;
use berth_core::{Error, ErrorKind, Result};
use bytes::Bytes;
use futures_util::stream::{self, StreamExt as _};
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::StatusCode;
use sha2::{Digest as _, Sha256};

use crate::body::{read_whole, MAX_MANIFEST_BYTES};
use crate::client::{Call, RegistryClient};
use crate::retry::{with_retry, Failure};

/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Docker manifest list.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// What berth asks registries for: indexes first, so a multi-platform image is seen as one.
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json";

const DIGEST_HEADER: &str = "docker-content-digest";

/// Whether an image is in its registry.
#[derive(Debug)]
pub enum Existence {
    /// It is, with this manifest digest (`sha256:...`).
    Present {
        /// The manifest (or index) digest the registry reports.
        digest: String,
    },
    /// The registry says there is no such tag, digest or repository.
    Absent,
    /// The registry could not be asked or refused to say (unauthorized, unreachable, retries exhausted).
    Unknown(Error),
}

impl Existence {
    /// Whether the image is known to be present.
    pub fn is_present(&self) -> bool {
        matches!(self, Existence::Present { .. })
    }

    /// The digest, when present.
    pub fn digest(&self) -> Option<&str> {
        match self {
            Existence::Present { digest } => Some(digest),
            _ => None,
        }
    }
}

/// A manifest as the registry stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Its media type (e.g. [`OCI_MANIFEST`]).
    pub media_type: String,
    /// The exact bytes (their sha256 is the digest).
    pub bytes: Bytes,
    /// `sha256:...` of `bytes`.
    pub digest: String,
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

pub(crate) fn pull_scope(repository: &str) -> String {
    format!("repository:{repository}:pull")
}

pub(crate) fn push_scope(repository: &str) -> String {
    format!("repository:{repository}:pull,push")
}

fn manifest_url(base: &str, repository: &str, reference: &str) -> String {
    format!("{base}/v2/{repository}/manifests/{reference}")
}

fn valid_digest(value: &str) -> bool {
    value.split_once(':').is_some_and(|(algo, hex)| {
        !algo.is_empty() && hex.len() >= 32 && hex.chars().all(|c| c.is_ascii_hexdigit())
    })
}

impl RegistryClient {
    /// Whether `image` (its tag, or its digest if it has one) is in its registry, by `HEAD` on the manifest.
    /// Temporary failures are retried per [`crate::RetryPolicy`]; what cannot be decided is
    /// [`Existence::Unknown`] with the reason.
    pub async fn exists(&self, image: &ImageRef) -> Existence {
        let call = Call {
            op: "check",
            registry: &image.registry,
            target: image.to_string(),
            scopes: vec![pull_scope(&image.repository)],
        };
        match with_retry(&self.inner.options.retry, || self.check_once(&call, image)).await {
            Ok(digest) => Existence::Present { digest },
            Err(e) if e.kind() == ErrorKind::NotFound => Existence::Absent,
            Err(e) => Existence::Unknown(e),
        }
    }

    /// [`RegistryClient::exists`] for many images, at most `concurrency` at a time over the shared connection
    /// pool; the answers are in the order of `images`.
    pub async fn exists_many(&self, images: &[ImageRef], concurrency: usize) -> Vec<Existence> {
        stream::iter(images)
            .map(|image| self.exists(image))
            .buffered(concurrency.max(1))
            .collect()
            .await
    }

    /// One existence check (`HEAD`, then `GET` when the answer needs a body or lacks a digest): the digest, or
    /// the failure. Shared by [`RegistryClient::exists`] and [`RegistryClient::pull_check_anonymous`].
    pub(crate) async fn check_once(
        &self,
        call: &Call<'_>,
        image: &ImageRef,
    ) -> Result<String, Failure> {
        let timeout = self.inner.options.request_timeout;
        let response = self
            .send(call, true, |http, base| {
                http.head(manifest_url(
                    base,
                    &image.repository,
                    image.manifest_reference(),
                ))
                .header(ACCEPT, MANIFEST_ACCEPT)
                .timeout(timeout)
            })
            .await?;
        let status = response.status();
        if status.is_success() {
            let digest = response
                .headers()
                .get(DIGEST_HEADER)
                .and_then(|v| v.to_str().ok())
                .filter(|d| valid_digest(d));
            if let Some(digest) = digest {
                return Ok(digest.to_string());
            }
            // no digest on HEAD (some registries omit it): fetch the manifest and hash it
        } else if status == StatusCode::NOT_FOUND {
            return Err(call
                .error(ErrorKind::NotFound, format!("{}: HTTP 404", call.target))
                .into());
        } else {
            // A HEAD answer has no body, and some registries explain a failure only there (Harbor answers a
            // missing repository with 500 and a "not found" body; a 400 says what was invalid). For those, ask
            // again with GET below and classify that. Overloaded, unavailable or refused needs no body, and a
            // second request would only add load.
            let refused = [
                StatusCode::UNAUTHORIZED,
                StatusCode::FORBIDDEN,
                StatusCode::REQUEST_TIMEOUT,
                StatusCode::TOO_MANY_REQUESTS,
            ];
            let body_tells = status == StatusCode::INTERNAL_SERVER_ERROR
                || (status.is_client_error() && !refused.contains(&status));
            if !body_tells {
                return Err(self.failure(call, response).await);
            }
        }
        self.fetch_manifest(call, image).await.map(|m| m.digest)
    }

    /// Fetches `image`'s manifest (by digest if it has one, else by tag), verifying its digest.
    pub async fn get_manifest(&self, image: &ImageRef) -> Result<Manifest> {
        let call = Call {
            op: "get manifest",
            registry: &image.registry,
            target: image.to_string(),
            scopes: vec![pull_scope(&image.repository)],
        };
        with_retry(&self.inner.options.retry, || {
            self.fetch_manifest(&call, image)
        })
        .await
    }

    pub(crate) async fn fetch_manifest(
        &self,
        call: &Call<'_>,
        image: &ImageRef,
    ) -> Result<Manifest, Failure> {
        let timeout = self.inner.options.request_timeout;
        let response = self
            .send(call, true, |http, base| {
                http.get(manifest_url(
                    base,
                    &image.repository,
                    image.manifest_reference(),
                ))
                .header(ACCEPT, MANIFEST_ACCEPT)
                .timeout(timeout)
            })
            .await?;
        if !response.status().is_success() {
            return Err(self.failure(call, response).await);
        }
        let header_digest = header(&response, DIGEST_HEADER);
        let content_type = header(&response, CONTENT_TYPE.as_str());
        let bytes = read_whole(
            call,
            &call.target,
            response,
            MAX_MANIFEST_BYTES,
            "the manifest",
        )
        .await?;
        let digest = sha256_digest(&bytes);
        let expected = image
            .digest
            .clone()
            .or(header_digest.filter(|d| d.starts_with("sha256:")));
        if let Some(expected) = expected.filter(|e| *e != digest) {
            return Err(call
                .error(
                    ErrorKind::Protocol,
                    format!(
                        "{}: the manifest's sha256 is {digest}, not {expected}",
                        call.target
                    ),
                )
                .into());
        }
        let media_type = content_type
            .map(|t| t.split(';').next().unwrap_or_default().trim().to_string())
            .filter(|t| !t.is_empty() && t != "application/json" && t != "text/plain")
            .or_else(|| {
                serde_json::from_slice::<serde_json::Value>(&bytes)
                    .ok()
                    .and_then(|v| {
                        v.get("mediaType")
                            .and_then(|m| m.as_str())
                            .map(str::to_string)
                    })
            })
            .unwrap_or_else(|| OCI_MANIFEST.to_string());
        Ok(Manifest {
            media_type,
            bytes,
            digest,
        })
    }

    /// Stores a manifest under `image`'s tag (or its digest if it has no tag) and returns its digest. The
    /// blobs it names must already be in the repository.
    pub async fn put_manifest(
        &self,
        image: &ImageRef,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<String> {
        let call = Call {
            op: "put manifest",
            registry: &image.registry,
            target: image.to_string(),
            scopes: vec![push_scope(&image.repository)],
        };
        let reference = image
            .tag
            .as_deref()
            .or(image.digest.as_deref())
            .unwrap_or("latest");
        let body = Bytes::copy_from_slice(bytes);
        let digest = sha256_digest(bytes);
        let timeout = self.inner.options.request_timeout;
        with_retry(&self.inner.options.retry, || async {
            let response = self
                .send(&call, true, |http, base| {
                    http.put(manifest_url(base, &image.repository, reference))
                        .header(CONTENT_TYPE, media_type)
                        .body(body.clone())
                        .timeout(timeout)
                })
                .await?;
            if !response.status().is_success() {
                return Err(self.failure(&call, response).await);
            }
            match header(&response, DIGEST_HEADER) {
                Some(stored) if stored.starts_with("sha256:") && stored != digest => Err(call
                    .error(
                        ErrorKind::Protocol,
                        format!(
                            "{}: the registry stored {stored}, berth sent {digest}",
                            call.target
                        ),
                    )
                    .into()),
                _ => Ok(digest.clone()),
            }
        })
        .await
    }
}

pub(crate) fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// What to do when the registry refused an engine's pull of an image's manifest (`err`, from
/// [`RegistryClient::get_manifest`]): the client's own hint when it has one (it knows where refused credentials
/// came from, and that a certificate nobody trusts wants `--ca-file`), else one for the kind of failure.
pub fn pull_hint(err: &Error) -> String {
    match err.kind() {
        ErrorKind::NotFound => "check the image name and tag, and that it was pushed",
        ErrorKind::Unauthorized => err.hint().unwrap_or("log in for this registry"),
        _ => err.hint().unwrap_or("check that the registry is reachable"),
    }
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_sha256_hex() {
        assert_eq!(
            sha256_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert!(valid_digest(&sha256_digest(b"x")));
        assert!(!valid_digest("sha256:xyz"));
    }

    #[test]
    fn a_pull_keeps_the_clients_hint_for_an_untrusted_certificate() {
        // containerd's and LXD's base-image pulls once said only "check that the registry is reachable"
        let untrusted = Error::new(ErrorKind::Protocol, "certificate not trusted")
            .with_hint("pass --ca-file with the CA that signed it");
        assert_eq!(
            pull_hint(&untrusted),
            "pass --ca-file with the CA that signed it"
        );
        let down = Error::new(ErrorKind::Unavailable, "cannot connect");
        assert_eq!(pull_hint(&down), "check that the registry is reachable");
        let missing = Error::new(ErrorKind::NotFound, "HTTP 404").with_hint("anything");
        assert!(pull_hint(&missing).starts_with("check the image name"));
    }
}
