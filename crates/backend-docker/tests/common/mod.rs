//! Shared by the Docker backend's integration tests: the test environment of `scripts/env/up.sh`, unique
//! names, small plans, a progress recorder and the docker CLI for looking at what a build left behind.
#![allow(dead_code)]

use std::process::Command;
use std::sync::Mutex;

use berth_backend_docker::{DockerEngine, DockerOptions};
use berth_core::engine::{Credentials, Progress, ProgressEvent, Secret};
use berth_core::plan::{BuildPlan, ContextEntry, Mount, RunStep, Step};

/// The environment `scripts/env/up.sh` describes in /var/lib/berth-env/env.sh.
pub struct TestEnv {
    pub registry: String,
    pub user: String,
    pub password: String,
    pub busybox: String,
}

/// Reads the BERTH_TEST_* variables; panics (the test fails, it is not skipped) when they are missing. `None` (the
/// test returns, printing why) only when `BERTH_TEST_ENGINES` does not select Docker.
pub fn env() -> Option<TestEnv> {
    if !berth_tests::select::selects(Some("docker")) {
        return None;
    }
    let var = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            panic!(
                "{name} is not set: run scripts/env/up.sh first, then `source /var/lib/berth-env/env.sh`"
            )
        })
    };
    let password_file = var("BERTH_TEST_REGISTRY_PASSWORD_FILE");
    let password = std::fs::read_to_string(&password_file)
        .unwrap_or_else(|e| panic!("{password_file}: {e}: run scripts/env/up.sh first"))
        .trim()
        .to_string();
    Some(TestEnv {
        registry: var("BERTH_TEST_REGISTRY"),
        user: var("BERTH_TEST_REGISTRY_USER"),
        password,
        busybox: var("BERTH_TEST_BUSYBOX_IMAGE"),
    })
}

impl TestEnv {
    pub fn credentials(&self) -> Credentials {
        Credentials {
            registry: self.registry.clone(),
            username: self.user.clone(),
            password: Secret::new(self.password.clone()),
        }
    }
}

/// A name unique to this test run and call.
pub fn unique(prefix: &str) -> String {
    static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{nanos:x}-{n}", std::process::id())
}

/// The engine on the test daemon (`BERTH_TEST_DOCKER_SOCKET`).
pub async fn engine(options: DockerOptions) -> DockerEngine {
    let socket = std::env::var("BERTH_TEST_DOCKER_SOCKET")
        .expect("BERTH_TEST_DOCKER_SOCKET is not set: run scripts/env/up.sh first");
    let options = DockerOptions {
        host: Some(format!("unix://{socket}")),
        ..options
    };
    DockerEngine::connect(options)
        .await
        .expect("the test dockerd answers (run scripts/env/up.sh first)")
}

/// A plan on the busybox fixture with the given steps and context.
pub fn plan(env: &TestEnv, steps: Vec<Step>, context: Vec<ContextEntry>) -> BuildPlan {
    BuildPlan {
        base_image: env.busybox.clone(),
        platform: "linux/amd64".into(),
        helper_images: vec![],
        steps,
        context,
        secrets: vec![],
    }
}

/// `RUN command` with mounts.
pub fn run(command: &str, mounts: Vec<Mount>) -> Step {
    Step::Run(RunStep {
        command: command.into(),
        mounts,
    })
}

/// Records progress events.
#[derive(Default)]
pub struct Record(pub Mutex<Vec<ProgressEvent>>);

impl Progress for Record {
    fn event(&self, event: ProgressEvent) {
        self.0.lock().expect("lock").push(event);
    }
}

impl Record {
    pub fn lines(&self) -> Vec<String> {
        self.0
            .lock()
            .expect("lock")
            .iter()
            .filter_map(|e| match e {
                ProgressEvent::Line(l) => Some(l.clone()),
                _ => None,
            })
            .collect()
    }

    pub fn steps(&self) -> Vec<String> {
        self.0
            .lock()
            .expect("lock")
            .iter()
            .filter_map(|e| match e {
                ProgressEvent::Step { description, .. } => Some(description.clone()),
                _ => None,
            })
            .collect()
    }
}

/// Runs the docker CLI against the test daemon; panics unless it succeeds.
pub fn docker(args: &[&str]) -> Vec<u8> {
    let out = Command::new("docker")
        .args(args)
        .env_remove("DOCKER_HOST")
        .output()
        .expect("the docker CLI runs");
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Removes an image when dropped (best effort, so a failed assertion still cleans up).
pub struct Cleanup(pub Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for image in &self.0 {
            let _ = Command::new("docker").args(["rmi", "-f", image]).output();
        }
    }
}

/// Deletes a manifest from the test registry (it allows deletes), so pushed test images do not pile up.
pub fn delete_manifest(env: &TestEnv, repository: &str, digest: &str) {
    let path = repository
        .strip_prefix(&format!("{}/", env.registry))
        .expect("a repository of the test registry");
    let status = Command::new("curl")
        .args([
            "-fsS",
            "-o",
            "/dev/null",
            "-X",
            "DELETE",
            "-u",
            &format!("{}:{}", env.user, env.password),
            &format!("http://{}/v2/{path}/manifests/{digest}", env.registry),
        ])
        .status()
        .expect("curl runs");
    assert!(status.success(), "deleting {repository}@{digest}");
}
