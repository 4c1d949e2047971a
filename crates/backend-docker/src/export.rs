//! Exporting an image for berth's own push: `GET /images/get?names=...`, the stream `docker save` reads.
//!
//! dockerd 20.10 writes the image to its temporary folder before it sends a byte, then streams the tar; layers
//! come as `<v1 id>/layer.tar`, uncompressed, with `manifest.json` last. Pushing it through berth's registry
//! client compresses on every core, where `docker push` compresses on one.

use berth_core::engine::ExportStream;
use berth_core::Result;
use futures_util::StreamExt as _;

use crate::errors::{client_error, Op};
use crate::DockerEngine;

/// The export stream of `reference`; errors name the daemon and the push they serve, and a full disk names
/// the daemon's storage at `root` (its `DockerRootDir`, where the export is written first): the daemon's
/// answer arrives as the stream's first item, so it is named here rather than by the caller.
pub(crate) async fn export(
    engine: &DockerEngine,
    reference: &str,
    root: String,
) -> Result<ExportStream> {
    let endpoint = engine.endpoint_name();
    let stream = engine
        .long_client()
        .export_images(&[reference])
        .map(move |item| {
            item.map_err(|e| match client_error(e, Op::Push, &endpoint) {
                e if e.is_unplaced_no_space() => crate::out_of_space_in(&root, e),
                e => e,
            })
        });
    Ok(Box::pin(stream))
}
