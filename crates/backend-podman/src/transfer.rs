//! Push and pull, with credentials in `X-Registry-Auth` and `tlsVerify=false` for insecure registries.
//!
//! Pushes go through the Docker-compatible `POST /images/{name}/push`: libpod 4.3's own push endpoint does not
//! say which manifest digest the registry stored, the compatible one does (`<tag>: digest: sha256:... size: N`).
//! Pulls use `POST /libpod/images/pull` with `policy=always`, so the registry is always asked.

use berth_core::engine::{Progress, ProgressEvent, PushedImage, TransferOptions};
use berth_core::reference::ImageRef;
use berth_core::{Error, ErrorKind, Result};
use http::Method;

use crate::client::{self, image_path, query, Lines};
use crate::errors::{io_error, to_error, Failure, Op};
use crate::{auth_header, auth_json, PodmanEngine, ENGINE};

pub(crate) async fn push(
    engine: &PodmanEngine,
    reference: &str,
    options: &TransferOptions,
    progress: &dyn Progress,
) -> Result<PushedImage> {
    let parsed =
        ImageRef::parse(reference).map_err(|e| e.with_engine(ENGINE).with_operation(Op::Push))?;
    if parsed.digest.is_some() {
        return Err(crate::invalid(
            Op::Push,
            format!("`{reference}` names a digest; push needs a tag"),
        ));
    }
    let (name, tag) = crate::images::split_reference(reference, Op::Push)?;
    let mut params = vec![("tag", tag)];
    if options.insecure {
        params.push(("tlsVerify", "false".to_string()));
    }
    let path = format!("/images/{}/push?{}", image_path(&name), query(&params));
    let mut lines = stream(engine, &path, options, Op::Push).await?;
    let mut digest = None;
    while let Some(line) = lines
        .next_json()
        .await
        .map_err(|e| io_error(e, Op::Push, engine.socket()))?
    {
        if let Some(message) = line["error"].as_str() {
            return Err(stream_error(engine, message, Op::Push));
        }
        if let Some(event) = transfer_event(&line) {
            progress.event(event);
        } else if let Some(status) = line["status"].as_str() {
            if let Some(found) = berth_http::stream::pushed_digest(status) {
                digest = Some(found.to_string());
            }
            progress.event(ProgressEvent::Line(status.to_string()));
        }
    }
    match digest {
        Some(digest) => Ok(PushedImage { digest }),
        None => Err(Error::new(
            ErrorKind::Protocol,
            format!("the Podman service pushed {reference} but named no manifest digest"),
        )
        .with_engine(ENGINE)
        .with_operation(Op::Push)),
    }
}

pub(crate) async fn pull(
    engine: &PodmanEngine,
    reference: &str,
    options: &TransferOptions,
    progress: &dyn Progress,
) -> Result<()> {
    let mut params = vec![
        ("reference", reference.to_string()),
        ("policy", "always".to_string()),
    ];
    if options.insecure {
        params.push(("tlsVerify", "false".to_string()));
    }
    let path = format!("/libpod/images/pull?{}", query(&params));
    let mut lines = stream(engine, &path, options, Op::Pull).await?;
    let mut pulled = false;
    while let Some(line) = lines
        .next_json()
        .await
        .map_err(|e| io_error(e, Op::Pull, engine.socket()))?
    {
        if let Some(message) = line["error"].as_str() {
            return Err(stream_error(engine, message, Op::Pull));
        }
        if let Some(text) = line["stream"].as_str() {
            progress.event(ProgressEvent::Line(text.trim_end().to_string()));
        }
        if line["id"].as_str().is_some_and(|id| !id.is_empty()) {
            pulled = true;
        }
    }
    if pulled {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::Protocol,
            format!("the Podman service's pull of {reference} ended without an image id"),
        )
        .with_engine(ENGINE)
        .with_operation(Op::Pull))
    }
}

/// Sends a transfer request and checks its status; the body is the progress stream.
async fn stream(
    engine: &PodmanEngine,
    path: &str,
    options: &TransferOptions,
    op: Op,
) -> Result<Lines> {
    let mut headers = Vec::new();
    if let Some(credentials) = &options.credentials {
        headers.push(("X-Registry-Auth", auth_header(&auth_json(credentials))));
    }
    let response = engine
        .client
        .send(Method::POST, path, &headers, client::empty())
        .await
        .map_err(|e| io_error(e, op, engine.socket()))?;
    if !response.status().is_success() {
        let (status, body) = client::read_all(response)
            .await
            .map_err(|e| io_error(e, op, engine.socket()))?;
        return Err(to_error(
            Failure::Status {
                code: status.as_u16(),
                message: &berth_http::failure::message_of(&body),
            },
            op,
            engine.socket(),
        ));
    }
    Ok(Lines::new(response, engine.client.idle_timeout))
}

fn stream_error(engine: &PodmanEngine, message: &str, op: Op) -> Error {
    to_error(
        Failure::Stream {
            message,
            in_step: false,
        },
        op,
        engine.socket(),
    )
}

/// A push's byte count for one blob (`{"status": "Pushing", "progressDetail": {...}, "id": ...}`).
fn transfer_event(line: &serde_json::Value) -> Option<ProgressEvent> {
    let detail = line.get("progressDetail")?;
    let current = detail.get("current")?.as_u64()?;
    Some(ProgressEvent::Transfer {
        id: line["id"].as_str().unwrap_or_default().to_string(),
        current,
        total: detail.get("total").and_then(|t| t.as_u64()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counts_become_transfer_events() {
        let line = serde_json::json!({"status": "Pushing", "progressDetail": {"current": 5, "total": 9}, "id": "abc"});
        assert_eq!(
            transfer_event(&line),
            Some(ProgressEvent::Transfer {
                id: "abc".into(),
                current: 5,
                total: Some(9)
            })
        );
        assert_eq!(
            transfer_event(&serde_json::json!({"status": "Pushed", "id": "abc"})),
            None
        );
    }
}
