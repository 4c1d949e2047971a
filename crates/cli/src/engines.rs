//! The one place that knows every backend crate: connects to the chosen engine.

use berth_core::engine::ContainerEngine;
use berth_core::{Error, Result};

use crate::engine_choice::EngineKind;

/// Whether this build of berth has a backend for `kind`; checked when the engine is chosen, so an engine berth
/// cannot use is refused even when nothing needs building.
pub fn check_supported(kind: EngineKind) -> Result<()> {
    match kind {
        EngineKind::Docker | EngineKind::Podman => Ok(()),
        EngineKind::Containerd => Err(Error::unsupported(
            kind.name(),
            "connect",
            format!("the {kind} backend is not part of this berth build yet"),
        )
        .with_hint("use --engine docker or --engine podman for now")),
    }
}

/// Connects to an engine of `kind`, failing with `EngineUnavailable` and a hint when it cannot be reached.
pub async fn connect(kind: EngineKind) -> Result<Box<dyn ContainerEngine>> {
    match kind {
        EngineKind::Docker => {
            let engine = berth_backend_docker::DockerEngine::connect(
                berth_backend_docker::DockerOptions::default(),
            )
            .await?;
            Ok(Box::new(engine))
        }
        EngineKind::Podman => {
            let engine = berth_backend_podman::PodmanEngine::connect(
                berth_backend_podman::PodmanOptions::default(),
            )
            .await?;
            Ok(Box::new(engine))
        }
        EngineKind::Containerd => {
            check_supported(kind)?;
            Err(Error::unsupported(kind.name(), "connect", "no backend"))
        }
    }
}
