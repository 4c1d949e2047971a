//! The engines section: each engine reachable or not (and why not, in specific terms), and whether the engine
//! berth would choose for a build is one that works. An unreachable engine is a problem when berth would use it
//! or when no engine works; otherwise it is a warning, since builds go to the one that works.

use berth_core::engine::EngineInfo;
use berth_core::{Error, ErrorKind, Result};
use serde_json::{json, Value};

use super::report::Finding;
use super::socket_access::{describe, start_fix};
use berth_engines::{ChoiceSource, EngineKind};

/// One engine, as berth found it.
#[derive(Debug)]
pub struct EngineProbe {
    /// Which engine.
    pub kind: EngineKind,
    /// Where berth looks for it.
    pub endpoint: Option<String>,
    /// The setting that names that place (`DOCKER_HOST`, a file's `engine.docker.host`), if one does.
    pub named: Option<String>,
    /// What it said about itself, or why it could not be asked.
    pub answer: Result<EngineInfo>,
}

/// Asks every engine about itself, as `berth engines` does.
pub async fn probe_all(config: &crate::config::Config) -> Vec<EngineProbe> {
    let mut probes = Vec::new();
    for kind in berth_engines::providers() {
        probes.push(EngineProbe {
            kind,
            endpoint: berth_engines::endpoint(kind, config),
            named: berth_engines::named(kind, config)
                .map(|s| berth_engines::setting_name(kind, &s)),
            answer: berth_engines::info(kind, config).await,
        });
    }
    probes
}

/// One finding per probe, in order, then one for the engine choice when it needs saying. `why` explains an
/// unreachable engine: a message and the fix.
pub fn findings(
    probes: &[EngineProbe],
    choice: &Result<(EngineKind, ChoiceSource)>,
    why: impl Fn(&EngineProbe, &Error) -> (String, String),
) -> Vec<Finding> {
    let working: Vec<EngineKind> = probes
        .iter()
        .filter(|p| p.answer.is_ok())
        .map(|p| p.kind)
        .collect();
    let chosen = choice.as_ref().ok();
    let mut findings: Vec<Finding> = probes
        .iter()
        .map(|probe| {
            let check = format!("engine {}", probe.kind);
            let is_chosen = chosen.is_some_and(|(kind, _)| *kind == probe.kind);
            let named = |message: String| match &probe.named {
                Some(setting) => format!("{message}; {setting} points there"),
                None => message,
            };
            let error = match &probe.answer {
                Ok(info) => return Finding::ok(check, named(reachable(info))),
                Err(e) => e,
            };
            if error.kind() == ErrorKind::Unsupported && !is_chosen {
                return Finding::skipped(check, "not supported in this build yet");
            }
            let (mut message, mut fix) = if error.kind() == ErrorKind::Unsupported {
                ("berth has no backend for it in this build yet".to_string(), start_fix(error))
            } else {
                why(probe, error)
            };
            message = named(message);
            if let Some((_, source)) = chosen.filter(|_| is_chosen) {
                message.push_str(&format!("; berth would build with it ({source})"));
                if let Some(other) = working.first() {
                    fix.push_str(&format!(
                        "; or build with {other}, which works here: --engine {other} (or export BERTH_ENGINE={other})"
                    ));
                }
                Finding::problem(check, message, fix)
            } else if working.is_empty() {
                Finding::problem(check, message, fix)
            } else {
                Finding::warning(check, message, Some(fix))
            }
        })
        .collect();
    match choice {
        Ok((kind, source)) if working.contains(kind) => {
            findings.push(Finding::ok(
                "engine choice",
                format!("berth builds with {kind} ({source})"),
            ));
        }
        Ok(_) => {}
        // Nothing detected: the engines' own problems say why.
        Err(e) if e.kind() == ErrorKind::EngineUnavailable && working.is_empty() => {}
        Err(e) => findings.push(Finding::problem(
            "engine choice",
            describe(e),
            e.hint()
                .unwrap_or("pass --engine docker or --engine podman"),
        )),
    }
    findings
}

fn reachable(info: &EngineInfo) -> String {
    let mode = if info.capabilities.rootless {
        "rootless"
    } else {
        "rootful"
    };
    format!(
        "reachable, version {}, {mode}, at {}",
        info.version, info.endpoint
    )
}

/// `[{"engine", "reachable", "version", "rootless", "endpoint", "chosen", "status", "message", "fix"}]`, from the
/// probes and their findings (in the same order).
pub fn to_json(
    probes: &[EngineProbe],
    findings: &[Finding],
    choice: &Result<(EngineKind, ChoiceSource)>,
) -> Value {
    let chosen = choice.as_ref().ok().map(|(kind, _)| *kind);
    let items = probes.iter().zip(findings).map(|(probe, finding)| {
        let info = probe.answer.as_ref().ok();
        json!({
            "engine": probe.kind.name(),
            "reachable": info.is_some(),
            "version": info.map(|i| i.version.clone()),
            "rootless": info.map(|i| i.capabilities.rootless),
            "endpoint": info.map(|i| i.endpoint.clone()).or_else(|| probe.endpoint.clone()),
            "chosen": chosen == Some(probe.kind),
            "status": finding.status.as_str(),
            "message": finding.message,
            "fix": finding.fix,
        })
    });
    Value::Array(items.collect())
}

#[cfg(test)]
mod tests {
    use berth_core::engine::Capabilities;

    use super::super::report::Status;
    use super::*;

    fn kind(name: &str) -> EngineKind {
        name.parse().expect("compiled in")
    }

    fn works(kind: EngineKind, rootless: bool) -> EngineProbe {
        EngineProbe {
            kind,
            endpoint: None,
            named: None,
            answer: Ok(EngineInfo {
                engine: kind.name().into(),
                version: "4.3.1".into(),
                endpoint: format!("unix:///run/{kind}.sock"),
                capabilities: Capabilities {
                    rootless,
                    ..Capabilities::default()
                },
            }),
        }
    }

    fn fails(kind: EngineKind) -> EngineProbe {
        let error = match kind.name() {
            // an engine this build has no backend for (how containerd was before its backend landed)
            "containerd" => Error::unsupported(kind.name(), "connect", "no backend in this build")
                .with_hint("use --engine docker or --engine podman for now"),
            _ => Error::new(ErrorKind::EngineUnavailable, "cannot reach it").with_hint("start it"),
        };
        EngineProbe {
            kind,
            endpoint: None,
            named: (kind.name() == "docker").then(|| "DOCKER_HOST".to_string()),
            answer: Err(error),
        }
    }

    fn why(probe: &EngineProbe, _: &Error) -> (String, String) {
        (format!("{} is down", probe.kind), "start it".into())
    }

    fn detected(kind: EngineKind) -> Result<(EngineKind, ChoiceSource)> {
        Ok((kind, ChoiceSource::Detected(format!("/run/{kind}.sock"))))
    }

    fn statuses(findings: &[Finding]) -> Vec<(&str, Status)> {
        findings
            .iter()
            .map(|f| (f.check.as_str(), f.status))
            .collect()
    }

    #[test]
    fn containerd_is_not_a_problem_when_another_engine_works() {
        let probes = [
            works(kind("docker"), false),
            works(kind("podman"), false),
            fails(kind("containerd")),
        ];
        let findings = findings(&probes, &detected(kind("docker")), why);
        assert_eq!(
            statuses(&findings),
            [
                ("engine docker", Status::Ok),
                ("engine podman", Status::Ok),
                ("engine containerd", Status::Skipped),
                ("engine choice", Status::Ok)
            ]
        );
        assert_eq!(findings[2].message, "not supported in this build yet");
        assert_eq!(
            findings[3].message,
            "berth builds with docker (detected at /run/docker.sock)"
        );
    }

    #[test]
    fn the_chosen_engine_failing_is_a_problem_that_names_the_working_one() {
        let probes = [
            fails(kind("docker")),
            works(kind("podman"), true),
            fails(kind("containerd")),
        ];
        let found = findings(&probes, &detected(kind("docker")), why);
        assert_eq!(found[0].status, Status::Problem);
        assert!(
            found[0]
                .message
                .starts_with("docker is down; DOCKER_HOST points there"),
            "{:?}",
            found[0]
        );
        assert!(
            found[0]
                .message
                .ends_with("berth would build with it (detected at /run/docker.sock)"),
            "{:?}",
            found[0]
        );
        assert_eq!(
            found[0].fix.as_deref(),
            Some("start it; or build with podman, which works here: --engine podman (or export BERTH_ENGINE=podman)")
        );
        // Chosen explicitly, the working engine makes the other one a mere warning.
        let found = findings(
            &probes,
            &Ok((kind("podman"), ChoiceSource::Environment)),
            why,
        );
        assert_eq!(statuses(&found)[0], ("engine docker", Status::Warning));
        assert_eq!(
            found[3].message,
            "berth builds with podman (from BERTH_ENGINE)"
        );
    }

    #[test]
    fn with_no_engine_every_unreachable_one_is_a_problem() {
        let probes = [
            fails(kind("docker")),
            fails(kind("podman")),
            fails(kind("containerd")),
        ];
        let nothing = Err(Error::new(
            ErrorKind::EngineUnavailable,
            "no container engine found",
        ));
        let found = findings(&probes, &nothing, why);
        assert_eq!(
            statuses(&found),
            [
                ("engine docker", Status::Problem),
                ("engine podman", Status::Problem),
                ("engine containerd", Status::Skipped)
            ]
        );
        // Asking for containerd is a problem: this build cannot use it.
        let found = findings(&probes, &Ok((kind("containerd"), ChoiceSource::Flag)), why);
        assert_eq!(found[2].status, Status::Problem);
        assert!(
            found[2]
                .fix
                .as_deref()
                .unwrap_or_default()
                .contains("--engine docker"),
            "{:?}",
            found[2]
        );
    }
}
