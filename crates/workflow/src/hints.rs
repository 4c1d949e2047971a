//! What a failed build's error gains from knowing the plan: which spec field chooses a builder image that could
//! not be pulled, and what to change for a registry that speaks plain HTTP.

use berth_core::reference::ImageRef;
use berth_core::Error;

/// A build that failed on one of the plan's helper images (uv, micromamba) says which spec field chooses it:
/// with no network to Docker Hub or GHCR, that is the fix.
pub(crate) fn helper_image_hint(error: Error, plan: &berth_core::plan::BuildPlan) -> Error {
    let Some(helper) = plan
        .helper_images
        .iter()
        .find(|h| error.message().contains(&h.reference))
    else {
        return error;
    };
    let field = if helper.reference.contains("micromamba") {
        "`builder_config: {micromamba_image: ...}` for a reachable copy, or `python_exec` to use the base \
         image's Python, which needs no micromamba"
    } else {
        "`builder_config: {uv_image: ...}` for a reachable copy"
    };
    let hint = match error.hint() {
        Some(before) => format!(
            "{before}; the image `{}` is a builder image: set {field}",
            helper.reference
        ),
        None => format!(
            "the image `{}` is a builder image: set {field}",
            helper.reference
        ),
    };
    error.with_hint(hint)
}

/// A build whose engine pulled a base or helper image over HTTPS from a registry that speaks plain HTTP says
/// exactly what to change for that engine (berth tells Podman and containerd itself for loopback registries and
/// `--insecure-registry`; dockerd decides alone).
pub(crate) fn plain_http_hint(
    error: Error,
    engine: &str,
    plan: &berth_core::plan::BuildPlan,
) -> Error {
    if !error
        .message()
        .contains("server gave HTTP response to HTTPS client")
    {
        return error;
    }
    let pulls = std::iter::once(plan.base_image.as_str())
        .chain(plan.helper_images.iter().map(|h| h.reference.as_str()));
    let Some(host) = pulls
        .filter_map(|r| ImageRef::parse(r).ok())
        .map(|r| r.registry)
        .find(|host| error.message().contains(host.as_str()))
    else {
        return error;
    };
    let fix = match engine {
        "docker" => format!(
            "dockerd pulls {host} over HTTPS and only treats 127.0.0.0/8 as plain HTTP by itself: add \"{host}\" to \
             \"insecure-registries\" in /etc/docker/daemon.json and restart dockerd"
        ),
        _ => format!(
            "{host} speaks plain HTTP: pass `--insecure-registry {host}` and berth tells {engine} to pull it over \
             plain HTTP"
        ),
    };
    error.with_hint(fix)
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::plan::{BuildPlan, HelperImage};

    #[test]
    fn a_failing_builder_image_names_the_field_that_chooses_it() {
        let plan = BuildPlan {
            base_image: "debian:bookworm-slim".into(),
            platform: "linux/amd64".into(),
            helper_images: vec![
                HelperImage {
                    alias: "uv".into(),
                    reference: "ghcr.io/astral-sh/uv:0.5.1".into(),
                },
                HelperImage {
                    alias: "micromamba".into(),
                    reference: "mambaorg/micromamba:2.0.3-debian12-slim".into(),
                },
            ],
            steps: Vec::new(),
            context: Vec::new(),
            secrets: Vec::new(),
        };
        let failed = |message: &str| {
            helper_image_hint(
                Error::new(berth_core::ErrorKind::Unavailable, message).with_hint("retry later"),
                &plan,
            )
        };
        let mamba = failed("helper image mambaorg/micromamba:2.0.3-debian12-slim: no such host");
        let hint = mamba.hint().unwrap_or_default();
        assert!(hint.starts_with("retry later; "), "{hint}");
        assert!(
            hint.contains("micromamba_image") && hint.contains("python_exec"),
            "{hint}"
        );
        let uv = failed("pulling ghcr.io/astral-sh/uv:0.5.1: refused");
        assert!(uv.hint().unwrap_or_default().contains("uv_image"), "{uv}");
        let other = failed("apt-get failed");
        assert_eq!(other.hint(), Some("retry later"));
    }

    #[test]
    fn a_plain_http_registry_gets_each_engines_fix() {
        let plan = BuildPlan {
            base_image: "reg.lan:5000/base:1".into(),
            platform: "linux/amd64".into(),
            helper_images: Vec::new(),
            steps: Vec::new(),
            context: Vec::new(),
            secrets: Vec::new(),
        };
        let failed = || {
            Error::new(
                berth_core::ErrorKind::BuildFailed,
                "pinging container registry reg.lan:5000: http: server gave HTTP response to HTTPS client",
            )
        };
        let docker = plain_http_hint(failed(), "docker", &plan);
        let hint = docker.hint().unwrap_or_default();
        assert!(
            hint.contains("/etc/docker/daemon.json") && hint.contains("\"reg.lan:5000\""),
            "{hint}"
        );
        let podman = plain_http_hint(failed(), "podman", &plan);
        assert!(
            podman
                .hint()
                .unwrap_or_default()
                .contains("--insecure-registry reg.lan:5000"),
            "{podman}"
        );
        let other = plain_http_hint(
            Error::new(berth_core::ErrorKind::BuildFailed, "no"),
            "docker",
            &plan,
        );
        assert_eq!(other.hint(), None);
    }
}
