//! A bound on a build's base-image pull. buildah, in the service, downloads the build's `FROM` images with
//! containers/image, which gives a registry that stops sending mid-answer no limit: the build would wait for
//! [`crate::PodmanOptions::idle_timeout`] (half an hour, for RUN steps that print nothing). While a build
//! pulls, its output is silent only as long as the registry is, so berth gives that phase
//! [`crate::PodmanOptions::pull_idle_timeout`] and, past it, gives the build up (the connection is closed and
//! the build's marked steps ended, as for any build berth gives up).

use std::time::Duration;

use berth_core::{Error, ErrorKind};

use crate::ENGINE;

/// The image a build step pulls: `FROM image` or `FROM image AS name` (buildah's step line); `None` for other
/// steps.
pub(crate) fn pulled_by(step: &str) -> Option<String> {
    let mut words = step.split_whitespace();
    let instruction = words.next()?;
    if !instruction.eq_ignore_ascii_case("FROM") {
        return None;
    }
    words.next().map(str::to_string)
}

/// The error for a build whose pull of `image` went `silent` without a byte of output: temporary (the
/// registry may answer next time), naming the engine, the pull and the setting.
pub(crate) fn stalled_pull(image: &str, silent: Duration, service: &str) -> Error {
    Error::new(
        ErrorKind::Unavailable,
        format!(
            "the Podman service ({service}) pulled {image} for the build and nothing came for {} s: the \
             registry stopped sending, and the service sets no limit of its own; berth cancelled the build",
            silent.as_secs_f32()
        ),
    )
    .with_engine(ENGINE)
    .with_operation(berth_core::Operation::Build)
    .with_hint(
        "check that the registry (or the proxy in front of it) is answering, and build again; the limit is \
         PodmanOptions::pull_idle_timeout (5 minutes by default)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_from_steps_pull() {
        assert_eq!(
            pulled_by("FROM 127.0.0.1:5000/a/b:1").as_deref(),
            Some("127.0.0.1:5000/a/b:1")
        );
        assert_eq!(
            pulled_by("FROM ghcr.io/x/uv:0.5 AS uv").as_deref(),
            Some("ghcr.io/x/uv:0.5")
        );
        assert_eq!(pulled_by("RUN echo FROM x"), None);
        assert_eq!(pulled_by("LABEL a=b"), None);
    }

    #[test]
    fn a_stalled_pull_names_the_engine_the_image_and_the_limit() {
        let err = stalled_pull(
            "r/a:1",
            Duration::from_secs(5),
            "unix:///run/podman/podman.sock",
        );
        assert_eq!(err.kind(), ErrorKind::Unavailable);
        assert!(err.is_temporary());
        assert_eq!(err.engine(), Some(ENGINE));
        assert!(
            err.message().contains("pulled r/a:1 for the build"),
            "{err}"
        );
        assert!(err.hint().unwrap_or_default().contains("pull_idle_timeout"));
    }
}
