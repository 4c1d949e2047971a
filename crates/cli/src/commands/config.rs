//! `berth config`: the settings this run would use and where each came from.

use berth_core::Result;
use serde_json::json;

use crate::args::ConfigArgs;
use crate::config::{Config, Setting};
use crate::exit::ExitStatus;

/// Runs `berth config`.
pub fn run(args: &ConfigArgs) -> Result<ExitStatus> {
    let config = Config::load()?;
    let engine = berth_engines::choose_with(args.engine.as_deref(), &config)
        .map(|(kind, source)| (kind.name(), source.to_string()));
    let registry = config.registry();
    let default_image = config.default_image();
    let project = config.project.as_ref();
    let user_path = crate::config::UserConfig::path();
    let cache = super::cache_dir();
    let connection = connection(&config);
    // where the chosen engine would be reached with these settings (a Docker context's host, a default socket)
    let endpoint = engine.as_ref().ok().and_then(|(name, _)| {
        let kind = berth_engines::providers().find(|k| k.name() == *name)?;
        let settings = berth_engines::connect_settings(kind, &config, Default::default());
        kind.provider().endpoint(&settings)
    });
    if args.json {
        let setting = |s: &Setting| json!({"value": s.value, "source": s.source.to_string()});
        let value = json!({
            "project_file": project.map(|p| p.file.display().to_string()),
            "user_file": config.user.as_ref().map(|u| u.file.display().to_string()),
            "engine": match &engine {
                Ok((kind, source)) => json!({"value": kind, "source": source}),
                Err(e) => json!({"error": e.to_string()}),
            },
            "connection": connection_json(&connection),
            "endpoint": endpoint,
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
    for row_of in &connection {
        if let Some(value) = &row_of.setting {
            row(row_of.key.label, &value.value, &value.source.to_string());
        }
    }
    if let Some(endpoint) = &endpoint {
        row("endpoint", endpoint, "");
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

/// One engine setting of this run: an engine's own environment variable, else the project file, else the user's;
/// shown with where it came from (an address, a key, a namespace alike).
struct ConnectionRow {
    key: &'static berth_core::provider::SettingKey,
    setting: Option<Setting>,
}

/// Every engine's settings, in table order.
fn connection(config: &Config) -> Vec<ConnectionRow> {
    berth_engines::providers()
        .flat_map(|kind| {
            let info = kind.info();
            info.settings().map(move |key| ConnectionRow {
                key,
                setting: berth_engines::setting(kind, key, config),
            })
        })
        .collect()
}

/// `{"docker_host": ..., ..., "sources": {"docker_host": ...}}`: every setting's value (null when unset) and
/// where each came from (an address, an LXD remote, a containerd namespace: whichever someone set).
fn connection_json(rows: &[ConnectionRow]) -> serde_json::Value {
    let mut values = serde_json::Map::new();
    let mut sources = serde_json::Map::new();
    for row in rows {
        values.insert(
            row.key.json.into(),
            json!(row.setting.as_ref().map(|s| &s.value)),
        );
        sources.insert(
            row.key.json.into(),
            json!(row.setting.as_ref().map(|s| s.source.to_string())),
        );
    }
    values.insert("sources".into(), serde_json::Value::Object(sources));
    serde_json::Value::Object(values)
}
