//! Public access: can a client with no credentials at all pull an image?
//!
//! The cluster that runs tasks usually pulls without the builder's credentials, so an image that exists is not
//! enough: an anonymous client must be allowed to pull it. [`RegistryClient::pull_check_anonymous`] asks for the
//! image's manifest exactly as such a client would, through the client's [`RegistryClient::anonymous`] twin: no
//! credentials from anywhere, but the registry's bearer-token challenge followed anonymously, as Docker does for
//! public images on Docker Hub and GHCR. The request is the one [`RegistryClient::exists`] makes (`HEAD`, then
//! `GET` where the answer needs a body or has no digest, accepting indexes, manifest lists and single manifests).
//! What it means is decided in one place, [`classify`].

use berth_core::reference::ImageRef;
use berth_core::{Error, ErrorKind};
use futures_util::stream::{self, StreamExt as _};

use crate::client::{Call, RegistryClient};
use crate::manifest::pull_scope;
use crate::retry::with_retry;

/// Why an anonymous client cannot pull an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The registry (or its token server) refused an anonymous client: 401, 403 or `DENIED`. The repository
    /// is private; on registries that refuse unknown repositories the same way (Docker Hub, GHCR) it may also
    /// not exist.
    Refused,
    /// The registry answered "not found" on a registry that answers so for private repositories too (GHCR's
    /// packages), so an anonymous client cannot tell: not found, or private.
    NotFoundOrPrivate,
}

/// Whether an anonymous client can pull an image.
#[derive(Debug)]
pub enum PublicAccess {
    /// It can: the registry served the manifest (or index) with this digest (`sha256:...`).
    Public {
        /// The manifest digest an anonymous client was given.
        digest: String,
    },
    /// It cannot: the registry refused, or hid the image.
    Private {
        /// How the registry said no.
        refusal: Refusal,
        /// The registry's answer, for messages.
        detail: String,
    },
    /// The registry told an anonymous client there is no such tag, digest or repository, and it is one that
    /// answers private repositories differently.
    NotFound {
        /// The registry's answer, for messages.
        detail: String,
    },
    /// It could not be told: unreachable, 5xx or timeouts after retries, an answer berth does not understand.
    Unknown(Error),
}

impl PublicAccess {
    /// Whether an anonymous client can pull it.
    pub fn is_public(&self) -> bool {
        matches!(self, PublicAccess::Public { .. })
    }

    /// The digest an anonymous client was given, when public.
    pub fn digest(&self) -> Option<&str> {
        match self {
            PublicAccess::Public { digest } => Some(digest),
            _ => None,
        }
    }

    /// A one-word state for output: `public`, `private`, `not-found` or `unknown`.
    pub fn as_str(&self) -> &'static str {
        match self {
            PublicAccess::Public { .. } => "public",
            PublicAccess::Private { .. } => "private",
            PublicAccess::NotFound { .. } => "not-found",
            PublicAccess::Unknown(_) => "unknown",
        }
    }
}

/// Registries that answer an anonymous request for a private repository with 404 rather than 401, so that
/// outsiders cannot learn which private repositories exist: GitHub's package registries.
pub(crate) fn hides_private_as_not_found(registry: &str) -> bool {
    let host = registry.to_ascii_lowercase();
    host == "ghcr.io" || host.ends_with(".pkg.github.com")
}

/// What an anonymous manifest request for `image` came to (the digest, or the error after retries) means. The
/// only place that decides it.
pub(crate) fn classify(image: &ImageRef, outcome: Result<String, Error>) -> PublicAccess {
    let error = match outcome {
        Ok(digest) => return PublicAccess::Public { digest },
        Err(error) => error,
    };
    // messages name the image first; whoever shows the detail names it already
    let message = error.message();
    let detail = message
        .strip_prefix(&format!("{image}: "))
        .unwrap_or(message)
        .to_string();
    match error.kind() {
        ErrorKind::Unauthorized => PublicAccess::Private {
            refusal: Refusal::Refused,
            detail,
        },
        ErrorKind::NotFound if hides_private_as_not_found(&image.registry) => {
            PublicAccess::Private {
                refusal: Refusal::NotFoundOrPrivate,
                detail,
            }
        }
        ErrorKind::NotFound => PublicAccess::NotFound { detail },
        _ => PublicAccess::Unknown(error),
    }
}

impl RegistryClient {
    /// Whether a client without any credentials can pull `image` (its digest if it has one, else its tag), asked
    /// as such a client (see the module doc). Credentials this client has are never sent, whatever the
    /// environment or config files hold. Temporary failures are retried per [`crate::RetryPolicy`].
    pub async fn pull_check_anonymous(&self, image: &ImageRef) -> PublicAccess {
        let anonymous = self.anonymous();
        let call = Call {
            op: "anonymous pull check",
            registry: &image.registry,
            target: image.to_string(),
            scopes: vec![pull_scope(&image.repository)],
        };
        let outcome = with_retry(&anonymous.inner.options.retry, || {
            anonymous.check_once(&call, image)
        })
        .await;
        classify(image, outcome)
    }

    /// [`RegistryClient::pull_check_anonymous`] for many images, at most `concurrency` at a time over the shared
    /// connection pool; the answers are in the order of `images`.
    pub async fn pull_check_anonymous_many(
        &self,
        images: &[ImageRef],
        concurrency: usize,
    ) -> Vec<PublicAccess> {
        stream::iter(images)
            .map(|image| self.pull_check_anonymous(image))
            .buffered(concurrency.max(1))
            .collect()
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn failed(kind: ErrorKind, message: &str) -> Result<String, Error> {
        Err(Error::new(kind, message).with_operation("anonymous pull check"))
    }

    fn at(registry: &str) -> ImageRef {
        ImageRef::parse(&format!("{registry}/team/app:1")).expect("reference")
    }

    #[test]
    fn a_served_manifest_is_public_with_its_digest() {
        let access = classify(&at("127.0.0.1:5001"), Ok(DIGEST.to_string()));
        assert!(access.is_public());
        assert_eq!(access.digest(), Some(DIGEST));
        assert_eq!(access.as_str(), "public");
    }

    #[test]
    fn refusals_are_private_on_every_registry() {
        for registry in ["127.0.0.1:5000", "docker.io", "ghcr.io", "quay.io"] {
            let image = at(registry);
            let access = classify(
                &image,
                failed(
                    ErrorKind::Unauthorized,
                    &format!("{registry} refused access to {image} anonymously: HTTP 401"),
                ),
            );
            let PublicAccess::Private { refusal, detail } = &access else {
                panic!("{registry}: {access:?}");
            };
            assert_eq!(*refusal, Refusal::Refused);
            assert!(
                detail.starts_with(&format!("{registry} refused")),
                "{detail}"
            );
            assert_eq!(access.as_str(), "private");
            assert_eq!(access.digest(), None);
        }
    }

    #[test]
    fn not_found_is_not_found_except_where_private_repositories_answer_404() {
        let image = at("127.0.0.1:5001");
        let plain = classify(
            &image,
            failed(ErrorKind::NotFound, &format!("{image}: HTTP 404")),
        );
        let PublicAccess::NotFound { detail } = &plain else {
            panic!("{plain:?}");
        };
        assert_eq!(detail, "HTTP 404", "the image is not named twice");
        assert_eq!(plain.as_str(), "not-found");
        for hiding in ["ghcr.io", "GHCR.io", "docker.pkg.github.com"] {
            let hidden = classify(&at(hiding), failed(ErrorKind::NotFound, "HTTP 404"));
            assert!(
                matches!(
                    hidden,
                    PublicAccess::Private {
                        refusal: Refusal::NotFoundOrPrivate,
                        ..
                    }
                ),
                "{hiding}: {hidden:?}"
            );
        }
        assert!(!hides_private_as_not_found("ghcr.io.example.com"));
    }

    #[test]
    fn network_server_and_protocol_failures_cannot_tell() {
        for kind in [
            ErrorKind::Unavailable,
            ErrorKind::Protocol,
            ErrorKind::InvalidSpec,
            ErrorKind::Unsupported,
            ErrorKind::Io,
        ] {
            let access = classify(
                &at("ghcr.io"),
                failed(kind, "gave up after 4 attempts: HTTP 503"),
            );
            let PublicAccess::Unknown(err) = &access else {
                panic!("{kind:?}: {access:?}");
            };
            assert_eq!(err.kind(), kind);
            assert_eq!(access.as_str(), "unknown");
        }
    }
}
