//! Docker's `berth doctor` checks: for a plain-HTTP registry off this machine, whether dockerd's `daemon.json`
//! lets it pull from there; and, for a socket this user may not use, rootless Podman as the other way to build.

use berth_core::doctor::{Finding, RegistryCheck};
use serde_json::Value;

/// dockerd's configuration file.
pub const DOCKER_DAEMON_JSON: &str = "/etc/docker/daemon.json";

/// What the checks look at, for `berth doctor --help`.
pub const HELP: &str = "Docker, when the registry checked is named by --insecure-registry and is not on this \
machine: whether /etc/docker/daemon.json lists it in insecure-registries (dockerd pulls base images itself, over HTTPS \
unless it does).";

/// What Docker's doctor offers when its socket is not this user's to use.
pub const INSTEAD: &str = "use rootless Podman (the rootless podman section says what it needs)";

/// For a plain-HTTP registry off this machine (`--insecure-registry HOST`), whether dockerd will pull from it:
/// berth tells Podman and its containerd builder itself, but dockerd pulls base images on its own and treats
/// only 127.0.0.0/8 as plain HTTP unless `daemon_json` (the text of [`DOCKER_DAEMON_JSON`]) lists the host.
pub fn plain_http(registry: &RegistryCheck, daemon_json: Option<&str>) -> Option<Finding> {
    const CHECK: &str = "plain HTTP on docker";
    let host = &registry.host;
    if !registry.plain_http || registry.loopback {
        return None;
    }
    let listed = daemon_json
        .and_then(|text| serde_json::from_str::<Value>(text).ok())
        .and_then(|config| config["insecure-registries"].as_array().cloned())
        .is_some_and(|hosts| hosts.iter().any(|h| h.as_str() == Some(host)));
    Some(if listed {
        Finding::ok(
            CHECK,
            format!("{DOCKER_DAEMON_JSON} lists {host} in insecure-registries"),
        )
    } else {
        Finding::warning(
            CHECK,
            format!(
                "dockerd pulls {host} over HTTPS: {DOCKER_DAEMON_JSON} does not list it (berth tells Podman and \
                 containerd about --insecure-registry itself)"
            ),
            Some(format!(
                "add \"{host}\" to \"insecure-registries\" in {DOCKER_DAEMON_JSON} and restart dockerd"
            )),
        )
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use berth_core::doctor::accounts::{Accounts, Identity};
    use berth_core::doctor::{DoctorContext, Status};
    use berth_core::provider::{ConnectSettings, EngineProvider as _};
    use berth_core::{Error, ErrorKind};

    use super::*;

    #[test]
    fn a_socket_that_is_not_the_users_offers_rootless_podman() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("docker.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&path).expect("bind");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        // someone who neither owns the socket nor is root
        let stranger = Identity {
            name: "stranger".into(),
            uid: 4_000_000,
            gid: 4_000_000,
            groups: vec![],
        };
        let settings = ConnectSettings::default();
        let context = DoctorContext {
            settings: &settings,
            user: &stranger,
            accounts: &Accounts::default(),
            registry: None,
        };
        let error = Error::new(
            ErrorKind::EngineUnavailable,
            "cannot reach the Docker daemon",
        );
        let endpoint = format!("unix://{}", path.display());
        let (message, fix) = crate::PROVIDER.explain_unreachable(Some(&endpoint), &error, &context);
        assert!(message.contains("permission denied on"), "{message}");
        assert!(fix.ends_with(&format!("; or {INSTEAD}")), "{fix}");
    }

    fn registry(host: &str, plain_http: bool, loopback: bool) -> RegistryCheck {
        RegistryCheck {
            host: host.into(),
            plain_http,
            loopback,
        }
    }

    #[test]
    fn a_plain_http_registry_off_this_machine_must_be_in_dockers_daemon_json() {
        let lan = registry("reg.lan:5000", true, false);
        let missing = plain_http(&lan, None).expect("a finding");
        assert_eq!(missing.status, Status::Warning);
        assert!(
            missing
                .fix
                .as_deref()
                .unwrap_or_default()
                .contains("\"reg.lan:5000\""),
            "{missing:?}"
        );
        let listed = r#"{"insecure-registries": ["reg.lan:5000"]}"#;
        let ok = plain_http(&lan, Some(listed)).expect("a finding");
        assert_eq!(ok.status, Status::Ok);
        assert!(plain_http(&registry("127.0.0.1:5000", true, true), None).is_none());
        assert!(plain_http(&registry("ghcr.io", false, false), None).is_none());
    }
}
