//! The content service: blob info, labels, streamed reads and writes.

use std::collections::HashMap;
use std::pin::Pin;
use std::time::Duration;

use berth_core::{ErrorKind, Result};
use bytes::Bytes;
use containerd_client::services::v1::content_client::ContentClient;
use containerd_client::services::v1::{
    AbortRequest, Info, InfoRequest, ListStatusesRequest, ReadContentRequest, UpdateRequest,
    WriteAction, WriteContentRequest, WriteContentResponse,
};
use containerd_client::tonic::Code;
use futures_util::{Stream, StreamExt as _};
use tokio::sync::mpsc;

use super::{missing, Daemon};
use crate::errors::{error, status_error, Op};
use crate::labels::{with_source, DISTRIBUTION_SOURCE};

/// A blob's bytes as a stream.
pub(crate) type BlobStream = Pin<Box<dyn Stream<Item = Result<Bytes>> + Send>>;

/// What commits a blob: its digest and size (checked by containerd against the bytes written) and its labels.
#[derive(Debug, Clone)]
pub(crate) struct BlobEnd {
    pub(crate) digest: String,
    pub(crate) size: i64,
    pub(crate) labels: HashMap<String, String>,
}

/// The most [`Daemon::read_all`] reads (as the registry client's cap for blobs read into memory).
const MAX_IN_MEMORY: usize = berth_registry::MAX_IN_MEMORY_BLOB_BYTES as usize;

/// Bytes per write request (containerd accepts up to 16 MiB per message).
const CHUNK: usize = 1 << 20;

/// Write requests sent before the answer to the first of them is awaited. One at a time, berth and containerd
/// took turns (each waiting while the other worked on a chunk); containerd handles a stream's requests in order.
const WRITES_IN_FLIGHT: usize = 4;

impl Daemon {
    fn content(&self) -> ContentClient<containerd_client::tonic::transport::Channel> {
        ContentClient::new(self.channel.clone())
    }

    /// The labels of blob `digest`, or `None` when the store does not have it.
    pub(crate) async fn content_labels(
        &self,
        digest: &str,
        op: Op,
    ) -> Result<Option<HashMap<String, String>>> {
        let request = self.call(InfoRequest {
            digest: digest.to_string(),
        });
        match self.content().info(request).await {
            Ok(response) => Ok(Some(
                response
                    .into_inner()
                    .info
                    .ok_or_else(|| missing("content info", op))?
                    .labels,
            )),
            Err(s) if s.code() == Code::NotFound => Ok(None),
            Err(s) => Err(status_error(&s, op)),
        }
    }

    /// Sets `labels` on blob `digest` (other labels stay).
    pub(crate) async fn set_content_labels(
        &self,
        digest: &str,
        labels: &HashMap<String, String>,
        op: Op,
    ) -> Result<()> {
        if labels.is_empty() {
            return Ok(());
        }
        let paths = labels.keys().map(|k| format!("labels.{k}")).collect();
        let request = self.call(UpdateRequest {
            info: Some(Info {
                digest: digest.to_string(),
                labels: labels.clone(),
                ..Info::default()
            }),
            update_mask: Some(prost_types::FieldMask { paths }),
        });
        self.content()
            .update(request)
            .await
            .map_err(|s| status_error(&s, op))?;
        Ok(())
    }

    /// Sets `labels` on blob `digest`, which the store has; a distribution-source label adds its repository to
    /// the ones the blob names already instead of replacing them (a push mounts from any of them), within
    /// containerd's size limit.
    pub(crate) async fn add_content_labels(
        &self,
        digest: &str,
        labels: &HashMap<String, String>,
        op: Op,
    ) -> Result<()> {
        let mut merged = labels.clone();
        if labels.keys().any(|k| k.starts_with(DISTRIBUTION_SOURCE)) {
            let current = self.content_labels(digest, op).await?.unwrap_or_default();
            for (key, repository) in labels {
                if !key.starts_with(DISTRIBUTION_SOURCE) {
                    continue;
                }
                match with_source(key, current.get(key).map(String::as_str), repository) {
                    Some(value) => merged.insert(key.clone(), value),
                    None => merged.remove(key),
                };
            }
        }
        self.set_content_labels(digest, &merged, op).await
    }

    /// Removes label `key` from blob `digest`; a missing blob is fine.
    pub(crate) async fn remove_content_label(&self, digest: &str, key: &str, op: Op) -> Result<()> {
        let request = self.call(UpdateRequest {
            info: Some(Info {
                digest: digest.to_string(),
                ..Info::default()
            }),
            // a label path in the mask whose key the info lacks deletes that label
            update_mask: Some(prost_types::FieldMask {
                paths: vec![format!("labels.{key}")],
            }),
        });
        match self.content().update(request).await {
            Ok(_) => Ok(()),
            Err(s) if s.code() == Code::NotFound => Ok(()),
            Err(s) => Err(status_error(&s, op)),
        }
    }

    /// Streams blob `digest` from the content store.
    pub(crate) async fn read_blob(&self, digest: &str, op: Op) -> Result<BlobStream> {
        let request = self.request(ReadContentRequest {
            digest: digest.to_string(),
            offset: 0,
            size: 0,
        });
        let idle = self.timeouts.idle;
        let stream = within(idle, op, async {
            self.content()
                .read(request)
                .await
                .map_err(|s| status_error(&s, op))
        })
        .await?
        .into_inner();
        Ok(idle_bounded(
            stream.map(move |item| {
                item.map(|r| Bytes::from(r.data))
                    .map_err(|s| status_error(&s, op))
            }),
            idle,
            op,
        ))
    }

    /// Reads a whole (small) blob: a manifest, index or config, at most [`MAX_IN_MEMORY`] bytes (an image
    /// pulled by another client may hold anything under a manifest's digest).
    pub(crate) async fn read_all(&self, digest: &str, op: Op) -> Result<Vec<u8>> {
        let mut stream = self.read_blob(digest, op).await?;
        let mut all = Vec::new();
        while let Some(chunk) = stream.next().await {
            all.extend_from_slice(&chunk?);
            if all.len() > MAX_IN_MEMORY {
                return Err(error(
                    ErrorKind::Protocol,
                    op,
                    format!(
                        "{digest} is larger than the {} MiB berth reads into memory for a manifest or config",
                        MAX_IN_MEMORY >> 20
                    ),
                ));
            }
        }
        Ok(all)
    }

    /// Writes blob `expected` (`total` bytes from `data`) under ingest `reference`, committing it with
    /// `labels`. A blob the store already has is not written again; its labels are set. A few write requests
    /// are in flight at a time ([`WRITES_IN_FLIGHT`]), so a failure is seen within a few chunks of its cause.
    pub(crate) async fn write_blob(
        &self,
        reference: &str,
        expected: &str,
        total: i64,
        labels: HashMap<String, String>,
        data: BlobStream,
        op: Op,
    ) -> Result<()> {
        let end = BlobEnd {
            digest: expected.to_string(),
            size: total,
            labels,
        };
        self.write_content(reference, Some(&end), data, async { Ok(end.clone()) }, op)
            .await
    }

    /// [`Daemon::write_blob`] of a blob whose digest, size and labels are known only once `data` has ended
    /// (`end` gives them then): a layer written straight into the store as berth makes it. A blob the store has
    /// already is found at the commit, which then leaves the ingest and sets the labels.
    pub(crate) async fn write_blob_streamed(
        &self,
        reference: &str,
        data: BlobStream,
        end: impl std::future::Future<Output = Result<BlobEnd>>,
        op: Op,
    ) -> Result<()> {
        self.write_content(reference, None, data, end, op).await
    }

    async fn write_content(
        &self,
        reference: &str,
        known: Option<&BlobEnd>,
        mut data: BlobStream,
        end: impl std::future::Future<Output = Result<BlobEnd>>,
        op: Op,
    ) -> Result<()> {
        let idle = self.timeouts.idle;
        let (tx, rx) = mpsc::channel::<WriteContentRequest>(2);
        let base = WriteContentRequest {
            r#ref: reference.to_string(),
            total: known.map_or(0, |k| k.size),
            expected: known.map(|k| k.digest.clone()).unwrap_or_default(),
            ..WriteContentRequest::default()
        };
        let closed = || {
            error(
                ErrorKind::Protocol,
                op,
                "containerd closed the content write stream",
            )
        };
        tx.send(WriteContentRequest {
            action: WriteAction::Stat as i32,
            ..base.clone()
        })
        .await
        .map_err(|_| closed())?;
        let outbound =
            futures_util::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|m| (m, rx)) },
            );
        let exists = |s: &containerd_client::tonic::Status| s.code() == Code::AlreadyExists;
        // the store has the blob already (only a digest given up front can say so before the end)
        let had = || async move {
            match known {
                Some(known) => {
                    self.add_content_labels(&known.digest, &known.labels, op)
                        .await
                }
                None => Err(error(
                    ErrorKind::Protocol,
                    op,
                    "containerd said a blob exists before its digest was given",
                )),
            }
        };
        let opened = within(idle, op, async {
            Ok(self.content().write(self.request(outbound)).await)
        })
        .await?;
        let mut answers = match opened {
            Ok(response) => response.into_inner(),
            Err(s) if exists(&s) => return had().await,
            Err(s) => return Err(status_error(&s, op)),
        };
        if within(idle, op, next_answer(&mut answers, op))
            .await?
            .is_none()
        {
            return had().await;
        }
        let (mut offset, mut unanswered) = (0i64, 0usize);
        while let Some(chunk) = data.next().await {
            let chunk = chunk?;
            for piece in chunk.chunks(CHUNK) {
                let message = WriteContentRequest {
                    action: WriteAction::Write as i32,
                    offset,
                    data: piece.to_vec(),
                    ..base.clone()
                };
                let sent = within(idle, op, async { Ok(tx.send(message).await.is_ok()) }).await?;
                if !sent {
                    // containerd ended the stream on a write still unanswered: another writer committed the same
                    // blob first, or a failure (a full disk, say) that its answer names
                    let why = within(idle, op, async { Ok(why_closed(&mut answers).await) });
                    return match why.await.ok().flatten() {
                        Some(s) if exists(&s) => had().await,
                        Some(s) => Err(status_error(&s, op)),
                        None => Err(closed()),
                    };
                }
                offset += piece.len() as i64;
                unanswered += 1;
                // a few writes in flight: containerd writes one while the next is on its way
                while unanswered >= WRITES_IN_FLIGHT {
                    if within(idle, op, next_answer(&mut answers, op))
                        .await?
                        .is_none()
                    {
                        return had().await;
                    }
                    unanswered -= 1;
                }
            }
        }
        for _ in 0..unanswered {
            if within(idle, op, next_answer(&mut answers, op))
                .await?
                .is_none()
            {
                return had().await;
            }
        }
        let end = end.await?;
        tx.send(WriteContentRequest {
            action: WriteAction::Commit as i32,
            offset,
            total: end.size,
            expected: end.digest.clone(),
            labels: end.labels.clone(),
            ..base
        })
        .await
        .map_err(|_| closed())?;
        if within(idle, op, next_answer(&mut answers, op))
            .await?
            .is_none()
        {
            self.add_content_labels(&end.digest, &end.labels, op)
                .await?;
        }
        Ok(())
    }

    /// Drops an unfinished ingest; one that is gone already (committed, or aborted by someone else) is fine.
    pub(crate) async fn abort_ingest(&self, reference: &str, op: Op) -> Result<()> {
        let request = self.call(AbortRequest {
            r#ref: reference.to_string(),
        });
        match self.content().abort(request).await {
            Ok(_) => Ok(()),
            Err(s) if s.code() == Code::NotFound => Ok(()),
            Err(s) => Err(status_error(&s, op)),
        }
    }

    /// The unfinished ingests (blob writes) whose ref starts with `prefix`: ref, no labels (an ingest has none),
    /// and when its write started.
    pub(crate) async fn ingests(&self, prefix: &str, op: Op) -> Result<Vec<super::Labeled>> {
        let request = self.call(ListStatusesRequest {
            filters: Vec::new(),
        });
        let statuses = self
            .content()
            .list_statuses(request)
            .await
            .map_err(|s| status_error(&s, op))?
            .into_inner()
            .statuses;
        Ok(statuses
            .into_iter()
            .filter(|s| s.r#ref.starts_with(prefix))
            .map(|s| super::Labeled {
                id: s.r#ref,
                labels: HashMap::new(),
                created: s.started_at.map(|t| t.seconds),
            })
            .collect())
    }
}

/// `work`, failing as a temporary error when it takes longer than `idle`: the daemon stopped answering.
async fn within<T>(
    idle: Duration,
    op: Op,
    work: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    tokio::time::timeout(idle, work)
        .await
        .unwrap_or_else(|_| Err(stalled(idle, op)))
}

fn stalled(idle: Duration, op: Op) -> berth_core::Error {
    error(
        ErrorKind::Unavailable,
        op,
        format!(
            "the content stream made no progress for {} s",
            idle.as_secs_f32()
        ),
    )
}

/// `stream`, ending with a temporary error when its next item takes longer than `idle`.
fn idle_bounded(
    stream: impl Stream<Item = Result<Bytes>> + Send + 'static,
    idle: Duration,
    op: Op,
) -> BlobStream {
    let state = (Box::pin(stream), false);
    Box::pin(futures_util::stream::unfold(
        state,
        move |(mut stream, failed)| async move {
            if failed {
                return None;
            }
            match tokio::time::timeout(idle, stream.next()).await {
                Ok(Some(item)) => Some((item, (stream, false))),
                Ok(None) => None,
                Err(_) => Some((Err(stalled(idle, op)), (stream, true))),
            }
        },
    ))
}

/// The status containerd ended a write stream with, from the answers not read yet.
async fn why_closed(
    answers: &mut containerd_client::tonic::codec::Streaming<WriteContentResponse>,
) -> Option<containerd_client::tonic::Status> {
    loop {
        match answers.message().await {
            Ok(Some(_)) => continue,
            Ok(None) => return None,
            Err(s) => return Some(s),
        }
    }
}

/// The next answer of a write stream; `None` when containerd says the blob exists already.
async fn next_answer(
    answers: &mut containerd_client::tonic::codec::Streaming<WriteContentResponse>,
    op: Op,
) -> Result<Option<WriteContentResponse>> {
    match answers.message().await {
        Ok(Some(answer)) => Ok(Some(answer)),
        Ok(None) => Err(error(
            ErrorKind::Protocol,
            op,
            "containerd ended the content write stream early",
        )),
        Err(s) if s.code() == Code::AlreadyExists => Ok(None),
        Err(s) => Err(status_error(&s, op)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stream_that_stops_sending_ends_with_an_error() {
        // one chunk, then nothing ever again: a daemon that stalled mid-blob
        let stalled = futures_util::stream::iter([Ok(Bytes::from_static(b"first"))])
            .chain(futures_util::stream::pending());
        let mut stream = idle_bounded(stalled, Duration::from_millis(100), Op::Pull);
        let guard = Duration::from_secs(60);
        let first = tokio::time::timeout(guard, stream.next())
            .await
            .expect("first");
        assert_eq!(&first.expect("item").expect("bytes")[..], b"first");
        let err = tokio::time::timeout(guard, stream.next())
            .await
            .expect("hung: no idle timeout")
            .expect("an item")
            .expect_err("stalled");
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
        assert!(tokio::time::timeout(guard, stream.next())
            .await
            .expect("ends")
            .is_none());
    }
}
