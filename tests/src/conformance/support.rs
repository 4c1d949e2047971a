//! What the behaviours share: unique names, plan building blocks, in-build checks, error-kind assertions, progress
//! capture and the guard that removes what a behaviour created.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use berth_core::engine::{
    BuildOptions, BuiltImage, ContainerEngine, ImageDetails, Network, NoProgress, Progress,
    ProgressEvent, RemoveOptions, TransferOptions,
};
use berth_core::plan::{BuildPlan, RunStep, Step};
use berth_core::{Error, ErrorKind, Result};

use crate::env::TestEnv;

use super::registry;

/// A name no other run (and no other behaviour of this run) uses: `label-pid-nanos-counter`, lowercase, valid in a
/// repository path and a tag.
pub fn unique(label: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{label}-{}-{nanos}-{n}", std::process::id())
}

/// A fresh reference in the test registry: `REGISTRY/conformance/<label>-<unique>:<tag>`. References always name the
/// registry, so every engine reports them back unchanged (Podman would add `localhost/` to a bare name).
pub fn image_ref(env: &TestEnv, label: &str, tag: &str) -> String {
    format!("{}/conformance/{}:{tag}", env.registry, unique(label))
}

/// The host's platform in OCI form, which the fixture images are built for.
pub fn host_platform() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    format!("linux/{arch}")
}

/// A plan on `base` with `steps`, no context, helpers or secrets.
pub fn plan(base: &str, steps: Vec<Step>) -> BuildPlan {
    BuildPlan {
        base_image: base.to_string(),
        platform: host_platform(),
        helper_images: Vec::new(),
        steps,
        context: Vec::new(),
        secrets: Vec::new(),
    }
}

/// A RUN step without mounts.
pub fn run(command: impl Into<String>) -> Step {
    Step::Run(RunStep {
        command: command.into(),
        mounts: Vec::new(),
    })
}

/// A shell command that evaluates each condition and, at the first false one, prints
/// `conformance check failed: <condition>` to stderr and exits 1 — which fails the build, so a behaviour checks
/// what a RUN step sees inside the build itself. Conditions must not contain single quotes.
pub fn checks(conditions: &[&str]) -> String {
    let mut script = String::from("fail() { echo \"conformance check failed: $1\" >&2; exit 1; }");
    for condition in conditions {
        assert!(
            !condition.contains('\''),
            "a check may not contain single quotes: {condition}"
        );
        script.push_str(&format!("; {{ {condition} ; }} || fail '{condition}'"));
    }
    script
}

/// Build options tagging `tag` with the test registry's credentials (the fixtures' registry needs them), which
/// speaks plain HTTP on loopback (as the CLI says of such registries).
pub fn build_options(env: &TestEnv, tag: &str) -> BuildOptions {
    BuildOptions {
        tags: vec![tag.to_string()],
        credentials: vec![env.credentials()],
        network: Network::Default,
        no_cache: false,
        insecure_registries: vec![env.registry.clone()],
    }
}

/// Push/pull options for the test registry: its credentials, plain HTTP allowed.
pub fn transfer_options(env: &TestEnv) -> TransferOptions {
    TransferOptions {
        credentials: Some(env.credentials()),
        insecure: true,
    }
}

/// Progress that keeps every event, printed when a behaviour fails (the test harness shows captured output).
#[derive(Default)]
pub struct Recorder {
    events: Mutex<Vec<ProgressEvent>>,
}

impl Recorder {
    /// The output lines received so far.
    pub fn lines(&self) -> Vec<String> {
        self.pick(|e| match e {
            ProgressEvent::Line(line) | ProgressEvent::Warning(line) => Some(line.clone()),
            ProgressEvent::Step { description, .. } => Some(description.clone()),
            ProgressEvent::Transfer { .. } => None,
        })
    }

    /// The warnings received so far.
    pub fn warnings(&self) -> Vec<String> {
        self.pick(|e| match e {
            ProgressEvent::Warning(text) => Some(text.clone()),
            _ => None,
        })
    }

    fn pick(&self, text: impl Fn(&ProgressEvent) -> Option<String>) -> Vec<String> {
        self.events
            .lock()
            .map(|events| events.iter().filter_map(&text).collect())
            .unwrap_or_default()
    }
}

impl Progress for Recorder {
    fn event(&self, event: ProgressEvent) {
        if let Ok(mut events) = self.events.lock() {
            events.push(event);
        }
    }
}

/// Builds `plan` with `options`, registering its tags for removal first; panics with the error, the plan as a
/// Dockerfile and the build's output.
pub async fn build_ok(
    engine: &dyn ContainerEngine,
    cleanup: &mut Cleanup<'_>,
    plan: &BuildPlan,
    options: &BuildOptions,
) -> BuiltImage {
    cleanup.image_all(&options.tags);
    let progress = Recorder::default();
    match engine.build(plan, options, &progress).await {
        Ok(built) => built,
        Err(e) => panic!(
            "{} build of {:?} failed: {e}\n--- the plan as a Dockerfile ---\n{}--- build output ---\n{}",
            engine.name(),
            options.tags,
            berth_core::render::dockerfile(plan),
            progress.lines().join("\n")
        ),
    }
}

/// Builds `plan` as `reference` and pushes it, both of which must succeed; `cleanup` removes the local image and
/// the registry's.
pub async fn build_and_push(
    engine: &dyn ContainerEngine,
    cleanup: &mut Cleanup<'_>,
    env: &TestEnv,
    plan: &BuildPlan,
    reference: &str,
) {
    build_ok(engine, cleanup, plan, &build_options(env, reference)).await;
    cleanup.pushed(reference);
    engine
        .push(reference, &transfer_options(env), &NoProgress)
        .await
        .unwrap_or_else(|e| panic!("push {reference}: {e}"));
}

/// `inspect` that must succeed.
pub async fn inspect_ok(engine: &dyn ContainerEngine, reference: &str) -> ImageDetails {
    engine
        .inspect(reference)
        .await
        .unwrap_or_else(|e| panic!("{} inspect {reference} failed: {e}", engine.name()))
}

/// Asserts `result` is an error of `kind`; returns the error for more checks.
pub fn expect_kind<T: std::fmt::Debug>(result: Result<T>, kind: ErrorKind, what: &str) -> Error {
    match result {
        Ok(value) => panic!("{what}: expected a {kind:?} error, got Ok({value:?})"),
        Err(e) if e.kind() == kind => e,
        Err(e) => panic!(
            "{what}: expected kind {kind:?}, got kind {:?}: {e}\n  {e:?}",
            e.kind()
        ),
    }
}

/// Removes, when dropped (also when the behaviour panics), the local images and registry manifests a behaviour
/// created. Best effort: failures are printed, never raised.
pub struct Cleanup<'a> {
    engine: &'a dyn ContainerEngine,
    env: &'a TestEnv,
    images: Vec<String>,
    pushed: Vec<String>,
}

impl<'a> Cleanup<'a> {
    /// A guard for `engine`.
    pub fn new(engine: &'a dyn ContainerEngine, env: &'a TestEnv) -> Self {
        Cleanup {
            engine,
            env,
            images: Vec::new(),
            pushed: Vec::new(),
        }
    }

    /// Removes the local reference at the end.
    pub fn image(&mut self, reference: &str) {
        self.images.push(reference.to_string());
    }

    /// Removes each local reference at the end.
    pub fn image_all(&mut self, references: &[String]) {
        self.images.extend(references.iter().cloned());
    }

    /// Deletes the manifest from the test registry at the end.
    pub fn pushed(&mut self, reference: &str) {
        self.pushed.push(reference.to_string());
    }
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        for reference in &self.pushed {
            if let Err(why) = registry::delete(self.env, reference) {
                eprintln!("cleanup: could not delete {reference} from the registry: {why}");
            }
        }
        if self.images.is_empty() {
            return;
        }
        // Drop cannot await: leave the runtime's async context for a moment and block on the removals. This needs
        // the multi-thread runtime the conformance tests use; elsewhere the images are left and reported.
        let handle = match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => h,
            _ => {
                eprintln!(
                    "cleanup: not in a multi-thread tokio runtime, leaving {:?}",
                    self.images
                );
                return;
            }
        };
        let engine = self.engine;
        let images = std::mem::take(&mut self.images);
        tokio::task::block_in_place(|| {
            handle.block_on(async {
                for reference in images.iter().rev() {
                    match engine
                        .remove(reference, RemoveOptions { force: true })
                        .await
                    {
                        Ok(()) => {}
                        Err(e) if e.kind() == ErrorKind::NotFound => {}
                        Err(e) => eprintln!("cleanup: could not remove {reference}: {e}"),
                    }
                }
            })
        });
    }
}
