//! flytekit's default task image: `cr.flyte.org/flyteorg/flytekit:py{X.Y}-{flytekit version}`, for the Python
//! that runs the workflow code (flytekit takes the interpreter it runs in; berth asks `python3` on PATH).

use super::{Setting, Source};

/// The flytekit release whose tags and default image berth matches.
pub const FLYTEKIT_VERSION: &str = "1.16.31";

/// flytekit's default image for Python `python` (`X.Y`, or `X.Y.Z` cut to `X.Y`).
pub fn flytekit_default(python: &str) -> String {
    let short: Vec<&str> = python.trim().split('.').take(2).collect();
    // flytekit uses `latest` for development versions of itself.
    let version = if FLYTEKIT_VERSION.contains("dev") {
        "latest"
    } else {
        FLYTEKIT_VERSION
    };
    format!(
        "cr.flyte.org/flyteorg/flytekit:py{}-{version}",
        short.join(".")
    )
}

/// The version of `python3` on PATH, as `X.Y`.
pub fn local_python() -> Option<Setting> {
    let out = std::process::Command::new("python3")
        .args(["-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let version = String::from_utf8(out.stdout).ok()?.trim().to_string();
    let valid =
        version.split('.').count() == 2 && version.split('.').all(|p| p.parse::<u32>().is_ok());
    valid.then(|| Setting {
        value: version,
        source: Source::Detected("python3 on PATH".into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_flytekits_scheme() {
        assert_eq!(
            flytekit_default("3.11"),
            "cr.flyte.org/flyteorg/flytekit:py3.11-1.16.31"
        );
        assert_eq!(
            flytekit_default("3.12.4"),
            "cr.flyte.org/flyteorg/flytekit:py3.12-1.16.31"
        );
    }
}
