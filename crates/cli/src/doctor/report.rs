//! What `berth doctor` found: one [`Finding`] per check, grouped in sections, printed for a person or as JSON.

use berth_core::doctor::{Finding, Section, Status};
use serde_json::{json, Value};

/// The report as a person reads it: sections of `ok`/`warning`/`problem` lines, a `fix:` under each problem
/// (and under warnings that have one), and a last line that says whether berth can build here.
/// A fix already printed is not repeated: the line points at the check that has it.
pub fn render_human(sections: &[Section]) -> String {
    let mut out = String::new();
    let mut fixes: Vec<(&str, &str)> = Vec::new();
    for section in sections {
        out.push_str(&section.title);
        out.push('\n');
        for finding in &section.findings {
            let message = finding.message.replace('\n', "\n           ");
            out.push_str(&format!(
                "  {:<8} {}: {message}\n",
                finding.status.as_str(),
                finding.check
            ));
            let Some(fix) = finding.fix.as_deref() else {
                continue;
            };
            match fixes.iter().find(|(_, seen)| *seen == fix) {
                Some((check, _)) => {
                    out.push_str(&format!("           fix: the same as for {check} above\n"))
                }
                None => {
                    out.push_str(&format!("           fix: {fix}\n"));
                    fixes.push((&finding.check, fix));
                }
            }
        }
        out.push('\n');
    }
    let problems: Vec<&Finding> = problems(sections).collect();
    let mut distinct: Vec<&str> = problems.iter().filter_map(|f| f.fix.as_deref()).collect();
    distinct.sort_unstable();
    distinct.dedup();
    let fixes = match distinct.len() {
        1 => "1 fix".to_string(),
        n => format!("{n} fixes"),
    };
    match problems.len() {
        0 => out.push_str("no problems found: berth can build here\n"),
        1 => out.push_str("1 problem: run the fix above\n"),
        n => out.push_str(&format!("{n} problems, {fixes} to run (above)\n")),
    }
    out
}

/// Every problem in the report, in order.
pub fn problems(sections: &[Section]) -> impl Iterator<Item = &Finding> {
    sections
        .iter()
        .flat_map(|s| &s.findings)
        .filter(|f| f.status == Status::Problem)
}

/// `[{"check", "message", "fix"}]` for every problem.
pub fn problems_json(sections: &[Section]) -> Value {
    Value::Array(
        problems(sections)
            .map(|f| json!({"check": f.check, "message": f.message, "fix": f.fix}))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_print_their_fix_and_are_counted() {
        let sections = [Section {
            title: "engines".into(),
            findings: vec![
                Finding::ok("engine docker", "reachable"),
                Finding::problem(
                    "engine podman",
                    "no socket",
                    "systemctl --user start podman.socket",
                ),
            ],
        }];
        let text = render_human(&sections);
        assert!(
            text.contains("  ok       engine docker: reachable\n"),
            "{text}"
        );
        assert!(
            text.contains("  problem  engine podman: no socket\n           fix: systemctl --user start podman.socket\n"),
            "{text}"
        );
        assert!(text.ends_with("1 problem: run the fix above\n"), "{text}");
        let twice = [Section {
            title: "rootless".into(),
            findings: vec![
                Finding::problem(
                    "subuid",
                    "no range",
                    "sudo usermod --add-subuids 1-2 --add-subgids 1-2 me",
                ),
                Finding::problem(
                    "subgid",
                    "no range",
                    "sudo usermod --add-subuids 1-2 --add-subgids 1-2 me",
                ),
            ],
        }];
        let text = render_human(&twice);
        assert!(
            text.contains(
                "  problem  subgid: no range\n           fix: the same as for subuid above\n"
            ),
            "{text}"
        );
        assert!(
            text.ends_with("2 problems, 1 fix to run (above)\n"),
            "{text}"
        );
        assert_eq!(
            problems_json(&sections),
            json!([{"check": "engine podman", "message": "no socket", "fix": "systemctl --user start podman.socket"}])
        );
    }
}
