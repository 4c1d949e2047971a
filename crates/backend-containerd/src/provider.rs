//! containerd's entry in the engine table: its settings, where detection looks, connecting from settings.

use async_trait::async_trait;
use berth_core::engine::ContainerEngine;
use berth_core::provider::{ConnectSettings, EngineProvider, ProviderInfo, SettingKey};
use berth_core::Result;
use berth_registry::RegistryClient;

use crate::options::{ContainerdOptions, EnvVars, DEFAULT_ADDRESS};
use crate::ENGINE;

/// containerd, for the engine table.
pub static PROVIDER: ContainerdProvider = ContainerdProvider;

/// containerd, through its gRPC socket; berth executes the build itself, and pulls and pushes with the front
/// end's shared registry client when it gives one.
#[derive(Debug)]
pub struct ContainerdProvider;

static INFO: ProviderInfo = ProviderInfo {
    name: ENGINE,
    address: SettingKey {
        key: "address",
        env: Some(EnvVars::CONTAINERD_ADDRESS),
        label: "containerd",
        json: "containerd_address",
    },
    options: &[
        SettingKey {
            key: "namespace",
            env: Some(EnvVars::CONTAINERD_NAMESPACE),
            label: "ctr namespace",
            json: "containerd_namespace",
        },
        SettingKey {
            key: "snapshotter",
            env: Some(EnvVars::CONTAINERD_SNAPSHOTTER),
            label: "snapshotter",
            json: "containerd_snapshotter",
        },
        SettingKey {
            key: "step_cache_max",
            env: Some(EnvVars::BERTH_CONTAINERD_STEP_CACHE_MAX),
            label: "step cache bound",
            json: "containerd_step_cache_max",
        },
    ],
    other_env: &[EnvVars::BERTH_CONTAINERD_STATE_DIR],
    start_command: "containerd",
};

fn options(settings: &ConnectSettings) -> ContainerdOptions {
    ContainerdOptions {
        address: settings.owned("address"),
        namespace: settings.owned("namespace"),
        snapshotter: settings.owned("snapshotter"),
        step_cache_max: settings.owned("step_cache_max"),
        client: settings.shared().get::<RegistryClient>().cloned(),
        ..ContainerdOptions::default()
    }
}

#[async_trait]
impl EngineProvider for ContainerdProvider {
    fn info(&self) -> &'static ProviderInfo {
        &INFO
    }

    fn candidates(&self, settings: &ConnectSettings) -> Vec<String> {
        vec![settings
            .owned("address")
            .unwrap_or_else(|| DEFAULT_ADDRESS.to_string())]
    }

    fn endpoint(&self, settings: &ConnectSettings) -> Option<String> {
        Some(format!(
            "unix://{}",
            options(settings).address_path().display()
        ))
    }

    async fn connect(&self, settings: &ConnectSettings) -> Result<Box<dyn ContainerEngine>> {
        Ok(Box::new(
            crate::ContainerdEngine::connect(options(settings)).await?,
        ))
    }

    fn wait_for_background_work(&self) {
        crate::wait_for_cleanups();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_step_cache_bound_is_a_setting_of_the_file_and_the_environment() {
        let key = INFO
            .options
            .iter()
            .find(|k| k.key == "step_cache_max")
            .expect("a setting");
        assert_eq!(key.env, Some(EnvVars::BERTH_CONTAINERD_STEP_CACHE_MAX));
        let settings = ConnectSettings::default().set("step_cache_max", "2GiB");
        assert_eq!(options(&settings).step_cache_max.as_deref(), Some("2GiB"));
    }
}
