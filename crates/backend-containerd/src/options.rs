//! How to reach containerd and where berth keeps its build state: options, their environment variables and
//! defaults, and the namespace check that runs before a namespace reaches any gRPC header.

use std::path::PathBuf;
use std::time::Duration;

use berth_core::{Error, Result};
use berth_registry::{RegistryClient, RegistryOptions};

use crate::step_cache_max::StepCacheMax;
use crate::ENGINE;

/// containerd's default socket.
pub const DEFAULT_ADDRESS: &str = "/run/containerd/containerd.sock";
/// The namespace `ctr` and `nerdctl` use by default.
pub const DEFAULT_NAMESPACE: &str = "default";
/// containerd's default snapshotter.
pub const DEFAULT_SNAPSHOTTER: &str = "overlayfs";
/// Where berth keeps cache mounts and the step cache when running as root.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/berth/containerd";

/// The environment variables this backend reads, in one place.
#[derive(Debug)]
pub struct EnvVars;

impl EnvVars {
    /// containerd's socket (containerd's own variable, as `ctr` reads it).
    pub const CONTAINERD_ADDRESS: &'static str = "CONTAINERD_ADDRESS";
    /// The namespace (as `ctr` reads it).
    pub const CONTAINERD_NAMESPACE: &'static str = "CONTAINERD_NAMESPACE";
    /// The snapshotter (as `ctr` reads it).
    pub const CONTAINERD_SNAPSHOTTER: &'static str = "CONTAINERD_SNAPSHOTTER";
    /// berth's state folder for this backend (cache mounts, step cache, helper files).
    pub const BERTH_CONTAINERD_STATE_DIR: &'static str = "BERTH_CONTAINERD_STATE_DIR";
    /// How much disk the step cache may hold (see [`StepCacheMax::parse`]).
    pub const BERTH_CONTAINERD_STEP_CACHE_MAX: &'static str = "BERTH_CONTAINERD_STEP_CACHE_MAX";
}

/// Options for [`crate::ContainerdEngine::connect`]; `None` fields come from the environment, then defaults.
#[derive(Debug, Clone)]
pub struct ContainerdOptions {
    /// The socket path (`unix://` prefix allowed).
    pub address: Option<String>,
    /// The namespace images and build resources live in.
    pub namespace: Option<String>,
    /// The snapshotter RUN steps and unpacking use.
    pub snapshotter: Option<String>,
    /// berth's state folder: persistent cache mounts, the step cache, files taken from helper images.
    pub state_dir: Option<PathBuf>,
    /// The step cache's size bound as text (`10GiB`, `5%`, `off`; see [`StepCacheMax::parse`]).
    pub step_cache_max: Option<String>,
    /// How long connecting and the first request may take.
    pub connect_timeout: Duration,
    /// Deadline of each short gRPC call (metadata: images, containers, tasks, leases, labels). Calls whose
    /// length depends on the work (unpacking, diffs, preparing a native snapshot, waiting for a RUN step) have
    /// none; streams have [`ContainerdOptions::idle_timeout`].
    pub call_timeout: Duration,
    /// How long a content stream (blob read or write) may go without progress.
    pub idle_timeout: Duration,
    /// Registry client options (insecure registries, CA file, retries, credential lookup) for pulls and pushes,
    /// used when no [`ContainerdOptions::client`] is given.
    pub registry: RegistryOptions,
    /// The front end's registry client, shared by every pull, push and build of this engine (one connection
    /// pool, token cache and `/v2/` check per registry, credential helpers run once). Its credential lookup
    /// must be where [`TransferOptions`](berth_core::engine::TransferOptions) and build credentials come from:
    /// a call's own credentials are not added to it. A call that names an insecure registry the client would
    /// verify gets a client of its own, made from this one's options.
    pub client: Option<RegistryClient>,
}

impl Default for ContainerdOptions {
    fn default() -> Self {
        ContainerdOptions {
            address: None,
            namespace: None,
            snapshotter: None,
            state_dir: None,
            step_cache_max: None,
            connect_timeout: Duration::from_secs(5),
            call_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(120),
            registry: RegistryOptions::default(),
            client: None,
        }
    }
}

/// Options with every default filled in and checked.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    pub(crate) address: PathBuf,
    pub(crate) namespace: String,
    pub(crate) snapshotter: String,
    pub(crate) state_dir: PathBuf,
    pub(crate) step_cache_max: StepCacheMax,
    pub(crate) connect_timeout: Duration,
    pub(crate) timeouts: crate::convert::Timeouts,
    pub(crate) registry: RegistryOptions,
    pub(crate) client: Option<RegistryClient>,
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl ContainerdOptions {
    /// The socket these options name, without connecting (for messages and `berth engines`).
    pub fn address_path(&self) -> PathBuf {
        let address = self
            .address
            .clone()
            .or_else(|| var(EnvVars::CONTAINERD_ADDRESS))
            .unwrap_or_else(|| DEFAULT_ADDRESS.to_string());
        PathBuf::from(address.strip_prefix("unix://").unwrap_or(&address))
    }

    pub(crate) fn resolve(self) -> Result<Resolved> {
        let namespace = self
            .namespace
            .clone()
            .or_else(|| var(EnvVars::CONTAINERD_NAMESPACE))
            .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string());
        validate_namespace(&namespace)?;
        let snapshotter = self
            .snapshotter
            .clone()
            .or_else(|| var(EnvVars::CONTAINERD_SNAPSHOTTER))
            .unwrap_or_else(|| DEFAULT_SNAPSHOTTER.to_string());
        if snapshotter.is_empty()
            || !snapshotter
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            return Err(Error::invalid(format!(
                "`{snapshotter}` is not a snapshotter name"
            ))
            .with_engine(ENGINE)
            .with_operation("connect")
            .with_hint("name one of containerd's snapshotters, e.g. overlayfs or native (`ctr plugins ls`)"));
        }
        let state_dir = self
            .state_dir
            .clone()
            .or_else(|| var(EnvVars::BERTH_CONTAINERD_STATE_DIR).map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR))
            .join(&namespace);
        let step_cache_max = match self
            .step_cache_max
            .clone()
            .or_else(|| var(EnvVars::BERTH_CONTAINERD_STEP_CACHE_MAX))
        {
            Some(text) => StepCacheMax::parse(&text)?,
            None => StepCacheMax::Default,
        };
        Ok(Resolved {
            address: self.address_path(),
            namespace,
            snapshotter,
            state_dir,
            step_cache_max,
            connect_timeout: self.connect_timeout,
            timeouts: crate::convert::Timeouts {
                call: self.call_timeout,
                idle: self.idle_timeout,
            },
            registry: self.registry,
            client: self.client,
        })
    }
}

/// Checks a namespace the way containerd does (letters and digits, separated by single `.`, `_` or `-`, at most
/// 76 characters), before it reaches a header.
pub fn validate_namespace(namespace: &str) -> Result<()> {
    let mut previous_separator = true;
    let mut valid = !namespace.is_empty() && namespace.len() <= 76;
    for c in namespace.chars() {
        if c.is_ascii_alphanumeric() {
            previous_separator = false;
        } else if ".-_".contains(c) && !previous_separator {
            previous_separator = true;
        } else {
            valid = false;
        }
    }
    if !valid || previous_separator {
        return Err(Error::invalid(format!(
            "`{}` is not a containerd namespace",
            namespace.escape_debug()
        ))
        .with_engine(ENGINE)
        .with_operation("connect")
        .with_hint(format!(
            "set {} to letters and digits separated by single `.`, `_` or `-` (at most 76), e.g. `default`",
            EnvVars::CONTAINERD_NAMESPACE
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_prints_a_registry_password() {
        let vars = std::collections::HashMap::from([(
            "BERTH_REGISTRY_PASSWORD".to_string(),
            "hunter2-pw".to_string(),
        )]);
        let options = ContainerdOptions {
            registry: RegistryOptions {
                credentials: berth_registry::CredentialResolver::with_vars(vars),
                ..RegistryOptions::default()
            },
            ..ContainerdOptions::default()
        };
        let printed = format!(
            "{options:?} {:?}",
            options.clone().resolve().expect("valid")
        );
        assert!(printed.contains("BERTH_REGISTRY_PASSWORD"), "{printed}");
        assert!(!printed.contains("hunter2"), "{printed}");
    }

    #[test]
    fn namespaces_follow_containerd_rules() {
        for good in ["default", "k8s.io", "a-b_c.d", "x1"] {
            assert!(validate_namespace(good).is_ok(), "{good}");
        }
        for bad in ["", "-a", "a-", "a..b", "a b", "a\nb", "ä", &"a".repeat(77)] {
            assert!(validate_namespace(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn unix_prefix_is_accepted() {
        let options = ContainerdOptions {
            address: Some("unix:///tmp/c.sock".into()),
            ..ContainerdOptions::default()
        };
        assert_eq!(options.address_path(), PathBuf::from("/tmp/c.sock"));
    }
}
