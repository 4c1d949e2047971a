//! Registry credentials, found where the user already keeps them, and stored where Docker would.
//!
//! [`CredentialResolver::resolve`] looks, in this order, at:
//! 1. credentials given explicitly ([`CredentialResolver::with_credentials`]);
//! 2. the environment: `BERTH_REGISTRY_USERNAME` and `BERTH_REGISTRY_PASSWORD`, for the registry named in
//!    `BERTH_REGISTRY_HOST`, or for every registry when that is unset;
//! 3. Docker's `config.json` (an explicit path, else `$DOCKER_CONFIG/config.json`, else
//!    `~/.docker/config.json`): its `credHelpers` entry for the host (run as `docker-credential-<name> get`),
//!    then its `auths` entry, then its `credsStore` helper;
//! 4. Podman's `auth.json`: `$REGISTRY_AUTH_FILE`, else `$XDG_RUNTIME_DIR/containers/auth.json` (or
//!    `/run/containers/<uid>/auth.json`), then `$XDG_CONFIG_HOME/containers/auth.json` (`~/.config/...`).
//!
//! Registry keys match the way the Docker CLI matches them (`https://host`, `host/v1/`, Docker Hub's aliases).
//! Every variable is read through the resolver, so a test or a caller can give it an environment of its own
//! ([`CredentialResolver::with_vars`]) without touching the process's.

mod config_file;
mod helper;
mod login;

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use berth_core::engine::{Credentials, Secret};
use berth_core::Result;

use crate::env::EnvVars;
use config_file::{same_registry, server_key, ConfigFile};

pub(crate) use config_file::is_docker_hub;
pub use login::login;

/// Where a set of credentials came from (for messages and `berth doctor`; never includes the secret).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CredentialOrigin {
    /// Given by the caller.
    Explicit,
    /// `BERTH_REGISTRY_USERNAME` / `BERTH_REGISTRY_PASSWORD`.
    Environment,
    /// A credential helper: `credHelpers[host]` or `credsStore` in a Docker config.
    Helper {
        /// Helper name (`docker-credential-<name>`).
        helper: String,
        /// The config file that named it.
        config: PathBuf,
    },
    /// An `auths` entry of a Docker config or Podman auth file.
    AuthFile {
        /// The file.
        path: PathBuf,
        /// The key the entry is stored under.
        key: String,
    },
}

impl fmt::Display for CredentialOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CredentialOrigin::Explicit => f.write_str("credentials given to berth directly"),
            CredentialOrigin::Environment => write!(
                f,
                "{}/{}",
                EnvVars::BERTH_REGISTRY_USERNAME,
                EnvVars::BERTH_REGISTRY_PASSWORD
            ),
            CredentialOrigin::Helper { helper, config } => {
                write!(
                    f,
                    "docker-credential-{helper} (named in {})",
                    config.display()
                )
            }
            CredentialOrigin::AuthFile { path, key } => {
                write!(f, "auths[\"{key}\"] in {}", path.display())
            }
        }
    }
}

/// Credentials and where they were found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedCredentials {
    /// The credentials (the password prints as `***`).
    pub credentials: Credentials,
    /// Where they came from.
    pub origin: CredentialOrigin,
}

#[derive(Clone)]
enum Vars {
    Process,
    Fixed(Arc<HashMap<String, String>>),
}

/// The variables' names only: the map may hold `BERTH_REGISTRY_PASSWORD`, and a resolver is printed inside
/// `RegistryOptions`, `RegistryClient` and every backend's options.
impl fmt::Debug for Vars {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Vars::Process => f.write_str("Process"),
            Vars::Fixed(map) => {
                let mut names: Vec<&str> = map.keys().map(String::as_str).collect();
                names.sort_unstable();
                f.debug_tuple("Fixed").field(&names).finish()
            }
        }
    }
}

/// Finds registry credentials the way Docker and Podman users already have them (see the module doc).
#[derive(Debug, Clone)]
pub struct CredentialResolver {
    vars: Vars,
    docker_config: Option<PathBuf>,
    explicit: Vec<Credentials>,
    /// Finds nothing, ever: see [`CredentialResolver::anonymous`].
    anonymous: bool,
    /// How long a credential helper may take before it is killed.
    helper_timeout: Duration,
}

/// How long a credential helper may run by default: long enough for a keychain lookup, short enough that a
/// helper waiting on a passphrase nobody can type does not block a CI job.
pub const DEFAULT_HELPER_TIMEOUT: Duration = Duration::from_secs(60);

impl Default for CredentialResolver {
    fn default() -> Self {
        CredentialResolver::from_env()
    }
}

impl CredentialResolver {
    /// A resolver reading the process's environment.
    pub fn from_env() -> Self {
        CredentialResolver {
            vars: Vars::Process,
            docker_config: None,
            explicit: Vec::new(),
            anonymous: false,
            helper_timeout: DEFAULT_HELPER_TIMEOUT,
        }
    }

    /// A resolver that sees only `vars` as its environment (`HOME`, `PATH` for helpers, `DOCKER_CONFIG`, ...).
    pub fn with_vars(vars: HashMap<String, String>) -> Self {
        CredentialResolver {
            vars: Vars::Fixed(Arc::new(vars)),
            docker_config: None,
            explicit: Vec::new(),
            anonymous: false,
            helper_timeout: DEFAULT_HELPER_TIMEOUT,
        }
    }

    /// A resolver that never finds credentials, whatever the environment and config files hold: a client using
    /// it asks as a machine with no login at all would (a cluster node without pull secrets). It still follows
    /// a registry's bearer-token challenge, anonymously, as Docker does for public images.
    pub fn anonymous() -> Self {
        CredentialResolver {
            vars: Vars::Fixed(Arc::new(HashMap::new())),
            docker_config: None,
            explicit: Vec::new(),
            anonymous: true,
            helper_timeout: DEFAULT_HELPER_TIMEOUT,
        }
    }

    /// Whether this resolver is [`CredentialResolver::anonymous`].
    pub fn is_anonymous(&self) -> bool {
        self.anonymous
    }

    /// Reads this Docker `config.json` instead of the default one (a spec's `registry_config`).
    pub fn docker_config(mut self, path: impl Into<PathBuf>) -> Self {
        self.docker_config = Some(path.into());
        self
    }

    /// Kills a credential helper that has not answered within `timeout` (default [`DEFAULT_HELPER_TIMEOUT`]).
    pub fn helper_timeout(mut self, timeout: Duration) -> Self {
        self.helper_timeout = timeout;
        self
    }

    /// Uses these credentials for their registry before looking anywhere else.
    pub fn with_credentials(mut self, credentials: Credentials) -> Self {
        self.explicit.push(credentials);
        self
    }

    fn var(&self, name: &str) -> Option<String> {
        let value = match &self.vars {
            Vars::Process => std::env::var(name).ok(),
            Vars::Fixed(map) => map.get(name).cloned(),
        };
        value.filter(|v| !v.is_empty())
    }

    /// The Docker config file this resolver reads (and [`CredentialResolver::login`] writes).
    pub fn docker_config_path(&self) -> Option<PathBuf> {
        if let Some(path) = &self.docker_config {
            return Some(path.clone());
        }
        if let Some(dir) = self.var(EnvVars::DOCKER_CONFIG) {
            return Some(PathBuf::from(dir).join("config.json"));
        }
        self.var(EnvVars::HOME)
            .map(|home| PathBuf::from(home).join(".docker/config.json"))
    }

    /// Podman's auth files, in the order they are consulted.
    pub fn podman_auth_paths(&self) -> Vec<PathBuf> {
        if let Some(file) = self.var(EnvVars::REGISTRY_AUTH_FILE) {
            return vec![PathBuf::from(file)];
        }
        let mut paths = Vec::new();
        match self.var(EnvVars::XDG_RUNTIME_DIR) {
            Some(dir) => paths.push(PathBuf::from(dir).join("containers/auth.json")),
            None => {
                use std::os::unix::fs::MetadataExt as _;
                if let Ok(me) = std::fs::metadata("/proc/self") {
                    paths.push(PathBuf::from(format!(
                        "/run/containers/{}/auth.json",
                        me.uid()
                    )));
                }
            }
        }
        let config_home = self
            .var(EnvVars::XDG_CONFIG_HOME)
            .map(PathBuf::from)
            .or_else(|| {
                self.var(EnvVars::HOME)
                    .map(|h| PathBuf::from(h).join(".config"))
            });
        if let Some(dir) = config_home {
            paths.push(dir.join("containers/auth.json"));
        }
        paths
    }

    /// Where [`CredentialResolver::resolve`] looks, in order, for messages that say what was tried.
    pub fn locations(&self) -> Vec<String> {
        if self.anonymous {
            return Vec::new();
        }
        let mut places = vec![CredentialOrigin::Environment.to_string()];
        places.extend(self.docker_config_path().map(|p| p.display().to_string()));
        places.extend(
            self.podman_auth_paths()
                .iter()
                .map(|p| p.display().to_string()),
        );
        places
    }

    /// The credentials for registry `host`, or `None` if the user has none for it. Fails when a config file
    /// is malformed or a configured helper is missing or fails.
    pub fn resolve(&self, host: &str) -> Result<Option<ResolvedCredentials>> {
        if self.anonymous {
            return Ok(None);
        }
        let found = |username: String, password: Secret, origin| {
            Ok(Some(ResolvedCredentials {
                credentials: Credentials {
                    registry: host.to_string(),
                    username,
                    password,
                },
                origin,
            }))
        };
        if let Some(c) = self
            .explicit
            .iter()
            .find(|c| same_registry(&c.registry, host))
        {
            return found(
                c.username.clone(),
                c.password.clone(),
                CredentialOrigin::Explicit,
            );
        }
        if let (Some(user), Some(pass)) = (
            self.var(EnvVars::BERTH_REGISTRY_USERNAME),
            self.var(EnvVars::BERTH_REGISTRY_PASSWORD),
        ) {
            let applies = self
                .var(EnvVars::BERTH_REGISTRY_HOST)
                .is_none_or(|h| same_registry(&h, host));
            if applies {
                return found(user, Secret::new(pass), CredentialOrigin::Environment);
            }
        }
        let path_var = self.var(EnvVars::PATH);
        if let Some(path) = self.docker_config_path() {
            if let Some(config) = ConfigFile::read(&path)? {
                let server = server_key(host);
                let helper_origin = |helper: &str| CredentialOrigin::Helper {
                    helper: helper.to_string(),
                    config: path.clone(),
                };
                if let Some(helper) = config.helper_for(host) {
                    if let Some((user, secret)) =
                        helper::get(helper, &server, path_var.as_deref(), self.helper_timeout)?
                    {
                        return found(user, secret, helper_origin(helper));
                    }
                }
                if let Some((key, user, pass)) = config.auth_for(host)? {
                    return found(user, pass, CredentialOrigin::AuthFile { path, key });
                }
                if let Some(store) = config.creds_store.as_deref().filter(|s| !s.is_empty()) {
                    if let Some((user, secret)) =
                        helper::get(store, &server, path_var.as_deref(), self.helper_timeout)?
                    {
                        return found(user, secret, helper_origin(store));
                    }
                }
            }
        }
        for path in self.podman_auth_paths() {
            if let Some(config) = ConfigFile::read(&path)? {
                if let Some((key, user, pass)) = config.auth_for(host)? {
                    return found(user, pass, CredentialOrigin::AuthFile { path, key });
                }
            }
        }
        Ok(None)
    }

    /// Stores credentials for `host` where Docker would (see [`login`]), in this resolver's Docker config.
    /// Returns where they went.
    pub fn login(&self, host: &str, username: &str, password: &Secret) -> Result<CredentialOrigin> {
        if self.anonymous {
            return Err(berth_core::Error::invalid(format!(
                "cannot store credentials for {host} through an anonymous resolver"
            ))
            .with_operation("login"));
        }
        let path = self.docker_config_path().ok_or_else(|| {
            berth_core::Error::invalid(
                "cannot tell where the docker config is: neither DOCKER_CONFIG nor HOME is set",
            )
        })?;
        login::store(
            &path,
            host,
            username,
            password,
            self.var(EnvVars::PATH).as_deref(),
            self.helper_timeout,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> CredentialResolver {
        CredentialResolver::with_vars(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn environment_credentials_apply_to_their_host_or_everywhere() {
        let everywhere = vars(&[
            ("BERTH_REGISTRY_USERNAME", "u"),
            ("BERTH_REGISTRY_PASSWORD", "p"),
        ]);
        let r = everywhere.resolve("ghcr.io").expect("ok").expect("found");
        assert_eq!(r.origin, CredentialOrigin::Environment);
        assert_eq!(r.credentials.registry, "ghcr.io");
        let one = vars(&[
            ("BERTH_REGISTRY_USERNAME", "u"),
            ("BERTH_REGISTRY_PASSWORD", "p"),
            ("BERTH_REGISTRY_HOST", "https://index.docker.io/v1/"),
        ]);
        assert!(one.resolve("docker.io").expect("ok").is_some());
        assert!(one.resolve("ghcr.io").expect("ok").is_none());
    }

    #[test]
    fn explicit_credentials_come_first() {
        let r = vars(&[
            ("BERTH_REGISTRY_USERNAME", "u"),
            ("BERTH_REGISTRY_PASSWORD", "p"),
        ])
        .with_credentials(Credentials {
            registry: "h:5000".into(),
            username: "me".into(),
            password: Secret::new("s"),
        });
        let found = r.resolve("h:5000").expect("ok").expect("found");
        assert_eq!(
            (found.origin, found.credentials.username.as_str()),
            (CredentialOrigin::Explicit, "me")
        );
    }

    #[test]
    fn anonymous_finds_nothing_whatever_the_environment_holds() {
        let home = tempfile::tempdir().expect("temp home");
        let config = home.path().join("config.json");
        std::fs::write(&config, r#"{"auths":{"h:5000":{"auth":"dTpw"}}}"#).expect("write config");
        let found = vars(&[
            ("BERTH_REGISTRY_USERNAME", "u"),
            ("BERTH_REGISTRY_PASSWORD", "p"),
        ])
        .docker_config(&config);
        assert!(found.resolve("h:5000").expect("ok").is_some());
        let anonymous = CredentialResolver::anonymous().docker_config(&config);
        assert!(anonymous.is_anonymous() && !found.is_anonymous());
        assert_eq!(anonymous.resolve("h:5000").expect("ok"), None);
        assert!(anonymous.locations().is_empty());
        let err = anonymous
            .login("h:5000", "u", &Secret::new("p"))
            .expect_err("nowhere to store");
        assert!(err.message().contains("anonymous"), "{err}");
    }

    #[test]
    fn debug_names_variables_but_never_prints_their_values() {
        let resolver = vars(&[
            ("BERTH_REGISTRY_USERNAME", "u"),
            ("BERTH_REGISTRY_PASSWORD", "hunter2-secret"),
        ])
        .with_credentials(Credentials {
            registry: "h".into(),
            username: "me".into(),
            password: Secret::new("explicit-secret"),
        });
        let printed = format!("{resolver:?} {resolver:#?}");
        assert!(printed.contains("BERTH_REGISTRY_PASSWORD"), "{printed}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(!printed.contains("explicit-secret"), "{printed}");
    }

    #[test]
    fn podman_paths_follow_xdg_and_registry_auth_file() {
        let r = vars(&[("HOME", "/h"), ("XDG_RUNTIME_DIR", "/run/user/7")]);
        assert_eq!(
            r.podman_auth_paths(),
            vec![
                PathBuf::from("/run/user/7/containers/auth.json"),
                PathBuf::from("/h/.config/containers/auth.json")
            ]
        );
        let r = vars(&[("REGISTRY_AUTH_FILE", "/a.json"), ("HOME", "/h")]);
        assert_eq!(r.podman_auth_paths(), vec![PathBuf::from("/a.json")]);
        assert_eq!(
            r.docker_config_path(),
            Some(PathBuf::from("/h/.docker/config.json"))
        );
    }
}
