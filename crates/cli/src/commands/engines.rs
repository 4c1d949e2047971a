//! `berth engines`: which engines berth can reach here.

use berth_core::Result;

use crate::args::EnginesArgs;
use crate::engine_choice::EngineKind;
use crate::exit::ExitStatus;

/// Runs `berth engines`.
pub async fn run(args: &EnginesArgs) -> Result<ExitStatus> {
    let settings = crate::config::Config::load()?.connection();
    let mut rows = Vec::new();
    for kind in [
        EngineKind::Docker,
        EngineKind::Podman,
        EngineKind::Containerd,
        EngineKind::Lxd,
    ] {
        rows.push((kind, crate::engines::info(kind, &settings).await));
    }
    if args.json {
        let items: Vec<_> = rows
            .iter()
            .map(|(kind, answer)| match answer {
                Ok(info) => serde_json::json!({
                    "engine": kind.name(), "reachable": true, "version": info.version, "endpoint": info.endpoint,
                    "rootless": info.capabilities.rootless, "cache_mounts": info.capabilities.cache_mounts,
                    "secret_mounts": info.capabilities.secret_mounts,
                    "run_isolation": {
                        "seccomp": info.capabilities.run_isolation.seccomp,
                        "reduced_capabilities": info.capabilities.run_isolation.reduced_capabilities,
                        "user_namespace": info.capabilities.run_isolation.user_namespace,
                        "host_network_by_default": info.capabilities.run_isolation.host_network_by_default,
                    },
                }),
                Err(e) => serde_json::json!({"engine": kind.name(), "reachable": false, "error": e.to_string()}),
            })
            .collect();
        println!("{}", serde_json::Value::Array(items));
    } else {
        for (kind, answer) in &rows {
            match answer {
                Ok(info) => println!(
                    "{:<11} {:<12} {:<16} {:<9} {}",
                    kind.name(),
                    "reachable",
                    info.version,
                    if info.capabilities.rootless {
                        "rootless"
                    } else {
                        "rootful"
                    },
                    info.endpoint,
                ),
                Err(e) => {
                    let state = if e.kind() == berth_core::ErrorKind::Unsupported {
                        "unsupported"
                    } else {
                        "unavailable"
                    };
                    println!(
                        "{:<11} {state:<12} {}",
                        kind.name(),
                        e.to_string().replace('\n', "\n            ")
                    );
                }
            }
        }
    }
    let any = rows.iter().any(|(_, a)| a.is_ok());
    Ok(if any {
        ExitStatus::Success
    } else {
        ExitStatus::EngineUnavailable
    })
}
