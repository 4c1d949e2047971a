//! `berth doctor`: checks the engines, each engine's own prerequisites (its provider's checks: rootless Podman
//! for the current user, Docker's `daemon.json`) and, with `--registry`, the credentials for a registry; prints
//! what it found with a fix for every problem, or one JSON object. It names no engine: it iterates the table.

use berth_core::doctor::accounts::{Accounts, Identity};
use berth_core::doctor::{
    self as checks, machine, socket, DoctorContext, Finding, ProviderChecks, RegistryCheck, Section,
};
use berth_core::provider::{ConnectSettings, Shared};
use berth_core::{Error, Result};
use berth_engines::EngineKind;
use serde_json::{json, Value};

use crate::args::DoctorArgs;
use crate::config::Config;
use crate::doctor::{engines, leftovers, registry, report};
use crate::exit::ExitStatus;

/// Runs `berth doctor`.
pub async fn run(args: &DoctorArgs) -> Result<ExitStatus> {
    let accounts = machine::accounts();
    let me = machine::identity(&accounts);

    let config = Config::load()?;
    // --registry, else the registry this project's builds push to (BERTH_REGISTRY, berth.yaml, the user file).
    let configured = config
        .registry()
        .and_then(|s| s.value.split('/').next().map(str::to_string));
    let checked_registry = args
        .registry
        .as_ref()
        .or(configured.as_ref())
        .map(|arg| registry_check(&crate::commands::login::registry_host(arg), args));
    let facts = Facts {
        config: &config,
        me: &me,
        accounts: &accounts,
        registry: checked_registry.as_ref(),
    };

    let probes = engines::probe_all(&config).await;
    let choice = berth_engines::choose_with(args.engine.as_deref(), &config);
    let engine_findings = engines::findings(&probes, &choice, |probe, error| {
        let settings = facts.settings(probe.kind);
        probe.kind.provider().explain_unreachable(
            probe.endpoint.as_deref(),
            error,
            &facts.context(&settings),
        )
    });
    let mut json = json!({
        "user": {"name": me.name, "uid": me.uid},
        "engines": engines::to_json(&probes, &engine_findings, &choice),
        "engine_choice": choice.as_ref().ok().map(|(kind, source)| json!({"engine": kind.name(), "source": source.to_string()})),
    });
    let mut sections = vec![Section {
        title: "engines".into(),
        findings: engine_findings,
    }];

    // What killed berth processes left, in each engine that answers.
    let mut left = Vec::new();
    let mut left_json = serde_json::Map::new();
    for probe in probes.iter().filter(|p| p.answer.is_ok()) {
        let settings = facts.settings(probe.kind);
        let answer = match probe.kind.provider().connect(&settings).await {
            Ok(engine) => engine.leftovers().await,
            Err(e) => Err(e),
        };
        let findings = leftovers::findings(probe.kind.name(), answer);
        left_json.insert(
            probe.kind.name().to_string(),
            checks::findings_json(&findings),
        );
        left.extend(findings);
    }
    json["leftovers"] = Value::Object(left_json);
    sections.push(Section {
        title: "leftovers".into(),
        findings: left,
    });

    // Each engine's own checks: sections of its own, and findings about the registry.
    let mut found = Vec::new();
    for kind in berth_engines::providers() {
        let settings = facts.settings(kind);
        found.push(kind.provider().doctor(&facts.context(&settings)).await);
    }
    let engine_registry_findings = add_provider_checks(found, &mut sections, &mut json);

    json["registry"] = Value::Null;
    if let Some(RegistryCheck { host, .. }) = &checked_registry {
        let (mut findings, registry_json) = match registry::inspect(host, &args.access).await {
            Ok(facts) => (registry::findings(&facts), registry::to_json(&facts)),
            Err(e) => (vec![setup_problem(&e)], json!({"host": host})),
        };
        findings.extend(engine_registry_findings);
        json["registry"] = registry_json;
        json["registry"]["checks"] = checks::findings_json(&findings);
        sections.push(Section {
            title: format!("registry {host}"),
            findings,
        });
    } else {
        sections.push(Section {
            title: "registry".to_string(),
            findings: vec![Finding::skipped_with_fix(
                "registry",
                "no registry to check: none given and none configured (BERTH_REGISTRY, berth.yaml, the user file)",
                "run `berth doctor --registry HOST` to check your credentials for HOST",
            )],
        });
    }

    json["problems"] = report::problems_json(&sections);
    let healthy = report::problems(&sections).next().is_none();
    if args.json {
        println!("{json}");
    } else {
        print!("{}", report::render_human(&sections));
    }
    Ok(if healthy {
        ExitStatus::Success
    } else {
        ExitStatus::Failure
    })
}

/// Adds the providers' own sections to the report, in order, and their JSON under their keys; returns their
/// findings about the registry.
fn add_provider_checks(
    found: Vec<ProviderChecks>,
    sections: &mut Vec<Section>,
    json: &mut Value,
) -> Vec<Finding> {
    let mut registry = Vec::new();
    for checks in found {
        for own in checks.sections {
            json[own.key] = own.json;
            sections.push(own.section);
        }
        registry.extend(checks.registry);
    }
    registry
}

/// What every provider's checks are given, whichever engine they are for.
struct Facts<'a> {
    config: &'a Config,
    me: &'a Identity,
    accounts: &'a Accounts,
    registry: Option<&'a RegistryCheck>,
}

impl Facts<'_> {
    /// `kind`'s settings, as a connection would use them.
    fn settings(&self, kind: EngineKind) -> ConnectSettings {
        berth_engines::connect_settings(kind, self.config, Shared::default())
    }

    fn context<'s>(&'s self, settings: &'s ConnectSettings) -> DoctorContext<'s> {
        DoctorContext {
            settings,
            user: self.me,
            accounts: self.accounts,
            registry: self.registry,
        }
    }
}

/// The registry `host` as the engines' checks see it: whether berth was told to use plain HTTP with it, and
/// whether it is on this machine.
fn registry_check(host: &str, args: &DoctorArgs) -> RegistryCheck {
    RegistryCheck {
        host: host.to_string(),
        plain_http: args
            .access
            .insecure_registries
            .iter()
            .any(|h| h.eq_ignore_ascii_case(host)),
        loopback: berth_registry::is_loopback(host),
    }
}

fn setup_problem(error: &Error) -> Finding {
    Finding::problem(
        "registry access",
        socket::describe(error),
        error
            .hint()
            .unwrap_or("check --ca-file and --insecure-registry"),
    )
}

#[cfg(test)]
mod tests {
    use berth_core::doctor::{ProviderSection, Status};

    use super::*;

    /// A backend the CLI has never heard of (LXD's checks, as its provider will make them).
    fn lxd() -> ProviderChecks {
        let findings = vec![
            Finding::problem("lxd init", "LXD is not initialised", "sudo lxd init --auto"),
            Finding::problem(
                "storage pool",
                "no storage pool",
                "lxc storage create default dir",
            ),
            Finding::problem(
                "lxd group",
                "alice is not in group lxd",
                "sudo usermod -aG lxd alice",
            ),
        ];
        ProviderChecks {
            sections: vec![ProviderSection {
                key: "lxd",
                json: json!({"checks": checks::findings_json(&findings)}),
                section: Section {
                    title: "lxd".into(),
                    findings,
                },
            }],
            registry: vec![Finding::ok("plain HTTP on lxd", "fine")],
        }
    }

    #[test]
    fn a_providers_own_sections_and_registry_findings_reach_the_report() {
        let mut sections = vec![Section {
            title: "engines".into(),
            findings: Vec::new(),
        }];
        let mut json = json!({"engines": []});
        let registry = add_provider_checks(
            vec![ProviderChecks::default(), lxd()],
            &mut sections,
            &mut json,
        );
        let titles: Vec<&str> = sections.iter().map(|s| s.title.as_str()).collect();
        assert_eq!(titles, ["engines", "lxd"]);
        assert_eq!(json["lxd"]["checks"][2]["check"], "lxd group");
        assert_eq!(json["lxd"]["checks"][0]["status"], "problem");
        assert_eq!(registry.len(), 1);
        assert_eq!(registry[0].status, Status::Ok);
        assert_eq!(report::problems(&sections).count(), 3);
        let text = report::render_human(&sections);
        assert!(
            text.contains("  problem  lxd init: LXD is not initialised\n           fix: sudo lxd init --auto\n"),
            "{text}"
        );
    }
}
