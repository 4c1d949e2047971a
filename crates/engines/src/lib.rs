//! berth's engines, for any front end: the table of every compiled-in backend's
//! [`EngineProvider`](berth_core::provider::EngineProvider), and engine choice on top of it (`--engine`, then
//! `BERTH_ENGINE`, then `engine:` in the project's and the user's files, then detection of a reachable socket).
//!
//! Each backend crate exports one provider (its name, its settings and their environment variables, where it is
//! looked for, how it connects); [`table`](self) lists them behind one cargo feature each (default: all). The CLI
//! iterates [`providers`] and never names a backend crate, so a Python plugin or a server picks and reaches an
//! engine exactly as `berth` does: it supplies its configuration files through [`FileSettings`], and gets an
//! [`EngineKind`], the [`ChoiceSource`] to print, and a connected engine from [`connect`].

mod choice;
mod detect;
mod settings;
mod table;

use std::fmt;
use std::str::FromStr;

use berth_core::engine::{ContainerEngine, EngineInfo};
use berth_core::provider::{EngineProvider, ProviderInfo, Shared};
use berth_core::{Error, Result};

pub use choice::{blame_named, choose_with, named_address, setting_name, ChoiceSource};
pub use settings::{connect_settings, named, setting, FileSettings, Setting, Source};

/// Environment variable naming the engine to use: an engine's name or `auto`.
pub const BERTH_ENGINE: &str = "BERTH_ENGINE";

/// Every engine this build can use, in detection order.
pub fn providers() -> impl Iterator<Item = EngineKind> {
    table::PROVIDERS.iter().map(|p| EngineKind(*p))
}

/// The engines' names, for messages: `docker, podman, containerd`.
pub fn names(separator: &str) -> String {
    providers()
        .map(EngineKind::name)
        .collect::<Vec<_>>()
        .join(separator)
}

/// One engine of the table.
#[derive(Clone, Copy)]
pub struct EngineKind(&'static dyn EngineProvider);

impl EngineKind {
    /// The engine's name.
    pub fn name(self) -> &'static str {
        self.0.info().name
    }

    /// Its name and settings.
    pub fn info(self) -> &'static ProviderInfo {
        self.0.info()
    }

    /// Its provider.
    pub fn provider(self) -> &'static dyn EngineProvider {
        self.0
    }
}

impl PartialEq for EngineKind {
    fn eq(&self, other: &Self) -> bool {
        self.name() == other.name()
    }
}

impl Eq for EngineKind {}

impl fmt::Debug for EngineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EngineKind({})", self.name())
    }
}

impl fmt::Display for EngineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for EngineKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let wanted = s.trim().to_ascii_lowercase();
        if let Some(kind) = providers().find(|k| k.name() == wanted) {
            return Ok(kind);
        }
        let hint = format!("pass --engine {}, or `auto` to detect", names("|"));
        if table::BACKENDS.contains(&(wanted.as_str(), false)) {
            return Err(Error::unsupported(
                &wanted,
                "choose the engine",
                format!(
                    "this berth was built without the {wanted} backend (cargo feature {wanted}); it has {}",
                    names(", ")
                ),
            )
            .with_hint(format!(
                "{hint}; or build berth with its cargo feature {wanted} (`cargo build -p berth-cli --features {wanted}`)"
            )));
        }
        Err(Error::invalid(format!(
            "unknown engine `{wanted}`; known engines: {}",
            names(", ")
        ))
        .with_hint(hint))
    }
}

/// Where an engine of `kind` is looked for with `files`' settings (and the environment), as [`connect`]
/// reaches it.
pub fn endpoint(kind: EngineKind, files: &dyn FileSettings) -> Option<String> {
    kind.provider()
        .endpoint(&connect_settings(kind, files, Shared::default()))
}

/// Connects to an engine of `kind` with its settings from the environment and `files`, and `shared` services
/// (the front end's registry client); fails with `EngineUnavailable` and a hint when it cannot be reached.
pub async fn connect(
    kind: EngineKind,
    files: &dyn FileSettings,
    shared: Shared,
) -> Result<Box<dyn ContainerEngine>> {
    kind.provider()
        .connect(&connect_settings(kind, files, shared))
        .await
}

/// Waits for what every engine's dropped operations left running in the background (see
/// [`EngineProvider::wait_for_background_work`]); call it outside any runtime before the process exits.
pub fn wait_for_background_work() {
    for kind in providers() {
        kind.provider().wait_for_background_work();
    }
}

/// What an engine of `kind` says about itself (`berth engines`, `berth doctor`).
pub async fn info(kind: EngineKind, files: &dyn FileSettings) -> Result<EngineInfo> {
    connect(kind, files, Shared::default()).await?.info().await
}

#[cfg(all(test, feature = "docker", not(feature = "podman")))]
mod built_without {
    use berth_core::ErrorKind;

    use super::*;

    /// Run with `cargo test -p berth-engines --no-default-features --features docker`.
    #[test]
    fn an_engine_compiled_out_says_so_and_an_unknown_one_is_still_unknown() {
        let err = "podman".parse::<EngineKind>().expect_err("compiled out");
        assert_eq!(err.kind(), ErrorKind::Unsupported, "{err:?}");
        assert!(
            err.to_string()
                .contains("this berth was built without the podman backend (cargo feature podman)"),
            "{err}"
        );
        assert!(!err.to_string().contains("unknown"), "{err}");
        assert!(
            err.hint().unwrap_or_default().contains("--engine docker"),
            "{err:?}"
        );
        let err = "dokcer".parse::<EngineKind>().expect_err("unknown");
        assert_eq!(err.kind(), ErrorKind::InvalidSpec, "{err:?}");
        assert!(err.to_string().contains("unknown engine `dokcer`"), "{err}");
    }
}

#[cfg(all(test, feature = "docker", feature = "podman", feature = "containerd"))]
mod tests {
    use super::*;

    #[test]
    fn unknown_engines_list_the_known_ones() {
        let err = "dokcer".parse::<EngineKind>().expect_err("unknown");
        assert!(
            err.to_string().contains("docker, podman, containerd"),
            "{err}"
        );
        assert!(
            err.hint()
                .unwrap_or_default()
                .contains("--engine docker|podman|containerd"),
            "{err:?}"
        );
        assert_eq!(
            "Podman".parse::<EngineKind>().expect("known").name(),
            "podman"
        );
    }
}
