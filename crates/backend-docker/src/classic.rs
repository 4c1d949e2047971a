//! Builds with the classic builder (`BuilderV1`), for daemons without BuildKit or when asked for.
//!
//! bollard sends the context tar as a streamed body and the registry credentials as `X-Registry-Config`.
//! `forcerm` removes the intermediate container of a failed step, so a failed build leaves nothing behind.
//! The classic builder cannot mount anything into RUN steps; plans that need it are refused before this runs.

use std::collections::HashMap;

use berth_core::engine::{BuildOptions, BuiltImage, Network, Progress};
use berth_core::plan::BuildPlan;
use berth_core::{Error, ErrorKind, Result};
use bollard::auth::DockerCredentials;
use bollard::models::BuildInfoAux;
use bollard::query_parameters::{BuildImageOptions, BuilderVersion};

use crate::errors::{client_error, to_error_saying, Failure, Op};
use crate::progress::BuildLog;
use crate::DockerEngine;
use berth_context::{self as context, DOCKERFILE_NAME};

/// Builds `plan` with the classic builder; tags beyond the first are added afterwards.
pub(crate) async fn build(
    engine: &DockerEngine,
    plan: &BuildPlan,
    options: &BuildOptions,
    progress: &dyn Progress,
) -> Result<BuiltImage> {
    let endpoint = engine.endpoint_name();
    let tar = context::stream(
        crate::ENGINE,
        berth_core::render::dockerfile(plan),
        plan.context.clone(),
        Vec::new(),
    )?;
    let query = BuildImageOptions {
        dockerfile: DOCKERFILE_NAME.to_string(),
        t: options.tags.first().cloned(),
        nocache: options.no_cache,
        rm: true,
        forcerm: true,
        networkmode: match options.network {
            Network::Default => None,
            Network::Host => Some("host".to_string()),
            Network::None => Some("none".to_string()),
        },
        platform: plan.platform.clone(),
        version: BuilderVersion::BuilderV1,
        ..BuildImageOptions::default()
    };
    let credentials = registry_config(&options.credentials);
    let docker = engine.long_client();
    let mut stream = docker.build_image(
        query,
        Some(credentials),
        Some(bollard::body_try_stream(tar.body)),
    );
    let mut log = BuildLog::new(progress, plan.steps.iter().map(|s| s.describe()).collect());
    let mut failure: Option<bollard::errors::Error> = None;
    while let Some(item) = engine.next_within(&mut stream, Op::Build).await? {
        match item {
            Ok(info) => {
                if let Some(text) = &info.stream {
                    log.classic(text);
                }
                if let Some(BuildInfoAux::Default(image)) = info.aux {
                    if let Some(id) = image.id {
                        log.set_image_id(id);
                    }
                }
            }
            Err(err) => {
                failure = Some(err);
                break;
            }
        }
    }
    // The request is over: the tar thread stops if it was still sending, and a context file it could not
    // read explains a failure better than what the daemon made of the truncated context.
    drop(stream);
    if let Ok(Err(tar_error)) = tar.writer.await {
        if tar_error.kind() != ErrorKind::Cancelled || failure.is_none() {
            return Err(tar_error
                .with_engine(crate::ENGINE)
                .with_operation(berth_core::Operation::Build));
        }
    }
    if let Some(err) = failure {
        if let bollard::errors::Error::DockerStreamError { error } = &err {
            let in_step = log.failed_in_step();
            let text = log.failure_message(error);
            let failure = Failure::Stream {
                message: error,
                in_step,
            };
            return Err(to_error_saying(failure, Op::Build, &endpoint, Some(text)).with_source(err));
        }
        return Err(client_error(err, Op::Build, &endpoint));
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
    for tag in options.tags.iter().skip(1) {
        engine.tag_image(&id, tag).await?;
    }
    Ok(BuiltImage { id })
}

/// `X-Registry-Config`: credentials by registry, under every name the daemon may look them up by.
fn registry_config(
    credentials: &[berth_core::engine::Credentials],
) -> HashMap<String, DockerCredentials> {
    let mut config = HashMap::new();
    for c in credentials {
        for host in crate::registry_hosts(&c.registry) {
            config.insert(
                host.clone(),
                DockerCredentials {
                    username: Some(c.username.clone()),
                    password: Some(c.password.expose().to_string()),
                    serveraddress: Some(host),
                    ..DockerCredentials::default()
                },
            );
        }
    }
    config
}
