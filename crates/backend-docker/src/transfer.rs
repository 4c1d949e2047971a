//! Push and pull through the daemon, with the caller's registry credentials.
//!
//! The daemon answers both with a progress stream; a registry's refusal arrives inside it as text and is
//! classified in [`crate::errors::classify`]. The pushed manifest's digest is only in a status line
//! (`1: digest: sha256:... size: 527`): bollard's model drops the `aux` object that also carries it.

use berth_core::engine::{Credentials, Progress, ProgressEvent, PushedImage, TransferOptions};
use berth_core::{Error, ErrorKind, Result};
use bollard::auth::DockerCredentials;
use bollard::models::ProgressDetail;
use bollard::query_parameters::{CreateImageOptions, PushImageOptions};

use crate::errors::{client_error, Op};
use crate::DockerEngine;

/// Pushes `reference` (`repo:tag`) and returns the manifest digest the registry stored.
pub(crate) async fn push(
    engine: &DockerEngine,
    reference: &str,
    options: &TransferOptions,
    progress: &dyn Progress,
) -> Result<PushedImage> {
    let endpoint = engine.endpoint_name();
    let (repository, tag) = split_reference(reference, Op::Push)?;
    let docker = engine.long_client();
    let mut stream = docker.push_image(
        &repository,
        Some(PushImageOptions {
            tag: Some(tag),
            platform: None,
        }),
        options.credentials.as_ref().map(credentials),
    );
    let mut digest = None;
    while let Some(item) = engine.next_within(&mut stream, Op::Push).await? {
        let info = item.map_err(|e| client_error(e, Op::Push, &endpoint))?;
        if let Some(status) = &info.status {
            if let Some(d) = berth_http::stream::pushed_digest(status) {
                digest = Some(d.to_string());
            }
        }
        report(progress, info.status, info.progress_detail, None);
    }
    let digest = digest.ok_or_else(|| {
        Error::new(
            ErrorKind::Protocol,
            format!("the daemon pushed {reference} without reporting the manifest digest"),
        )
        .with_engine(crate::ENGINE)
        .with_operation(berth_core::Operation::Push)
    })?;
    Ok(PushedImage { digest })
}

/// Pulls `reference` (tag or digest; `latest` when it names neither).
pub(crate) async fn pull(
    engine: &DockerEngine,
    reference: &str,
    options: &TransferOptions,
    progress: &dyn Progress,
) -> Result<()> {
    let endpoint = engine.endpoint_name();
    let (repository, tag) = split_reference(reference, Op::Pull)?;
    let docker = engine.long_client();
    let mut stream = docker.create_image(
        Some(CreateImageOptions {
            from_image: Some(repository),
            tag: Some(tag),
            ..CreateImageOptions::default()
        }),
        None,
        options.credentials.as_ref().map(credentials),
    );
    while let Some(item) = engine.next_within(&mut stream, Op::Pull).await? {
        let info = item.map_err(|e| client_error(e, Op::Pull, &endpoint))?;
        report(progress, info.status, info.progress_detail, info.id);
    }
    Ok(())
}

fn credentials(c: &Credentials) -> DockerCredentials {
    DockerCredentials {
        username: Some(c.username.clone()),
        password: Some(c.password.expose().to_string()),
        serveraddress: Some(c.registry.clone()),
        ..DockerCredentials::default()
    }
}

fn report(
    progress: &dyn Progress,
    status: Option<String>,
    detail: Option<ProgressDetail>,
    id: Option<String>,
) {
    let counts = detail.and_then(|d| Some((d.current?, d.total)));
    match (counts, status) {
        (Some((current, total)), _) => progress.event(ProgressEvent::Transfer {
            id: id.unwrap_or_default(),
            current: u64::try_from(current).unwrap_or(0),
            total: total.and_then(|t| u64::try_from(t).ok()).filter(|t| *t > 0),
        }),
        (None, Some(status)) => {
            let line = match id {
                Some(id) if !id.is_empty() => format!("{id}: {status}"),
                _ => status,
            };
            progress.event(ProgressEvent::Line(line));
        }
        (None, None) => {}
    }
}

/// `registry/repo:tag` → (`registry/repo`, `tag`); `repo@sha256:...` → (`repo`, `sha256:...`), which the
/// daemon's pull accepts in its tag parameter; no tag means `latest`.
pub(crate) fn split_reference(reference: &str, op: Op) -> Result<(String, String)> {
    let invalid = |why: &str| {
        Error::invalid(format!("`{reference}`: {why}"))
            .with_engine(crate::ENGINE)
            .with_operation(op)
    };
    if reference.is_empty() || reference.contains(char::is_whitespace) {
        return Err(invalid("not an image reference"));
    }
    let written = berth_core::reference::WrittenRef::split(reference);
    match written.digest {
        Some(_) if op != Op::Pull => Err(invalid(
            "a digest reference cannot be pushed or tagged; name a tag",
        )),
        Some(digest) => Ok((written.name.to_string(), digest.to_string())),
        None => Ok((
            written.name.to_string(),
            written.tag_or_latest().to_string(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_at_the_tag() {
        let split = |r| split_reference(r, Op::Pull).expect("valid");
        assert_eq!(
            split("127.0.0.1:5000/a/b:1"),
            ("127.0.0.1:5000/a/b".into(), "1".into())
        );
        assert_eq!(
            split("127.0.0.1:5000/a/b"),
            ("127.0.0.1:5000/a/b".into(), "latest".into())
        );
        let digest = format!("sha256:{}", "b".repeat(64));
        assert_eq!(split(&format!("r/a:1@{digest}")), ("r/a".into(), digest));
        assert!(split_reference("r/a@sha256:00", Op::Push).is_err());
    }
}
