//! Exporting an image for berth's own push: `GET /libpod/images/{name}/get?format=docker-archive&compress=false`.
//!
//! Of libpod's formats, `docker-archive` names each uncompressed layer by its diff id (`<hex>.tar`), so berth
//! knows which layer an entry is before reading it and skips the ones the registry has. The service writes the
//! archive to its temporary folder before sending it (libpod 4.3 does so for every format); berth reads the
//! answer as it arrives and keeps none of it.

use berth_core::engine::ExportStream;
use berth_core::Result;
use futures_util::StreamExt as _;
use http::Method;
use http_body_util::BodyExt as _;

use crate::client::{self, image_path, query};
use crate::errors::{io_error, to_error, Failure, Op};
use crate::PodmanEngine;

/// The export stream of `reference`.
pub(crate) async fn export(engine: &PodmanEngine, reference: &str) -> Result<ExportStream> {
    let params = [
        ("format", "docker-archive".to_string()),
        ("compress", "false".to_string()),
    ];
    let path = format!(
        "/libpod/images/{}/get?{}",
        image_path(reference),
        query(&params)
    );
    let socket = engine.socket().clone();
    let response = engine
        .client
        .send(Method::GET, &path, &[], client::empty())
        .await
        .map_err(|e| io_error(e, Op::Push, &socket))?;
    if !response.status().is_success() {
        let (status, body) = client::read_all(response)
            .await
            .map_err(|e| io_error(e, Op::Push, &socket))?;
        return Err(to_error(
            Failure::Status {
                code: status.as_u16(),
                message: &berth_http::failure::message_of(&body),
            },
            Op::Push,
            &socket,
        ));
    }
    let stream = response.into_body().into_data_stream().map(move |item| {
        item.map_err(|e| io_error(berth_http::client::hyper_io(e), Op::Push, &socket))
    });
    Ok(Box::pin(stream))
}
