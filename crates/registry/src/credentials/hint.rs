//! What to do when a registry refuses the credentials berth used: one hint per place they came from, because the
//! fix differs. A new login cannot help when `BERTH_REGISTRY_USERNAME`/`BERTH_REGISTRY_PASSWORD` are set (they win
//! over every stored login), and a login stored through a helper is replaced through that same helper.

use super::CredentialOrigin;
use crate::env::EnvVars;

/// The fix for `registry` (a host, as `berth login` takes it) refusing the credentials found at `origin`, or
/// refusing a client that found none (`None`). The commands it names work as written.
pub fn login_hint(registry: &str, origin: Option<&CredentialOrigin>) -> String {
    let login = format!("`berth login {registry}` (or `docker login {registry}`)");
    match origin {
        None => format!(
            "log in with `berth login {registry} --username USER --password-stdin < PASSWORD_FILE` (or \
             `docker login {registry}`), or set {} and {}",
            EnvVars::BERTH_REGISTRY_USERNAME,
            EnvVars::BERTH_REGISTRY_PASSWORD
        ),
        Some(CredentialOrigin::Environment) => format!(
            "the credentials come from {user} and {password}, which berth uses before any stored login: \
             correct them, or unset them (or set {host} to the one registry they are for) so that the \
             login stored by {login} is used",
            user = EnvVars::BERTH_REGISTRY_USERNAME,
            password = EnvVars::BERTH_REGISTRY_PASSWORD,
            host = EnvVars::BERTH_REGISTRY_HOST,
        ),
        Some(CredentialOrigin::Helper { helper, .. }) => format!(
            "check the user name and password docker-credential-{helper} holds for {registry}, and their access \
             to this repository; log in again with {login}, which stores them through the same helper"
        ),
        Some(CredentialOrigin::AuthFile { path, .. }) => format!(
            "check the user name and password stored in {}, and their access to this repository; log in again \
             with {login}, which berth reads before that file",
            path.display()
        ),
        Some(CredentialOrigin::Explicit) => format!(
            "check the user name and password given to berth for {registry}, and their access to this repository"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn each_source_gets_its_own_fix() {
        let none = login_hint("127.0.0.1:5000", None);
        assert!(
            none.starts_with(
                "log in with `berth login 127.0.0.1:5000 --username USER --password-stdin"
            ),
            "{none}"
        );
        assert!(none.contains("BERTH_REGISTRY_PASSWORD"), "{none}");

        // Logging in cannot help while the environment's credentials win: the hint says to fix or unset them.
        let env = login_hint("127.0.0.1:5000", Some(&CredentialOrigin::Environment));
        assert!(env.contains("unset them"), "{env}");
        assert!(!env.starts_with("log in"), "{env}");

        let helper = login_hint(
            "reg.example",
            Some(&CredentialOrigin::Helper {
                helper: "pass".into(),
                config: PathBuf::from("/h/.docker/config.json"),
            }),
        );
        assert!(helper.contains("docker-credential-pass"), "{helper}");
        assert!(helper.contains("`berth login reg.example`"), "{helper}");

        let file = login_hint(
            "reg.example",
            Some(&CredentialOrigin::AuthFile {
                path: PathBuf::from("/run/containers/0/auth.json"),
                key: "reg.example".into(),
            }),
        );
        assert!(file.contains("/run/containers/0/auth.json"), "{file}");
        assert!(file.contains("`berth login reg.example`"), "{file}");
    }
}
