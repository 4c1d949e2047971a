//! The one place that knows every backend crate: connects to the chosen engine.

use berth_core::engine::{ContainerEngine, EngineInfo};
use berth_core::Result;

use crate::config::EngineSettings;
use crate::engine_choice::EngineKind;

/// Whether this build of berth has a backend for `kind`; checked when the engine is chosen, so an engine berth
/// cannot use is refused even when nothing needs building.
pub fn check_supported(kind: EngineKind) -> Result<()> {
    match kind {
        EngineKind::Docker | EngineKind::Podman | EngineKind::Containerd | EngineKind::Lxd => {
            Ok(())
        }
    }
}

/// Where an engine of `kind` is looked for with `settings` (the configured connection settings), as
/// [`connect_with`] reaches it.
pub fn endpoint(kind: EngineKind, settings: &EngineSettings) -> Option<String> {
    match kind {
        EngineKind::Docker => Some(
            settings
                .docker_host
                .clone()
                .or_else(|| std::env::var(berth_backend_docker::endpoint::DOCKER_HOST).ok())
                .filter(|host| !host.is_empty())
                .unwrap_or_else(|| {
                    format!("unix://{}", berth_backend_docker::endpoint::DEFAULT_SOCKET)
                }),
        ),
        EngineKind::Podman => berth_backend_podman::PodmanEngine::new(podman_options(settings))
            .ok()
            .map(|engine| engine.endpoint_name()),
        EngineKind::Containerd => Some(format!(
            "unix://{}",
            containerd_options(settings).address_path().display()
        )),
        EngineKind::Lxd => Some(format!(
            "unix://{}",
            berth_backend_lxd::LxdOptions::default().socket().display()
        )),
    }
}

fn docker_options(settings: &EngineSettings) -> berth_backend_docker::DockerOptions {
    berth_backend_docker::DockerOptions {
        host: settings.docker_host.clone(),
        ..berth_backend_docker::DockerOptions::default()
    }
}

fn podman_options(settings: &EngineSettings) -> berth_backend_podman::PodmanOptions {
    berth_backend_podman::PodmanOptions {
        socket: settings.podman_socket.clone(),
        ..berth_backend_podman::PodmanOptions::default()
    }
}

fn containerd_options(settings: &EngineSettings) -> berth_backend_containerd::ContainerdOptions {
    berth_backend_containerd::ContainerdOptions {
        address: settings.containerd_address.clone(),
        namespace: settings.containerd_namespace.clone(),
        snapshotter: settings.containerd_snapshotter.clone(),
        ..berth_backend_containerd::ContainerdOptions::default()
    }
}

/// What an engine of `kind` says about itself (`berth engines`, `berth doctor`); refused up front when this build
/// has no backend for it.
pub async fn info(kind: EngineKind, settings: &EngineSettings) -> Result<EngineInfo> {
    check_supported(kind)?;
    connect_with(kind, settings).await?.info().await
}

/// Connects to the Podman service listening on `socket` (a user's own, whatever the environment names).
pub async fn connect_podman_at(socket: &std::path::Path) -> Result<Box<dyn ContainerEngine>> {
    let options = berth_backend_podman::PodmanOptions {
        socket: Some(socket.display().to_string()),
        ..berth_backend_podman::PodmanOptions::default()
    };
    Ok(Box::new(
        berth_backend_podman::PodmanEngine::connect(options).await?,
    ))
}

/// Connects to an engine of `kind` with `settings` (the run's connection settings; the engines' own environment
/// variables win), failing with `EngineUnavailable` and a hint when it cannot be reached.
pub async fn connect_with(
    kind: EngineKind,
    settings: &crate::config::EngineSettings,
) -> Result<Box<dyn ContainerEngine>> {
    match kind {
        EngineKind::Docker => Ok(Box::new(
            berth_backend_docker::DockerEngine::connect(docker_options(settings)).await?,
        )),
        EngineKind::Podman => Ok(Box::new(
            berth_backend_podman::PodmanEngine::connect(podman_options(settings)).await?,
        )),
        EngineKind::Containerd => Ok(Box::new(
            berth_backend_containerd::ContainerdEngine::connect(containerd_options(settings))
                .await?,
        )),
        EngineKind::Lxd => Ok(Box::new(
            berth_backend_lxd::LxdEngine::connect(berth_backend_lxd::LxdOptions::default()).await?,
        )),
    }
}
