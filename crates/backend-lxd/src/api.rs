//! LXD's REST protocol above HTTP: the response envelope (`sync`, `async` with an operation, `error`), waiting
//! for operations, and the calls berth makes, each mapped to a berth error in one place.

use berth_core::{ErrorKind, Operation, Result};
use http::Method;
use serde_json::Value;

use crate::client::{Body, Client};
use crate::errors::{error, to_error, unavailable, Failure};

/// LXD's API on one server.
#[derive(Debug, Clone)]
pub(crate) struct Lxd {
    client: Client,
}

impl Lxd {
    pub(crate) fn new(client: Client) -> Lxd {
        Lxd { client }
    }

    /// How the server is reached.
    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    /// Sends a request and returns the envelope's `metadata`; an `async` answer is waited for and its
    /// operation's `metadata` returned.
    pub(crate) async fn call(
        &self,
        op: Operation,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value> {
        let (body, headers) = match body {
            Some(json) => (
                Body::Bytes(json.to_string().into()),
                vec![("Content-Type", "application/json".to_string())],
            ),
            None => (Body::Empty, Vec::new()),
        };
        let envelope = self.envelope(op, method, path, &headers, body).await?;
        self.finish(op, path, envelope).await
    }

    /// Sends raw `body` with `headers` (file uploads, image imports) and returns what [`Lxd::call`] returns.
    pub(crate) async fn send(
        &self,
        op: Operation,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
        body: Body,
    ) -> Result<Value> {
        let envelope = self.envelope(op, method, path, headers, body).await?;
        self.finish(op, path, envelope).await
    }

    /// GETs `path` into file `out` (an export); an error answer is reported as [`Lxd::call`] reports it.
    pub(crate) async fn download(
        &self,
        op: Operation,
        path: &str,
        out: &std::path::Path,
    ) -> Result<()> {
        let answer = self
            .client
            .download(path, out)
            .await
            .map_err(|e| unavailable(&self.client, &e, op))?;
        if answer.status.is_success() {
            return Ok(());
        }
        let envelope: Value = serde_json::from_slice(&answer.body).unwrap_or_default();
        Err(failure(op, path, answer.status, &envelope, &self.client))
    }

    /// The object at `path` and its `ETag`, for a change made only if nobody changed it since
    /// ([`Lxd::put_if_unchanged`]).
    pub(crate) async fn get_tagged(&self, op: Operation, path: &str) -> Result<(Value, String)> {
        let (envelope, headers) = self
            .envelope_with_headers(op, Method::GET, path, &[], Body::Empty)
            .await?;
        let etag = headers
            .get(http::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        Ok((envelope["metadata"].clone(), etag))
    }

    /// PUTs `body` to `path` if its `ETag` is still `etag`: `false` when someone changed it first.
    pub(crate) async fn put_if_unchanged(
        &self,
        op: Operation,
        path: &str,
        body: &Value,
        etag: &str,
    ) -> Result<bool> {
        let headers = [
            ("Content-Type", "application/json".to_string()),
            ("If-Match", etag.to_string()),
        ];
        match self
            .envelope_with_headers(
                op,
                Method::PUT,
                path,
                &headers,
                Body::Bytes(body.to_string().into()),
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.to_string().contains("412") => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Starts an operation without waiting for it: its path and its `metadata` (an exec's stream secrets).
    pub(crate) async fn start(
        &self,
        op: Operation,
        method: Method,
        path: &str,
        body: &Value,
    ) -> Result<(String, Value)> {
        let headers = [("Content-Type", "application/json".to_string())];
        let envelope = self
            .envelope(
                op,
                method,
                path,
                &headers,
                Body::Bytes(body.to_string().into()),
            )
            .await?;
        match envelope["operation"].as_str() {
            Some(operation) if envelope["type"] == "async" => Ok((
                operation.to_string(),
                envelope["metadata"]["metadata"].clone(),
            )),
            _ => Err(error(
                ErrorKind::Protocol,
                op,
                format!("LXD answered {path} without an operation"),
            )),
        }
    }

    async fn envelope(
        &self,
        op: Operation,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
        body: Body,
    ) -> Result<Value> {
        Ok(self
            .envelope_with_headers(op, method, path, headers, body)
            .await?
            .0)
    }

    async fn envelope_with_headers(
        &self,
        op: Operation,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
        body: Body,
    ) -> Result<(Value, http::HeaderMap)> {
        let answer = self
            .client
            .send(method, path, headers, body)
            .await
            .map_err(|e| unavailable(&self.client, &e, op))?;
        let envelope: Value = serde_json::from_slice(&answer.body).map_err(|e| {
            error(
                ErrorKind::Protocol,
                op,
                format!("LXD answered {path} with something that is not JSON: {e}"),
            )
        })?;
        if !answer.status.is_success() || envelope["type"] == "error" {
            return Err(failure(op, path, answer.status, &envelope, &self.client));
        }
        Ok((envelope, answer.headers))
    }

    async fn finish(&self, op: Operation, path: &str, envelope: Value) -> Result<Value> {
        if envelope["type"] != "async" {
            return Ok(envelope["metadata"].clone());
        }
        let operation = envelope["operation"].as_str().ok_or_else(|| {
            error(
                ErrorKind::Protocol,
                op,
                format!("LXD answered {path} with an operation without a path"),
            )
        })?;
        self.wait(op, path, operation).await
    }

    /// Waits for `operation` (started by a request to `path`) and returns its `metadata`.
    pub(crate) async fn wait(&self, op: Operation, path: &str, operation: &str) -> Result<Value> {
        let done = self
            .envelope(
                op,
                Method::GET,
                &format!("{operation}/wait?timeout=-1"),
                &[],
                Body::Empty,
            )
            .await?;
        let meta = &done["metadata"];
        if meta["status"] == "Success" {
            return Ok(meta["metadata"].clone());
        }
        let message = meta["err"].as_str().unwrap_or("the operation failed");
        // an operation's failure has no HTTP status of its own: its status code is 400 (failure) or 401
        // (cancelled)
        let kind = match meta["status_code"].as_u64() {
            Some(401) => ErrorKind::Cancelled,
            _ => ErrorKind::Protocol,
        };
        Err(error(kind, op, format!("LXD {path}: {message}")))
    }
}

/// The error an LXD error answer describes.
fn failure(
    op: Operation,
    path: &str,
    status: http::StatusCode,
    envelope: &Value,
    client: &Client,
) -> berth_core::Error {
    let message = envelope["error"]
        .as_str()
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error"));
    let failure = Failure::Status {
        code: status.as_u16(),
        message,
    };
    let said = format!("LXD {path}: {message} ({status})");
    to_error(failure, op, client, Some(said))
}
