//! berth on a remote LXD server, reached as lxc reaches it: the second lxd that `scripts/env/remote-lxd.sh`
//! runs in the network namespace `berth-remote` (https://10.203.0.2:8443), through the lxc configuration
//! `lxc remote add` wrote for root there (client certificate trusted by the server, server certificate pinned).
//! A client certificate the server does not trust, and a server certificate other than the accepted one, each
//! fail with their own error and fix, and `berth doctor` says which.

use std::path::{Path, PathBuf};

use berth_backend_lxd::doctor::RemoteTrust;
use berth_backend_lxd::{LxdEngine, LxdOptions};
use berth_core::engine::{ContainerEngine, NoProgress};
use berth_core::ErrorKind;
use berth_tests::conformance::support::{build_options, image_ref, plan, run};
use berth_tests::env::TestEnv;
use berth_tests::{berth_bin, output_with_stdin};

/// The remote's name in the test's lxc configuration.
fn remote_name() -> String {
    std::env::var("BERTH_TEST_REMOTE_LXD").unwrap_or_else(|_| "berth-remote".into())
}

/// An lxc configuration folder made by `scripts/env/remote-lxd.sh`: `client` (trusted) or `untrusted`.
fn conf(which: &str, var: &str) -> PathBuf {
    let dir = std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| {
        let state =
            std::env::var("BERTH_TEST_ENV_STATE").unwrap_or_else(|_| "/var/lib/berth-env".into());
        Path::new(&state).join("remote-lxd").join(which)
    });
    assert!(
        dir.join("config.yml").is_file(),
        "no lxc configuration for the remote LXD in {}: run scripts/env/up.sh (as root)",
        dir.display()
    );
    dir
}

fn trusted() -> PathBuf {
    conf("client", "BERTH_TEST_REMOTE_LXD_CONF")
}

fn untrusted() -> PathBuf {
    conf("untrusted", "BERTH_TEST_REMOTE_LXD_UNTRUSTED_CONF")
}

fn options(conf: &Path) -> LxdOptions {
    LxdOptions {
        remote: Some(remote_name()),
        lxd_conf: Some(conf.to_path_buf()),
        ..LxdOptions::default()
    }
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

#[tokio::test]
async fn a_build_on_the_remote_is_refused_as_not_supported_yet() {
    let Some(env) = TestEnv::for_engine("lxd") else {
        return;
    };
    let engine = LxdEngine::connect(options(&trusted()))
        .await
        .expect("connect");
    let tag = image_ref(env, "lxd-remote", "v1");
    let err = engine
        .build(
            &plan(&env.busybox_image, vec![run("true")]),
            &build_options(env, &tag),
            &NoProgress,
        )
        .await
        .expect_err("remote builds are not supported yet");
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err:?}");
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
