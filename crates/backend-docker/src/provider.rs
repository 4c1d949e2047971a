//! Docker's entry in the engine table: its settings, where detection looks, connecting from settings, and its
//! doctor checks (`daemon.json` for a plain-HTTP registry; rootless Podman offered when the socket is not the
//! user's to use).

use async_trait::async_trait;
use berth_core::doctor::{DoctorContext, ProviderChecks};
use berth_core::engine::ContainerEngine;
use berth_core::provider::{ConnectSettings, EngineProvider, ProviderInfo, SettingKey};
use berth_core::{Error, Result};

use crate::endpoint::{DEFAULT_SOCKET, DOCKER_CERT_PATH, DOCKER_HOST, DOCKER_TLS_VERIFY};
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
    options: &[],
    other_env: &[DOCKER_TLS_VERIFY, DOCKER_CERT_PATH],
    start_command: "dockerd",
};

#[async_trait]
impl EngineProvider for DockerProvider {
    fn info(&self) -> &'static ProviderInfo {
        &INFO
    }

    fn candidates(&self, settings: &ConnectSettings) -> Vec<String> {
        vec![settings
            .owned("host")
            .unwrap_or_else(|| DEFAULT_SOCKET.to_string())]
    }

    fn endpoint(&self, settings: &ConnectSettings) -> Option<String> {
        Some(
            settings
                .owned("host")
                .or_else(|| std::env::var(DOCKER_HOST).ok())
                .filter(|host| !host.is_empty())
                .unwrap_or_else(|| format!("unix://{DEFAULT_SOCKET}")),
        )
    }

    async fn connect(&self, settings: &ConnectSettings) -> Result<Box<dyn ContainerEngine>> {
        let options = DockerOptions {
            host: settings.owned("host"),
            ..DockerOptions::default()
        };
        Ok(Box::new(DockerEngine::connect(options).await?))
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
