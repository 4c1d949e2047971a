//! `berth login`: check credentials against the registry, then store them where Docker would.

use std::io::Read;

use berth_core::engine::{Credentials, Secret};
use berth_core::{Error, ErrorKind, Result};
use berth_registry::{CredentialResolver, RegistryClient, RegistryOptions};

use crate::args::LoginArgs;
use crate::exit::ExitStatus;

/// Runs `berth login`.
pub async fn run(args: &LoginArgs) -> Result<ExitStatus> {
    let host = login_host(&args.registry)?;
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let username = args
        .username
        .clone()
        .or_else(|| env(berth_registry::EnvVars::BERTH_REGISTRY_USERNAME))
        .ok_or_else(|| Error::invalid("no user name").with_hint("pass --username NAME"))?;
    let password = if args.password_stdin {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).map_err(|e| {
            Error::new(
                ErrorKind::Io,
                format!("reading the password from standard input: {e}"),
            )
        })?;
        text.trim_end_matches(['\n', '\r']).to_string()
    } else {
        env(berth_registry::EnvVars::BERTH_REGISTRY_PASSWORD).ok_or_else(|| {
            Error::invalid("no password")
                .with_hint("pipe it in with --password-stdin, or set BERTH_REGISTRY_PASSWORD")
        })?
    };
    if password.is_empty() {
        return Err(Error::invalid("the password is empty").with_hint(
            "pipe the password or token in (`--password-stdin < token.txt`), or set BERTH_REGISTRY_PASSWORD",
        ));
    }
    let password = Secret::new(password);
    verify(args, &host, &username, &password).await?;

    let mut resolver = CredentialResolver::from_env();
    if let Some(config) = &args.config {
        resolver = resolver.docker_config(config.clone());
    }
    let stored = resolver.login(&host, &username, &password)?;
    eprintln!("Login succeeded: credentials for {host} stored in {stored}");
    Ok(ExitStatus::Success)
}

/// The registry host in `arg`, as Docker's config keys it: without a scheme or a trailing slash.
pub fn registry_host(arg: &str) -> String {
    arg.trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string()
}

/// The registry host `berth login` was given. A repository path (`127.0.0.1:5000/team`, as a spec's `registry:`
/// reads) is refused rather than stripped: logins are per registry, and Docker keys them by host alone.
fn login_host(arg: &str) -> Result<String> {
    let host = registry_host(arg);
    match host.split_once('/') {
        Some((registry, _)) => Err(Error::invalid(format!(
            "`{arg}` names a repository path; a login is for the whole registry `{registry}`"
        ))
        .with_hint(format!("run `berth login {registry}`"))),
        None if host.is_empty() => Err(Error::invalid("no registry given")
            .with_hint("name the registry host, for example `berth login 127.0.0.1:5000`")),
        None => Ok(host),
    }
}

/// Checks the credentials the way `docker login` does (GET /v2/ with the credentials, following the registry's
/// authentication challenge), using only these credentials.
async fn verify(args: &LoginArgs, host: &str, username: &str, password: &Secret) -> Result<()> {
    let credentials = Credentials {
        registry: host.to_string(),
        username: username.to_string(),
        password: password.clone(),
    };
    let options = RegistryOptions {
        insecure: args.access.insecure_registries.clone(),
        ca_file: args.access.ca_file.clone(),
        credentials: CredentialResolver::with_vars(Default::default())
            .with_credentials(credentials),
        ..RegistryOptions::default()
    };
    let client = RegistryClient::new(options)?;
    client
        .check_login(host)
        .await
        .map_err(|e| e.context(format!("checking the credentials for {username} at {host}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_is_refused_with_the_host_to_use() {
        assert_eq!(
            login_host("https://127.0.0.1:5000/").expect("a host"),
            "127.0.0.1:5000"
        );
        let e = login_host("127.0.0.1:5000/team").expect_err("a path");
        assert_eq!(e.kind(), ErrorKind::InvalidSpec);
        assert_eq!(e.hint(), Some("run `berth login 127.0.0.1:5000`"));
        assert!(login_host("").is_err());
    }
}
