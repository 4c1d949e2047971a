//! Which daemon suites run: `BERTH_TEST_ENGINES`. CI sets it to `all` (`.ci/run`, `scripts/test.sh`), and so
//! does leaving it unset: every suite runs and a missing engine or registry fails its tests. A contributor without
//! the daemons sets `none` (every test that needs one returns at once, printing why), or names the engines the
//! machine has, comma-separated (`docker,containerd`): tests of the other engines return at once, printing why,
//! and the named ones stay mandatory.
//!
//! Tests that need a daemon take the environment through [`TestEnv::selected`] (any daemon: the registry, the
//! fixture images) or [`TestEnv::for_engine`] instead of [`TestEnv::get`].

use crate::env::TestEnv;

/// The variable's name.
pub const ENGINES: &str = "BERTH_TEST_ENGINES";

/// The engines a suite can name: the conformance suite's names (`podman_rootless` is the rootless Podman
/// service).
pub const KNOWN: &[&str] = &[
    "docker",
    "docker_remote",
    "docker_ssh",
    "podman",
    "podman_rootless",
    "podman_ssh",
    "podman_ssh_rootless",
    "containerd",
    "lxd",
    "lxd_remote",
];

/// What `BERTH_TEST_ENGINES` selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// Every suite (unset, empty or `all`): what CI runs.
    All,
    /// No suite that needs a daemon (`none`).
    Nothing,
    /// The suites of these engines, and those that need only the registry.
    Only(Vec<String>),
}

impl Selection {
    /// Reads `value` (the variable's value, if set); an engine name berth does not know is an error, so a typo
    /// never turns a suite off quietly.
    pub fn parse(value: Option<&str>) -> Result<Selection, String> {
        let value = value.map(str::trim).unwrap_or_default();
        match value {
            "" | "all" => Ok(Selection::All),
            "none" => Ok(Selection::Nothing),
            list => {
                let names: Vec<String> = list.split(',').map(|n| n.trim().to_string()).collect();
                match names.iter().find(|n| !KNOWN.contains(&n.as_str())) {
                    Some(unknown) => Err(format!(
                        "{ENGINES}={value}: unknown engine `{unknown}` (all, none, or a list of {})",
                        KNOWN.join(", ")
                    )),
                    None => Ok(Selection::Only(names)),
                }
            }
        }
    }

    /// This process's selection; panics (the test fails) on a value it cannot read.
    pub fn current() -> Selection {
        Selection::parse(std::env::var(ENGINES).ok().as_deref()).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Whether tests of `engine` run (`None`: a test that needs the daemons' environment but no one engine).
    pub fn runs(&self, engine: Option<&str>) -> bool {
        match (self, engine) {
            (Selection::All, _) => true,
            (Selection::Nothing, _) => false,
            (Selection::Only(_), None) => true,
            (Selection::Only(names), Some(engine)) => names.iter().any(|n| n == engine),
        }
    }
}

impl TestEnv {
    /// The environment for a test that needs the daemons' environment (the registry, the fixture images), or
    /// `None` after printing why when `BERTH_TEST_ENGINES=none`. Otherwise as [`TestEnv::get`]: a missing
    /// environment fails the test.
    pub fn selected() -> Option<&'static TestEnv> {
        TestEnv::when(None)
    }

    /// The environment for a test of `engine` (one of [`KNOWN`]), or `None` after printing why when
    /// `BERTH_TEST_ENGINES` does not select it.
    pub fn for_engine(engine: &str) -> Option<&'static TestEnv> {
        TestEnv::when(Some(engine))
    }

    fn when(engine: Option<&str>) -> Option<&'static TestEnv> {
        selects(engine).then(TestEnv::get)
    }
}

/// Whether this test runs: `engine`'s (or, with `None`, any daemon's) tests are selected. When they are not,
/// prints why, for the caller to return at once. For suites with an environment of their own; the others use
/// [`TestEnv::selected`] and [`TestEnv::for_engine`].
pub fn selects(engine: Option<&str>) -> bool {
    if Selection::current().runs(engine) {
        return true;
    }
    let test = std::thread::current()
        .name()
        .unwrap_or("this test")
        .to_string();
    let what = engine.map_or("a daemon".to_string(), |e| format!("the {e} engine"));
    eprintln!(
        "skipped {test}: it needs {what}, and {ENGINES}={} does not select it (CI runs every suite, where a \
         missing engine fails)",
        std::env::var(ENGINES).unwrap_or_default()
    );
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_suite_runs_unless_told_otherwise() {
        for unset in [None, Some(""), Some("all"), Some(" all ")] {
            assert_eq!(Selection::parse(unset), Ok(Selection::All), "{unset:?}");
        }
        let none = Selection::parse(Some("none")).expect("none");
        assert!(!none.runs(None) && !none.runs(Some("docker")));
        let some = Selection::parse(Some("docker, containerd")).expect("list");
        assert!(some.runs(None) && some.runs(Some("docker")) && some.runs(Some("containerd")));
        assert!(!some.runs(Some("podman")));
        let typo = Selection::parse(Some("dokcer")).expect_err("unknown engine");
        assert!(typo.contains("unknown engine `dokcer`"), "{typo}");
    }
}
