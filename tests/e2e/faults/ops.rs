//! The operations run under each fault: berth's registry client directly, `berth exists`, the containerd and
//! LXD backends' push, Docker's and Podman's pushes (rootful and rootless), and every engine's build whose base
//! image is pulled through the proxy (`builds.rs`), each judged by what the real registry (or the engine) holds
//! afterwards.

use std::path::PathBuf;

use berth_backend_containerd::{ContainerdEngine, ContainerdOptions};
use berth_backend_docker::{DockerEngine, DockerOptions};
use berth_backend_lxd::{LxdEngine, LxdOptions};
use berth_backend_podman::{PodmanEngine, PodmanOptions};
use berth_core::engine::{
    BuildOptions, ContainerEngine, Credentials, Network, NoProgress, RemoveOptions, TransferOptions,
};
use berth_core::plan::Step;
use berth_core::reference::ImageRef;
use berth_core::Error;
use berth_registry::{describe_bytes, Existence, RegistryClient};
use berth_tests::conformance::support::{plan, unique};
use berth_tests::env::TestEnv;
use berth_tests::faults::{FaultProxy, Outcome};

use crate::builds::{engine_build, Builders};
use crate::cli::{cli_exists, cli_push};
use crate::image::{self, corruption, TestImage};

/// What one operation came to, and the error or corruption behind it.
pub type Result = (Outcome, String);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    ClientExists,
    ClientPull,
    ClientPush,
    CliExists,
    ContainerdPush,
    ContainerdBuildPull,
    DockerPush,
    PodmanPush,
    CliPushDocker,
    CliPushPodman,
    LxdPush,
    LxdBuildPull,
    RootlessPodmanPush,
    CliPushRootless,
    CliEnginePushDocker,
    CliExportPushPodman,
    DockerBuildPull,
    PodmanBuildPull,
    RootlessPodmanBuildPull,
}

/// What every scenario shares: a client on the real registry, an image in it, containerd and an image there.
pub struct Fixtures {
    pub env: &'static TestEnv,
    pub real: RegistryClient,
    pub base: TestImage,
    base_repo: String,
    containerd: ContainerdEngine,
    /// A local containerd image to push under other names.
    local: String,
    docker: DockerEngine,
    podman: PodmanEngine,
    /// The rootless Podman service (user `berth-rootless`).
    rootless: PodmanEngine,
    lxd: LxdEngine,
    /// A local LXD image (in berth's OCI store for LXD) to push under other names.
    lxd_local: String,
    /// Docker and Podman engines for the builds whose base the daemon pulls.
    builders: Builders,
    pub berth: PathBuf,
    /// Held while a scenario tags or untags an image: libpod (4.3) rewrites an image's whole list of names for
    /// each tag or untag, so concurrent ones on one image lose each other's (12 `podman tag`s of one image at
    /// once here left 1 of the 12 names).
    naming: tokio::sync::Mutex<()>,
}

impl Operation {
    pub const ALL: [Operation; 19] = [
        Operation::ClientExists,
        Operation::ClientPull,
        Operation::ClientPush,
        Operation::CliExists,
        Operation::ContainerdPush,
        Operation::ContainerdBuildPull,
        Operation::DockerPush,
        Operation::PodmanPush,
        Operation::CliPushDocker,
        Operation::CliPushPodman,
        Operation::LxdPush,
        Operation::LxdBuildPull,
        Operation::RootlessPodmanPush,
        Operation::CliPushRootless,
        Operation::CliEnginePushDocker,
        Operation::CliExportPushPodman,
        Operation::DockerBuildPull,
        Operation::PodmanBuildPull,
        Operation::RootlessPodmanBuildPull,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Operation::ClientExists => "RegistryClient::exists",
            Operation::ClientPull => "RegistryClient get manifest+blobs",
            Operation::ClientPush => "RegistryClient push blobs+manifest",
            Operation::CliExists => "berth exists",
            Operation::ContainerdPush => "containerd push",
            Operation::ContainerdBuildPull => "containerd build (base pull)",
            Operation::DockerPush => "docker push (dockerd)",
            Operation::PodmanPush => "podman push (libpod)",
            Operation::CliPushDocker => "berth push --engine docker",
            Operation::CliPushPodman => "berth push --engine podman",
            Operation::LxdPush => "LXD push",
            Operation::LxdBuildPull => "LXD build (base pull)",
            Operation::RootlessPodmanPush => "rootless podman push (libpod)",
            Operation::CliPushRootless => "berth push --engine podman (rootless)",
            Operation::CliEnginePushDocker => "berth push --push-via engine --engine docker",
            Operation::CliExportPushPodman => "berth push --push-via export --engine podman",
            Operation::DockerBuildPull => "docker build (dockerd's base pull)",
            Operation::PodmanBuildPull => "podman build (libpod's base pull)",
            Operation::RootlessPodmanBuildPull => "rootless podman build (libpod's base pull)",
        }
    }

    pub async fn run(self, env: &TestEnv, fx: &Fixtures, proxy: &FaultProxy) -> Result {
        let host = proxy.host();
        let creds = Credentials {
            registry: host.clone(),
            ..env.credentials()
        };
        match self {
            Operation::ClientExists => client_exists(fx, &image::client(creds), &host).await,
            Operation::ClientPull => client_pull(fx, &image::client(creds), &host).await,
            Operation::ClientPush => client_push(fx, &image::client(creds), &host).await,
            Operation::CliExists => cli_exists(fx, &host).await,
            Operation::ContainerdPush => {
                engine_push(fx, &fx.containerd, &fx.local, creds, &host).await
            }
            Operation::DockerPush => {
                engine_push(fx, &fx.docker, &fx.base_ref(), creds, &host).await
            }
            Operation::PodmanPush => {
                engine_push(fx, &fx.podman, &fx.base_ref(), creds, &host).await
            }
            Operation::ContainerdBuildPull => {
                engine_build(fx, &fx.containerd, creds, &host, false).await
            }
            Operation::LxdPush => engine_push(fx, &fx.lxd, &fx.lxd_local, creds, &host).await,
            Operation::LxdBuildPull => engine_build(fx, &fx.lxd, creds, &host, false).await,
            Operation::DockerBuildPull => {
                engine_build(fx, &fx.builders.docker, creds, &host, true).await
            }
            Operation::PodmanBuildPull => {
                engine_build(fx, &fx.builders.podman, creds, &host, true).await
            }
            Operation::RootlessPodmanBuildPull => {
                engine_build(fx, &fx.builders.rootless, creds, &host, true).await
            }
            Operation::RootlessPodmanPush => {
                engine_push(fx, &fx.rootless, &fx.base_ref(), creds, &host).await
            }
            Operation::CliPushDocker => {
                cli_push(fx, &fx.docker, &["--engine", "docker"], None, &host).await
            }
            Operation::CliPushPodman => {
                cli_push(fx, &fx.podman, &["--engine", "podman"], None, &host).await
            }
            Operation::CliPushRootless => {
                let socket = format!("unix://{}", fx.env.podman_rootless_socket.display());
                cli_push(
                    fx,
                    &fx.rootless,
                    &["--engine", "podman"],
                    Some(&socket),
                    &host,
                )
                .await
            }
            Operation::CliEnginePushDocker => {
                let args = ["--push-via", "engine", "--engine", "docker"];
                cli_push(fx, &fx.docker, &args, None, &host).await
            }
            Operation::CliExportPushPodman => {
                let args = ["--push-via", "export", "--engine", "podman"];
                cli_push(fx, &fx.podman, &args, None, &host).await
            }
        }
    }
}

impl Fixtures {
    pub async fn prepare(env: &'static TestEnv) -> Fixtures {
        let berth = tokio::task::spawn_blocking(|| berth_tests::berth_bin().to_path_buf())
            .await
            .expect("build berth");
        let real = image::client(env.credentials());
        let base = TestImage::new(256 * 1024);
        let base_repo = format!("faults/{}", unique("base"));
        base.push(&real, &reference(&env.registry, &base_repo))
            .await
            .expect("put the base image in the registry");
        let containerd = ContainerdEngine::connect(ContainerdOptions {
            address: Some(env.containerd_address.display().to_string()),
            registry: image::options(env.credentials()),
            ..ContainerdOptions::default()
        })
        .await
        .expect("containerd (scripts/env/up.sh starts it)");
        let local = build_local(env, &containerd, &base_repo).await;
        let docker = DockerEngine::connect(DockerOptions {
            host: Some(format!("unix://{}", env.docker_socket.display())),
            idle_timeout: image::IDLE,
            ..DockerOptions::default()
        })
        .await
        .expect("dockerd (scripts/env/up.sh starts it)");
        let podman = PodmanEngine::connect(PodmanOptions {
            socket: Some(format!("unix://{}", env.podman_socket.display())),
            idle_timeout: image::IDLE,
            ..PodmanOptions::default()
        })
        .await
        .expect("the Podman service (scripts/env/up.sh starts it)");
        let rootless = PodmanEngine::connect(PodmanOptions {
            socket: Some(format!("unix://{}", env.podman_rootless_socket.display())),
            idle_timeout: image::IDLE,
            ..PodmanOptions::default()
        })
        .await
        .expect("the rootless Podman service (scripts/env/up.sh starts it)");
        let lxd = LxdEngine::connect(LxdOptions {
            registry: image::options(env.credentials()),
            ..LxdOptions::default()
        })
        .await
        .expect("LXD (scripts/env/up.sh starts it)");
        let lxd_local = build_local(env, &lxd, &base_repo).await;
        let fixtures = Fixtures {
            env,
            real,
            base,
            base_repo,
            containerd,
            local,
            docker,
            podman,
            rootless,
            lxd,
            lxd_local,
            builders: Builders::connect(env).await,
            berth,
            naming: tokio::sync::Mutex::new(()),
        };
        let options = TransferOptions {
            credentials: Some(env.credentials()),
            insecure: true,
        };
        let engines = [
            &fixtures.docker as &dyn ContainerEngine,
            &fixtures.podman,
            &fixtures.rootless,
        ];
        for engine in engines {
            engine
                .pull(&fixtures.base_ref(), &options, &NoProgress)
                .await
                .unwrap_or_else(|e| panic!("pull the image to push: {e}"));
        }
        fixtures
    }

    /// Tags `source` as `target` in `engine`, one tag or untag at a time (see `naming`).
    pub async fn tag(&self, engine: &dyn ContainerEngine, source: &str, target: &str) {
        let _one_at_a_time = self.naming.lock().await;
        if let Err(e) = engine.tag(source, target).await {
            panic!("tag {target}: {e}");
        }
    }

    /// Removes tag `target` from `engine`, one tag or untag at a time (see `naming`).
    pub async fn untag(&self, engine: &dyn ContainerEngine, target: &str) {
        let _one_at_a_time = self.naming.lock().await;
        let _ = engine.remove(target, RemoveOptions { force: false }).await;
    }

    /// The base image in the real registry.
    pub fn base_ref(&self) -> String {
        reference(&self.env.registry, &self.base_repo).to_string()
    }

    pub async fn clean_up(&self) {
        let force = RemoveOptions { force: true };
        let _ = self.containerd.remove(&self.local, force).await;
        let _ = self.docker.remove(&self.base_ref(), force).await;
        let _ = self.podman.remove(&self.base_ref(), force).await;
        let _ = self.rootless.remove(&self.base_ref(), force).await;
        let _ = self.lxd.remove(&self.lxd_local, force).await;
    }
}

/// Builds an image on `base_repo` in `engine` (berth's own builder), for the engine to push under other names.
async fn build_local(env: &TestEnv, engine: &dyn ContainerEngine, base_repo: &str) -> String {
    let local = format!("{}/faults/{}:1", env.registry, unique("local"));
    let base = reference(&env.registry, base_repo).to_string();
    engine
        .build(
            &plan(&base, vec![label()]),
            &build_options(env.credentials(), &env.registry, &local),
            &NoProgress,
        )
        .await
        .unwrap_or_else(|e| panic!("build the image {} pushes: {e}", engine.name()));
    local
}

pub fn reference(host: &str, repository: &str) -> ImageRef {
    ImageRef::parse(&format!("{host}/{repository}:1")).expect("valid reference")
}

pub fn label() -> Step {
    Step::Label(vec![("berth.test".into(), "faults".into())])
}

pub fn build_options(credentials: Credentials, host: &str, tag: &str) -> BuildOptions {
    BuildOptions {
        tags: vec![tag.to_string()],
        credentials: vec![credentials],
        network: Network::Default,
        no_cache: false,
        insecure_registries: vec![host.to_string()],
    }
}

pub fn failed(e: &Error) -> Result {
    (
        Outcome::FailedClearly(e.kind().as_str().into()),
        e.to_string(),
    )
}

async fn client_exists(fx: &Fixtures, client: &RegistryClient, host: &str) -> Result {
    match client.exists(&reference(host, &fx.base_repo)).await {
        Existence::Present { digest } if digest == fx.base.manifest_digest() => {
            (Outcome::Survived, String::new())
        }
        Existence::Present { digest } => {
            let what = format!("reported {digest}, not {}", fx.base.manifest_digest());
            (Outcome::Corrupt(what.clone()), what)
        }
        Existence::Absent => {
            let what = "reported an image that is there as absent".to_string();
            (Outcome::Corrupt(what.clone()), what)
        }
        Existence::Unknown(e) => failed(&e),
    }
}

async fn client_pull(fx: &Fixtures, client: &RegistryClient, host: &str) -> Result {
    let image = reference(host, &fx.base_repo);
    let manifest = match client.get_manifest(&image).await {
        Ok(m) => m,
        Err(e) => return failed(&e),
    };
    if manifest.bytes != fx.base.manifest {
        let what = "the manifest's bytes are not the registry's".to_string();
        return (Outcome::Corrupt(what.clone()), what);
    }
    for blob in [&fx.base.layer, &fx.base.config] {
        let digest = describe_bytes(blob).0;
        let got = match client.get_blob(&image, &digest).await {
            Ok(b) => b.into_bytes().await,
            Err(e) => Err(e),
        };
        match got {
            Ok(bytes) if bytes == *blob => {}
            Ok(_) => {
                let what = format!("blob {digest} came back with other bytes and no error");
                return (Outcome::Corrupt(what.clone()), what);
            }
            Err(e) => return failed(&e),
        }
    }
    (Outcome::Survived, String::new())
}

/// The outcome of a push, judged by the registry itself: a push that failed may leave no tag or a complete
/// image; one that succeeded must have left exactly what it pushed.
async fn judge_push(
    fx: &Fixtures,
    repository: &str,
    pushed: std::result::Result<String, Error>,
) -> Result {
    judge_push_at(fx, reference(&fx.env.registry, repository), pushed).await
}

/// [`judge_push`] of the image `real` names in the real registry.
pub async fn judge_push_at(
    fx: &Fixtures,
    real: ImageRef,
    pushed: std::result::Result<String, Error>,
) -> Result {
    let expected = pushed.as_ref().ok().map(String::as_str);
    if let Some(what) = corruption(&fx.real, &real, expected).await {
        return (Outcome::Corrupt(what.clone()), what);
    }
    match pushed {
        Ok(digest) => {
            if fx.real.exists(&real).await.digest() == Some(digest.as_str()) {
                (Outcome::Survived, String::new())
            } else {
                let what = format!("push reported {digest} but the registry has no such tag");
                (Outcome::Corrupt(what.clone()), what)
            }
        }
        Err(e) => failed(&e),
    }
}

async fn client_push(fx: &Fixtures, client: &RegistryClient, host: &str) -> Result {
    let repository = format!("faults/{}", unique("push"));
    let pushed = fx.base.push(client, &reference(host, &repository)).await;
    judge_push(fx, &repository, pushed).await
}

/// Pushes `source`, tagged anew in `engine` for the proxy, and judges it by the registry.
async fn engine_push(
    fx: &Fixtures,
    engine: &dyn ContainerEngine,
    source: &str,
    creds: Credentials,
    host: &str,
) -> Result {
    let repository = format!("faults/{}", unique("push"));
    let target = reference(host, &repository).to_string();
    fx.tag(engine, source, &target).await;
    let options = TransferOptions {
        credentials: Some(creds),
        insecure: true,
    };
    let pushed = engine
        .push(&target, &options, &NoProgress)
        .await
        .map(|p| p.digest);
    fx.untag(engine, &target).await;
    judge_push(fx, &repository, pushed).await
}
