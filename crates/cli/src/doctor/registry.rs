//! The registry section (`--registry HOST`): which credentials berth would use for HOST and where they come from
//! (never the secret itself), and whether the registry accepts them.

use berth_core::doctor::socket::describe;
use berth_core::doctor::Finding;
use berth_core::{ErrorKind, Result};
use berth_registry::{CredentialOrigin, ResolvedCredentials};
use serde_json::{json, Value};

use crate::args::RegistryArgs;

/// What berth found out about one registry.
#[derive(Debug)]
pub struct RegistryFacts {
    /// The host, e.g. `ghcr.io` or `127.0.0.1:5000`.
    pub host: String,
    /// Where berth looks for credentials, in order.
    pub locations: Vec<String>,
    /// The credentials berth would use, or why looking for them failed.
    pub credentials: Result<Option<ResolvedCredentials>>,
    /// The registry's answer to a login with them (`None`: not asked, for want of credentials).
    pub login: Option<Result<()>>,
    /// Without credentials: whether the registry asks for any (`None`: not asked, there are credentials).
    pub requires_auth: Option<Result<bool>>,
}

/// Looks up the credentials for `host` and, if there are some, checks them with the registry as `berth login`
/// does. Fails only when registry access cannot be set up (e.g. an unreadable `--ca-file`).
pub async fn inspect(host: &str, args: &RegistryArgs) -> Result<RegistryFacts> {
    let registries = crate::commands::access::registries(args)?;
    let credentials = registries.resolver().resolve(host);
    let login = match &credentials {
        Ok(Some(_)) => Some(registries.client.check_login(host).await),
        _ => None,
    };
    // No credentials is a problem only where the registry wants some.
    let requires_auth = match &credentials {
        Ok(None) => Some(registries.client.requires_auth(host).await),
        _ => None,
    };
    Ok(RegistryFacts {
        host: host.to_string(),
        locations: registries.resolver().locations(),
        credentials,
        login,
        requires_auth,
    })
}

/// The `registry credentials` and `registry login` findings.
pub fn findings(facts: &RegistryFacts) -> Vec<Finding> {
    let host = &facts.host;
    let login_fix = |user: &str| {
        format!("berth login {host} --username {user} --password-stdin (or `docker login {host}`)")
    };
    let found = match &facts.credentials {
        Err(e) => {
            let fix = e.hint().map_or_else(
                || {
                    format!(
                        "repair or remove the file named above, then {}",
                        login_fix("NAME")
                    )
                },
                str::to_string,
            );
            return vec![
                Finding::problem("registry credentials", describe(e), fix),
                not_checked("the credentials could not be read"),
            ];
        }
        Ok(None) => {
            let message = format!(
                "no credentials for {host} (looked at {})",
                facts.locations.join("; ")
            );
            match &facts.requires_auth {
                Some(Ok(false)) => {
                    return vec![
                        Finding::ok(
                            "registry credentials",
                            format!(
                                "{message}; none needed: {host} answers without authentication"
                            ),
                        ),
                        not_checked("no credentials, and the registry asks for none"),
                    ]
                }
                Some(Err(e)) => {
                    return vec![
                        Finding::problem(
                            "registry credentials",
                            format!(
                                "{message}; could not ask {host} whether it needs any: {}",
                                describe(e)
                            ),
                            e.hint().map_or_else(
                                || format!("check that {host} is reachable from here"),
                                str::to_string,
                            ),
                        ),
                        not_checked("no credentials"),
                    ]
                }
                Some(Ok(true)) | None => {}
            }
            let fix = format!(
                "{}; in CI set BERTH_REGISTRY_USERNAME and BERTH_REGISTRY_PASSWORD",
                login_fix("NAME")
            );
            return vec![
                Finding::problem("registry credentials", message, fix),
                not_checked("no credentials"),
            ];
        }
        Ok(Some(found)) => found,
    };
    let user = &found.credentials.username;
    let credentials = Finding::ok(
        "registry credentials",
        format!("user {user}, from {}", found.origin),
    );
    let login = match &facts.login {
        None => not_checked("not asked"),
        Some(Ok(())) => Finding::ok("registry login", format!("{host} accepts {user}'s credentials")),
        Some(Err(e)) if e.kind() == ErrorKind::Unauthorized => Finding::problem(
            "registry login",
            format!("{host} refused {user}'s credentials from {}: {}", found.origin, describe(e)),
            match found.origin {
                // a new login cannot help while these win over it
                CredentialOrigin::Environment | CredentialOrigin::Explicit => {
                    berth_registry::login_hint(host, Some(&found.origin))
                }
                _ => format!("{} with a current password or token", login_fix(user)),
            },
        ),
        Some(Err(e)) => Finding::problem(
            "registry login",
            format!("could not check the credentials with {host}: {}", describe(e)),
            e.hint().map_or_else(
                || format!("check that {host} is reachable from here; a registry serving plain HTTP on a non-loopback address needs --insecure-registry {host}"),
                str::to_string,
            ),
        ),
    };
    vec![credentials, login]
}

fn not_checked(why: &str) -> Finding {
    Finding::skipped("registry login", format!("not checked: {why}"))
}

/// `{"host", "credentials": {"username", "source"} or null, "login": "ok"|"refused"|"failed"|"not checked"}`.
pub fn to_json(facts: &RegistryFacts) -> Value {
    let credentials = match &facts.credentials {
        Ok(Some(found)) => {
            json!({"username": found.credentials.username, "source": found.origin.to_string()})
        }
        _ => Value::Null,
    };
    let login = match &facts.login {
        None => "not checked",
        Some(Ok(())) => "ok",
        Some(Err(e)) if e.kind() == ErrorKind::Unauthorized => "refused",
        Some(Err(_)) => "failed",
    };
    let needs_credentials = match &facts.requires_auth {
        Some(Ok(asks)) => Value::Bool(*asks),
        _ => Value::Null,
    };
    json!({"host": facts.host, "credentials": credentials, "login": login, "needs_credentials": needs_credentials})
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use berth_core::engine::{Credentials, Secret};
    use berth_core::Error;

    use berth_core::doctor::Status;

    use super::*;

    const PASSWORD: &str = "s3cret-token";

    fn facts(login: Option<Result<()>>) -> RegistryFacts {
        RegistryFacts {
            host: "127.0.0.1:5000".into(),
            locations: vec!["/root/.docker/config.json".into()],
            credentials: Ok(Some(ResolvedCredentials {
                credentials: Credentials {
                    registry: "127.0.0.1:5000".into(),
                    username: "berth".into(),
                    password: Secret::new(PASSWORD),
                },
                origin: CredentialOrigin::AuthFile {
                    path: PathBuf::from("/tmp/d/config.json"),
                    key: "127.0.0.1:5000".into(),
                },
            })),
            login,
            requires_auth: None,
        }
    }

    fn everything_printed(facts: &RegistryFacts) -> String {
        let found = findings(facts);
        format!("{found:?} {}", to_json(facts))
    }

    #[test]
    fn accepted_credentials_name_their_source_but_never_the_secret() {
        let facts = facts(Some(Ok(())));
        let found = findings(&facts);
        assert_eq!(
            found[0].message,
            "user berth, from auths[\"127.0.0.1:5000\"] in /tmp/d/config.json"
        );
        assert_eq!(
            (found[1].status, found[1].message.as_str()),
            (Status::Ok, "127.0.0.1:5000 accepts berth's credentials")
        );
        assert!(!everything_printed(&facts).contains(PASSWORD));
    }

    #[test]
    fn refused_or_missing_credentials_say_berth_login() {
        let refused = facts(Some(Err(Error::new(
            ErrorKind::Unauthorized,
            "the registry refused the credentials",
        ))));
        let found = findings(&refused);
        assert_eq!(found[1].status, Status::Problem);
        assert!(
            found[1]
                .fix
                .as_deref()
                .unwrap_or_default()
                .starts_with("berth login 127.0.0.1:5000 --username berth"),
            "{found:?}"
        );
        assert!(!everything_printed(&refused).contains(PASSWORD));
        assert_eq!(to_json(&refused)["login"], "refused");
        // From the environment, which wins over any login: the fix says to correct or unset the variables.
        let mut from_env = facts(Some(Err(Error::new(ErrorKind::Unauthorized, "refused"))));
        if let Ok(Some(found)) = &mut from_env.credentials {
            found.origin = CredentialOrigin::Environment;
        }
        let fix = findings(&from_env)[1].fix.clone().unwrap_or_default();
        assert!(fix.contains("unset them"), "{fix}");

        let none = RegistryFacts {
            credentials: Ok(None),
            login: None,
            requires_auth: Some(Ok(true)),
            ..facts(None)
        };
        let found = findings(&none);
        assert_eq!(
            (found[0].status, found[1].status),
            (Status::Problem, Status::Skipped)
        );
        assert!(
            found[0]
                .message
                .contains("looked at /root/.docker/config.json"),
            "{found:?}"
        );
        assert!(
            found[0]
                .fix
                .as_deref()
                .unwrap_or_default()
                .starts_with("berth login 127.0.0.1:5000"),
            "{found:?}"
        );

        // A registry that asks for no authentication: no credentials is fine there.
        let open = RegistryFacts {
            requires_auth: Some(Ok(false)),
            ..none
        };
        let found = findings(&open);
        assert_eq!(
            (found[0].status, found[1].status),
            (Status::Ok, Status::Skipped),
            "{found:?}"
        );
        assert!(found[0]
            .message
            .ends_with("none needed: 127.0.0.1:5000 answers without authentication"));
    }
}
