//! `berth doctor`: checks the engines, rootless Podman for the current user and, with `--registry`, the
//! credentials for a registry; prints what it found with a fix for every problem, or one JSON object.

use berth_core::{Error, Result};
use serde_json::{json, Value};

use crate::args::DoctorArgs;
use crate::doctor::accounts::{Accounts, Identity};
use crate::doctor::engines::{self, EngineProbe};
use crate::doctor::report::{self, Finding, Section};
use crate::doctor::{machine, registry, rootless, socket_access};
use crate::exit::ExitStatus;

/// Runs `berth doctor`.
pub async fn run(args: &DoctorArgs) -> Result<ExitStatus> {
    let accounts = machine::accounts();
    let me = machine::identity(&accounts);

    let config = crate::config::Config::load()?;
    let probes = engines::probe_all(&config).await;
    let choice = berth_engines::choose_with(args.engine.as_deref(), &config);
    let engine_findings = engines::findings(&probes, &choice, |probe, error| {
        explain(probe, error, &me, &accounts)
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

    let (section, rootless_json) = rootless_section(&me, &accounts).await;
    sections.push(section);
    json["rootless"] = rootless_json;

    json["registry"] = Value::Null;
    // --registry, else the registry this project's builds push to (BERTH_REGISTRY, berth.yaml, the user file).
    let configured = config
        .registry()
        .and_then(|s| s.value.split('/').next().map(str::to_string));
    if let Some(arg) = args.registry.as_ref().or(configured.as_ref()) {
        let host = crate::commands::login::registry_host(arg);
        let (mut findings, registry_json) = match registry::inspect(&host, &args.access).await {
            Ok(facts) => (registry::findings(&facts), registry::to_json(&facts)),
            Err(e) => (vec![setup_problem(&e)], json!({"host": host})),
        };
        let daemon_json = std::fs::read_to_string(registry::DOCKER_DAEMON_JSON).ok();
        findings.extend(registry::docker_plain_http(
            &host,
            &args.access,
            daemon_json.as_deref(),
        ));
        json["registry"] = registry_json;
        json["registry"]["checks"] = report::findings_json(&findings);
        sections.push(Section {
            title: format!("registry {host}"),
            findings,
        });
    } else {
        sections.push(Section {
            title: "registry".to_string(),
            findings: vec![report::Finding {
                check: "registry".to_string(),
                status: report::Status::Skipped,
                message: "no registry to check: none given and none configured (BERTH_REGISTRY, berth.yaml, \
                          the user file)"
                    .to_string(),
                fix: Some("run `berth doctor --registry HOST` to check your credentials for HOST".to_string()),
            }],
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

/// Why `probe`'s engine did not answer: what its socket file shows, else its own error and hint.
fn explain(
    probe: &EngineProbe,
    error: &Error,
    me: &Identity,
    accounts: &Accounts,
) -> (String, String) {
    match probe
        .endpoint
        .as_deref()
        .and_then(socket_access::socket_path)
    {
        Some(path) => socket_access::diagnose(
            probe.kind.name(),
            path,
            &machine::path_state(path),
            me,
            accounts,
            error,
        ),
        None => (
            socket_access::describe(error),
            socket_access::start_fix(error),
        ),
    }
}

/// The rootless Podman section, skipped for root (whose Podman is rootful), and its JSON.
async fn rootless_section(me: &Identity, accounts: &Accounts) -> (Section, Value) {
    let title = format!("rootless podman (user {}, uid {})", me.name, me.uid);
    if me.is_root() {
        let why = "berth runs as root, whose Podman is rootful; run `berth doctor` as the user who builds to check theirs";
        let json =
            json!({"skipped": "running as root", "user": me.name, "uid": me.uid, "checks": []});
        let findings = vec![Finding::skipped("rootless", why)];
        return (Section { title, findings }, json);
    }
    let facts = machine::rootless_facts(me.clone()).await;
    let checked = rootless::check(&facts, accounts);
    let ranges = |entries: &[crate::doctor::subids::SubIdEntry]| -> Value {
        entries
            .iter()
            .map(|e| json!({"start": e.start, "count": e.count}))
            .collect()
    };
    let json = json!({
        "skipped": null, "user": me.name, "uid": me.uid,
        "subuid": ranges(&checked.subuid), "subgid": ranges(&checked.subgid),
        "checks": report::findings_json(&checked.findings),
    });
    let findings = checked.findings;
    (Section { title, findings }, json)
}

fn setup_problem(error: &Error) -> Finding {
    Finding::problem(
        "registry access",
        socket_access::describe(error),
        error
            .hint()
            .unwrap_or("check --ca-file and --insecure-registry"),
    )
}
