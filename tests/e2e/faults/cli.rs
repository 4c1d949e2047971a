//! The operations run through the `berth` binary: `berth exists` and `berth push --engine docker|podman` (with
//! each `--push-via`),
//! judged by what they print and by what the real registry holds afterwards.

use berth_core::engine::ContainerEngine;
use berth_core::reference::ImageRef;
use berth_tests::conformance::support::unique;
use berth_tests::faults::Outcome;

use crate::image::corruption;
use crate::ops::{judge_push_at, Fixtures, Result};

/// `berth exists spec.yaml` of an image put in the registry directly: present with its digest, or unknown with
/// a classified error.
pub async fn cli_exists(fx: &Fixtures, host: &str) -> Result {
    let dir = tempfile::tempdir().expect("temp dir");
    // the image named by the spec, put into the registry directly
    let (_, real) = spec(fx, dir.path(), &format!("{host}/faults/{}", unique("cli"))).await;
    fx.base
        .push(&fx.real, &real)
        .await
        .expect("put the spec's image in the registry");
    let out = berth(fx, dir.path(), &["exists", "spec.yaml"], None).await;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    let fields: Vec<&str> = stdout.trim().split('\t').collect();
    match fields.as_slice() {
        [_, "present", digest] if *digest == fx.base.manifest_digest() && out.status.success() => {
            (Outcome::Survived, String::new())
        }
        [_, "unknown", kind] if !stderr.is_empty() => {
            (Outcome::FailedClearly((*kind).to_string()), stderr)
        }
        _ => {
            let what = format!("berth exists said {stdout:?} ({}): {stderr}", out.status);
            (Outcome::Corrupt(what.clone()), what)
        }
    }
}

/// `berth push OPTIONS spec.yaml` of the base image, tagged in the engine as the spec names it (`options` pick
/// the engine and who pushes: berth's own push from the engine's storage by default), with the CLI's whole-push
/// retry around it. `socket` is the engine's API socket when not the default one (`CONTAINER_HOST`).
pub async fn cli_push(
    fx: &Fixtures,
    engine: &dyn ContainerEngine,
    options: &[&str],
    socket: Option<&str>,
    host: &str,
) -> Result {
    let dir = tempfile::tempdir().expect("temp dir");
    let registry = format!("{host}/faults/{}", unique("clipush"));
    let (name, real) = spec(fx, dir.path(), &registry).await;
    fx.tag(engine, &fx.base_ref(), &name).await;
    let args: Vec<&str> = std::iter::once("push")
        .chain(options.iter().copied())
        .chain(["spec.yaml"])
        .collect();
    let out = berth(fx, dir.path(), &args, socket).await;
    fx.untag(engine, &name).await;
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    let pushed = match (out.status.success(), stdout.split_once('@')) {
        (true, Some((_, digest))) => Ok(digest.to_string()),
        (false, _) if !stderr.is_empty() => {
            let last = stderr
                .lines()
                .rev()
                .find(|l| l.starts_with("error:"))
                .unwrap_or(&stderr);
            return judge_cli_failure(fx, real, last).await;
        }
        _ => {
            let what = format!("berth push said {stdout:?} ({}): {stderr}", out.status);
            return (Outcome::Corrupt(what.clone()), what);
        }
    };
    judge_push_at(fx, real, pushed).await
}

/// A failed CLI push: the registry must hold no tag or a complete image, and the error is classified by its exit.
async fn judge_cli_failure(fx: &Fixtures, real: ImageRef, error: &str) -> Result {
    if let Some(what) = corruption(&fx.real, &real, None).await {
        return (Outcome::Corrupt(what.clone()), what);
    }
    let kind = error
        .rsplit_once('(')
        .map(|(_, k)| k.trim_end_matches(')').to_string())
        .unwrap_or_else(|| "error".into());
    (Outcome::FailedClearly(kind), error.to_string())
}

/// Writes `dir/spec.yaml` naming `registry`, and returns the image name berth gives it (through the proxy) and
/// the same image in the real registry.
async fn spec(fx: &Fixtures, dir: &std::path::Path, registry: &str) -> (String, ImageRef) {
    std::fs::write(
        dir.join("spec.yaml"),
        format!("name: app\nregistry: {registry}\n"),
    )
    .expect("write spec");
    let name = berth(fx, dir, &["name", "spec.yaml"], None).await;
    let name = String::from_utf8_lossy(&name.stdout).trim().to_string();
    let image = ImageRef::parse(&name).unwrap_or_else(|e| panic!("berth name said {name:?}: {e}"));
    let real = ImageRef {
        registry: fx.env.registry.clone(),
        ..image
    };
    (name, real)
}

/// Runs berth with the test registry's password in the environment (and `CONTAINER_HOST` = `socket` when
/// given); killed if the scenario is abandoned.
async fn berth(
    fx: &Fixtures,
    dir: &std::path::Path,
    args: &[&str],
    socket: Option<&str>,
) -> std::process::Output {
    let mut command = tokio::process::Command::new(&fx.berth);
    if let Some(socket) = socket {
        command.env("CONTAINER_HOST", socket);
    }
    command
        .args(args)
        .current_dir(dir)
        .env("BERTH_REGISTRY_USERNAME", &fx.env.registry_user)
        .env(
            "BERTH_REGISTRY_PASSWORD",
            fx.env.registry_password().expose(),
        )
        .env("HOME", dir)
        .env("DOCKER_CONFIG", dir)
        .kill_on_drop(true)
        .output()
        .await
        .expect("run berth")
}
