//! Engine providers: what a front end needs to know about a backend before it has an engine.
//!
//! Each backend crate exports one [`EngineProvider`]: its name, the settings it reads (each with the
//! environment variable that sets it and its key under `engine.<name>` in berth's files), where it is looked for
//! when nothing names an engine, and how to connect from settings. A table of providers (the `berth-engines`
//! crate) is all a front end iterates, as OpenDAL's schemes or object_store's `parse_url` do, so a new backend
//! is one crate plus one line in that table. A provider also makes its engine's `berth doctor` checks
//! ([`crate::doctor`]), so a front end renders them without knowing the engine. Nothing here names a backend's library types: settings are text,
//! and services a front end shares with its engines (one registry client per run) travel in [`Shared`].

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use crate::doctor::{DoctorContext, ProviderChecks};
use crate::engine::ContainerEngine;
use crate::error::{Error, Result};

/// One setting an engine reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SettingKey {
    /// Its key in the `engine.<name>` section of `berth.yaml` and the user's file, e.g. `host`.
    pub key: &'static str,
    /// The environment variable that sets it (and wins over the files), if any, e.g. `DOCKER_HOST`.
    pub env: Option<&'static str>,
    /// Its row in `berth config`, e.g. `docker host`.
    pub label: &'static str,
    /// Its key in `berth config --json`'s `connection` object, e.g. `docker_host`.
    pub json: &'static str,
}

/// berth's cache folder for the user running it (`BERTH_CACHE_DIR`, else the XDG default), shared through
/// [`Shared`]: where a backend may remember, between runs, facts that are slow to ask and cannot change
/// unnoticed (each backend names what it keeps and how it knows the fact still holds). Absent: ask every run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheDir(pub std::path::PathBuf);

/// Services a front end shares with every engine it connects, by type: berth's CLI puts its one
/// `berth_registry::RegistryClient` here, so engines that talk to registries themselves reuse its connection
/// pool, token cache and TLS settings. Cheap to clone.
#[derive(Clone, Default)]
pub struct Shared {
    items: Vec<Arc<dyn Any + Send + Sync>>,
}

impl Shared {
    /// Adds `item`, replacing an earlier one of the same type.
    pub fn with<T: Any + Send + Sync>(mut self, item: T) -> Shared {
        self.items.retain(|i| !i.is::<T>());
        self.items.push(Arc::new(item));
        self
    }

    /// The shared item of type `T`, if the front end gave one.
    pub fn get<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.items.iter().find_map(|i| i.downcast_ref::<T>())
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Shared({} items)", self.items.len())
    }
}

/// One engine's settings for a connection: the values of its [`SettingKey`]s that someone set (environment
/// first, then the files), and the [`Shared`] services. A value nobody set is absent, and the backend falls
/// back to its own default.
#[derive(Debug, Clone, Default)]
pub struct ConnectSettings {
    values: Vec<(&'static str, String)>,
    shared: Shared,
}

impl ConnectSettings {
    /// Sets `key` to `value`.
    pub fn set(mut self, key: &'static str, value: impl Into<String>) -> ConnectSettings {
        self.values.retain(|(k, _)| *k != key);
        self.values.push((key, value.into()));
        self
    }

    /// With `shared` services.
    pub fn sharing(mut self, shared: Shared) -> ConnectSettings {
        self.shared = shared;
        self
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `key` as an owned string, for a backend's options struct.
    pub fn owned(&self, key: &str) -> Option<String> {
        self.get(key).map(str::to_string)
    }

    /// The shared services.
    pub fn shared(&self) -> &Shared {
        &self.shared
    }
}

/// What a front end knows of an engine without asking it: its name and settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProviderInfo {
    /// The engine's name, as `--engine` and `BERTH_ENGINE` take it: `docker`, `podman`, `containerd`.
    pub name: &'static str,
    /// The setting that says where the engine is (`DOCKER_HOST`, `engine.docker.host`). An address someone
    /// named is never passed over for another engine during detection.
    pub address: SettingKey,
    /// Its other settings (a namespace, a snapshotter).
    pub options: &'static [SettingKey],
    /// Other environment variables the backend reads itself (TLS files, runtime folders), for documentation
    /// and the uniqueness check; the settings' variables are not repeated here.
    pub other_env: &'static [&'static str],
    /// The command that starts the engine, for "start an engine" hints (`dockerd`).
    pub start_command: &'static str,
}

impl ProviderInfo {
    /// Every setting the engine reads, the address first.
    pub fn settings(&self) -> impl Iterator<Item = &SettingKey> {
        std::iter::once(&self.address).chain(self.options)
    }
}

/// A backend, as a front end sees it before connecting: the one thing each backend crate exports for
/// registration.
#[async_trait]
pub trait EngineProvider: Send + Sync {
    /// Its name and settings.
    fn info(&self) -> &'static ProviderInfo;
    /// Where detection looks for the engine, in order: first the place the address setting names, when it is
    /// set (the socket it names, or one derived from it, as a socket inside a named folder), then the default
    /// places (`unix:///PATH`, a bare path, or another scheme such as `https://`, which counts as named on
    /// purpose). A named place that does not answer stops detection with an error naming the setting.
    fn candidates(&self, settings: &ConnectSettings) -> Vec<String>;
    /// Where [`EngineProvider::connect`] would reach the engine with `settings`, for messages; `None` when the
    /// settings name no place the engine can use.
    fn endpoint(&self, settings: &ConnectSettings) -> Option<String>;
    /// Connects with `settings`, failing with `EngineUnavailable` and a hint when the engine cannot be reached.
    async fn connect(&self, settings: &ConnectSettings) -> Result<Box<dyn ContainerEngine>>;
    /// Waits for work that this engine's dropped operations left running in the background (containerd cleans
    /// up after an interrupted build on a thread of its own, so the interrupted task's thread goes on). A front
    /// end calls it, outside any runtime, before its process exits. Nothing to wait for by default.
    fn wait_for_background_work(&self) {}

    /// Why the engine did not answer at `endpoint` with `error`, for `berth doctor`: a message and the fix. By
    /// default, what its socket file shows (missing, not this user's, nobody answering), else its error and
    /// hint; a provider overrides it to add what it knows (another way to build).
    fn explain_unreachable(
        &self,
        endpoint: Option<&str>,
        error: &Error,
        context: &DoctorContext<'_>,
    ) -> (String, String) {
        crate::doctor::socket::explain(self.info().name, endpoint, error, context, None)
    }

    /// What [`EngineProvider::doctor`] looks at, for `berth doctor --help`: one paragraph that starts with what
    /// it is about (`Rootless Podman, for a user other than root: ...`); `None` when it checks nothing.
    fn doctor_help(&self) -> Option<&'static str> {
        None
    }

    /// The engine's own checks for `berth doctor` beyond whether it answers (rootless prerequisites, a daemon's
    /// configuration for the registry being checked): sections of its own and registry findings. None by
    /// default.
    async fn doctor(&self, context: &DoctorContext<'_>) -> ProviderChecks {
        let _ = context;
        ProviderChecks::default()
    }
}

impl fmt::Debug for dyn EngineProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EngineProvider({})", self.info().name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_items_are_found_by_type_and_replaced() {
        let shared = Shared::default().with(7_u32).with("a".to_string());
        assert_eq!(shared.get::<u32>(), Some(&7));
        assert_eq!(shared.with(8_u32).get::<u32>(), Some(&8));
        assert_eq!(Shared::default().get::<u32>(), None);
    }

    #[test]
    fn settings_keep_the_last_value_of_a_key() {
        let settings = ConnectSettings::default()
            .set("host", "unix:///a")
            .set("host", "unix:///b");
        assert_eq!(settings.get("host"), Some("unix:///b"));
        assert_eq!(settings.get("other"), None);
    }
}
