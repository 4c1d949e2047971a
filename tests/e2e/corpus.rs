//! berth's names against flytekit's, for every spec of the checked-in corpus.
//!
//! `tests/corpus/expected.tsv` holds `case<TAB>image_name<TAB>id` as flytekit 1.16 computed them
//! (`scripts/flytekit-corpus/regen.sh` regenerates it). Each case folder is copied into a fresh, uncommitted git
//! repository first, as the regeneration script does, so `.gitignore` applies exactly as in a user's checkout.

use std::collections::BTreeMap;

use berth_core::spec::{load_spec, BaseImage, ImageSpec};
use berth_core::tag::{spec_id, Namer};
use berth_tests::{berth, corpus_dir, fresh_git_copy, git_copy_into};

/// Cases flytekit accepts that berth refuses on purpose, with the reason.
const REFUSED: &[(&str, &str)] = &[("33-source-copy-mode-3-int", "source_copy_mode")];

fn expected() -> BTreeMap<String, (String, String)> {
    let text =
        std::fs::read_to_string(corpus_dir().join("expected.tsv")).expect("read expected.tsv");
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|line| {
            let cols: Vec<&str> = line.split('\t').collect();
            assert_eq!(cols.len(), 3, "bad line in expected.tsv: {line}");
            (
                cols[0].to_string(),
                (cols[1].to_string(), cols[2].to_string()),
            )
        })
        .collect()
}

/// flytekit's id hashes path fields as written; the corpus script passes absolute paths, so ids of specs with
/// paths are machine-specific and are not compared.
fn has_paths(spec: &ImageSpec) -> bool {
    spec.source_root.is_some()
        || spec.requirements.is_some()
        || !spec.copy.is_empty()
        || matches!(&spec.base_image, Some(BaseImage::Spec(base)) if has_paths(base))
}

#[test]
fn corpus_has_at_least_30_cases() {
    assert!(
        expected().len() >= 30,
        "the corpus must cover at least 30 specs"
    );
}

#[test]
fn every_corpus_tag_matches_flytekit() {
    let namer = Namer::new(None);
    let mut failures = Vec::new();
    for (case, (image, id)) in expected() {
        let dir = fresh_git_copy(&corpus_dir().join("cases").join(&case));
        let refused = REFUSED.iter().find(|(c, _)| *c == case);
        let spec = match (load_spec(&dir.path().join("spec.yaml")), refused) {
            (Err(err), Some((_, field))) => {
                assert!(
                    err.to_string().contains(field),
                    "{case}: refused for the wrong reason: {err}"
                );
                continue;
            }
            (Ok(_), Some(_)) => {
                failures.push(format!("{case}: berth should refuse this spec"));
                continue;
            }
            (Err(err), None) => {
                failures.push(format!("{case}: {err}"));
                continue;
            }
            (Ok(spec), None) => spec,
        };
        match namer.image_name(&spec) {
            Ok(name) if name.to_string() == image => {}
            Ok(name) => failures.push(format!("{case}: berth {name}, flytekit {image}")),
            Err(err) => failures.push(format!("{case}: {err}")),
        }
        if id != "-" && !has_paths(&spec) && spec_id(&spec) != id {
            failures.push(format!("{case}: id {} != flytekit {id}", spec_id(&spec)));
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn berth_name_prints_the_same_names_as_flytekit() {
    let expected = expected();
    let cases: Vec<&String> = expected
        .keys()
        .filter(|c| !REFUSED.iter().any(|(r, _)| r == c))
        .collect();
    let root = tempfile::tempdir().expect("temp dir");
    let mut args = vec!["name".to_string()];
    for case in &cases {
        git_copy_into(
            &corpus_dir().join("cases").join(case),
            &root.path().join(case),
        );
        args.push(format!("{case}/spec.yaml"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = berth(root.path(), &args);
    assert!(
        out.status.success(),
        "berth name failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8(out.stdout).expect("utf-8 output");
    let want: Vec<&str> = cases.iter().map(|c| expected[*c].0.as_str()).collect();
    assert_eq!(printed.lines().collect::<Vec<_>>(), want);
}
