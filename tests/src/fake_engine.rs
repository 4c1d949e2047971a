//! A [`ContainerEngine`] that builds nothing: it records every call, keeps the images it "built" in memory, and
//! runs what a test scripts for an image's build or push (fail, wait for another image, block its thread, never
//! answer). The workflow (ordering behind bases, build slots, overlapping pushes, cancellation, the lock) is
//! tested on it without a daemon, as object_store's `memory.rs` serves its callers. It is never evidence that a
//! backend works: the conformance suite runs every real engine for that.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use berth_core::engine::{
    BuildOptions, BuiltImage, Capabilities, ContainerEngine, EngineInfo, ImageDetails, Progress,
    ProgressEvent, PushedImage, RemoveOptions, TransferOptions,
};
use berth_core::plan::BuildPlan;
use berth_core::{Error, ErrorKind, Result};
use sha2::{Digest, Sha256};

/// What a scripted hook returns: the build or push goes on when it ends with `Ok`, fails with its error else.
pub type HookFuture = Pin<Box<dyn Future<Output = Result<()>> + Send>>;

/// A test's script for one image: called (synchronously, so it may block its thread) when the image's build or
/// push starts, with the reference; the engine then awaits the future it returns.
pub type Hook = Arc<dyn Fn(&str) -> HookFuture + Send + Sync>;

/// One call the engine received, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// A build, with its first tag and the registries it was given credentials for.
    Build {
        /// The first tag.
        tag: String,
        /// Registries of [`BuildOptions::credentials`].
        credentials: Vec<String>,
    },
    /// A push of `reference`.
    Push {
        /// The reference.
        reference: String,
    },
    /// A pull of `reference`.
    Pull {
        /// The reference.
        reference: String,
    },
}

#[derive(Default)]
struct State {
    calls: Vec<Call>,
    images: HashMap<String, String>,
    builds: HashMap<String, Hook>,
    pushes: HashMap<String, Hook>,
    building: usize,
    most_building: usize,
}

/// The fake engine (see the module doc).
#[derive(Default)]
pub struct FakeEngine {
    state: Mutex<State>,
}

impl FakeEngine {
    /// An engine with nothing scripted: every build and push succeeds at once.
    pub fn new() -> Arc<FakeEngine> {
        Arc::new(FakeEngine::default())
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Runs `hook` when the build of a reference containing `image` starts.
    pub fn on_build(&self, image: &str, hook: Hook) {
        self.with(|s| s.builds.insert(image.to_string(), hook));
    }

    /// Runs `hook` when the push of a reference containing `image` starts.
    pub fn on_push(&self, image: &str, hook: Hook) {
        self.with(|s| s.pushes.insert(image.to_string(), hook));
    }

    /// Fails the build of a reference containing `image` with `kind`.
    pub fn fail_build(&self, image: &str, kind: ErrorKind) {
        self.on_build(image, fail(kind, "scripted build failure"));
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.with(|s| s.calls.clone())
    }

    /// The tags of every build started so far, in order.
    pub fn built(&self) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::Build { tag, .. } => Some(tag),
                _ => None,
            })
            .collect()
    }

    /// The references pushed so far, in order.
    pub fn pushed(&self) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::Push { reference } => Some(reference),
                _ => None,
            })
            .collect()
    }

    /// The most builds that were running at one moment.
    pub fn most_builds_at_once(&self) -> usize {
        self.with(|s| s.most_building)
    }

    fn hook(map: &HashMap<String, Hook>, reference: &str) -> Option<Hook> {
        map.iter()
            .find(|(image, _)| reference.contains(image.as_str()))
            .map(|(_, hook)| hook.clone())
    }

    /// The digest the fake registry would give `reference`.
    pub fn digest_of(reference: &str) -> String {
        let hash = Sha256::digest(reference.as_bytes());
        let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
        format!("sha256:{hex}")
    }
}

/// A hook that fails with `kind` and `message`.
pub fn fail(kind: ErrorKind, message: &str) -> Hook {
    let message = message.to_string();
    Arc::new(move |_| {
        let error = Error::new(kind, message.clone());
        Box::pin(async move { Err(error) })
    })
}

/// Counts a running build while alive (a build future dropped midway stops counting too).
struct Building<'a>(&'a FakeEngine);

impl Drop for Building<'_> {
    fn drop(&mut self) {
        self.0.with(|s| s.building -= 1);
    }
}

#[async_trait]
impl ContainerEngine for FakeEngine {
    fn name(&self) -> &'static str {
        "fake"
    }

    async fn info(&self) -> Result<EngineInfo> {
        Ok(EngineInfo {
            engine: "fake".into(),
            version: "0".into(),
            endpoint: "memory".into(),
            capabilities: Capabilities {
                run_mounts: true,
                cache_mounts: true,
                caches_persist: true,
                secret_mounts: true,
                cross_platform: true,
                ..Capabilities::default()
            },
        })
    }

    async fn build(
        &self,
        plan: &BuildPlan,
        options: &BuildOptions,
        progress: &dyn Progress,
    ) -> Result<BuiltImage> {
        let tag = options.tags.first().cloned().unwrap_or_default();
        let hook = self.with(|s| {
            s.calls.push(Call::Build {
                tag: tag.clone(),
                credentials: options
                    .credentials
                    .iter()
                    .map(|c| c.registry.clone())
                    .collect(),
            });
            s.building += 1;
            s.most_building = s.most_building.max(s.building);
            FakeEngine::hook(&s.builds, &tag)
        });
        let _building = Building(self);
        progress.event(ProgressEvent::Step {
            index: 1,
            total: 1,
            description: format!("FROM {}", plan.base_image),
        });
        if let Some(hook) = hook {
            hook(&tag).await?;
        }
        let id = FakeEngine::digest_of(&format!("image {tag}"));
        self.with(|s| {
            for tag in &options.tags {
                s.images.insert(tag.clone(), id.clone());
            }
        });
        Ok(BuiltImage { id })
    }

    async fn push(
        &self,
        reference: &str,
        _options: &TransferOptions,
        _progress: &dyn Progress,
    ) -> Result<PushedImage> {
        let hook = self.with(|s| {
            s.calls.push(Call::Push {
                reference: reference.to_string(),
            });
            FakeEngine::hook(&s.pushes, reference)
        });
        if let Some(hook) = hook {
            hook(reference).await?;
        }
        if !self.with(|s| s.images.contains_key(reference)) {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("{reference} is not an image on fake"),
            ));
        }
        Ok(PushedImage {
            digest: FakeEngine::digest_of(reference),
        })
    }

    async fn pull(
        &self,
        reference: &str,
        _options: &TransferOptions,
        _progress: &dyn Progress,
    ) -> Result<()> {
        self.with(|s| {
            s.calls.push(Call::Pull {
                reference: reference.to_string(),
            });
            s.images
                .insert(reference.to_string(), FakeEngine::digest_of(reference));
        });
        Ok(())
    }

    async fn inspect(&self, reference: &str) -> Result<ImageDetails> {
        match self.with(|s| s.images.get(reference).cloned()) {
            Some(id) => Ok(ImageDetails {
                id,
                tags: vec![reference.to_string()],
                ..ImageDetails::default()
            }),
            None => Err(Error::new(
                ErrorKind::NotFound,
                format!("no image {reference}"),
            )),
        }
    }

    async fn tag(&self, source: &str, target: &str) -> Result<()> {
        let id = self.inspect(source).await?.id;
        self.with(|s| s.images.insert(target.to_string(), id));
        Ok(())
    }

    /// Nothing it does outlives the test process.
    async fn leftovers(&self) -> Result<Vec<berth_core::engine::Leftover>> {
        Ok(Vec::new())
    }

    async fn remove_leftovers(&self) -> Result<Vec<berth_core::engine::Leftover>> {
        Ok(Vec::new())
    }

    async fn remove(&self, reference: &str, _options: RemoveOptions) -> Result<()> {
        match self.with(|s| s.images.remove(reference)) {
            Some(_) => Ok(()),
            None => Err(Error::new(
                ErrorKind::NotFound,
                format!("no image {reference}"),
            )),
        }
    }
}
