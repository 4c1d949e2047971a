//! What berth's REST engine backends share.
//!
//! Docker (through bollard and its own BuildKit requests), Podman (libpod over its socket) and the LXD backend
//! all talk HTTP to a local service that answers failures as a status plus a message, streams long operations
//! as JSON lines whose `error` field is text only, and fails underneath with I/O, TLS and hyper errors. This
//! crate holds the one mapping from those to berth's [`berth_core::Error`]: [`transport`] reads what a
//! transport error is from its types, [`failure`] decides the kind, status and hint, and [`encode`] builds the
//! request URLs. A backend describes itself once in an [`failure::Service`] and calls [`failure::to_error`].

pub mod client;
pub mod encode;
pub mod failure;
mod pinned;
pub mod ssh;
pub mod stream;
pub mod tls;
pub mod transport;

pub use failure::{to_error, Failure, Service};
pub use transport::Transport;
