//! A layer written straight into containerd's content store while berth makes it: the tar is built, compressed
//! and hashed on a blocking thread, and its bytes go to an ingest as they come, with the digest, size and diff id
//! given at the commit. No layer file in between: a 256 MiB `COPY` wrote its layer to a file, then read it back
//! into the store, one after the other.

use std::collections::HashMap;
use std::io::{self, Write};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::{overlay, Builder};
use crate::convert::{BlobEnd, BlobStream, Descriptor};
use crate::errors::{error, io_error, Op};
use crate::labels;
use berth_core::{ErrorKind, Result};
use berth_layer::{copy, LayerDigests};

/// Bytes per piece handed to the store (its write requests are 1 MiB too).
const PIECE: usize = 1 << 20;

/// Pieces waiting for the store while the layer goes on being written.
const PIECES_QUEUED: usize = 4;

/// The blocking side: the layer's compressed bytes, sent to the store in pieces.
pub(crate) struct BlobSink {
    to_store: mpsc::Sender<Result<Bytes>>,
    piece: Vec<u8>,
}

/// The store stopped taking the layer (its own error says why).
#[derive(Debug)]
struct StoreStopped;

impl std::fmt::Display for StoreStopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("containerd's content store stopped taking the layer")
    }
}

impl std::error::Error for StoreStopped {}

impl BlobSink {
    fn send(&mut self) -> io::Result<()> {
        if self.piece.is_empty() {
            return Ok(());
        }
        let piece = std::mem::replace(&mut self.piece, Vec::with_capacity(PIECE));
        self.to_store
            .blocking_send(Ok(Bytes::from(piece)))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, StoreStopped))
    }

    /// Sends what is left; the store then sees the layer's end.
    pub(crate) fn close(mut self) -> io::Result<()> {
        self.send()
    }
}

impl Write for BlobSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let taken = buf.len().min(PIECE - self.piece.len());
        self.piece.extend_from_slice(&buf[..taken]);
        if self.piece.len() == PIECE {
            self.send()?;
        }
        Ok(taken)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Runs `write` on a blocking thread, its layer going into the content store as it is written (labelled with
/// its diff id, under the build's lease); the blob's descriptor and the diff id.
pub(crate) async fn write_layer_blob(
    builder: &Builder<'_>,
    what: &'static str,
    write: impl FnOnce(BlobSink) -> io::Result<(BlobSink, LayerDigests)> + Send + 'static,
) -> Result<(Descriptor, String)> {
    let (to_store, mut pieces) = mpsc::channel(PIECES_QUEUED);
    let (ended, end) = oneshot::channel::<BlobEnd>();
    let writer = tokio::task::spawn_blocking(move || {
        let sink = BlobSink {
            to_store,
            piece: Vec::with_capacity(PIECE),
        };
        let (sink, digests) = write(sink)?;
        sink.close()?;
        let _ = ended.send(BlobEnd {
            digest: digests.digest.clone(),
            size: digests.size as i64,
            labels: HashMap::from([(labels::UNCOMPRESSED.to_string(), digests.diff_id.clone())]),
        });
        Ok::<_, io::Error>(digests)
    });
    let reference = crate::owner::Owner::this().name("ingest");
    builder.guard.ingest(&reference);
    let data: BlobStream = Box::pin(futures_util::stream::poll_fn(move |cx| {
        pieces.poll_recv(cx)
    }));
    let end = async {
        end.await.map_err(|_| {
            error(
                ErrorKind::Io,
                Op::Build,
                format!("writing {what}: the layer ended early"),
            )
        })
    };
    let stored = builder
        .daemon
        .write_blob_streamed(&reference, data, end, Op::Build);
    let (written, stored) = tokio::join!(writer, stored);
    let written =
        written.map_err(|e| error(ErrorKind::Io, Op::Build, format!("writing {what}: {e}")))?;
    match (written, stored) {
        (Ok(digests), Ok(())) => {
            builder.guard.ingest_done(&reference);
            let blob = Descriptor {
                media_type: super::run::LAYER_GZIP.to_string(),
                digest: digests.digest,
                size: digests.size as i64,
            };
            Ok((blob, digests.diff_id))
        }
        // the store's error, unless the layer stopped first
        (Err(e), Err(stored)) if is_store_stopped(&e) => Err(stored),
        (Err(e), _) => Err(layer_error(e, what)),
        (Ok(_), Err(stored)) => Err(stored),
    }
}

fn is_store_stopped(e: &io::Error) -> bool {
    e.get_ref()
        .is_some_and(|inner| inner.downcast_ref::<StoreStopped>().is_some())
}

/// A failure of writing a layer, for the user: a source that changed while read fails the build with its name;
/// an upper folder berth cannot read alone (overlay redirects) is [`ErrorKind::Unsupported`], which the RUN
/// step takes as a reason to let the diff service write the layer.
pub(crate) fn layer_error(e: io::Error, what: &str) -> berth_core::Error {
    if let Some(changed) = e
        .get_ref()
        .and_then(|e| e.downcast_ref::<copy::SourceChanged>())
    {
        return error(ErrorKind::BuildFailed, Op::Build, format!("COPY: {changed}")).with_hint(
            "something wrote to that file during the build; build again once it is finished, so the image and \
             its step cache see one version of it",
        );
    }
    if let Some(redirected) = e
        .get_ref()
        .and_then(|e| e.downcast_ref::<overlay::Redirected>())
    {
        return error(
            ErrorKind::Unsupported,
            Op::Build,
            format!("writing {what}: {redirected}"),
        );
    }
    io_error(Op::Build, format!("writing {what}"), e)
}
