//! berth on a remote LXD server, reached as lxc reaches it: the second lxd that `scripts/env/remote-lxd.sh`
//! runs in the network namespace `berth-remote` (https://10.203.0.2:8443), through the lxc configuration
//! `lxc remote add` wrote for root there (client certificate trusted by the server, server certificate pinned).
//! A client certificate the server does not trust, and a server certificate other than the accepted one, each
//! fail with their own error and fix, and `berth doctor` says which.

use std::path::PathBuf;
use std::time::Duration;

use berth_backend_lxd::doctor::RemoteTrust;
use berth_backend_lxd::{LxdEngine, LxdOptions, NAME_PREFIX};
use berth_core::engine::{ContainerEngine, NoProgress};
use berth_core::plan::{Mount, PlanSecret, RunStep, Step};
use berth_core::ErrorKind;
use berth_tests::conformance::support::{
    build_options, image_ref, plan, run, transfer_options, unique, Recorder,
};
use berth_tests::env::TestEnv;
use berth_tests::lxd_remote::{conf, remote_name, trusted};
use berth_tests::{berth_bin, output_with_stdin};

/// Options naming the remote with the lxc configuration in `conf`.
fn options(conf: &std::path::Path) -> LxdOptions {
    LxdOptions {
        remote: Some(remote_name()),
        lxd_conf: Some(conf.to_path_buf()),
        ..LxdOptions::default()
    }
}

/// The tests that build take turns: one checks that nothing of this process is left on the server.
static BUILDS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn remote() -> LxdEngine {
    LxdEngine::connect(options(&trusted()))
        .await
        .unwrap_or_else(|e| {
            panic!("cannot reach the remote LXD: {e}\n  run scripts/env/up.sh (as root)")
        })
}

fn untrusted() -> PathBuf {
    conf("untrusted", "BERTH_TEST_REMOTE_LXD_UNTRUSTED_CONF")
}

/// A copy of the trusted configuration whose pinned server certificate is another one (the client's own).
fn with_another_server_cert() -> tempfile::TempDir {
    let copy = tempfile::tempdir().expect("temp dir");
    let from = trusted();
    std::fs::create_dir(copy.path().join("servercerts")).expect("servercerts");
    for file in ["config.yml", "client.crt", "client.key"] {
        std::fs::copy(from.join(file), copy.path().join(file)).expect("copy lxc's files");
    }
    std::fs::copy(
        from.join("client.crt"),
        copy.path()
            .join(format!("servercerts/{}.crt", remote_name())),
    )
    .expect("pin another certificate");
    copy
}

#[tokio::test]
async fn the_remote_answers_over_https_with_lxcs_client_certificate() {
    let Some(_env) = TestEnv::for_engine("lxd") else {
        return;
    };
    let engine = LxdEngine::connect(options(&trusted()))
        .await
        .unwrap_or_else(|e| {
            panic!("cannot reach the remote LXD: {e}\n  run scripts/env/up.sh (as root)")
        });
    let info = engine.info().await.expect("info");
    assert!(
        info.endpoint.starts_with("https://10.203.0.2:8443")
            && info.endpoint.contains(&remote_name()),
        "{}",
        info.endpoint
    );
    assert_eq!(engine.remote().map(|r| r.name.clone()), Some(remote_name()));
    // a request beyond the first: the remote's instances (berth's are none while nothing builds there)
    engine
        .leftovers()
        .await
        .expect("the remote's instances, over HTTPS");
    assert_eq!(
        berth_backend_lxd::doctor::remote_trust_of(&options(&trusted())).await,
        Some(RemoteTrust::Trusted)
    );
}

#[tokio::test]
async fn an_untrusted_client_certificate_says_how_to_trust_it() {
    let Some(_env) = TestEnv::for_engine("lxd") else {
        return;
    };
    let err = LxdEngine::connect(options(&untrusted()))
        .await
        .expect_err("the remote does not trust this certificate");
    assert_eq!(err.kind(), ErrorKind::Unauthorized, "{err:?}");
    assert!(
        err.to_string()
            .contains("does not trust this client's certificate"),
        "{err}"
    );
    let hint = err.hint().unwrap_or_default();
    assert!(
        hint.contains("lxc config trust add")
            && hint.contains(&untrusted().join("client.crt").display().to_string()),
        "{hint}"
    );
    assert_eq!(
        berth_backend_lxd::doctor::remote_trust_of(&options(&untrusted())).await,
        Some(RemoteTrust::ClientUntrusted)
    );
}

#[tokio::test]
async fn a_server_certificate_other_than_the_accepted_one_is_refused() {
    let Some(_env) = TestEnv::for_engine("lxd") else {
        return;
    };
    let conf = with_another_server_cert();
    let err = LxdEngine::connect(options(conf.path()))
        .await
        .expect_err("the server does not show the pinned certificate");
    assert_eq!(err.kind(), ErrorKind::EngineUnavailable, "{err:?}");
    let hint = err.hint().unwrap_or_default();
    assert!(
        hint.contains(&format!("lxc remote remove {}", remote_name())),
        "{hint}"
    );
    assert_eq!(
        berth_backend_lxd::doctor::remote_trust_of(&options(conf.path())).await,
        Some(RemoteTrust::ServerChanged)
    );
}

#[tokio::test]
async fn a_remote_nobody_listens_on_or_lxc_does_not_know_is_named_with_its_fix() {
    let Some(_env) = TestEnv::for_engine("lxd") else {
        return;
    };
    // the same remote on a port the server does not listen on
    let conf = with_another_server_cert();
    let config = std::fs::read_to_string(trusted().join("config.yml")).expect("config.yml");
    assert!(config.contains("10.203.0.2:8443"), "{config}");
    std::fs::write(
        conf.path().join("config.yml"),
        config.replace("10.203.0.2:8443", "10.203.0.2:8444"),
    )
    .expect("write config.yml");
    let err = LxdEngine::connect(options(conf.path()))
        .await
        .expect_err("nothing listens on 8444");
    assert_eq!(err.kind(), ErrorKind::EngineUnavailable, "{err:?}");
    let hint = err.hint().unwrap_or_default();
    assert!(hint.contains("core.https_address"), "{hint}");

    let unknown = LxdOptions {
        remote: Some("nowhere".into()),
        lxd_conf: Some(trusted()),
        ..LxdOptions::default()
    };
    let err = LxdEngine::connect(unknown)
        .await
        .expect_err("lxc has no such remote");
    assert_eq!(err.kind(), ErrorKind::InvalidSpec, "{err:?}");
    assert!(err.to_string().contains(&remote_name()), "{err}");
}

/// The diff ids of `plan` built without the step cache on `engine`.
async fn layers_of(
    engine: &LxdEngine,
    env: &TestEnv,
    plan: &berth_core::plan::BuildPlan,
) -> Vec<String> {
    let tag = image_ref(env, "lxd-same-layers", "v1");
    let mut options = build_options(env, &tag);
    options.no_cache = true;
    let progress = Recorder::default();
    if let Err(e) = engine.build(plan, &options, &progress).await {
        panic!(
            "build on {}: {e}\n{}",
            engine.endpoint_name(),
            progress.lines().join("\n")
        );
    }
    let layers = engine.inspect(&tag).await.expect("inspect").layers;
    let _ = engine
        .remove(&tag, berth_core::engine::RemoveOptions::default())
        .await;
    layers
}

/// The proof that a remote step's layer (read from LXD's export) is the layer a local step gives (read from the
/// root folder): one spec, built without the step cache on this machine's LXD and on the remote, gives the
/// same layers, byte for byte. Its steps set every time they touch, so two builds can agree; they make
/// folders, files, a hard link, a named pipe, setuid and owner changes, a deleted base file (a whiteout), a
/// removed folder (a whiteout under a kept folder) and a link count that drops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_build_makes_the_layers_a_local_build_makes() {
    let Some(env) = TestEnv::for_engine("lxd") else {
        return;
    };
    let _turn = BUILDS.lock().await;
    let when = "2023-11-14 22:13:20";
    let plan = plan(
        &env.busybox_image,
        vec![
            run(format!(
                "set -e; mkdir -p /srv/a/b; echo one > /srv/a/b/f; ln /srv/a/b/f /srv/a/hard; \
                 mkfifo /srv/p; chmod 4755 /srv/a/b/f; chown 1000:1000 /srv/a/b; rm /bin/ls; \
                 touch -d '{when}' /srv/a/b/f /srv/a/b /srv/a /srv/p /srv /bin"
            )),
            run(format!(
                "set -e; rm -rf /srv/a/b; echo two > /srv/x; touch -d '{when}' /srv/x /srv/a /srv"
            )),
        ],
    );
    let local = LxdEngine::connect(LxdOptions::default())
        .await
        .expect("this machine's LXD");
    let here = layers_of(&local, env, &plan).await;
    let there = layers_of(&remote().await, env, &plan).await;
    assert!(here.len() >= 3, "{here:?}");
    assert_eq!(
        here, there,
        "the same spec gave other layers on the remote LXD than on this machine's"
    );
}

/// A build on the remote is pushed with berth's registry client to the authenticated registry, and Docker pulls
/// and runs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_build_is_pushed_and_docker_runs_it() {
    let Some(env) = TestEnv::for_engine("lxd") else {
        return;
    };
    let _turn = BUILDS.lock().await;
    let engine = remote().await;
    let token = unique("remote-built");
    let plan = plan(
        &env.busybox_image,
        vec![run(format!("echo {token} > /greeting; rm /bin/ls"))],
    );
    let tag = image_ref(env, "lxd-remote-pushed", "v1");
    let progress = Recorder::default();
    if let Err(e) = engine
        .build(&plan, &build_options(env, &tag), &progress)
        .await
    {
        panic!("remote build: {e}\n{}", progress.lines().join("\n"));
    }
    engine
        .push(&tag, &transfer_options(env), &NoProgress)
        .await
        .unwrap_or_else(|e| panic!("push {tag}: {e}"));
    let config = tempfile::tempdir().expect("docker config");
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode(env.creds_arg());
    std::fs::write(
        config.path().join("config.json"),
        serde_json::json!({"auths": {env.registry.as_str(): {"auth": auth}}}).to_string(),
    )
    .expect("docker config.json");
    let docker = |args: &[&str]| {
        let out = std::process::Command::new("docker")
            .arg("--config")
            .arg(config.path())
            .args(args)
            .output()
            .expect("docker runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };
    let _ = docker(&["rmi", "-f", &tag]);
    let (ok, out) = docker(&["pull", &tag]);
    assert!(ok, "docker pull of the remote-built image: {out}");
    let (ok, out) = docker(&[
        "run",
        "--rm",
        &tag,
        "sh",
        "-c",
        "cat /greeting; test ! -e /bin/ls && echo deleted",
    ]);
    let _ = docker(&["rmi", "-f", &tag]);
    assert!(ok, "docker run of the remote-built image: {out}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [token.as_str(), "deleted"],
        "{out}"
    );
}

/// How long a leftover may take to go before the test calls it left behind: a hang guard, not a speed limit.
const GIVE_UP: Duration = Duration::from_secs(120);

/// berth's containers on the remote made by this process, and its build folders.
async fn ours(engine: &LxdEngine) -> Vec<String> {
    let prefix = format!("{NAME_PREFIX}{}-", std::process::id());
    let found = engine.leftovers().await.expect("leftovers");
    found
        .instances
        .into_iter()
        .chain(
            found
                .folders
                .iter()
                .filter_map(|f| f.file_name().map(|n| n.to_string_lossy().into_owned())),
        )
        .filter(|name| name.starts_with(&prefix))
        .collect()
}

/// The remote's custom storage volumes that are not berth's caches, or that something still uses.
fn volumes_in_use_or_foreign() -> Vec<String> {
    let out = std::process::Command::new("lxc")
        .env("LXD_CONF", trusted())
        .args([
            "query",
            &format!(
                "{}:/1.0/storage-pools/default/volumes?recursion=1",
                remote_name()
            ),
        ])
        .output()
        .expect("lxc runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let volumes: serde_json::Value = serde_json::from_slice(&out.stdout).expect("volumes");
    volumes
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["type"] == "custom")
        .filter(|v| {
            !v["name"].as_str().unwrap_or("").starts_with("berth-cache-")
                || v["used_by"].as_array().is_some_and(|u| !u.is_empty())
        })
        .map(|v| format!("{} used by {}", v["name"], v["used_by"]))
        .collect()
}

/// Waits (up to [`GIVE_UP`]) until nothing of this process is left on the remote.
async fn nothing_left(engine: &LxdEngine, after: &str) {
    let deadline = tokio::time::Instant::now() + GIVE_UP;
    loop {
        let left = ours(engine).await;
        let volumes = volumes_in_use_or_foreign();
        if left.is_empty() && volumes.is_empty() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{after} left {left:?} and volumes {volumes:?} on the remote LXD"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A failed and a cancelled build on the remote, each with a cache volume, a secret and a context file mounted,
/// leave no container (and so no device), no volume in use and no build folder; the next build takes the cache's
/// lock the cancelled one held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_and_cancelled_remote_builds_leave_nothing() {
    let Some(env) = TestEnv::for_engine("lxd") else {
        return;
    };
    let _turn = BUILDS.lock().await;
    let engine = remote().await;
    let secret = tempfile::NamedTempFile::new().expect("secret file");
    std::fs::write(secret.path(), "remote-secret").expect("secret");
    let cache = unique("remote-cache");
    let with_mounts = |command: String| {
        let mut plan = plan(
            &env.busybox_image,
            vec![Step::Run(RunStep {
                command,
                mounts: vec![
                    Mount::Cache {
                        id: cache.clone(),
                        target: "/berth-cache".into(),
                    },
                    Mount::Secret {
                        id: "s".into(),
                        target: "/run/secrets/s".into(),
                    },
                ],
            })],
        );
        plan.secrets = vec![PlanSecret {
            id: "s".into(),
            source: secret.path().to_path_buf(),
        }];
        plan
    };
    let tag = image_ref(env, "lxd-remote-failed", "v1");
    let err = engine
        .build(
            &with_mounts("test -s /run/secrets/s; exit 3".into()),
            &build_options(env, &tag),
            &NoProgress,
        )
        .await
        .expect_err("a step exiting 3 fails the build");
    assert_eq!(err.kind(), ErrorKind::BuildFailed, "{err}");
    nothing_left(&engine, "a failed build").await;

    let tag = image_ref(env, "lxd-remote-cancelled", "v1");
    let options = build_options(env, &tag);
    let long = with_mounts(format!(
        "echo {} berth-step-\"started\"; sleep 900",
        unique("c")
    ));
    let progress = Recorder::default();
    let build = engine.build(&long, &options, &progress);
    let started = async {
        while !progress
            .lines()
            .iter()
            .any(|l| l.contains("berth-step-started"))
        {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    tokio::select! {
        result = build => panic!("the 900-second step ended first: {result:?}"),
        _ = tokio::time::timeout(GIVE_UP, started) => {}
    }
    // the build future is dropped here: the cancellation under test
    nothing_left(&engine, "a cancelled build").await;
    let next = with_mounts("test -d /berth-cache".into());
    let tag = image_ref(env, "lxd-remote-after", "v1");
    let progress = Recorder::default();
    let built = tokio::time::timeout(
        GIVE_UP,
        engine.build(&next, &build_options(env, &tag), &progress),
    )
    .await;
    match built {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => panic!(
            "the build after a cancelled one: {e}\n{}",
            progress.lines().join("\n")
        ),
        Err(_) => panic!(
            "the build after a cancelled one waited {GIVE_UP:?}: the cache lock was not freed"
        ),
    }
    let _ = engine
        .remove(&tag, berth_core::engine::RemoveOptions::default())
        .await;
    nothing_left(&engine, "a build after a cancelled one").await;
}

/// `berth doctor` with the remote chosen: the certificate check, problem and fix, in text and JSON.
#[test]
fn doctor_names_an_untrusted_certificate_and_its_fix() {
    let Some(_env) = TestEnv::for_engine("lxd") else {
        return;
    };
    let untrusted = untrusted();
    let doctor = |json: bool| {
        let mut command = std::process::Command::new(berth_bin());
        command
            .args(if json {
                vec!["doctor", "--json"]
            } else {
                vec!["doctor"]
            })
            .env("BERTH_ENGINE", "lxd")
            .env("BERTH_LXD_REMOTE", remote_name())
            .env("LXD_CONF", &untrusted);
        output_with_stdin(command, "")
    };
    let text = doctor(false);
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(
        stdout.contains("remote certificate not trusted"),
        "{stdout}"
    );
    assert!(stdout.contains("lxc config trust add"), "{stdout}");
    let json = doctor(true);
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap_or_else(|e| {
        panic!(
            "doctor --json: {e}\n{}",
            String::from_utf8_lossy(&json.stdout)
        )
    });
    let findings = &report["lxd_remote"]["findings"];
    assert_eq!(findings[0]["status"], "problem", "{report:#}");
    assert_eq!(
        report["lxd_remote"]["remote"],
        remote_name().as_str(),
        "{report:#}"
    );

    // and `berth config` shows where the remote setting came from
    let mut command = std::process::Command::new(berth_bin());
    command
        .args(["config"])
        .env("BERTH_ENGINE", "lxd")
        .env("BERTH_LXD_REMOTE", remote_name());
    let config = output_with_stdin(command, "");
    let stdout = String::from_utf8_lossy(&config.stdout);
    let row = stdout
        .lines()
        .find(|l| l.contains("lxd remote"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(
        row.contains(&remote_name()) && row.contains("from BERTH_LXD_REMOTE"),
        "{row}"
    );
}
