//! `berth doctor`'s "leftovers" section: per reachable engine, what berth processes that were killed left in
//! it (`ContainerEngine::leftovers`), how old each thing is, and what removes it. A leftover is a warning, not
//! a problem: builds still work, and the next build on that engine removes it.

use berth_core::doctor::Finding;
use berth_core::engine::Leftover;
use berth_core::{ErrorKind, Result};

/// The findings for one engine's answer to `leftovers()`.
pub fn findings(engine: &str, answer: Result<Vec<Leftover>>) -> Vec<Finding> {
    let check = format!("leftovers in {engine}");
    match answer {
        Ok(found) if found.is_empty() => {
            vec![Finding::ok(check, "nothing left by killed berth processes")]
        }
        Ok(found) => found
            .iter()
            .map(|leftover| {
                // one the engine will not remove (containerd's objects with no owner labels) says in its own
                // text why and what removes it
                let fix = leftover.removed_by_next_run.then(|| {
                    format!("the next `berth build --engine {engine}` removes it (and says so)")
                });
                Finding::warning(check.clone(), describe(leftover), fix)
            })
            .collect(),
        Err(e) if e.kind() == ErrorKind::Unsupported => vec![Finding::skipped_with_fix(
            check,
            e.message().to_string(),
            e.hint().unwrap_or("see the README's Reliability section"),
        )],
        Err(e) => vec![Finding::warning(
            check,
            format!("could not look: {e}"),
            e.hint().map(str::to_string),
        )],
    }
}

/// `WHAT, made AGE ago`.
fn describe(leftover: &Leftover) -> String {
    match leftover.age {
        Some(age) => format!("{}, made {} ago", leftover.what, human(age)),
        None => leftover.what.clone(),
    }
}

/// `42 s`, `7 min`, `3 h`, `2 d`.
fn human(age: std::time::Duration) -> String {
    let s = age.as_secs();
    match s {
        0..=119 => format!("{s} s"),
        120..=7199 => format!("{} min", s / 60),
        7200..=172_799 => format!("{} h", s / 3600),
        _ => format!("{} d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use berth_core::doctor::Status;
    use berth_core::Error;

    use super::*;

    #[test]
    fn each_leftover_is_a_warning_with_its_age_and_what_removes_it() {
        let found = vec![
            Leftover {
                what: "a RUN step still running (pid 7: `sleep 900`)".into(),
                age: Some(Duration::from_secs(400)),
                removed_by_next_run: true,
            },
            Leftover {
                what: "LXD container berth-9-0".into(),
                age: None,
                removed_by_next_run: true,
            },
        ];
        let findings = findings("podman", Ok(found));
        assert_eq!(findings.len(), 2);
        assert!(findings.iter().all(|f| f.status == Status::Warning));
        assert_eq!(
            findings[0].message,
            "a RUN step still running (pid 7: `sleep 900`), made 6 min ago"
        );
        assert_eq!(
            findings[0].fix.as_deref(),
            Some("the next `berth build --engine podman` removes it (and says so)")
        );
        assert_eq!(findings[1].message, "LXD container berth-9-0");
    }

    #[test]
    fn nothing_left_is_ok_and_an_engine_that_cannot_tell_says_so() {
        let ok = findings("docker", Ok(Vec::new()));
        assert_eq!(ok[0].status, Status::Ok);
        // every engine tells today; one that cannot (a future backend) is skipped with its hint
        let unsupported = Error::unsupported("someengine", "leftovers", "cannot tell yet")
            .with_hint("look with the engine's own tool");
        let skipped = findings("someengine", Err(unsupported));
        assert_eq!(skipped[0].status, Status::Skipped);
        assert_eq!(
            skipped[0].fix.as_deref(),
            Some("look with the engine's own tool")
        );
        assert_eq!(human(Duration::from_secs(90_000)), "25 h");
    }

    #[test]
    fn a_containerd_object_of_an_unknown_owner_is_listed_without_promising_its_removal() {
        let found = vec![
            Leftover {
                what: "containerd lease berth-build-1 of berth process 7 (gone)".into(),
                age: None,
                removed_by_next_run: true,
            },
            Leftover {
                what: "containerd lease berth-build-2 of an unknown berth process (made before berth labelled \
                       its owner; not removed: when no berth runs, `ctr -n berth leases rm berth-build-2`)"
                    .into(),
                age: None,
                removed_by_next_run: false,
            },
        ];
        let findings = findings("containerd", Ok(found));
        assert_eq!(findings.len(), 2);
        assert!(findings[0]
            .fix
            .as_deref()
            .unwrap_or_default()
            .contains("removes it"));
        assert_eq!(findings[1].fix, None);
        assert!(findings[1].message.contains("ctr -n berth leases rm"));
    }
}
