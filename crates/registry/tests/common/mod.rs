//! Shared by the registry tests: the test environment of `scripts/env/up.sh`, isolated credential lookups,
//! unique repository names, skopeo as the independent witness of what the registry holds.
#![allow(dead_code)] // each test binary uses a different subset

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use berth_core::reference::ImageRef;
use berth_registry::{CredentialResolver, RegistryClient, RegistryOptions, RetryPolicy};
pub use berth_tests::env::TestEnv;

/// The environment, or a panic saying to run `scripts/env/up.sh`; `None` (the test returns, printing why) only
/// when `BERTH_TEST_ENGINES=none` selects no daemon suite.
pub fn env() -> Option<&'static TestEnv> {
    TestEnv::selected()
}

/// A repository path no other run or test uses.
pub fn unique_repo(what: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "berth-registry-tests/{what}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// A folder standing in for the user's home, runtime and config folders, so no real login is seen.
pub struct Home {
    pub dir: tempfile::TempDir,
}

impl Home {
    pub fn new() -> Home {
        let dir = tempfile::tempdir().expect("temp home");
        std::fs::create_dir_all(dir.path().join("run")).expect("runtime dir");
        Home { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `HOME`, `XDG_RUNTIME_DIR` and a `PATH` of `bin` (for fake helpers) only, plus `extra`.
    pub fn vars(&self, extra: &[(&str, &str)]) -> HashMap<String, String> {
        let mut vars: HashMap<String, String> = [
            ("HOME", self.path().display().to_string()),
            (
                "XDG_RUNTIME_DIR",
                self.path().join("run").display().to_string(),
            ),
            ("PATH", format!("{}:/usr/bin:/bin", self.bin().display())),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        for (k, v) in extra {
            vars.insert(k.to_string(), v.to_string());
        }
        vars
    }

    pub fn bin(&self) -> PathBuf {
        self.path().join("bin")
    }

    /// A resolver that sees only this home.
    pub fn resolver(&self, extra: &[(&str, &str)]) -> CredentialResolver {
        CredentialResolver::with_vars(self.vars(extra))
    }

    /// `~/.docker/config.json` in this home.
    pub fn docker_config(&self) -> PathBuf {
        self.path().join(".docker/config.json")
    }

    /// Writes an executable `docker-credential-<name>` script into `bin`.
    pub fn helper(&self, name: &str, script: &str) {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::create_dir_all(self.bin()).expect("bin dir");
        let path = self.bin().join(format!("docker-credential-{name}"));
        std::fs::write(&path, script).expect("write helper");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700))
            .expect("chmod helper");
    }
}

/// A client for the test registry with `resolver`, fast retries.
pub fn client(resolver: CredentialResolver) -> RegistryClient {
    RegistryClient::new(RegistryOptions {
        credentials: resolver,
        retry: RetryPolicy {
            base_delay: std::time::Duration::from_millis(50),
            ..RetryPolicy::default()
        },
        ..RegistryOptions::default()
    })
    .expect("client")
}

/// A client with the test registry's valid credentials and nothing else.
pub fn authed_client(home: &Home) -> RegistryClient {
    client(
        home.resolver(&[])
            .with_credentials(TestEnv::get().credentials()),
    )
}

pub fn image(reference: &str) -> ImageRef {
    ImageRef::parse(reference).expect("valid reference")
}

/// Runs skopeo against the test registry (plain HTTP, the test credentials); panics with its output on failure.
pub fn skopeo(args: &[&str]) -> String {
    let out = Command::new("skopeo")
        .args(args)
        .output()
        .expect("run skopeo (scripts/env/up.sh installs it)");
    if !out.status.success() {
        let secret = TestEnv::get().registry_password().expose();
        let shown = format!("{args:?}").replace(secret, "***");
        panic!(
            "skopeo {shown} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The manifest digest skopeo sees for `reference`.
pub fn skopeo_digest(reference: &str) -> String {
    let creds = TestEnv::get().creds_arg();
    skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--creds",
        &creds,
        "--format",
        "{{.Digest}}",
        &format!("docker://{reference}"),
    ])
}

/// Copies `from` to `to` inside the test registry.
pub fn skopeo_copy(from: &str, to: &str) {
    let creds = TestEnv::get().creds_arg();
    skopeo(&[
        "copy",
        "-q",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        "--src-creds",
        &creds,
        "--dest-creds",
        &creds,
        &format!("docker://{from}"),
        &format!("docker://{to}"),
    ]);
}
