//! Builds with BuildKit: a session of berth's own ([`crate::session`]) serving the context by file sync
//! ([`crate::filesync`]) plus `POST /build?version=2&remote=client-session` with an empty body; with
//! [`crate::DockerOptions::context_by_file_sync`] off, the context tar as a streamed body instead.
//!
//! This is bollard's `build_image` request made by hand, for one reason: bollard opens the session itself and
//! serves only registry credentials in it, so `RUN --mount=type=secret` would see nothing. With berth's session
//! the same single path handles cache mounts, secret mounts and authenticated base images, streams the context
//! without holding it in memory, and reports BuildKit's progress as it comes.

use berth_core::engine::{BuildOptions, BuiltImage, Network, Progress, ProgressEvent};
use berth_core::lines::Piece;
use berth_core::plan::BuildPlan;
use berth_core::{Error, ErrorKind, Result};
use bollard::models::{BuildInfo, BuildInfoAux};

use crate::dial::{dial, HOST_HEADER};
use crate::errors::{io_error, to_error, to_error_saying, Failure, Op};
use crate::filesync::ContextSync;
use crate::progress::{BuildLog, OVERLONG};
use crate::stall::{stalled_pull, PullWatch};
use crate::DockerEngine;
use berth_context::{self as context, DOCKERFILE_NAME};
use std::time::Duration;

/// The id of the [`ProgressEvent::Transfer`] a BuildKit build reports last: the context bytes the session sent
/// (`current`) of all the context holds (`total`).
pub const CONTEXT_TRANSFER: &str = "build context";

/// Builds `plan` with BuildKit.
pub(crate) async fn build(
    engine: &DockerEngine,
    plan: &BuildPlan,
    options: &BuildOptions,
    progress: &dyn Progress,
) -> Result<BuiltImage> {
    let endpoint = engine.endpoint_name();
    let secrets = crate::check_secrets(plan)?;
    let timeout = engine.options.connect_timeout;
    let by_sync = engine.options.context_by_file_sync;
    let dockerfile = berth_core::render::dockerfile(plan);
    let as_build_error = |e: Error| {
        e.with_engine(crate::ENGINE)
            .with_operation(berth_core::Operation::Build)
    };
    let (sync, tar) = if by_sync {
        let sync = ContextSync::new(&dockerfile, plan.context.clone()).map_err(as_build_error)?;
        (Some(sync), None)
    } else {
        let tar = context::stream(crate::ENGINE, dockerfile, plan.context.clone(), Vec::new())?;
        (None, Some(tar))
    };
    let report = sync.as_ref().map(ContextSync::report);
    let session = crate::session::open(
        &engine.endpoint,
        timeout,
        &options.credentials,
        secrets,
        sync,
    )
    .await
    .map_err(|e| io_error(e, Op::Build, &endpoint))?;

    // with file sync the body is empty: BuildKit asks the session for the `context` and `dockerfile` sources
    let (body, writer) = match tar {
        Some(tar) => (berth_http::client::streaming(tar.body), Some(tar.writer)),
        None => (
            berth_http::client::streaming(futures_util::stream::empty()),
            None,
        ),
    };
    let uri = format!("/build?{}", query(plan, options, &session.id, by_sync));
    let request = http::Request::post(uri)
        .header(http::header::HOST, HOST_HEADER)
        .header(http::header::CONTENT_TYPE, "application/x-tar")
        .body(body)
        .map_err(|e| Error::new(ErrorKind::InvalidSpec, e.to_string()))?;
    let stream = dial(&engine.endpoint, timeout)
        .await
        .map_err(|e| io_error(e, Op::Build, &endpoint))?;

    let log = BuildLog::new(progress, plan.steps.iter().map(|s| s.describe()).collect());
    let outcome = match berth_http::client::send(stream, request).await {
        Ok(exchange) => {
            let pull_idle = engine.options.pull_idle_timeout;
            let outcome = follow(exchange.response, log, &endpoint, pull_idle).await;
            // Stop sending: a failed build leaves the rest of the context unread.
            exchange.connection.abort();
            outcome
        }
        Err(e) => Err(io_error(e, Op::Build, &endpoint)),
    };
    drop(session);
    // Then hear from the context's side: a file that could not be read, or changed while read, explains a
    // failure better than what the daemon saw of it.
    if let Some(writer) = writer {
        if let Ok(Err(tar_error)) = writer.await {
            if tar_error.kind() != ErrorKind::Cancelled {
                return Err(as_build_error(tar_error));
            }
        }
    }
    if let Some(report) = report {
        if let Some(failure) = report.take_failure() {
            if outcome.is_err() {
                return Err(as_build_error(failure));
            }
        }
        let (sent, total) = report.sent();
        progress.event(ProgressEvent::Transfer {
            id: CONTEXT_TRANSFER.to_string(),
            current: sent,
            total: Some(total),
        });
    }
    outcome
}

/// Follows the build's answer, its progress stream, to the image id or the failure.
async fn follow(
    response: http::Response<hyper::body::Incoming>,
    mut log: BuildLog<'_>,
    endpoint: &str,
    pull_idle: Duration,
) -> Result<BuiltImage> {
    let status = response.status();
    if !status.is_success() {
        // an error answer is a short JSON message; one that does not end is left unread past 64 KiB
        let bytes = berth_http::client::read_all(response, 64 << 10)
            .await
            .map(|(_, body)| body)
            .unwrap_or_default();
        let message = berth_http::failure::message_of(&bytes);
        let failure = Failure::Status {
            code: status.as_u16(),
            message: &message,
        };
        return Err(to_error(failure, Op::Build, endpoint));
    }

    // no bound on RUN steps, which may be silent for hours; one on pulls, which are silent only when the
    // registry is (see `stall`)
    let mut lines = berth_http::client::Lines::new(response, None);
    let mut watch = PullWatch::default();
    let mut error: Option<String> = None;
    let mut moved = std::time::Instant::now();
    loop {
        let pulling = watch.pulling().map(str::to_string);
        let left = pull_idle.saturating_sub(moved.elapsed());
        lines.set_idle_timeout(pulling.as_ref().map(|_| left));
        let piece = match lines.next().await {
            Ok(Some(piece)) => piece,
            Ok(None) => break,
            Err(e) => {
                return Err(match pulling {
                    Some(image) if e.kind() == std::io::ErrorKind::TimedOut => {
                        stalled_pull(&image, pull_idle, endpoint)
                    }
                    _ => io_error(e, Op::Build, endpoint),
                })
            }
        };
        match piece {
            Piece::Line(line) => {
                if handle_line(&line, &mut log, &mut watch, &mut error) {
                    moved = std::time::Instant::now();
                }
            }
            Piece::Overlong => log.note(OVERLONG),
        }
    }

    if let Some(message) = error {
        let in_step = log.failed_in_step();
        let failure = Failure::Stream {
            message: &message,
            in_step,
        };
        let text = log.failure_message(&message);
        let err = to_error_saying(failure, Op::Build, endpoint, Some(text));
        return Err(if message.contains("layer does not exist") {
            // BuildKit's cache still names a layer the image store dropped (seen after images were removed
            // while other builds ran); every build reusing that cache entry fails the same way until it goes
            err.with_hint(
                "dockerd's build cache refers to a layer its image store no longer has: clear the build \
                 cache with `docker builder prune` and build again",
            )
        } else {
            err
        });
    }
    log.finish();
    let id = log.image_id().map(str::to_string).ok_or_else(|| {
        Error::new(
            ErrorKind::Protocol,
            "the daemon finished the build without naming the image",
        )
        .with_engine(crate::ENGINE)
        .with_operation(berth_core::Operation::Build)
    })?;
    Ok(BuiltImage { id })
}

/// The `/build` query: BuildKit, the session (and the context through it, `by_sync`), the generated
/// Dockerfile, tags, platform, network, cache.
fn query(plan: &BuildPlan, options: &BuildOptions, session: &str, by_sync: bool) -> String {
    let mut pairs: Vec<(&str, String)> = vec![("version", "2".into()), ("session", session.into())];
    if by_sync {
        pairs.push(("remote", "client-session".into()));
    }
    pairs.extend([
        ("dockerfile", DOCKERFILE_NAME.into()),
        ("rm", "1".into()),
        ("forcerm", "1".into()),
    ]);
    for tag in &options.tags {
        pairs.push(("t", tag.clone()));
    }
    if !plan.platform.is_empty() {
        pairs.push(("platform", plan.platform.clone()));
    }
    match options.network {
        Network::Default => {}
        Network::Host => pairs.push(("networkmode", "host".into())),
        Network::None => pairs.push(("networkmode", "none".into())),
    }
    if options.no_cache {
        pairs.push(("nocache", "1".into()));
    }
    berth_http::encode::query(&pairs)
}

/// One JSON message of the build stream; whether the build moved (see [`PullWatch::update`]).
fn handle_line(
    line: &[u8],
    log: &mut BuildLog<'_>,
    watch: &mut PullWatch,
    error: &mut Option<String>,
) -> bool {
    let line = line.trim_ascii();
    if line.is_empty() {
        return false;
    }
    let Ok(info) = serde_json::from_slice::<BuildInfo>(line) else {
        // A message this bollard version does not model; progress is best effort, errors come separately.
        return true;
    };
    let mut moved = true;
    match info.aux {
        Some(BuildInfoAux::BuildKit(status)) => {
            moved = watch.update(&status);
            log.buildkit(status)
        }
        Some(BuildInfoAux::Default(image)) => {
            if let Some(id) = image.id {
                log.set_image_id(id);
            }
        }
        None => {}
    }
    if let Some(text) = info.stream {
        log.classic(&text);
    }
    let message = info.error_detail.and_then(|d| d.message);
    if let Some(message) = message {
        error.get_or_insert(message);
    }
    moved
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_names_buildkit_session_tags_and_network() {
        let plan = BuildPlan {
            base_image: "b".into(),
            platform: "linux/amd64".into(),
            helper_images: vec![],
            steps: vec![],
            context: vec![],
            secrets: vec![],
        };
        let options = BuildOptions {
            tags: vec!["r:5000/a:1".into(), "r:5000/a:latest".into()],
            network: Network::Host,
            ..BuildOptions::default()
        };
        assert!(query(&plan, &options, "s1", true).contains("&remote=client-session&"));
        let q = query(&plan, &options, "s1", false);
        assert_eq!(
            q,
            "version=2&session=s1&dockerfile=.berth.Dockerfile&rm=1&forcerm=1\
             &t=r%3A5000%2Fa%3A1&t=r%3A5000%2Fa%3Alatest&platform=linux%2Famd64&networkmode=host"
        );
    }

    #[derive(Default)]
    struct Record(std::sync::Mutex<Vec<String>>);

    impl Progress for Record {
        fn event(&self, event: ProgressEvent) {
            if let ProgressEvent::Line(line) = event {
                self.0.lock().expect("lock").push(line);
            }
        }
    }

    #[tokio::test]
    async fn an_overlong_output_line_is_left_out_and_the_build_still_finishes() {
        use berth_tests::fake_http::{Answer, FakeServer};
        let id = format!("sha256:{}", "a".repeat(64));
        let mut body = format!(r#"{{"stream":"{}"}}"#, "x".repeat(3 << 20)).into_bytes();
        body.extend_from_slice(
            format!("\n{{\"stream\":\"short\\n\"}}\n{{\"aux\":{{\"ID\":\"{id}\"}}}}\n").as_bytes(),
        );
        let server = FakeServer::tcp(move |_| {
            let mut answer = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
            answer.extend_from_slice(&body);
            Answer::SendAndClose(answer)
        });
        let stream = tokio::net::TcpStream::connect(&server.addr)
            .await
            .expect("connect");
        let request = http::Request::post("/build")
            .header(http::header::HOST, HOST_HEADER)
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .expect("request");
        let exchange = berth_http::client::send(stream, request)
            .await
            .expect("answer");
        let record = Record::default();
        let built = follow(
            exchange.response,
            BuildLog::new(&record, Vec::new()),
            "fake",
            Duration::from_secs(300),
        )
        .await
        .expect("built");
        assert_eq!(built.id, id);
        let lines = record.0.lock().expect("lock").clone();
        assert!(
            lines.iter().all(|l| l.len() < 1 << 20),
            "a line of {} bytes",
            lines.iter().map(String::len).max().unwrap_or(0)
        );
        assert!(lines.iter().any(|l| l == OVERLONG), "{lines:?}");
        assert!(lines.iter().any(|l| l.contains("short")), "{lines:?}");
    }

    /// One line of BuildKit's status stream with `vertexes`, as dockerd sends it (a base64 protobuf).
    fn trace(vertexes: Vec<bollard::moby::buildkit::v1::Vertex>) -> String {
        use base64::Engine as _;
        use prost::Message as _;
        let status = bollard::moby::buildkit::v1::StatusResponse {
            vertexes,
            ..Default::default()
        };
        let aux = base64::engine::general_purpose::STANDARD.encode(status.encode_to_vec());
        format!("{{\"id\":\"moby.buildkit.trace\",\"aux\":\"{aux}\"}}\n")
    }

    #[tokio::test]
    async fn a_base_pull_that_stops_reporting_cancels_the_build_naming_the_pull() {
        use berth_tests::fake_http::{Answer, FakeServer};
        // a daemon whose build starts pulling its base, then says nothing more (the registry stalled)
        let from = bollard::moby::buildkit::v1::Vertex {
            digest: "sha256:f".into(),
            name: "[1/2] FROM 127.0.0.1:5000/a/b:1@sha256:ab".into(),
            started: Some(Default::default()),
            ..Default::default()
        };
        let body = trace(vec![from]);
        let server = FakeServer::tcp(move |_| {
            let mut answer = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
            answer.extend_from_slice(body.as_bytes());
            Answer::SendAndStall(answer)
        });
        let stream = tokio::net::TcpStream::connect(&server.addr)
            .await
            .expect("connect");
        let request = http::Request::post("/build")
            .header(http::header::HOST, HOST_HEADER)
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .expect("request");
        let exchange = berth_http::client::send(stream, request)
            .await
            .expect("answer");
        let record = Record::default();
        let log = BuildLog::new(&record, Vec::new());
        let built = follow(exchange.response, log, "fake", Duration::from_millis(300));
        // the bound under test is 300 ms; this outer one only keeps a regression from hanging the suite
        let err = tokio::time::timeout(Duration::from_secs(60), built)
            .await
            .expect("the build gave up")
            .expect_err("a stalled pull");
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
        assert!(
            err.message()
                .contains("pulled 127.0.0.1:5000/a/b:1@sha256:ab for the build"),
            "{err}"
        );
        assert_eq!(err.engine(), Some(crate::ENGINE));
    }
}
