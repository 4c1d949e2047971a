//! `berth config`: the settings this run would use and where each came from.

use berth_core::Result;
use serde_json::json;

use crate::args::ConfigArgs;
use crate::config::{Config, Setting};
use crate::engine_choice::{self, EngineKind};
use crate::exit::ExitStatus;

/// Runs `berth config`.
pub fn run(args: &ConfigArgs) -> Result<ExitStatus> {
    let config = Config::load()?;
    let engine = engine_choice::choose_with(args.engine.as_deref(), &config)
        .map(|(kind, source)| (kind.name(), source.to_string()));
    let registry = config.registry();
    let default_image = config.default_image();
    let project = config.project.as_ref();
    let user_path = crate::config::UserConfig::path();
    let cache = super::cache_dir();
    let connection = config.connection();
    // Which variable or file names each engine's address (detection never passes over one that is named).
    let named = |kind| config.endpoint(kind).map(|s| s.source.to_string());
    let (docker_from, podman_from, containerd_from) = (
        named(EngineKind::Docker),
        named(EngineKind::Podman),
        named(EngineKind::Containerd),
    );
    if args.json {
        let setting = |s: &Setting| json!({"value": s.value, "source": s.source.to_string()});
        let value = json!({
            "project_file": project.map(|p| p.file.display().to_string()),
            "user_file": config.user.as_ref().map(|u| u.file.display().to_string()),
            "engine": match &engine {
                Ok((kind, source)) => json!({"value": kind, "source": source}),
                Err(e) => json!({"error": e.to_string()}),
            },
            "connection": {
                "docker_host": connection.docker_host,
                "podman_socket": connection.podman_socket,
                "containerd_address": connection.containerd_address,
                "containerd_namespace": connection.containerd_namespace,
                "containerd_snapshotter": connection.containerd_snapshotter,
                "sources": {
                    "docker_host": docker_from,
                    "podman_socket": podman_from,
                    "containerd_address": containerd_from,
                },
            },
            "registry": registry.as_ref().map(setting),
            "default_image": setting(&default_image),
            "cache_dir": cache.as_ref().map(|c| c.display().to_string()),
            "images": project.map(|p| p.images.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>()).unwrap_or_default(),
            "tasks": project.map(|p| p.tasks.iter().map(|(t, i)| (t.clone(), json!(i))).collect::<serde_json::Map<_, _>>()).unwrap_or_default(),
        });
        println!("{value}");
        return Ok(ExitStatus::Success);
    }
    let row = |key: &str, value: &str, source: &str| {
        if source.is_empty() {
            println!("{key:<15} {value}");
        } else {
            println!("{key:<15} {value:<45} ({source})");
        }
    };
    match project {
        Some(p) => row("project file", &p.file.display().to_string(), ""),
        None => row("project file", "none (no berth.yaml here or above)", ""),
    }
    match (&config.user, &user_path) {
        (Some(u), _) => row("user file", &u.file.display().to_string(), ""),
        (None, Some(path)) => row(
            "user file",
            &format!("none ({} does not exist)", path.display()),
            "",
        ),
        (None, None) => row("user file", "none (no HOME)", ""),
    }
    match &engine {
        Ok((kind, source)) => row("engine", kind, source),
        Err(e) => row("engine", &format!("none: {e}"), ""),
    }
    let connections = [
        ("docker host", &connection.docker_host, &docker_from),
        ("podman socket", &connection.podman_socket, &podman_from),
        (
            "containerd",
            &connection.containerd_address,
            &containerd_from,
        ),
        ("ctr namespace", &connection.containerd_namespace, &None),
        ("snapshotter", &connection.containerd_snapshotter, &None),
    ];
    for (key, value, source) in connections {
        if let Some(value) = value {
            row(key, value, source.as_deref().unwrap_or_default());
        }
    }
    match &registry {
        Some(s) => row("registry", &s.value, &s.source.to_string()),
        None => row(
            "registry",
            "none (specs without `registry:` are built locally only)",
            "",
        ),
    }
    row(
        "default image",
        &default_image.value,
        &default_image.source.to_string(),
    );
    if let Some(cache) = &cache {
        row("cache dir", &cache.display().to_string(), "");
    }
    if let Some(p) = project {
        let names: Vec<&str> = p.images.iter().map(|(n, _)| n.as_str()).collect();
        row("images", &names.join(", "), "");
        for (task, image) in &p.tasks {
            row(
                &format!("task {task}"),
                image.as_deref().unwrap_or("(default image)"),
                "",
            );
        }
    }
    Ok(ExitStatus::Success)
}
