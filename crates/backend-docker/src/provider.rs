//! Docker's entry in the engine table: its settings, where detection looks, connecting from settings, and its
//! doctor checks (`daemon.json` for a plain-HTTP registry; rootless Podman offered when the socket is not the
//! user's to use).

use async_trait::async_trait;
use berth_core::doctor::{DoctorContext, ProviderChecks};
use berth_core::engine::ContainerEngine;
use berth_core::provider::{ConnectSettings, EngineProvider, ProviderInfo, SettingKey};
use berth_core::{Error, Result};

use std::path::PathBuf;

use crate::context::{DOCKER_CONFIG, DOCKER_CONTEXT};
use crate::endpoint::{TlsFiles, DEFAULT_SOCKET, DOCKER_CERT_PATH, DOCKER_HOST, DOCKER_TLS_VERIFY};
use crate::{DockerEngine, DockerOptions, ENGINE};

/// Docker, for the engine table.
pub static PROVIDER: DockerProvider = DockerProvider;

/// Docker Engine (dockerd), through its API socket, `tcp://` or `ssh://`.
#[derive(Debug)]
pub struct DockerProvider;

static INFO: ProviderInfo = ProviderInfo {
    name: ENGINE,
    address: SettingKey {
        key: "host",
        env: Some(DOCKER_HOST),
        label: "docker host",
        json: "docker_host",
    },
    options: &[
        SettingKey {
            key: "context",
            env: Some(DOCKER_CONTEXT),
            label: "docker context",
            json: "docker_context",
        },
        SettingKey {
            key: "tls_verify",
            env: Some(DOCKER_TLS_VERIFY),
            label: "docker tls",
            json: "docker_tls_verify",
        },
        SettingKey {
            key: "cert_path",
            env: Some(DOCKER_CERT_PATH),
            label: "docker certs",
            json: "docker_cert_path",
        },
    ],
    other_env: &[DOCKER_CONFIG],
    start_command: "dockerd",
};

/// The options for `settings`: a host, else a context (the docker CLI's order, berth's files beside each
/// variable); TLS when `tls_verify` is set (any value but `false`: the docker CLI turns TLS on for any non-empty
/// `DOCKER_TLS_VERIFY`, and `tls_verify: false` in a file is off), with the files in `cert_path`, else
/// `~/.docker`.
fn options(settings: &ConnectSettings) -> DockerOptions {
    let verify = settings
        .get("tls_verify")
        .is_some_and(|v| !v.is_empty() && !v.eq_ignore_ascii_case("false"));
    let tls = verify.then(|| {
        let dir = settings
            .owned("cert_path")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".docker")
            });
        TlsFiles::in_dir(&dir)
    });
    DockerOptions {
        host: settings.owned("host"),
        tls,
        // DOCKER_CONTEXT is left for the backend to read, so messages name it rather than the file's key
        context: settings
            .owned("context")
            .filter(|c| std::env::var(DOCKER_CONTEXT).ok().as_deref() != Some(c)),
        ..DockerOptions::default()
    }
}

#[async_trait]
impl EngineProvider for DockerProvider {
    fn info(&self) -> &'static ProviderInfo {
        &INFO
    }

    /// The named host; else the Docker context's (a context that cannot be read is a place of its own, so
    /// detection picks Docker and connecting says what is wrong with it); else the default socket.
    fn candidates(&self, settings: &ConnectSettings) -> Vec<String> {
        if let Some(host) = settings.owned("host") {
            return vec![host];
        }
        match crate::context::resolve(&options(settings)) {
            Ok(resolved) if resolved.context.is_some() => vec![resolved.endpoint.address()],
            Ok(_) => vec![DEFAULT_SOCKET.to_string()],
            Err(_) => vec![format!(
                "docker-context://{}",
                settings.get("context").unwrap_or("current")
            )],
        }
    }

    fn endpoint(&self, settings: &ConnectSettings) -> Option<String> {
        match DockerEngine::new(options(settings)) {
            Ok(engine) => Some(engine.endpoint_name()),
            Err(_) => Some(
                settings
                    .owned("host")
                    .or_else(|| std::env::var(DOCKER_HOST).ok())
                    .filter(|host| !host.is_empty())
                    .unwrap_or_else(|| format!("unix://{DEFAULT_SOCKET}")),
            ),
        }
    }

    async fn connect(&self, settings: &ConnectSettings) -> Result<Box<dyn ContainerEngine>> {
        Ok(Box::new(DockerEngine::connect(options(settings)).await?))
    }

    fn explain_unreachable(
        &self,
        endpoint: Option<&str>,
        error: &Error,
        context: &DoctorContext<'_>,
    ) -> (String, String) {
        let instead = Some(crate::doctor::INSTEAD);
        berth_core::doctor::socket::explain(ENGINE, endpoint, error, context, instead)
    }

    fn doctor_help(&self) -> Option<&'static str> {
        Some(crate::doctor::HELP)
    }

    /// Whether dockerd will pull from the registry being checked over plain HTTP.
    async fn doctor(&self, context: &DoctorContext<'_>) -> ProviderChecks {
        let Some(registry) = context.registry else {
            return ProviderChecks::default();
        };
        let daemon_json = std::fs::read_to_string(crate::doctor::DOCKER_DAEMON_JSON).ok();
        ProviderChecks {
            sections: Vec::new(),
            registry: crate::doctor::plain_http(registry, daemon_json.as_deref())
                .into_iter()
                .collect(),
        }
    }
}
