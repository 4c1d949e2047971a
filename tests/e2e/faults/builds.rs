//! Builds whose base image is downloaded through the proxy: berth's own builders (containerd, LXD), and
//! Docker's and Podman's, where the daemon pulls the base itself (dockerd's BuildKit resolver, buildah in the
//! Podman service), so their own retry rules apply and berth only sees the build's output.

use berth_backend_docker::{DockerEngine, DockerOptions};
use berth_backend_podman::{PodmanEngine, PodmanOptions};
use berth_core::engine::{ContainerEngine, Credentials, NoProgress, RemoveOptions};
use berth_registry::describe_bytes;
use berth_tests::conformance::support::{plan, unique};
use berth_tests::env::TestEnv;
use berth_tests::faults::Outcome;

use crate::image::{self, TestImage};
use crate::ops::{build_options, failed, label, reference, Fixtures, Result};

/// Docker and Podman engines for the builds: their streams keep berth's default idle bound (half an hour, for
/// RUN steps that print nothing), so what stops a stalled pull is the bound berth puts on a build's base pull.
pub struct Builders {
    pub docker: DockerEngine,
    pub podman: PodmanEngine,
    pub rootless: PodmanEngine,
}

impl Builders {
    pub async fn connect(env: &TestEnv) -> Builders {
        let docker = DockerEngine::connect(DockerOptions {
            host: Some(format!("unix://{}", env.docker_socket.display())),
            pull_idle_timeout: image::IDLE,
            ..DockerOptions::default()
        })
        .await
        .expect("dockerd (scripts/env/up.sh starts it)");
        let podman = |socket: &std::path::Path| PodmanOptions {
            socket: Some(format!("unix://{}", socket.display())),
            pull_idle_timeout: image::IDLE,
            ..PodmanOptions::default()
        };
        let rootful = PodmanEngine::connect(podman(&env.podman_socket))
            .await
            .expect("the Podman service (scripts/env/up.sh starts it)");
        let rootless = PodmanEngine::connect(podman(&env.podman_rootless_socket))
            .await
            .expect("the rootless Podman service (scripts/env/up.sh starts it)");
        Builders {
            docker,
            podman: rootful,
            rootless,
        }
    }
}

/// A build in `engine` whose base image, fresh in the registry so the engine has none of it, is downloaded
/// through the proxy. It must build, or fail with a classified error; either way no image of the engine may
/// name content it lacks: the built tag exists only after a success, and a base the engine kept (Docker and
/// Podman keep what they pulled) is the registry's image, by its config digest (`whole_base`).
pub async fn engine_build(
    fx: &Fixtures,
    engine: &dyn ContainerEngine,
    creds: Credentials,
    host: &str,
    whole_base: bool,
) -> Result {
    let repository = format!("faults/{}", unique("cbase"));
    let fresh = TestImage::new(64 * 1024);
    fresh
        .push(&fx.real, &reference(&fx.env.registry, &repository))
        .await
        .expect("put a fresh base image in the registry");
    let base = reference(host, &repository).to_string();
    let tag = format!("{}/faults/{}:1", fx.env.registry, unique("cbuilt"));
    let built = engine
        .build(
            &plan(&base, vec![label()]),
            &build_options(creds, host, &tag),
            &NoProgress,
        )
        .await;
    let mut result = match (&built, engine.inspect(&tag).await) {
        (Ok(_), Ok(_)) => (Outcome::Survived, String::new()),
        (Ok(_), Err(e)) => corrupt(format!(
            "the build succeeded but its image is unreadable: {e}"
        )),
        (Err(e), Err(_)) => failed(e),
        (Err(e), Ok(_)) => corrupt(format!("the build failed ({e}) but tagged {tag}")),
    };
    if whole_base && !matches!(result.0, Outcome::Corrupt(_)) {
        let config = describe_bytes(&fresh.config).0;
        if let Ok(kept) = engine.inspect(&base).await {
            if kept.id.trim_start_matches("sha256:") != config.trim_start_matches("sha256:") {
                result = corrupt(format!(
                    "{} kept {base} as {}, not the registry's {config}",
                    engine.name(),
                    kept.id
                ));
            }
        }
    }
    for name in [&tag, &base] {
        let _ = engine.remove(name, RemoveOptions { force: true }).await;
    }
    result
}

fn corrupt(what: String) -> Result {
    (Outcome::Corrupt(what.clone()), what)
}
