//! A fault-injecting proxy in front of the test registry, and the outcome table of the reliability test
//! (`tests/e2e/faults.rs`).
//!
//! Each [`FaultProxy`] listens on its own loopback port and forwards to the registry, except that the first
//! [`FaultPlan::times`] requests of one [`Class`] get one [`Fault`]. berth is pointed at the proxy as if it were
//! the registry (loopback, so plain HTTP as berth allows for loopback); what the registry really holds afterwards
//! is read from the registry itself, never through the proxy.

mod proxy;
mod table;

pub use proxy::FaultProxy;
pub use table::{Outcome, Row, Table};

/// What the proxy does to a request it picks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `503` with a registry error body; nothing reaches the registry.
    ServerError,
    /// `429` with `Retry-After: 1`; nothing reaches the registry.
    TooManyRequests,
    /// Half the request body is read, then the connection is reset (mid-upload for blob and manifest uploads).
    Reset,
    /// No bytes come back: a request with a body (or a `HEAD`) gets nothing at all; a download gets its head and
    /// half its body, then nothing. Held until the client gives up.
    Stall,
    /// The answer's head, then half its body, then the connection closes (only answers with a body).
    Truncated,
    /// The answer's `Content-Length` says half its real length (only answers with a body).
    WrongLength,
    /// The whole body is read, then `401` with a challenge, as a registry answers an upload whose token died
    /// while it was sent (only blob uploads; a client cannot renew a token for a body it already sent).
    Expired,
}

impl Fault {
    /// Every fault, in table order.
    pub const ALL: [Fault; 7] = [
        Fault::ServerError,
        Fault::TooManyRequests,
        Fault::Reset,
        Fault::Stall,
        Fault::Truncated,
        Fault::WrongLength,
        Fault::Expired,
    ];

    /// The name in the table.
    pub fn name(self) -> &'static str {
        match self {
            Fault::ServerError => "5xx burst",
            Fault::TooManyRequests => "429 Retry-After",
            Fault::Reset => "reset mid-body",
            Fault::Stall => "stall",
            Fault::Truncated => "truncated body",
            Fault::WrongLength => "wrong Content-Length",
            Fault::Expired => "401 mid-upload",
        }
    }

    /// How many requests in a row get it: a burst of 5xx is two (a retrying client outlasts it), the rest one.
    pub fn burst(self) -> u32 {
        match self {
            Fault::ServerError => 2,
            _ => 1,
        }
    }

    /// Whether the fault means anything for requests of `class`: only answers with a body can be cut short or
    /// mislabelled.
    pub fn applies_to(self, class: Class) -> bool {
        match self {
            Fault::Truncated | Fault::WrongLength => {
                matches!(class, Class::Ping | Class::ManifestGet | Class::BlobGet)
            }
            Fault::Expired => class == Class::BlobUpload,
            _ => true,
        }
    }
}

/// Registry requests by what they are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// `GET /v2/`.
    Ping,
    /// A token request (not under `/v2/`).
    Token,
    /// `HEAD` on a manifest.
    ManifestHead,
    /// `GET` of a manifest.
    ManifestGet,
    /// `PUT` of a manifest.
    ManifestPut,
    /// `HEAD` on a blob.
    BlobHead,
    /// `GET` of a blob.
    BlobGet,
    /// Blob upload requests that carry data: `PATCH` and `PUT` on an upload location.
    BlobUpload,
    /// Anything else (starting an upload, mounts, deletes).
    Other,
}

impl Class {
    /// The class of a request with `method` on `path`.
    pub fn of(method: &str, path: &str) -> Class {
        let path = path.split('?').next().unwrap_or_default();
        if path == "/v2/" || path == "/v2" {
            return Class::Ping;
        }
        if !path.starts_with("/v2/") {
            return Class::Token;
        }
        let upload = path.contains("/blobs/uploads/");
        match method {
            "PATCH" | "PUT" if upload => Class::BlobUpload,
            _ if upload => Class::Other,
            "HEAD" if path.contains("/manifests/") => Class::ManifestHead,
            "GET" if path.contains("/manifests/") => Class::ManifestGet,
            "PUT" if path.contains("/manifests/") => Class::ManifestPut,
            "HEAD" if path.contains("/blobs/") => Class::BlobHead,
            "GET" if path.contains("/blobs/") => Class::BlobGet,
            _ => Class::Other,
        }
    }

    /// The name in the table.
    pub fn name(self) -> &'static str {
        match self {
            Class::Ping => "/v2/ ping",
            Class::Token => "token",
            Class::ManifestHead => "manifest HEAD",
            Class::ManifestGet => "manifest GET",
            Class::ManifestPut => "manifest PUT",
            Class::BlobHead => "blob HEAD",
            Class::BlobGet => "blob GET",
            Class::BlobUpload => "blob upload PATCH/PUT",
            Class::Other => "other",
        }
    }
}

/// Which requests a proxy harms, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultPlan {
    /// The fault.
    pub fault: Fault,
    /// The requests it hits.
    pub class: Class,
    /// How many of them in a row, from the first.
    pub times: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_classified_by_method_and_path() {
        assert_eq!(Class::of("GET", "/v2/"), Class::Ping);
        assert_eq!(Class::of("GET", "/token?scope=x"), Class::Token);
        assert_eq!(
            Class::of("HEAD", "/v2/a/b/manifests/1"),
            Class::ManifestHead
        );
        assert_eq!(
            Class::of("GET", "/v2/a/manifests/sha256:x"),
            Class::ManifestGet
        );
        assert_eq!(Class::of("PUT", "/v2/a/manifests/1"), Class::ManifestPut);
        assert_eq!(Class::of("HEAD", "/v2/a/blobs/sha256:x"), Class::BlobHead);
        assert_eq!(Class::of("GET", "/v2/a/blobs/sha256:x"), Class::BlobGet);
        assert_eq!(Class::of("POST", "/v2/a/blobs/uploads/"), Class::Other);
        assert_eq!(
            Class::of("PUT", "/v2/a/blobs/uploads/u?digest=sha256:x"),
            Class::BlobUpload
        );
        assert_eq!(
            Class::of("PATCH", "/v2/a/blobs/uploads/u"),
            Class::BlobUpload
        );
    }
}
