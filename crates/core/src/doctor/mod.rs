//! The vocabulary of `berth doctor`, shared by front ends and backends: a [`Finding`] per check, grouped in
//! [`Section`]s, and what an [`EngineProvider`](crate::provider::EngineProvider) is given to make its own
//! checks ([`DoctorContext`]) and what it hands back ([`ProviderChecks`]).
//!
//! A backend's checks live in its crate (rootless Podman's prerequisites, Docker's `daemon.json`), so a front end
//! iterates the provider table and renders, knowing no engine. The machine facts that are not about one engine
//! (who runs berth, [`accounts`]; what is at a path, [`machine`]; why a socket does not answer, [`socket`]) are
//! here, shared by every backend. Everything that decides ok, warning or problem is a pure function over such
//! facts, so it is tested with written-out inputs.

pub mod accounts;
pub mod machine;
pub mod socket;

use serde_json::{json, Value};

use crate::provider::ConnectSettings;
use accounts::{Accounts, Identity};

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Works.
    Ok,
    /// Works, or may, but something could bite later (a small id range, capabilities berth cannot read).
    Warning,
    /// Stands between this machine and a build: it makes `berth doctor` exit 1, and comes with a fix.
    Problem,
    /// Not checked, with the reason (running as root, no backend in this build).
    Skipped,
}

impl Status {
    /// The word printed for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warning => "warning",
            Status::Problem => "problem",
            Status::Skipped => "skipped",
        }
    }
}

/// The outcome of one check: what was checked, how it came out, what was seen and the command that fixes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// What was checked, e.g. `engine docker`, `subuid`, `registry login`.
    pub check: String,
    /// How it came out.
    pub status: Status,
    /// What was seen, in specific terms.
    pub message: String,
    /// What to run or change (always present for a problem).
    pub fix: Option<String>,
}

impl Finding {
    /// A check that passed.
    pub fn ok(check: impl Into<String>, message: impl Into<String>) -> Self {
        Finding::new(check, Status::Ok, message, None)
    }

    /// A check that failed, and how to fix it.
    pub fn problem(
        check: impl Into<String>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Finding::new(check, Status::Problem, message, Some(fix.into()))
    }

    /// Something worth knowing that does not stop a build.
    pub fn warning(
        check: impl Into<String>,
        message: impl Into<String>,
        fix: Option<String>,
    ) -> Self {
        Finding::new(check, Status::Warning, message, fix)
    }

    /// A check that was not made, and why.
    pub fn skipped(check: impl Into<String>, message: impl Into<String>) -> Self {
        Finding::new(check, Status::Skipped, message, None)
    }

    /// A check that was not made, why, and how to make it.
    pub fn skipped_with_fix(
        check: impl Into<String>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Finding::new(check, Status::Skipped, message, Some(fix.into()))
    }

    fn new(
        check: impl Into<String>,
        status: Status,
        message: impl Into<String>,
        fix: Option<String>,
    ) -> Self {
        Finding {
            check: check.into(),
            status,
            message: message.into(),
            fix,
        }
    }

    /// `{"check", "status", "message", "fix"}`.
    pub fn to_json(&self) -> Value {
        json!({"check": self.check, "status": self.status.as_str(), "message": self.message, "fix": self.fix})
    }
}

/// The findings as a JSON array.
pub fn findings_json(findings: &[Finding]) -> Value {
    Value::Array(findings.iter().map(Finding::to_json).collect())
}

/// A titled group of findings (engines, rootless Podman, the registry).
#[derive(Debug, Clone)]
pub struct Section {
    /// The heading, e.g. `rootless podman (user me, uid 1000)`.
    pub title: String,
    /// The findings, in the order they were checked.
    pub findings: Vec<Finding>,
}

/// A section of a provider's own, printed after the engines section, and its part of the JSON report.
#[derive(Debug, Clone)]
pub struct ProviderSection {
    /// Its key in the JSON report, e.g. `rootless`.
    pub key: &'static str,
    /// What a person reads.
    pub section: Section,
    /// Its JSON value: the findings and whatever facts the provider adds (the user's id ranges).
    pub json: Value,
}

/// What a provider's checks found.
#[derive(Debug, Clone, Default)]
pub struct ProviderChecks {
    /// Sections of its own, in order.
    pub sections: Vec<ProviderSection>,
    /// Findings about the registry being checked (whether this engine will reach it), added to the registry
    /// section.
    pub registry: Vec<Finding>,
}

/// The registry `berth doctor` checks, as the engines' checks need to know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryCheck {
    /// Its host, e.g. `reg.lan:5000`.
    pub host: String,
    /// Whether the front end was told to use plain HTTP with it (`--insecure-registry`).
    pub plain_http: bool,
    /// Whether it is on this machine (127.0.0.0/8, `localhost`), where engines allow plain HTTP anyway.
    pub loopback: bool,
}

/// What a provider's checks are given: its settings, who runs berth, and the registry being checked.
#[derive(Debug, Clone, Copy)]
pub struct DoctorContext<'a> {
    /// The engine's settings, as a connection would use them.
    pub settings: &'a ConnectSettings,
    /// Who runs berth.
    pub user: &'a Identity,
    /// The user and group databases, for naming owners and groups.
    pub accounts: &'a Accounts,
    /// The registry being checked, if any.
    pub registry: Option<&'a RegistryCheck>,
}
