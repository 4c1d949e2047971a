//! berth against a registry shaped like GHCR and Docker Hub (`scripts/env/token-registry.sh`): TLS with a
//! certificate from a private CA that the machine trusts as users trust one (system store, engines' `certs.d`),
//! Docker's token auth, anonymous pulls of `public/...` only.
//!
//! On every engine (rootless Podman too): `berth login`, a build from a private base image, the push, and
//! `berth exists`, with skopeo as the independent witness of what the registry holds; `verify-public` tells the
//! public repository from the private one; a client given another CA refuses the registry with berth's
//! untrusted-certificate error, so the trust really comes from the CA. Then tokens that expire during a push:
//! logged in as a user whose tokens live 10 s (one whose token answers say so, and one whose answers claim five
//! minutes, so that only the registry's 401 tells), a push through a slow link outlives several tokens, on every
//! path that pushes with berth's own registry client (containerd, LXD, `--push-via berth` from Docker and from
//! rootful and rootless Podman), and completes.

use std::time::{Duration, Instant};

use berth_tests::conformance::support::unique;
use berth_tests::env::TestEnv;
use berth_tests::project::{tool, Engine, Project, Run};
use berth_tests::test_ca::TestCa;
use berth_tests::token_registry::{SlowLink, TokenRegistry};

/// `berth login HOST` as `user` in the project's Docker config; asserts it succeeds.
fn log_in(project: &Project, host: &str, user: &str, password: &str) {
    let login = project.berth(&["login", host, "-u", user, "--password-stdin"], password);
    assert_eq!(
        login.code, 0,
        "berth login {host} as {user}: {}",
        login.stderr
    );
    assert!(
        login
            .stderr
            .contains(&format!("Login succeeded: credentials for {host}")),
        "{}",
        login.stderr
    );
}

/// Logs the project in to the token registry as `user` (and, for the uv builder image, to the htpasswd registry).
fn log_in_everywhere(project: &Project, user: &str, extra_hosts: &[&str]) {
    let (env, token) = (TestEnv::get(), TokenRegistry::get());
    log_in(
        project,
        &env.registry,
        &env.registry_user,
        env.registry_password().expose(),
    );
    for host in std::iter::once(token.host.as_str()).chain(extra_hosts.iter().copied()) {
        log_in(project, host, user, token.password().expose());
    }
}

/// A spec on `base` (a private image of the token registry), pushed to `registry`, copying the `data` folder.
fn spec(project: &Project, registry: &str, name: &str, base: &str) {
    project.write(
        "spec.yaml",
        &spec_text(registry, name, base, "copy: [data]\n"),
    );
}

/// The text of [`spec`]'s spec, with `extra` (whole YAML lines) added.
fn spec_text(registry: &str, name: &str, base: &str, extra: &str) -> String {
    let env = TestEnv::get();
    format!(
        "name: {name}\nregistry: {registry}/berth-e2e\nbase_image: {base}\npython_exec: /usr/bin/python3\n\
         env: {{PUSHED_TO: token-registry}}\n{extra}builder_config: {{uv_image: \"{}\"}}\n\
         builder_options: {{install_flytekit: false}}\n",
        env.uv_image
    )
}

/// The digest the registry reports for `reference`, asked by skopeo (which verifies the certificate against the
/// system store and /etc/containers/certs.d) rather than berth.
fn registry_digest(reference: &str) -> String {
    let token = TokenRegistry::get();
    berth_tests::project::skopeo_digest(reference, &token.creds_arg(&token.user), true)
}

/// Copies the token registry's python fixture to `reference` in the same registry (skopeo; the blobs are mounted,
/// not uploaded).
fn copy_python_to(reference: &str) {
    let token = TokenRegistry::get();
    let creds = token.creds_arg(&token.user);
    let source = format!("docker://{}", token.python_image);
    let dest = format!("docker://{reference}");
    let args = [
        "copy",
        "-q",
        "--src-creds",
        &creds,
        "--dest-creds",
        &creds,
        &source,
        &dest,
    ];
    let (ok, out) = tool("skopeo", &args);
    assert!(ok, "skopeo copy to {reference}: {out}");
}

/// `name@digest` from a push's or build's standard output.
fn pushed(run: &Run) -> (String, String) {
    let line = run.stdout.trim();
    let (reference, digest) = line
        .split_once('@')
        .unwrap_or_else(|| panic!("name@digest on stdout: {line}\n{}", run.stderr));
    (reference.to_string(), digest.to_string())
}

/// Removes what a test left in the engine's local store (LXD keeps berth's own store: left to its cleanup).
fn remove_local(engine: Engine, reference: &str) {
    let _ = match engine {
        Engine::Docker => tool("docker", &["rmi", "-f", reference]),
        Engine::Podman => tool("podman", &["rmi", "-f", reference]),
        Engine::Containerd => tool(
            "ctr",
            &["--namespace", "default", "images", "rm", reference],
        ),
        Engine::PodmanRootless | Engine::Lxd => (true, String::new()),
    };
}

fn builds_and_pushes(engine: Engine) {
    if engine.selected().is_none() {
        return;
    }
    let token = TokenRegistry::get();
    let project = Project::new(engine);
    project.write("data/hello.txt", "hello through a token registry\n");
    spec(&project, &token.host, &unique("token"), &token.python_image);
    log_in_everywhere(&project, &token.user, &[]);

    let build = project.build(&["spec.yaml"]);
    assert_eq!(
        build.code, 0,
        "build and push on {engine:?}:\n{}",
        build.stderr
    );
    let (reference, digest) = pushed(&build);
    assert!(
        reference.starts_with(&format!("{}/berth-e2e/", token.host)),
        "{reference}"
    );
    assert_eq!(
        registry_digest(&reference),
        digest,
        "the registry holds what berth printed"
    );

    let exists = project.berth(&["exists", "spec.yaml"], "");
    assert_eq!(exists.code, 0, "exists: {}", exists.stderr);
    assert_eq!(exists.stdout, format!("{reference}\tpresent\t{digest}\n"));
    // a second build finds it in the registry and neither builds nor pushes
    let again = project.build(&["spec.yaml"]);
    assert_eq!(again.code, 0, "second build: {}", again.stderr);
    assert_eq!(pushed(&again), (reference.clone(), digest));
    remove_local(engine, &reference);
}

#[test]
fn docker_builds_and_pushes_to_a_token_registry() {
    builds_and_pushes(Engine::Docker);
}

#[test]
fn podman_builds_and_pushes_to_a_token_registry() {
    builds_and_pushes(Engine::Podman);
}

#[test]
fn rootless_podman_builds_and_pushes_to_a_token_registry() {
    builds_and_pushes(Engine::PodmanRootless);
}

#[test]
fn containerd_builds_and_pushes_to_a_token_registry() {
    builds_and_pushes(Engine::Containerd);
}

#[test]
fn lxd_builds_and_pushes_to_a_token_registry() {
    builds_and_pushes(Engine::Lxd);
}

#[test]
fn verify_public_tells_the_public_repository_from_the_private_one() {
    if TestEnv::selected().is_none() {
        return;
    }
    let token = TokenRegistry::get();
    let dir = tempfile::tempdir().expect("temp dir");
    let out = berth_tests::berth(
        dir.path(),
        &[
            "verify-public",
            &token.public_busybox_image,
            &token.busybox_image,
        ],
    );
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    let digest = registry_digest(&token.public_busybox_image);
    assert_eq!(
        stdout,
        format!(
            "{}\tpublic\t{digest}\n{}\tprivate\n",
            token.public_busybox_image, token.busybox_image
        )
    );
    assert!(
        stderr.contains("1 of 2 images can be pulled without credentials"),
        "{stderr}"
    );
}

#[test]
fn login_checks_the_password_with_the_token_server() {
    if TestEnv::selected().is_none() {
        return;
    }
    let token = TokenRegistry::get();
    let project = Project::new(Engine::Docker);
    let wrong = project.berth(
        &["login", &token.host, "-u", &token.user, "--password-stdin"],
        "not-the-password",
    );
    assert_ne!(wrong.code, 0, "a wrong password is refused");
    assert!(
        wrong
            .stderr
            .contains(&format!("the token server {} answered 401", token.realm)),
        "{}",
        wrong.stderr
    );
    assert!(
        !project.config().join("config.json").exists(),
        "nothing stored"
    );
    log_in(
        &project,
        &token.host,
        &token.user,
        token.password().expose(),
    );
    let stored =
        std::fs::read_to_string(project.config().join("config.json")).expect("config.json");
    assert!(stored.contains(&format!("\"{}\"", token.host)), "{stored}");
    assert!(
        !stored.contains(token.password().expose()),
        "stored encoded, as Docker does"
    );
}

/// A CA bundle holding only a CA of its own, and an empty certificate folder: what `SSL_CERT_FILE` and
/// `SSL_CERT_DIR` point berth at to make it a client that does not trust the test CA.
fn other_ca() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    TestCa::new(dir.path(), "ca", "another CA");
    std::fs::create_dir(dir.path().join("certs")).expect("mkdir");
    dir
}

/// With another CA, berth's client (exists) and the engines that pull and push with it (containerd, LXD: the
/// base-image pull) refuse the registry with the untrusted-certificate error: the trust comes from the test CA,
/// not from skipped verification.
#[test]
fn another_ca_is_refused_by_berths_client_on_every_path() {
    for engine in [None, Some(Engine::Containerd), Some(Engine::Lxd)] {
        match engine {
            None if TestEnv::selected().is_none() => continue,
            Some(engine) if engine.selected().is_none() => continue,
            _ => {}
        }
        let token = TokenRegistry::get();
        let project = Project::new(engine.unwrap_or(Engine::Containerd));
        project.write("data/hello.txt", "never built\n");
        // a base no engine has yet, so that the build must pull it
        let base = format!("{}-{}", token.python_image, unique("other-ca"));
        copy_python_to(&base);
        spec(&project, &token.host, &unique("other-ca"), &base);
        log_in_everywhere(&project, &token.user, &[]);
        let ca = other_ca();
        let bundle = ca.path().join("ca.pem").display().to_string();
        let folder = ca.path().join("certs").display().to_string();
        let vars = [
            ("SSL_CERT_FILE", bundle.as_str()),
            ("SSL_CERT_DIR", folder.as_str()),
        ];
        let run = match engine {
            None => project.berth_with(&["exists", "spec.yaml"], "", &vars),
            // past the existence check (refused the same way), to the base image's pull
            Some(engine) => project.berth_with(
                &[
                    "build",
                    "--engine",
                    engine.flag(),
                    "--if-unknown",
                    "build",
                    "spec.yaml",
                ],
                "",
                &vars,
            ),
        };
        assert_ne!(run.code, 0, "{engine:?} with another CA: {}", run.stderr);
        assert!(
            run.stderr.contains("certificate not trusted") && run.stderr.contains("--ca-file"),
            "{engine:?}: berth's untrusted-certificate error:\n{}",
            run.stderr
        );
        // the same with the test CA given: the certificate was the only thing wrong
        let ca_file = token.ca.display().to_string();
        let trusted =
            project.berth_with(&["exists", "--ca-file", &ca_file, "spec.yaml"], "", &vars);
        assert_ne!(trusted.code, 2, "exists with --ca-file: {}", trusted.stderr);
    }
}

/// How much the slow link lets through per second: what goes up through it is the spec's own layer (the base's
/// layers are in the repository before the push), so a push takes about 25 s, 2.5 times a short token's life.
const LINK_RATE: u64 = 1 << 20;

/// The incompressible file the spec copies: 25 MiB, 25 s at [`LINK_RATE`].
const NOISE_SIZE: usize = 25 << 20;

/// Which of the token registry's short-lived users a push logs in as.
#[derive(Debug, Clone, Copy)]
enum Tokens {
    /// Tokens that live 10 s and say so.
    Short,
    /// Tokens that live 10 s and claim five minutes: only re-authenticating on a 401 gets past them.
    Stale,
}

/// Logged in as a user whose tokens live 10 s (`tokens`), builds a spec with a large incompressible layer, then pushes it
/// through a slow link (berth's own client: `berth push`, with `--push-via berth` for Docker and Podman), and
/// checks the push took longer than a token lives and left the image whole in the registry.
fn push_outlives_tokens(engine: Engine, tokens: Tokens) {
    if engine.selected().is_none() {
        return;
    }
    let token = TokenRegistry::get();
    let user = match tokens {
        Tokens::Short => &token.short_user,
        Tokens::Stale => &token.stale_user,
    };
    let link = SlowLink::start(&token.host, LINK_RATE);
    let project = Project::new(engine);
    let noise = noise(NOISE_SIZE);
    project.write("data/hello.txt", "pushed through a slow link\n");
    std::fs::write(project.path().join("data/noise.bin"), noise).expect("write noise");
    if engine == Engine::PodmanRootless {
        project.write("data/hello.txt", "pushed through a slow link\n"); // chown the noise too
    }
    let name = unique("short-token");
    spec(&project, &link.host(), &name, &token.python_image);
    log_in_everywhere(&project, user, &[&link.host()]);

    let built = project.build(&["--no-push", "spec.yaml"]);
    assert_eq!(built.code, 0, "build on {engine:?}: {}", built.stderr);
    let mut args = vec!["push", "--engine", engine.flag()];
    if matches!(
        engine,
        Engine::Docker | Engine::Podman | Engine::PodmanRootless
    ) {
        args.extend(["--push-via", "berth"]);
    }
    base_layers_pushed(&project, &args, &token.host, &name);
    args.push("spec.yaml");
    let started = Instant::now();
    let push = project.berth(&args, "");
    let took = started.elapsed();
    assert_eq!(
        push.code, 0,
        "push on {engine:?} as {user} ({:?} tokens):\n{}",
        token.short_lifetime, push.stderr
    );
    assert!(
        took > token.short_lifetime + Duration::from_secs(2),
        "the push must outlive a token to test anything: it took {took:?}, {} bytes went up",
        link.uploaded()
    );
    eprintln!(
        "{engine:?} as {user}: pushed {} MiB in {took:.1?} with {:?} tokens",
        link.uploaded() >> 20,
        token.short_lifetime
    );
    let (reference, digest) = pushed(&push);
    // the image is whole: skopeo reads it from the registry directly (same repository, other port)
    let direct = reference.replacen(&link.host(), &token.host, 1);
    assert_eq!(registry_digest(&direct), digest);
    let (ok, out) = tool(
        "skopeo",
        &[
            "copy",
            "--src-creds",
            &token.creds_arg(&token.user),
            &format!("docker://{direct}"),
            &format!("dir:{}", project.path().join("copy").display()),
        ],
    );
    assert!(ok, "every blob of {direct} can be read back: {out}");
    let exists = project.berth(&["exists", "spec.yaml"], "");
    assert_eq!(
        exists.code, 0,
        "exists through the slow link: {}",
        exists.stderr
    );
    remove_local(engine, &reference);
}

/// Puts the base's layers, as `push` (berth's arguments before the spec) uploads them from this engine, into the
/// repository of spec `name` on `registry` directly (not through the slow link), as an earlier push of an image on
/// that base would have: a spec with everything but the copied folder, built and pushed. Docker's and Podman's
/// base layers are compressed by berth and go up again in every repository unless berth's memory of its layers
/// mounts them from another one (which another test's push may or may not have filled first).
fn base_layers_pushed(project: &Project, push: &[&str], registry: &str, name: &str) {
    let base = TokenRegistry::get().python_image.clone();
    project.write("base.yaml", &spec_text(registry, name, &base, ""));
    let built = project.build(&["--no-push", "base.yaml"]);
    assert_eq!(built.code, 0, "build of base.yaml: {}", built.stderr);
    let mut args = push.to_vec();
    args.push("base.yaml");
    let pushed = project.berth(&args, "");
    assert_eq!(pushed.code, 0, "push of base.yaml: {}", pushed.stderr);
}

/// `size` bytes of noise, different in every run (incompressible, so the layer stays as large as the file, and
/// never already in the registry from an earlier run).
fn noise(size: usize) -> Vec<u8> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut x = nanos ^ (u64::from(std::process::id()) << 32) | 1;
    (0..size)
        .map(|_| {
            // xorshift64*
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

/// For each engine, a push with tokens that die after 10 s while claiming five minutes (only re-authenticating
/// on the registry's 401 gets past them); tokens that say they live 10 s (renewed before they run out) on
/// containerd's push, whose token handling is the same client's as every other own push.
macro_rules! push_tests {
    ($($engine:ident: $stale:ident;)*) => {$(
        #[test]
        fn $stale() {
            push_outlives_tokens(Engine::$engine, Tokens::Stale);
        }
    )*};
}

#[test]
fn containerd_push_outlives_its_tokens() {
    push_outlives_tokens(Engine::Containerd, Tokens::Short);
}

push_tests! {
    Containerd: containerd_push_survives_tokens_that_die_before_they_say;
    Lxd: lxd_push_survives_tokens_that_die_before_they_say;
    Docker: docker_push_via_berth_survives_tokens_that_die_before_they_say;
    Podman: podman_push_via_berth_survives_tokens_that_die_before_they_say;
    PodmanRootless: rootless_podman_push_via_berth_survives_tokens_that_die_before_they_say;
}
