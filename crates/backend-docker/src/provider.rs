//! Docker's entry in the engine table: its settings, where detection looks, connecting from settings.

use async_trait::async_trait;
use berth_core::engine::ContainerEngine;
use berth_core::provider::{ConnectSettings, EngineProvider, ProviderInfo, SettingKey};
use berth_core::Result;

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
}
