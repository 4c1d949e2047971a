//! berth's registry flags reach every engine they can, and berth says when they cannot: `--ca-file` for a
//! registry with a certificate from a private CA reaches containerd's pushes (made with berth's one registry
//! client), and Docker, whose daemon pushes with its own certificates, gets a warning instead.
//!
//! The registry is a `docker-registry` of the test's own, serving TLS on the machine's non-loopback address (berth
//! skips verification for loopback registries, which would hide a missing CA) with a certificate signed by a CA
//! made for the test.

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use berth_tests::env::TestEnv;
use berth_tests::test_ca::{TestCa, Usage};

/// A TLS registry for one test; stopped when dropped.
struct TlsRegistry {
    child: Child,
    /// `IP:PORT`.
    host: String,
    /// The CA that signed its certificate (PEM).
    ca: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for TlsRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{program} {args:?}: {text}");
    text
}

/// The machine's first IPv4 address outside loopback.
fn outside_address() -> Ipv4Addr {
    run("hostname", &["-I"])
        .split_whitespace()
        .filter_map(|a| a.parse::<Ipv4Addr>().ok())
        .find(|a| !a.is_loopback())
        .expect("this machine has an IPv4 address outside loopback (hostname -I)")
}

impl TlsRegistry {
    fn start() -> TlsRegistry {
        let dir = tempfile::tempdir().expect("temp dir");
        let ip = outside_address();
        let port = TcpListener::bind((ip, 0))
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let path = |name: &str| dir.path().join(name).display().to_string();
        let authority = TestCa::new(dir.path(), "ca", "berth test CA");
        let server = authority.issue(
            "cert",
            "berth test registry",
            Usage::ServerAt(&ip.to_string()),
        );
        let (ca, cert, key) = (
            authority.cert.display().to_string(),
            server.cert.display().to_string(),
            server.key.display().to_string(),
        );
        let config = path("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog: {{level: warn}}\nstorage: {{filesystem: {{rootdirectory: {}}}}}\n\
                 http: {{addr: \"{ip}:{port}\", tls: {{certificate: {cert}, key: {key}}}}}\n",
                path("data")
            ),
        )
        .expect("write config.yml");
        let child = Command::new("docker-registry")
            .args(["serve", &config])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry (scripts/env/up.sh installs it)");
        let registry = TlsRegistry {
            child,
            host: format!("{ip}:{port}"),
            ca: PathBuf::from(&ca),
            _dir: dir,
        };
        let url = format!("https://{}/v2/", registry.host);
        let answers = || {
            Command::new("curl")
                .args(["-sf", "-o", "/dev/null", "--cacert", &ca, &url])
                .status()
                .is_ok_and(|s| s.success())
        };
        for _ in 0..100 {
            if answers() {
                return registry;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("the test registry never answered on {url}");
    }
}

/// A project whose one spec is named for `registry`, and the image's reference.
fn project(registry: &str) -> (tempfile::TempDir, String) {
    let env = TestEnv::get();
    let dir = tempfile::tempdir().expect("temp dir");
    let spec = format!(
        "name: tls-{}\nregistry: {registry}/berth-e2e\nbase_image: {}\npython_exec: /bin/sh\n\
         builder_options: {{install_flytekit: false}}\n",
        std::process::id(),
        env.busybox_image
    );
    std::fs::write(dir.path().join("spec.yaml"), spec).expect("write spec");
    let name = berth_tests::berth(dir.path(), &["name", "spec.yaml"]);
    assert!(name.status.success(), "berth name: {name:?}");
    let reference = String::from_utf8_lossy(&name.stdout).trim().to_string();
    (dir, reference)
}

fn ctr(args: &[&str]) -> String {
    let mut all = vec!["--namespace", "default"];
    all.extend_from_slice(args);
    run("ctr", &all)
}

fn berth(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = berth_tests::berth(dir, args);
    (
        out.status.code().expect("exit code"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_ca_file_reaches_containerd_pushes() {
    let Some(env) = TestEnv::for_engine("containerd") else {
        return;
    };
    let registry = TlsRegistry::start();
    let (dir, reference) = project(&registry.host);
    // the image as a build would leave it: any image under the spec's name
    ctr(&[
        "images",
        "pull",
        "--plain-http",
        "--user",
        &env.creds_arg(),
        &env.busybox_image,
    ]);
    ctr(&["images", "tag", "--force", &env.busybox_image, &reference]);
    let ca = registry.ca.display().to_string();

    let without = berth(dir.path(), &["push", "--engine", "containerd", "spec.yaml"]);
    let with = berth(
        dir.path(),
        &[
            "push",
            "--engine",
            "containerd",
            "--ca-file",
            &ca,
            "spec.yaml",
        ],
    );
    let _ = Command::new("ctr")
        .args(["--namespace", "default", "images", "rm", &reference])
        .output();

    assert_ne!(
        without.0, 0,
        "without the CA the registry's certificate is not trusted: {without:?}"
    );
    assert!(without.2.contains("certificate"), "{}", without.2);
    assert_eq!(with.0, 0, "push with --ca-file:\n{}", with.2);
    assert!(
        with.1.starts_with(&format!("{reference}@sha256:")),
        "{}",
        with.1
    );
    let (code, _, stderr) = berth(dir.path(), &["exists", "--ca-file", &ca, "spec.yaml"]);
    assert_eq!(code, 0, "the registry holds {reference}: {stderr}");
}

#[test]
fn docker_is_warned_that_the_ca_file_cannot_reach_its_daemon() {
    if TestEnv::for_engine("docker").is_none() {
        return;
    }
    let registry = TlsRegistry::start();
    let (dir, _) = project(&registry.host);
    let ca = registry.ca.display().to_string();
    // nothing to push (the image is not in dockerd): the warning comes when berth connects
    let (_, _, stderr) = berth(
        dir.path(),
        &["push", "--engine", "docker", "--ca-file", &ca, "spec.yaml"],
    );
    assert!(
        stderr.contains(&format!(
            "docker: warning: --ca-file {ca} does not reach docker"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("/etc/docker/certs.d/HOST/ca.crt"),
        "{stderr}"
    );
}
