//! Blob uploads: monolithic or chunked, and cross-repository mounts.
//!
//! Uploads are not retried once data has been sent, because a stream cannot be replayed: a caller that can read
//! the data again uses [`RegistryClient::push_blob_from`], which starts over with a fresh stream. The requests before any data
//! (starting the upload, mounting) are retried like every other.

use berth_core::reference::ImageRef;
use berth_core::{ErrorKind, Result};
use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt as _};
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use reqwest::StatusCode;

use crate::blob::blob_call;
use crate::classify::redact_url;
use crate::client::{Call, RegistryClient};
use crate::manifest::{header, pull_scope, push_scope, sha256_digest};
use crate::retry::{with_retry, Failure};

/// An upload location from a `Location` header (absolute, or a path on the registry).
fn upload_location(base: &str, response: &reqwest::Response, call: &Call<'_>) -> Result<String> {
    let value = header(response, LOCATION.as_str()).ok_or_else(|| {
        call.error(
            ErrorKind::Protocol,
            format!("{}: upload answer has no Location", call.target),
        )
    })?;
    if value.starts_with("http://") || value.starts_with("https://") {
        Ok(value)
    } else {
        Ok(format!(
            "{base}{}{value}",
            if value.starts_with('/') { "" } else { "/" }
        ))
    }
}

fn with_query(url: &str, pairs: &[(&str, &str)], call: &Call<'_>) -> Result<reqwest::Url> {
    let mut url = reqwest::Url::parse(url).map_err(|e| {
        call.error(
            ErrorKind::Protocol,
            format!("bad upload location {}: {e}", redact_url(url)),
        )
    })?;
    url.query_pairs_mut().extend_pairs(pairs);
    Ok(url)
}

impl RegistryClient {
    /// Uploads blob `digest` of `size` bytes from `data` into `image`'s repository: `POST` to start, then one
    /// `PUT`, or `PATCH` chunks and a final `PUT` when [`crate::RegistryOptions::chunk_size`] is set. Callers
    /// check [`RegistryClient::blob_exists`] or try [`RegistryClient::mount_blob`] first to skip uploads.
    pub async fn push_blob<S>(
        &self,
        image: &ImageRef,
        digest: &str,
        size: u64,
        data: S,
    ) -> Result<()>
    where
        S: Stream<Item = Result<Bytes>> + Send + 'static,
    {
        let call = blob_call(
            "push blob",
            image,
            digest,
            vec![push_scope(&image.repository)],
        );
        let start = with_retry(&self.inner.options.retry, || {
            self.start_upload(&call, image, &[])
        })
        .await?;
        let Upload::Started(location) = start else {
            return Ok(());
        };
        let result = match self.inner.options.chunk_size {
            None => self.put_whole(&call, &location, digest, size, data).await,
            Some(chunk) => {
                let digest = std::future::ready(Ok(digest.to_string()));
                self.put_chunked(&call, location, digest, chunk.max(1), data)
                    .await
            }
        };
        result.map_err(|f| f.error)
    }

    /// [`RegistryClient::push_blob`] with data `open` gives afresh for each try: sent again while the upload fails
    /// temporarily (a connection cut mid-body, a 5xx answer to it) and once after a token died while it was sent
    /// ([`crate::Again`]).
    pub async fn push_blob_from<F, Fut, S>(
        &self,
        image: &ImageRef,
        digest: &str,
        size: u64,
        mut open: F,
    ) -> Result<()>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<S>>,
        S: Stream<Item = Result<Bytes>> + Send + 'static,
    {
        self.again(|| {
            let data = open();
            async move { self.push_blob(image, digest, size, data.await?).await }
        })
        .await
    }

    /// Makes blob `digest` from `from_repository` (same registry) available in `image`'s repository without
    /// uploading it. `false` means the registry did not mount it (unknown there, or no access): upload it.
    pub async fn mount_blob(
        &self,
        image: &ImageRef,
        from_repository: &str,
        digest: &str,
    ) -> Result<bool> {
        let call = blob_call(
            "mount blob",
            image,
            digest,
            vec![push_scope(&image.repository), pull_scope(from_repository)],
        );
        let query = [("mount", digest), ("from", from_repository)];
        match with_retry(&self.inner.options.retry, || {
            self.start_upload(&call, image, &query)
        })
        .await?
        {
            Upload::Done => Ok(true),
            Upload::Started(location) => {
                // the registry opened an upload instead; cancel it (best effort, it expires anyway)
                let _ = self
                    .send(&call, false, |http, _| http.delete(&location))
                    .await;
                Ok(false)
            }
        }
    }

    async fn start_upload(
        &self,
        call: &Call<'_>,
        image: &ImageRef,
        query: &[(&str, &str)],
    ) -> Result<Upload, Failure> {
        let timeout = self.inner.options.request_timeout;
        let mut base_used = String::new();
        let response = self
            .send(call, true, |http, base| {
                base_used = base.to_string();
                http.post(format!("{base}/v2/{}/blobs/uploads/", image.repository))
                    .query(query)
                    .header(CONTENT_LENGTH, 0)
                    .timeout(timeout)
            })
            .await?;
        match response.status() {
            StatusCode::CREATED => Ok(Upload::Done),
            StatusCode::ACCEPTED => Ok(Upload::Started(upload_location(
                &base_used, &response, call,
            )?)),
            _ => Err(self.failure(call, response).await),
        }
    }

    async fn put_whole<S>(
        &self,
        call: &Call<'_>,
        location: &str,
        digest: &str,
        size: u64,
        data: S,
    ) -> Result<(), Failure>
    where
        S: Stream<Item = Result<Bytes>> + Send + 'static,
    {
        let url = with_query(location, &[("digest", digest)], call)?;
        let mut body = Some(reqwest::Body::wrap_stream(data));
        let response = self
            .send(call, false, |http, _| {
                let request = http
                    .put(url.clone())
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(CONTENT_LENGTH, size);
                match body.take() {
                    Some(body) => request.body(body),
                    None => request,
                }
            })
            .await?;
        self.finish(call, response, digest).await
    }

    /// `PATCH` chunks of `chunk` bytes and a closing `PUT`; `digest` is asked for only once `data` has ended.
    async fn put_chunked<S, D>(
        &self,
        call: &Call<'_>,
        mut location: String,
        digest: D,
        chunk: u64,
        data: S,
    ) -> Result<(), Failure>
    where
        S: Stream<Item = Result<Bytes>> + Send + 'static,
        D: std::future::Future<Output = Result<String>>,
    {
        let chunk = usize::try_from(chunk).unwrap_or(usize::MAX);
        let mut data = Box::pin(data);
        let mut buffer = BytesMut::new();
        let mut offset = 0u64;
        let mut ended = false;
        loop {
            while buffer.len() < chunk && !ended {
                match data.next().await {
                    Some(item) => buffer.extend_from_slice(&item.map_err(Failure::from)?),
                    None => ended = true,
                }
            }
            if ended && buffer.len() <= chunk {
                break;
            }
            let part = buffer.split_to(chunk).freeze();
            let range = format!("{offset}-{}", offset + part.len() as u64 - 1);
            let response = self
                .send(call, true, |http, _| {
                    http.patch(&location)
                        .header(CONTENT_TYPE, "application/octet-stream")
                        .header(CONTENT_LENGTH, part.len())
                        .header("Content-Range", &range)
                        .body(part.clone())
                })
                .await?;
            if response.status() != StatusCode::ACCEPTED {
                return Err(self.failure(call, response).await);
            }
            let base = reqwest::Url::parse(&location)
                .map(|u| u.origin().ascii_serialization())
                .unwrap_or_default();
            location = upload_location(&base, &response, call)?;
            offset += part.len() as u64;
        }
        // the last (possibly empty) piece goes with the closing PUT, as the distribution spec allows
        let last = buffer.freeze();
        let digest = digest.await?;
        let url = with_query(&location, &[("digest", &digest)], call)?;
        let response = self
            .send(call, true, |http, _| {
                http.put(url.clone())
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(CONTENT_LENGTH, last.len())
                    .body(last.clone())
            })
            .await?;
        self.finish(call, response, &digest).await
    }

    /// Uploads a blob whose digest is known only once `data` has ended (it is compressed while it is sent):
    /// `POST`, one streamed `PATCH` (or chunks, when [`crate::RegistryOptions::chunk_size`] is set), then the
    /// closing `PUT` with the digest `digest` resolves to. If `digest` fails, the upload is cancelled and
    /// nothing is stored under any name. Not retried once data was sent, as [`RegistryClient::push_blob`].
    pub(crate) async fn push_blob_streamed<S, D>(
        &self,
        image: &ImageRef,
        what: &str,
        data: S,
        digest: D,
    ) -> Result<()>
    where
        S: Stream<Item = Result<Bytes>> + Send + 'static,
        D: std::future::Future<Output = Result<String>>,
    {
        let call = blob_call(
            "push blob",
            image,
            what,
            vec![push_scope(&image.repository)],
        );
        let start = with_retry(&self.inner.options.retry, || {
            self.start_upload(&call, image, &[])
        })
        .await?;
        let Upload::Started(location) = start else {
            return Err(call.error(
                ErrorKind::Protocol,
                format!(
                    "{}: the registry took an upload before it was sent",
                    call.target
                ),
            ));
        };
        let result = match self.inner.options.chunk_size {
            Some(chunk) => {
                self.put_chunked(&call, location, digest, chunk.max(1), data)
                    .await
            }
            None => self.put_streamed(&call, location, digest, data).await,
        };
        result.map_err(|f| f.error)
    }

    async fn put_streamed<S, D>(
        &self,
        call: &Call<'_>,
        location: String,
        digest: D,
        data: S,
    ) -> Result<(), Failure>
    where
        S: Stream<Item = Result<Bytes>> + Send + 'static,
        D: std::future::Future<Output = Result<String>>,
    {
        // the registry must answer within a request's time once it has every byte: a silent one is temporary
        let (ended, sent) = tokio::sync::oneshot::channel::<()>();
        let end = futures_util::stream::once(async move {
            let _ = ended.send(());
            None
        })
        .filter_map(std::future::ready);
        let mut body = Some(reqwest::Body::wrap_stream(data.chain(end)));
        let patch = self.send(call, false, |http, _| {
            let request = http
                .patch(&location)
                .header(CONTENT_TYPE, "application/octet-stream");
            match body.take() {
                Some(body) => request.body(body),
                None => request,
            }
        });
        let timeout = self.inner.options.request_timeout;
        let response = tokio::select! {
            response = patch => response?,
            () = async {
                let _ = sent.await;
                tokio::time::sleep(timeout).await;
            } => {
                return Err(call
                    .error(
                        ErrorKind::Unavailable,
                        format!(
                            "{}: the registry did not answer within {} s of the upload's end",
                            call.target,
                            timeout.as_secs()
                        ),
                    )
                    .into());
            }
        };
        if response.status() != StatusCode::ACCEPTED && !response.status().is_success() {
            return Err(self.failure(call, response).await);
        }
        let base = reqwest::Url::parse(&location)
            .map(|u| u.origin().ascii_serialization())
            .unwrap_or_default();
        let location = upload_location(&base, &response, call)?;
        let digest = match digest.await {
            Ok(digest) => digest,
            Err(e) => {
                // best effort: the registry drops abandoned uploads anyway
                let _ = self
                    .send(call, false, |http, _| http.delete(&location))
                    .await;
                return Err(e.into());
            }
        };
        let url = with_query(&location, &[("digest", &digest)], call)?;
        let response = self
            .send(call, true, |http, _| {
                http.put(url.clone())
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(CONTENT_LENGTH, 0)
            })
            .await?;
        self.finish(call, response, &digest).await
    }

    async fn finish(
        &self,
        call: &Call<'_>,
        response: reqwest::Response,
        digest: &str,
    ) -> Result<(), Failure> {
        if response.status() != StatusCode::CREATED && !response.status().is_success() {
            return Err(self.failure(call, response).await);
        }
        match header(&response, "docker-content-digest") {
            Some(stored) if stored != digest => Err(call
                .error(
                    ErrorKind::Protocol,
                    format!("{}: the registry stored {stored}", call.target),
                )
                .into()),
            _ => Ok(()),
        }
    }
}

enum Upload {
    /// The registry already has it (a mount, or a blob it deduplicated).
    Done,
    /// Upload at this location.
    Started(String),
}

/// Makes a one-chunk stream from bytes in memory, for [`RegistryClient::push_blob`].
pub fn bytes_stream(bytes: impl Into<Bytes>) -> impl Stream<Item = Result<Bytes>> + Send + 'static {
    futures_util::stream::iter([Ok(bytes.into())])
}

/// The digest and size of bytes in memory, as [`RegistryClient::push_blob`] takes them.
pub fn describe_bytes(bytes: &[u8]) -> (String, u64) {
    (sha256_digest(bytes), bytes.len() as u64)
}
