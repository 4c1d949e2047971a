//! A bound on a BuildKit build's base-image pull. dockerd's BuildKit downloads `FROM` images with its own
//! registry client, which gives a registry that stops sending mid-answer no limit (measured with dockerd
//! 20.10: the build waits as long as the connection stays open), and berth sets none on a build's stream (a RUN
//! step may be silent for hours). While every running vertex is a pull (`[internal] load metadata for IMAGE`,
//! `[1/2] FROM IMAGE`), the build moves only as the registry sends, so berth gives that phase
//! [`crate::DockerOptions::pull_idle_timeout`] without progress and, past it, closes the build's connection,
//! which makes dockerd cancel the build. Progress is a vertex that changes or a download whose byte count
//! grows, not a message: BuildKit repeats a stalled layer's status (the same byte count) several times a
//! second.

use std::collections::HashMap;
use std::time::Duration;

use berth_core::{Error, ErrorKind};
use bollard::moby::buildkit::v1::StatusResponse;

/// The BuildKit vertexes running now, by digest, with their names.
#[derive(Default)]
pub(crate) struct PullWatch {
    running: HashMap<String, String>,
    /// Bytes each transfer status (a layer download) reported last.
    transferred: HashMap<String, i64>,
}

impl PullWatch {
    /// Takes one status update; whether the build moved: a vertex started or ended, a transfer grew, a step
    /// printed something.
    pub(crate) fn update(&mut self, status: &StatusResponse) -> bool {
        let mut moved = !status.logs.is_empty();
        for vertex in &status.vertexes {
            let running = vertex.started.is_some() && vertex.completed.is_none();
            moved |= if running {
                self.running
                    .insert(vertex.digest.clone(), vertex.name.clone())
                    .is_none()
            } else {
                self.running.remove(&vertex.digest).is_some() || vertex.completed.is_some()
            };
        }
        for transfer in &status.statuses {
            let before = self
                .transferred
                .insert(transfer.id.clone(), transfer.current);
            moved |= before != Some(transfer.current) || transfer.completed.is_some();
        }
        moved
    }

    /// The image being pulled, when pulls are all that runs (a RUN step beside a pull keeps the long limit).
    pub(crate) fn pulling(&self) -> Option<&str> {
        let mut pulled = None;
        for name in self.running.values() {
            pulled = Some(pulled_by(name)?);
        }
        pulled
    }
}

/// The image a vertex pulls: `[internal] load metadata for IMAGE` (its manifest and config) or
/// `[stage 1/3] FROM IMAGE[@digest]` (its layers).
fn pulled_by(vertex: &str) -> Option<&str> {
    if let Some(image) = vertex.strip_prefix("[internal] load metadata for ") {
        return Some(image.trim());
    }
    let (_, instruction) = vertex.strip_prefix('[')?.split_once("] ")?;
    let mut words = instruction.split_whitespace();
    if !words.next()?.eq_ignore_ascii_case("FROM") {
        return None;
    }
    words.next()
}

/// The error for a build whose pull of `image` went `silent` without a word from dockerd: temporary (the
/// registry may answer next time), naming the engine, the pull and the setting.
pub(crate) fn stalled_pull(image: &str, silent: Duration, endpoint: &str) -> Error {
    Error::new(
        ErrorKind::Unavailable,
        format!(
            "dockerd ({endpoint}) pulled {image} for the build and made no progress for {} s (a registry \
             that stopped sending, or a download dockerd gave up on without saying so); dockerd sets no \
             limit of its own, so berth cancelled the build",
            silent.as_secs_f32()
        ),
    )
    .with_engine(crate::ENGINE)
    .with_operation(berth_core::Operation::Build)
    .with_hint(
        "check that the registry (or the proxy in front of it) is answering, and build again; the limit is \
         DockerOptions::pull_idle_timeout (5 minutes by default)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::moby::buildkit::v1::Vertex;

    fn vertex(digest: &str, name: &str, running: bool) -> Vertex {
        Vertex {
            digest: digest.into(),
            name: name.into(),
            started: Some(Default::default()),
            completed: (!running).then(Default::default),
            ..Vertex::default()
        }
    }

    fn status(vertexes: Vec<Vertex>) -> StatusResponse {
        StatusResponse {
            vertexes,
            ..StatusResponse::default()
        }
    }

    #[test]
    fn a_build_is_pulling_while_only_pulls_run() {
        let mut watch = PullWatch::default();
        assert_eq!(watch.pulling(), None);
        let meta = "[internal] load metadata for 127.0.0.1:5000/a/b:1";
        watch.update(&status(vec![vertex("m", meta, true)]));
        assert_eq!(watch.pulling(), Some("127.0.0.1:5000/a/b:1"));
        watch.update(&status(vec![
            vertex("m", meta, false),
            vertex("f", "[1/2] FROM 127.0.0.1:5000/a/b:1@sha256:ab", true),
        ]));
        assert_eq!(watch.pulling(), Some("127.0.0.1:5000/a/b:1@sha256:ab"));
        watch.update(&status(vec![vertex("r", "[uv 1/1] RUN make", true)]));
        assert_eq!(watch.pulling(), None, "a RUN step beside the pull");
        watch.update(&status(vec![
            vertex("r", "[uv 1/1] RUN make", false),
            vertex("f", "[1/2] FROM x", false),
        ]));
        assert_eq!(watch.pulling(), None);
    }

    #[test]
    fn a_download_that_repeats_its_byte_count_is_not_progress() {
        use bollard::moby::buildkit::v1::VertexStatus;
        let download = |current: i64| StatusResponse {
            statuses: vec![VertexStatus {
                id: "sha256:layer".into(),
                vertex: "f".into(),
                current,
                total: 100,
                ..VertexStatus::default()
            }],
            ..StatusResponse::default()
        };
        let mut watch = PullWatch::default();
        assert!(watch.update(&status(vec![vertex("f", "[1/2] FROM x", true)])));
        assert!(!watch.update(&status(vec![vertex("f", "[1/2] FROM x", true)])));
        assert!(watch.update(&download(50)));
        assert!(!watch.update(&download(50)), "the same bytes again");
        assert!(watch.update(&download(60)));
    }

    #[test]
    fn a_stalled_pull_names_the_engine_the_image_and_the_limit() {
        let err = stalled_pull(
            "r/a:1",
            Duration::from_secs(5),
            "unix:///var/run/docker.sock",
        );
        assert_eq!(err.kind(), ErrorKind::Unavailable);
        assert!(err.is_temporary());
        assert_eq!(err.engine(), Some(crate::ENGINE));
        assert!(
            err.message().contains("pulled r/a:1 for the build"),
            "{err}"
        );
        assert!(err.hint().unwrap_or_default().contains("pull_idle_timeout"));
    }
}
