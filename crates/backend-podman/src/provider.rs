//! Podman's entry in the engine table: its settings, where detection looks, connecting from settings, and its
//! doctor checks (rootless Podman for the user who runs berth).

use async_trait::async_trait;
use berth_core::doctor::{DoctorContext, ProviderChecks};
use berth_core::engine::ContainerEngine;
use berth_core::provider::{ConnectSettings, EngineProvider, ProviderInfo, SettingKey};
use berth_core::Result;

use crate::connections::{CONTAINERS_CONF, CONTAINER_CONNECTION};
use crate::endpoint::{CONTAINER_HOST, CONTAINER_SSHKEY, ROOTFUL_SOCKET, XDG_RUNTIME_DIR};
use crate::{PodmanEngine, PodmanOptions, ENGINE};

/// Podman, for the engine table.
pub static PROVIDER: PodmanProvider = PodmanProvider;

/// Podman, rootful or rootless, through its libpod API socket.
#[derive(Debug)]
pub struct PodmanProvider;

static INFO: ProviderInfo = ProviderInfo {
    name: ENGINE,
    address: SettingKey {
        key: "socket",
        env: Some(CONTAINER_HOST),
        label: "podman socket",
        json: "podman_socket",
    },
    // the key for an ssh:// socket, as `podman --remote` reads it
    options: &[
        SettingKey {
            key: "ssh_key",
            env: Some(CONTAINER_SSHKEY),
            label: "podman ssh key",
            json: "podman_ssh_key",
        },
        // a connection `podman system connection add` recorded, as `podman --remote --connection` names it
        SettingKey {
            key: "connection",
            env: Some(CONTAINER_CONNECTION),
            label: "podman connection",
            json: "podman_connection",
        },
    ],
    other_env: &[XDG_RUNTIME_DIR, CONTAINERS_CONF],
    start_command: "podman system service",
};

fn options(settings: &ConnectSettings) -> PodmanOptions {
    PodmanOptions {
        socket: settings.owned("socket"),
        ssh_key: settings.owned("ssh_key"),
        connection: settings.owned("connection"),
        facts_dir: settings
            .shared()
            .get::<berth_core::provider::CacheDir>()
            .map(|dir| dir.0.join("podman-services")),
        ..PodmanOptions::default()
    }
}

#[async_trait]
impl EngineProvider for PodmanProvider {
    fn info(&self) -> &'static ProviderInfo {
        &INFO
    }

    /// In the order Podman's own tools look: the named socket, the user's, then root's (detection tries both,
    /// where connecting picks one by who runs berth).
    fn candidates(&self, settings: &ConnectSettings) -> Vec<String> {
        let mut sockets: Vec<String> = settings.owned("socket").into_iter().collect();
        if let Ok(runtime) = std::env::var(XDG_RUNTIME_DIR) {
            if !runtime.is_empty() {
                sockets.push(format!("{runtime}/podman/podman.sock"));
            }
        }
        sockets.push(ROOTFUL_SOCKET.into());
        sockets
    }

    fn endpoint(&self, settings: &ConnectSettings) -> Option<String> {
        PodmanEngine::new(options(settings))
            .ok()
            .map(|engine| engine.endpoint_name())
    }

    async fn connect(&self, settings: &ConnectSettings) -> Result<Box<dyn ContainerEngine>> {
        Ok(Box::new(PodmanEngine::connect(options(settings)).await?))
    }

    /// A build given up on a service of this host ends its RUN steps on a thread of its own (`steps`).
    fn wait_for_background_work(&self) {
        berth_core::background::wait();
    }

    fn doctor_help(&self) -> Option<&'static str> {
        Some(crate::doctor::HELP)
    }

    /// Whether the user can run rootless Podman: a section of its own, skipped for root.
    async fn doctor(&self, context: &DoctorContext<'_>) -> ProviderChecks {
        ProviderChecks {
            sections: vec![crate::doctor::section(context.user, context.accounts).await],
            registry: Vec::new(),
        }
    }
}
