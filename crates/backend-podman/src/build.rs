//! Builds: the plan as a Dockerfile, streamed with its context to `POST /libpod/build` (buildah), the output
//! turned into progress as it arrives.
//!
//! The image is written in Docker format (`outputformat`), as the podman CLI's `--format docker` asks: OCI
//! configs have no `SHELL`, which flytekit-style plans set. Credentials for base and helper images travel in
//! `X-Registry-Config` (registry → user and password, which libpod writes to a temporary auth file for the
//! build). Secrets travel inside the context under reserved names and are named in `secrets`.

use std::collections::VecDeque;
use std::path::PathBuf;

use berth_core::engine::{
    BuildOptions, BuiltImage, Network, Progress, ProgressEvent, TransferOptions,
};
use berth_core::plan::{BuildPlan, ContextEntry, ContextSource};
use berth_core::reference::ImageRef;
use berth_core::render::RenderOptions;
use berth_core::{Error, ErrorKind, Result};
use http::Method;

use crate::client::{self, query, Lines};
use crate::errors::{io_error, to_error, to_error_saying, Failure, Op};
use crate::images::with_algorithm;
use crate::{auth_header, registry_hosts, stall, steps, PodmanEngine, ENGINE};
use berth_context as context;

/// Lines of a step's output kept for the failure message.
const TAIL_LINES: usize = 20;
/// libpod's name for the Docker image format.
const DOCKER_FORMAT: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// Builds made in all when buildah's cache lookup races another client's image removal (a failure that
/// happens before any step runs; see `errors::is_cache_race`).
const ATTEMPTS: usize = 5;

/// The wait before attempt `n + 1`: a removal of several images takes a while, and building again at once met
/// the same half-removed image three times in a row under a loaded suite.
fn race_backoff(n: usize) -> std::time::Duration {
    std::time::Duration::from_millis(500 * (1 << n.min(4)) as u64)
}

pub(crate) async fn build(
    engine: &PodmanEngine,
    plan: &BuildPlan,
    options: &BuildOptions,
    progress: &dyn Progress,
) -> Result<BuiltImage> {
    let mut attempt = 1;
    loop {
        match build_once(engine, plan, options, progress).await {
            // Only that race is a build failure marked temporary; a throttled pull or a reset connection is
            // the caller's to retry (or not), not a reason to run every step again here.
            Err(e)
                if e.kind() == ErrorKind::BuildFailed && e.is_temporary() && attempt < ATTEMPTS =>
            {
                progress.event(ProgressEvent::Line(format!(
                    "retrying the build (attempt {} of {ATTEMPTS}): {}",
                    attempt + 1,
                    e.message()
                )));
                tokio::time::sleep(race_backoff(attempt)).await;
                attempt += 1;
            }
            result => return result,
        }
    }
}

async fn build_once(
    engine: &PodmanEngine,
    plan: &BuildPlan,
    options: &BuildOptions,
    progress: &dyn Progress,
) -> Result<BuiltImage> {
    let host = berth_core::platform::host_platform();
    if !plan.platform.is_empty() && plan.platform != host {
        return Err(Error::unsupported(
            ENGINE,
            "build",
            format!(
                "the plan targets {}, and berth builds only for this host's platform ({host}) on Podman",
                plan.platform
            ),
        ));
    }
    let secrets = check_secrets(plan)?;
    let mut secret_entries = Vec::new();
    let mut secret_specs = Vec::new();
    for (index, (id, path)) in secrets.into_iter().enumerate() {
        let name = context::secret_name(index);
        secret_specs.push(format!("id={id},src={name}"));
        secret_entries.push(ContextEntry {
            path: name,
            source: ContextSource::File(path),
        });
    }
    let (cache_mounts, warning) = engine.cache_choice().clone();
    if let Some(warning) = warning {
        progress.event(ProgressEvent::Warning(warning));
    }
    let plain_http = insecure_pulls(engine, plan, options, progress).await?;
    let render = RenderOptions { cache_mounts };
    let tar = context::stream(
        ENGINE,
        berth_core::render::dockerfile_with(plan, &render),
        plan.context.clone(),
        secret_entries,
    )?;

    let mut params: Vec<(&str, String)> = vec![
        ("dockerfile", context::DOCKERFILE_NAME.to_string()),
        ("layers", "true".to_string()),
        ("rm", "true".to_string()),
        ("forcerm", "true".to_string()),
        ("outputformat", DOCKER_FORMAT.to_string()),
    ];
    params.extend(options.tags.iter().map(|t| ("t", t.clone())));
    if options.no_cache {
        params.push(("nocache", "true".to_string()));
    }
    if plain_http {
        params.push(("tlsVerify", "false".to_string()));
    }
    // the mark that lets berth find this build's steps when it gives the build up (see `steps`)
    let mark = steps::Mark::next();
    params.push((
        "extrahosts",
        serde_json::Value::from(vec![mark.extra_host()]).to_string(),
    ));
    if !secret_specs.is_empty() {
        params.push(("secrets", serde_json::Value::from(secret_specs).to_string()));
    }
    // As the podman CLI sends `--network host` / `--network none` (buildah's NetworkEnabled / NetworkDisabled
    // policies with a network namespace option).
    match options.network {
        Network::Default => {}
        Network::Host => {
            params.push(("networkmode", "2".to_string()));
            params.push((
                "nsoptions",
                r#"[{"Name":"network","Host":true}]"#.to_string(),
            ));
        }
        Network::None => {
            params.push(("networkmode", "1".to_string()));
            params.push((
                "nsoptions",
                r#"[{"Name":"network","Path":"none"}]"#.to_string(),
            ));
        }
    }
    let mut headers = vec![("Content-Type", "application/x-tar".to_string())];
    if !options.credentials.is_empty() {
        let mut config = serde_json::Map::new();
        for credentials in &options.credentials {
            for host in registry_hosts(&credentials.registry) {
                config.insert(
                    host,
                    serde_json::json!({
                        "username": credentials.username,
                        "password": credentials.password.expose(),
                    }),
                );
            }
        }
        headers.push((
            "X-Registry-Config",
            auth_header(&serde_json::Value::Object(config)),
        ));
    }

    let path = format!("/libpod/build?{}", query(&params));
    let guard = steps::StopOnDrop::new(mark, engine.local_options());
    let sent = engine
        .client
        .send(Method::POST, &path, &headers, client::streaming(tar.body))
        .await;
    let response = match sent {
        Ok(response) => response,
        Err(e) => {
            // A context file that could not be read explains the failed request better than the request.
            if let Ok(Err(writer)) = tar.writer.await {
                if writer.kind() != ErrorKind::Cancelled {
                    return Err(writer
                        .with_engine(ENGINE)
                        .with_operation(berth_core::Operation::Build));
                }
            }
            return Err(io_error(e, Op::Build, engine.socket()));
        }
    };
    if !response.status().is_success() {
        let (status, body) = client::read_all(response)
            .await
            .map_err(|e| io_error(e, Op::Build, engine.socket()))?;
        return Err(to_error(
            Failure::Status {
                code: status.as_u16(),
                message: &berth_http::failure::message_of(&body),
            },
            Op::Build,
            engine.socket(),
        ));
    }
    let mut log = BuildLog::new(progress, &plan.base_image);
    let mut lines = Lines::new(response, engine.client.idle_timeout);
    let pull_idle = engine
        .options
        .pull_idle_timeout
        .min(engine.client.idle_timeout);
    loop {
        // a pull gets the shorter limit (see `stall`): the output is silent only while the registry is
        let pulling = log.pulling.clone();
        lines.set_idle(if pulling.is_some() {
            pull_idle
        } else {
            engine.client.idle_timeout
        });
        let line = match lines.next_json().await {
            Ok(Some(line)) => line,
            Ok(None) => break,
            Err(e) => {
                return Err(match pulling {
                    Some(image) if e.kind() == std::io::ErrorKind::TimedOut => {
                        stall::stalled_pull(&image, pull_idle, &engine.endpoint_name())
                    }
                    _ => io_error(e, Op::Build, engine.socket()),
                })
            }
        };
        if let Some(message) = line["error"].as_str() {
            guard.finished();
            return Err(log.failure(engine, message));
        }
        if let Some(text) = line["stream"].as_str() {
            log.text(text);
        }
    }
    log.flush();
    guard.finished();
    match tar.writer.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            return Err(e
                .with_engine(ENGINE)
                .with_operation(berth_core::Operation::Build))
        }
        Err(e) => {
            return Err(
                Error::new(ErrorKind::Io, format!("the context writer failed: {e}"))
                    .with_engine(ENGINE)
                    .with_operation(berth_core::Operation::Build),
            )
        }
    }
    match log.image_id {
        Some(id) => Ok(BuiltImage {
            id: with_algorithm(&id),
        }),
        None => Err(Error::new(
            ErrorKind::Protocol,
            "the Podman service finished the build without naming the image",
        )
        .with_engine(ENGINE)
        .with_operation(berth_core::Operation::Build)),
    }
}

/// Build output as it arrives: progress events, the running step and its last lines, the image id.
struct BuildLog<'a> {
    progress: &'a dyn Progress,
    partial: String,
    step: Option<String>,
    tail: VecDeque<String>,
    image_id: Option<String>,
    /// The image the build is pulling: its base until the first step line, then the `FROM` step's image
    /// while that step runs; `None` in any other step.
    pulling: Option<String>,
}

impl<'a> BuildLog<'a> {
    fn new(progress: &'a dyn Progress, base: &str) -> Self {
        BuildLog {
            progress,
            partial: String::new(),
            step: None,
            tail: VecDeque::new(),
            image_id: None,
            pulling: Some(base.to_string()),
        }
    }

    fn text(&mut self, text: &str) {
        self.partial.push_str(text);
        while let Some(pos) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=pos).collect();
            self.line(line.trim_end_matches(['\n', '\r']));
        }
    }

    fn flush(&mut self) {
        if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            self.line(&line);
        }
    }

    fn line(&mut self, line: &str) {
        if let Some((index, total, description)) = step_line(line) {
            self.step = Some(description.to_string());
            self.pulling = stall::pulled_by(description);
            self.tail.clear();
            // The plan's steps are the last stage's after FROM, numbered so on every engine; helper stages and
            // FROM are lines.
            let event = match plan_step(line, index, total) {
                Some((index, total)) => ProgressEvent::Step {
                    index,
                    total,
                    description: description.to_string(),
                },
                None => ProgressEvent::Line(line.to_string()),
            };
            self.progress.event(event);
            return;
        }
        if line.len() == 64 && line.chars().all(|c| c.is_ascii_hexdigit()) {
            self.image_id = Some(line.to_string());
        }
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(line.to_string());
        self.progress.event(ProgressEvent::Line(line.to_string()));
    }

    /// The error for an `error` line: a failing step (anything but `FROM`) is a build failure that names the
    /// step and shows its output; anything else is classified from its text (e.g. a missing base image).
    fn failure(&mut self, engine: &PodmanEngine, message: &str) -> Error {
        self.flush();
        let in_step = self
            .step
            .as_deref()
            .is_some_and(|s| !s.trim_start().to_ascii_uppercase().starts_with("FROM"));
        let text = match &self.step {
            Some(step) if in_step => {
                let output: Vec<&str> = self.tail.iter().map(String::as_str).collect();
                Some(format!(
                    "step `{step}` failed: {}\n--- its output ---\n{}",
                    message.trim_end(),
                    output.join("\n")
                ))
            }
            _ => None,
        };
        to_error_saying(
            Failure::Stream { message, in_step },
            Op::Build,
            engine.socket(),
            text,
        )
    }
}

/// `[2/3] STEP 4/7: RUN ...` or `STEP 1/2: FROM ...` as (index, total, instruction).
fn step_line(line: &str) -> Option<(usize, usize, &str)> {
    let rest = match line.strip_prefix('[') {
        Some(stage) => stage.split_once("] ")?.1,
        None => line,
    };
    let rest = rest.strip_prefix("STEP ")?;
    let (numbers, description) = rest.split_once(": ")?;
    let (index, total) = numbers.split_once('/')?;
    Some((index.parse().ok()?, total.parse().ok()?, description))
}

/// Lets buildah pull the plan's images from registries berth allows plain HTTP for (loopback ones, and those
/// named insecure), as pushes there already are: the service only knows the registries its registries.conf marks
/// insecure. When every image the build pulls is on such a registry, the build itself is told (`true`: send
/// `tlsVerify=false`); when only some are, those are pulled first, if missing, with verification off for them
/// alone, so the others keep TLS verification.
async fn insecure_pulls(
    engine: &PodmanEngine,
    plan: &BuildPlan,
    options: &BuildOptions,
    progress: &dyn Progress,
) -> Result<bool> {
    if options.insecure_registries.is_empty() {
        return Ok(false);
    }
    let mut insecure = Vec::new();
    let mut secure = 0;
    let pulls = std::iter::once(plan.base_image.as_str())
        .chain(plan.helper_images.iter().map(|h| h.reference.as_str()));
    for reference in pulls {
        let host = ImageRef::parse(reference)
            .map_err(|e| e.with_engine(ENGINE).with_operation(Op::Build))?
            .registry;
        if options.insecure_registries.contains(&host) {
            insecure.push((reference, host));
        } else {
            secure += 1;
        }
    }
    if secure == 0 {
        return Ok(!insecure.is_empty());
    }
    for (reference, host) in insecure {
        match engine.inspect_image(reference).await {
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let transfer = TransferOptions {
            credentials: options
                .credentials
                .iter()
                .find(|c| c.registry == host)
                .cloned(),
            insecure: true,
        };
        crate::transfer::pull(engine, reference, &transfer, progress).await?;
    }
    Ok(false)
}

/// `[2/2] STEP 3/4: ...` is plan step 2 of 3: buildah numbers each stage (`[stage/stages]`) from its FROM.
fn plan_step(line: &str, index: usize, total: usize) -> Option<(usize, usize)> {
    let last_stage = match line.strip_prefix('[').and_then(|r| r.split_once(']')) {
        Some((stage, _)) => stage.split_once('/').is_some_and(|(a, b)| a == b),
        None => true,
    };
    (last_stage && index > 1).then(|| (index - 1, total - 1))
}

/// Every secret a step mounts, by id, with its file checked to exist ([`BuildPlan::secret_files`]); libpod's
/// `secrets` parameter is `id=...,src=...`, so an id may hold neither separator.
fn check_secrets(plan: &BuildPlan) -> Result<Vec<(String, PathBuf)>> {
    let used = plan.secret_files().map_err(|e| {
        e.with_engine(ENGINE)
            .with_operation(berth_core::Operation::Build)
    })?;
    if let Some((id, _)) = used.iter().find(|(id, _)| id.contains([',', '='])) {
        return Err(crate::invalid(
            Op::Build,
            format!("secret id `{id}` may not contain `,` or `=`"),
        ));
    }
    Ok(used)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_lines_with_and_without_stages() {
        assert_eq!(
            step_line("[2/2] STEP 3/4: RUN echo hi"),
            Some((3, 4, "RUN echo hi"))
        );
        assert_eq!(
            step_line("STEP 1/3: FROM busybox"),
            Some((1, 3, "FROM busybox"))
        );
        assert_eq!(step_line("STEPS 1/3: nothing"), None);
        assert_eq!(plan_step("[2/2] STEP 3/4: RUN echo hi", 3, 4), Some((2, 3)));
        assert_eq!(plan_step("[1/2] STEP 1/1: FROM uv AS uv", 1, 1), None);
        assert_eq!(plan_step("[2/2] STEP 1/4: FROM base", 1, 4), None);
        assert_eq!(plan_step("STEP 2/3: RUN x", 2, 3), Some((1, 2)));
        assert_eq!(step_line("uv 0.5.1"), None);
    }
}
