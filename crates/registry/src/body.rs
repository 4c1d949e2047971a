//! Reading answer bodies into memory, never more than a cap: a registry, token server or object store that
//! sends an endless body must not make berth allocate until the kernel kills it.

use berth_core::ErrorKind;
use bytes::{Bytes, BytesMut};
use reqwest::Response;

use crate::classify::transport_failure;
use crate::client::Call;
use crate::retry::Failure;

/// The largest manifest or index berth reads (containerd refuses larger ones too).
pub const MAX_MANIFEST_BYTES: usize = 4 << 20;
/// How much of an error answer berth reads: enough for any registry's error document.
pub const MAX_ERROR_BODY_BYTES: usize = 64 << 10;
/// The largest token-server answer berth reads (a JWT is a few kilobytes).
pub const MAX_TOKEN_BYTES: usize = 1 << 20;
/// The largest blob [`crate::Blob::into_bytes`] reads into memory (image configs; a config of a thousand-step
/// image is well under 1 MiB).
pub const MAX_IN_MEMORY_BLOB_BYTES: u64 = 16 << 20;

/// A body read up to a cap.
pub(crate) enum Capped {
    /// The whole body.
    Whole(Bytes),
    /// The body is longer than the cap: these are its first `cap` bytes, and the rest was not read.
    Over(Bytes),
}

/// Reads `response`'s body, stopping at `cap` bytes. An announced length over the cap is not read at all.
pub(crate) async fn read_capped(
    mut response: Response,
    cap: usize,
) -> Result<Capped, reqwest::Error> {
    if response.content_length().is_some_and(|n| n > cap as u64) {
        return Ok(Capped::Over(Bytes::new()));
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = response.chunk().await? {
        let room = cap - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return Ok(Capped::Over(body.freeze()));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Capped::Whole(body.freeze()))
}

/// The first [`MAX_ERROR_BODY_BYTES`] of an error answer, for messages: a body cut short or unreadable
/// still leaves the status to tell what happened.
pub(crate) async fn error_body(response: Response) -> Bytes {
    match read_capped(response, MAX_ERROR_BODY_BYTES).await {
        Ok(Capped::Whole(body) | Capped::Over(body)) => body,
        Err(_) => Bytes::new(),
    }
}

/// Reads the whole body of `response` from `from` (a URL or what berth asked for), or fails as a protocol
/// error naming `what` when it is longer than `cap`.
pub(crate) async fn read_whole(
    call: &Call<'_>,
    from: &str,
    response: Response,
    cap: usize,
    what: &str,
) -> Result<Bytes, Failure> {
    match read_capped(response, cap)
        .await
        .map_err(|e| transport_failure(call.op, from, e))?
    {
        Capped::Whole(body) => Ok(body),
        Capped::Over(_) => Err(call
            .error(
                ErrorKind::Protocol,
                format!(
                    "{}: {what} is larger than {} MiB",
                    crate::classify::redact_url(from),
                    cap as f64 / f64::from(1 << 20)
                ),
            )
            .into()),
    }
}
