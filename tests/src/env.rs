//! The end-to-end test environment that `scripts/env/up.sh` starts: engines, an authenticated registry, a public
//! one and fixture images, described by `BERTH_TEST_*` variables.
//!
//! `cargo test` does not source `/var/lib/berth-env/env.sh`, so each variable is taken from the process
//! environment when set there and otherwise read from that file (or the file named by `BERTH_TEST_ENV_FILE`).
//! Anything missing is an error that says to run `scripts/env/up.sh` — a test that needs the environment fails,
//! it never passes or skips silently.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use berth_core::engine::{Credentials, Secret};

/// The names of the variables, in one place.
pub mod vars {
    /// A file in `env.sh` syntax to read variables from (default [`super::DEFAULT_ENV_FILE`]).
    pub const ENV_FILE: &str = "BERTH_TEST_ENV_FILE";
    /// Registry host and port, e.g. `127.0.0.1:5000` (plain HTTP, htpasswd auth).
    pub const REGISTRY: &str = "BERTH_TEST_REGISTRY";
    /// Registry user name.
    pub const REGISTRY_USER: &str = "BERTH_TEST_REGISTRY_USER";
    /// File holding the registry password.
    pub const REGISTRY_PASSWORD_FILE: &str = "BERTH_TEST_REGISTRY_PASSWORD_FILE";
    /// A second registry without any authentication, e.g. `127.0.0.1:5001` (plain HTTP): anonymous clients
    /// pull from it, as from a public repository.
    pub const PUBLIC_REGISTRY: &str = "BERTH_TEST_PUBLIC_REGISTRY";
    /// A busybox image in the registry: the fast base for most behaviours.
    pub const BUSYBOX_IMAGE: &str = "BERTH_TEST_BUSYBOX_IMAGE";
    /// A Debian bookworm image with python3, venv and pip in the registry.
    pub const PYTHON_IMAGE: &str = "BERTH_TEST_PYTHON_IMAGE";
    /// An image holding the `uv` binary at `/uv`, in the registry.
    pub const UV_IMAGE: &str = "BERTH_TEST_UV_IMAGE";
    /// The same with a current uv (whose `uv venv` refuses an existing venv where 0.5 replaced it).
    pub const UV_CURRENT_IMAGE: &str = "BERTH_TEST_UV_CURRENT_IMAGE";
    /// dockerd's socket.
    pub const DOCKER_SOCKET: &str = "BERTH_TEST_DOCKER_SOCKET";
    /// The rootful Podman API socket.
    pub const PODMAN_SOCKET: &str = "BERTH_TEST_PODMAN_SOCKET";
    /// The rootless Podman API socket.
    pub const PODMAN_ROOTLESS_SOCKET: &str = "BERTH_TEST_PODMAN_ROOTLESS_SOCKET";
    /// The user the rootless Podman service runs as.
    pub const PODMAN_ROOTLESS_USER: &str = "BERTH_TEST_PODMAN_ROOTLESS_USER";
    /// containerd's socket (containerd's own variable name).
    pub const CONTAINERD_ADDRESS: &str = "CONTAINERD_ADDRESS";

    /// Every variable a [`super::TestEnv`] needs.
    pub const REQUIRED: &[&str] = &[
        REGISTRY,
        REGISTRY_USER,
        REGISTRY_PASSWORD_FILE,
        PUBLIC_REGISTRY,
        BUSYBOX_IMAGE,
        PYTHON_IMAGE,
        UV_IMAGE,
        UV_CURRENT_IMAGE,
        DOCKER_SOCKET,
        PODMAN_SOCKET,
        PODMAN_ROOTLESS_SOCKET,
        PODMAN_ROOTLESS_USER,
        CONTAINERD_ADDRESS,
    ];
}

/// Where `scripts/env/up.sh` writes the variables.
pub const DEFAULT_ENV_FILE: &str = "/var/lib/berth-env/env.sh";

/// The test environment.
#[derive(Debug, Clone)]
pub struct TestEnv {
    /// Registry host and port, e.g. `127.0.0.1:5000`.
    pub registry: String,
    /// Registry user name.
    pub registry_user: String,
    registry_password: Secret,
    /// The registry without authentication, e.g. `127.0.0.1:5001`.
    pub public_registry: String,
    /// busybox fixture image reference.
    pub busybox_image: String,
    /// Python (Debian bookworm) fixture image reference.
    pub python_image: String,
    /// uv fixture image reference (`/uv`).
    pub uv_image: String,
    /// A current uv's image (see [`vars::UV_CURRENT_IMAGE`]).
    pub uv_current_image: String,
    /// dockerd's socket.
    pub docker_socket: PathBuf,
    /// Rootful Podman API socket.
    pub podman_socket: PathBuf,
    /// Rootless Podman API socket.
    pub podman_rootless_socket: PathBuf,
    /// User of the rootless Podman service.
    pub podman_rootless_user: String,
    /// containerd's socket.
    pub containerd_address: PathBuf,
}

/// The environment is not set up; the message says what is missing and to run `scripts/env/up.sh`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvError(String);

impl fmt::Display for EnvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EnvError {}

impl TestEnv {
    /// The environment, read once per process; panics with what is missing and how to fix it.
    pub fn get() -> &'static TestEnv {
        static ENV: OnceLock<Result<TestEnv, EnvError>> = OnceLock::new();
        match ENV.get_or_init(TestEnv::load) {
            Ok(env) => env,
            Err(e) => panic!("{e}"),
        }
    }

    /// Reads the environment: process variables first, then the env file.
    pub fn load() -> Result<TestEnv, EnvError> {
        let file = std::env::var_os(vars::ENV_FILE)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_ENV_FILE));
        let text = std::fs::read_to_string(&file).map_err(|e| (file.clone(), e));
        let env = TestEnv::from_sources(|name| std::env::var(name).ok(), &file, text)?;
        Ok(env)
    }

    /// Builds the environment from a process-variable lookup and the env file's text (or why it could not be
    /// read); reads the registry password file.
    pub fn from_sources(
        process: impl Fn(&str) -> Option<String>,
        file: &Path,
        file_text: Result<String, (PathBuf, std::io::Error)>,
    ) -> Result<TestEnv, EnvError> {
        let from_file = match &file_text {
            Ok(text) => parse_env_file(text),
            Err(_) => HashMap::new(),
        };
        let lookup = |name: &str| {
            process(name)
                .filter(|v| !v.is_empty())
                .or_else(|| from_file.get(name).filter(|v| !v.is_empty()).cloned())
        };
        let missing: Vec<&str> = vars::REQUIRED
            .iter()
            .copied()
            .filter(|name| lookup(name).is_none())
            .collect();
        if !missing.is_empty() {
            let looked = match &file_text {
                Ok(_) => format!("{} (which lacks them)", file.display()),
                Err((path, e)) => format!("{} ({e})", path.display()),
            };
            return Err(EnvError(format!(
                "run scripts/env/up.sh first (missing {})\n  looked in the process environment and in {looked}; \
                 `sudo bash scripts/env/up.sh` starts the engines and the registry and writes {DEFAULT_ENV_FILE} \
                 ({} names another file)",
                missing.join(", "),
                vars::ENV_FILE
            )));
        }
        let var = |name: &str| lookup(name).unwrap_or_default();
        let password_file = PathBuf::from(var(vars::REGISTRY_PASSWORD_FILE));
        let password = std::fs::read_to_string(&password_file).map_err(|e| {
            EnvError(format!(
                "run scripts/env/up.sh first (missing the registry password: {}={}: {e})",
                vars::REGISTRY_PASSWORD_FILE,
                password_file.display()
            ))
        })?;
        let password = password.trim();
        if password.is_empty() {
            return Err(EnvError(format!(
                "run scripts/env/up.sh first (missing the registry password: {} is empty)",
                password_file.display()
            )));
        }
        Ok(TestEnv {
            registry: var(vars::REGISTRY),
            registry_user: var(vars::REGISTRY_USER),
            registry_password: Secret::new(password),
            public_registry: var(vars::PUBLIC_REGISTRY),
            busybox_image: var(vars::BUSYBOX_IMAGE),
            python_image: var(vars::PYTHON_IMAGE),
            uv_image: var(vars::UV_IMAGE),
            uv_current_image: var(vars::UV_CURRENT_IMAGE),
            docker_socket: var(vars::DOCKER_SOCKET).into(),
            podman_socket: var(vars::PODMAN_SOCKET).into(),
            podman_rootless_socket: var(vars::PODMAN_ROOTLESS_SOCKET).into(),
            podman_rootless_user: var(vars::PODMAN_ROOTLESS_USER),
            containerd_address: var(vars::CONTAINERD_ADDRESS).into(),
        })
    }

    /// The registry password.
    pub fn registry_password(&self) -> &Secret {
        &self.registry_password
    }

    /// Valid credentials for the test registry.
    pub fn credentials(&self) -> Credentials {
        Credentials {
            registry: self.registry.clone(),
            username: self.registry_user.clone(),
            password: self.registry_password.clone(),
        }
    }

    /// Credentials for the test registry with the right user and a wrong password.
    pub fn wrong_credentials(&self) -> Credentials {
        Credentials {
            password: Secret::new(format!("not-{}", self.registry_password.expose())),
            ..self.credentials()
        }
    }

    /// `user:password`, for tools such as `skopeo --creds`.
    pub fn creds_arg(&self) -> String {
        format!("{}:{}", self.registry_user, self.registry_password.expose())
    }
}

/// A lookup of the test environment's settings for a service up.sh starts: the process's variable, else the env
/// file's (`vars::ENV_FILE`, else [`DEFAULT_ENV_FILE`]); a setting neither has panics with the fix, naming what
/// provides it (`provided_by`, e.g. "the token registry (scripts/env/token-registry.sh)").
pub fn required_settings(provided_by: &'static str) -> impl Fn(&str) -> String {
    let file = std::env::var(vars::ENV_FILE)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| DEFAULT_ENV_FILE.to_string());
    let from_file = std::fs::read_to_string(&file)
        .map(|text| parse_env_file(&text))
        .unwrap_or_default();
    move |name: &str| {
        std::env::var(name)
            .ok()
            .filter(|v| !v.is_empty())
            .or_else(|| from_file.get(name).cloned())
            .unwrap_or_else(|| {
                panic!(
                    "run scripts/env/up.sh first (missing {name} in the process environment and in {file}): it \
                     starts {provided_by}"
                )
            })
    }
}

/// The variables an `env.sh` file assigns: `export NAME=value` or `NAME=value` lines, values optionally in single or
/// double quotes; comments, blank lines and other commands (`unset ...`) are ignored. No expansion is done.
pub fn parse_env_file(text: &str) -> HashMap<String, String> {
    let mut vars = HashMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
        let Some((name, value)) = line.split_once('=') else {
            continue;
        };
        let valid_name = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_name {
            continue;
        }
        let value = value.trim();
        let unquoted = ['\'', '"']
            .iter()
            .find_map(|q| {
                value
                    .strip_prefix(*q)
                    .and_then(|v| v.strip_suffix(*q))
                    .filter(|_| value.len() >= 2)
            })
            .unwrap_or(value);
        vars.insert(name.to_string(), unquoted.to_string());
    }
    vars
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sourcing env.sh sets the test variables and leaves the user's own engine variables alone (berth now
    /// names a DOCKER_HOST that does not answer rather than passing it over, so there is no reason to clear it).
    #[test]
    fn the_env_file_up_sh_writes_leaves_docker_host_alone() {
        let script = std::fs::read_to_string(crate::repo_root().join("scripts/env/up.sh"))
            .expect("read up.sh");
        let env_file = script
            .split("write_if_changed \"$ENV_FILE\"")
            .nth(1)
            .and_then(|rest| rest.split("\nEOF\n").next())
            .expect("up.sh writes the env file from a here-document");
        assert!(
            env_file.contains("export BERTH_TEST_REGISTRY="),
            "{env_file}"
        );
        for line in env_file.lines() {
            assert!(
                !line.trim_start().starts_with("unset "),
                "env.sh unsets a variable of the user's: {line}"
            );
        }
    }

    fn full_file(password_file: &Path) -> String {
        let mut text = String::from("# written by up.sh\n");
        for name in vars::REQUIRED {
            let value = if *name == vars::REGISTRY_PASSWORD_FILE {
                password_file.display().to_string()
            } else {
                format!("value-of-{name}")
            };
            text.push_str(&format!("export {name}={value}\n"));
        }
        text.push_str("unset DOCKER_HOST\n");
        text
    }

    #[test]
    fn parses_exports_quotes_and_ignores_the_rest() {
        let vars = parse_env_file(
            "# c\nexport A=1\nB='two words'\nexport C=\"3\"\nunset D\n  export E=x=y\nexport 9X=no\n",
        );
        assert_eq!(vars.get("A").map(String::as_str), Some("1"));
        assert_eq!(vars.get("B").map(String::as_str), Some("two words"));
        assert_eq!(vars.get("C").map(String::as_str), Some("3"));
        assert_eq!(vars.get("E").map(String::as_str), Some("x=y"));
        assert_eq!(vars.len(), 4, "{vars:?}");
    }

    #[test]
    fn reads_the_file_when_the_process_lacks_variables() {
        let dir = tempfile::tempdir().expect("temp dir");
        let password = dir.path().join("password");
        std::fs::write(&password, "s3cret\n").expect("write password");
        let env = TestEnv::from_sources(
            |name| (name == vars::REGISTRY).then(|| "from-process:5000".to_string()),
            Path::new("env.sh"),
            Ok(full_file(&password)),
        )
        .expect("complete environment");
        assert_eq!(env.registry, "from-process:5000", "the process wins");
        assert_eq!(
            env.busybox_image,
            format!("value-of-{}", vars::BUSYBOX_IMAGE)
        );
        assert_eq!(
            env.public_registry,
            format!("value-of-{}", vars::PUBLIC_REGISTRY)
        );
        assert_eq!(env.registry_password().expose(), "s3cret");
        assert!(!format!("{env:?}").contains("s3cret"));
    }

    #[test]
    fn missing_variables_say_to_run_up_sh() {
        let err = TestEnv::from_sources(
            |_| None,
            Path::new("/nowhere/env.sh"),
            Err((
                PathBuf::from("/nowhere/env.sh"),
                std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory"),
            )),
        )
        .expect_err("nothing is set");
        let text = err.to_string();
        assert!(
            text.starts_with("run scripts/env/up.sh first (missing BERTH_TEST_REGISTRY, "),
            "{text}"
        );
        assert!(text.contains("/nowhere/env.sh (No such file"), "{text}");

        let err = TestEnv::from_sources(
            |_| None,
            Path::new("env.sh"),
            Ok("export BERTH_TEST_REGISTRY=x\n".into()),
        )
        .expect_err("most are missing");
        assert!(
            err.to_string()
                .contains("(missing BERTH_TEST_REGISTRY_USER, "),
            "{err}"
        );

        // an env.sh written before the public registry existed: the message names it
        let mut old = full_file(Path::new("/unused/password"));
        old = old.replace(&format!("export {}=", vars::PUBLIC_REGISTRY), "export OLD_");
        let err = TestEnv::from_sources(|_| None, Path::new("env.sh"), Ok(old))
            .expect_err("the public registry is missing");
        assert!(
            err.to_string()
                .starts_with("run scripts/env/up.sh first (missing BERTH_TEST_PUBLIC_REGISTRY)"),
            "{err}"
        );
    }

    #[test]
    fn an_unreadable_password_file_says_to_run_up_sh() {
        let err = TestEnv::from_sources(
            |_| None,
            Path::new("env.sh"),
            Ok(full_file(Path::new("/nonexistent/password"))),
        )
        .expect_err("no password file");
        assert!(
            err.to_string().starts_with(
                "run scripts/env/up.sh first (missing the registry password: BERTH_TEST_REGISTRY_PASSWORD_FILE=/nonexistent/password"
            ),
            "{err}"
        );
    }
}
