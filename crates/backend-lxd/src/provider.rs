//! LXD's entry in the engine table: its settings, where detection looks (after the other engines), connecting
//! from settings.

use std::path::PathBuf;

use async_trait::async_trait;
use berth_core::doctor::{DoctorContext, ProviderChecks};
use berth_core::engine::ContainerEngine;
use berth_core::provider::{ConnectSettings, EngineProvider, ProviderInfo, SettingKey};
use berth_core::Result;
use berth_registry::RegistryClient;

use crate::options::{socket_in, EnvVars, LxdOptions, PACKAGE_DIR, SNAP_DIR};
use crate::ENGINE;

/// LXD, for the engine table.
pub static PROVIDER: LxdProvider = LxdProvider;

/// LXD on this host through its unix socket, or an lxc remote over HTTPS (`remote`); berth executes the build
/// itself, and pulls and pushes with the front end's shared registry client when it gives one.
#[derive(Debug)]
pub struct LxdProvider;

static INFO: ProviderInfo = ProviderInfo {
    name: ENGINE,
    address: SettingKey {
        key: "dir",
        env: Some(EnvVars::LXD_DIR),
        label: "lxd folder",
        json: "lxd_dir",
    },
    options: &[
        SettingKey {
            key: "remote",
            env: Some(EnvVars::BERTH_LXD_REMOTE),
            label: "lxd remote",
            json: "lxd_remote",
        },
        SettingKey {
            key: "pool",
            env: Some(EnvVars::BERTH_LXD_POOL),
            label: "lxd pool",
            json: "lxd_pool",
        },
    ],
    other_env: &[EnvVars::BERTH_LXD_STATE_DIR, EnvVars::LXD_CONF],
    start_command: "lxd --group lxd",
};

fn options(settings: &ConnectSettings) -> LxdOptions {
    LxdOptions {
        lxd_dir: settings.owned("dir").map(PathBuf::from),
        remote: settings.owned("remote"),
        pool: settings.owned("pool"),
        client: settings.shared().get::<RegistryClient>().cloned(),
        ..LxdOptions::default()
    }
}

/// The remote's address (`https://HOST:PORT`) when the settings name one; a name lxc does not know still
/// counts as named (`lxd-remote://NAME`), so connecting reports what is wrong with it.
fn remote_place(settings: &ConnectSettings) -> Option<String> {
    let options = options(settings);
    let name = options.remote_name()?;
    Some(match options.remote() {
        Ok(Some(remote)) => remote.url(),
        _ => format!("lxd-remote://{name}"),
    })
}

#[async_trait]
impl EngineProvider for LxdProvider {
    fn info(&self) -> &'static ProviderInfo {
        &INFO
    }

    fn candidates(&self, settings: &ConnectSettings) -> Vec<String> {
        if let Some(remote) = remote_place(settings) {
            // a remote someone named is the one place to look
            return vec![remote];
        }
        let named = settings.get("dir").map(|dir| socket_in(dir.as_ref()));
        named
            .into_iter()
            .chain([PACKAGE_DIR, SNAP_DIR].map(|dir| socket_in(dir.as_ref())))
            .map(|socket| format!("unix://{}", socket.display()))
            .collect()
    }

    fn endpoint(&self, settings: &ConnectSettings) -> Option<String> {
        remote_place(settings)
            .or_else(|| Some(format!("unix://{}", options(settings).socket().display())))
    }

    async fn connect(&self, settings: &ConnectSettings) -> Result<Box<dyn ContainerEngine>> {
        Ok(Box::new(
            crate::LxdEngine::connect(options(settings)).await?,
        ))
    }

    fn wait_for_background_work(&self) {
        crate::wait_for_cleanups();
    }

    fn doctor_help(&self) -> Option<&'static str> {
        Some(crate::doctor::HELP)
    }

    async fn doctor(&self, context: &DoctorContext<'_>) -> ProviderChecks {
        let options = options(context.settings);
        let mut sections = Vec::new();
        if let Ok(Some(remote)) = options.remote() {
            sections.extend(crate::doctor::remote_section(&remote).await);
        }
        // a server that does not answer is the engines section's to explain
        if let Ok(engine) = crate::LxdEngine::connect(options).await {
            sections.extend(crate::doctor::section(&engine).await);
        }
        ProviderChecks {
            sections,
            registry: Vec::new(),
        }
    }
}
