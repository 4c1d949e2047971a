//! berth's registry client, independent of any container engine.
//!
//! berth asks a registry whether each image it would build is already there before building, and the
//! containerd backend (which has no push or pull of its own on containerd 1.6) moves manifests and blobs
//! through it. This crate finds the user's credentials where Docker and Podman keep them ([`credentials`]),
//! talks to any OCI distribution / Docker registry v2 API over one pooled HTTP client ([`RegistryClient`]):
//! HTTPS with verification by default, plain HTTP only for loopback or explicitly insecure registries,
//! anonymous first and then basic auth or bearer tokens as the registry's `WWW-Authenticate` asks, with
//! temporary failures retried with backoff ([`RetryPolicy`]). It also asks as a client with no credentials
//! at all would, as the cluster that runs the images usually does ([`RegistryClient::pull_check_anonymous`]),
//! pushes an image Docker or Podman keeps, read from its storage ([`RegistryClient::push_stored`]) or its export
//! ([`RegistryClient::push_exported`]), compressing its layers on every core,
//! and says where each registry lets an owner make an image public ([`make_public`]). Every failure is a [`berth_core::Error`] whose
//! kind is decided in one place, from the HTTP status and the registry's error body.

mod auth;
mod authorize;
mod blob;
mod body;
mod classify;
mod client;
pub mod credentials;
mod env;
mod export;
mod manifest;
mod options;
mod public;
mod push_many;
mod resolve;
mod retry;
mod upload;
mod visibility;

pub use blob::Blob;
pub use body::{
    MAX_ERROR_BODY_BYTES, MAX_IN_MEMORY_BLOB_BYTES, MAX_MANIFEST_BYTES, MAX_TOKEN_BYTES,
};
pub use client::RegistryClient;
pub use credentials::{
    login, login_hint, CredentialOrigin, CredentialResolver, ResolvedCredentials,
};
pub use env::EnvVars;
pub use export::{LocalImage, READ_STORAGE};
pub use manifest::{
    pull_hint, sha256_digest, Existence, Manifest, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST,
    OCI_INDEX, OCI_MANIFEST,
};
pub use options::{is_loopback, RegistryOptions};
pub use public::{PublicAccess, Refusal};
pub use push_many::{send_blobs, ImageBlob, BLOBS_AT_ONCE};
pub use retry::{Again, RetryPolicy};
pub use upload::{bytes_stream, describe_bytes};
pub use visibility::make_public;
