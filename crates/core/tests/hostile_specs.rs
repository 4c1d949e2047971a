//! Specs as hostile input: documents generated over every ImageSpec field (values of every YAML kind, nested,
//! quoted, tagged, aliased) and the same documents with bytes overwritten. berth never panics on them: a spec is
//! either read (and then named and planned, or refused by those) or refused with an error that names the file,
//! with line and column when the YAML itself is at fault. Fixed seeds (proptest's deterministic runner) keep CI
//! runs repeatable; `PROPTEST_CASES` raises the count locally.

use std::path::{Path, PathBuf};

use berth_core::plan::plan;
use berth_core::spec::load_spec;
use berth_core::tag::Namer;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

/// Every field berth reads, and two it does not.
const FIELDS: &[&str] = &[
    "name",
    "python_version",
    "builder",
    "source_root",
    "env",
    "registry",
    "packages",
    "conda_packages",
    "conda_channels",
    "requirements",
    "apt_packages",
    "cuda",
    "cudnn",
    "base_image",
    "platform",
    "pip_index",
    "pip_extra_index_url",
    "pip_secret_mounts",
    "pip_extra_args",
    "registry_config",
    "entrypoint",
    "commands",
    "tag_format",
    "source_copy_mode",
    "copy",
    "python_exec",
    "builder_options",
    "builder_config",
    "runtime_packages",
    "nmae",
    "<<",
];

/// YAML scalars of every kind PyYAML reads, and values that name the support files beside the spec.
fn scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9_./:@=<>!~+-]{0,24}",
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| format!("{f:e}")),
        "\\PC{0,12}".prop_map(|s| serde_json::to_string(&s).unwrap_or_default()),
        prop::sample::select(vec![
            "true",
            "no",
            "null",
            "~",
            "3.10",
            "\"3.11\"",
            "2024-01-01",
            "0x1F",
            "0o17",
            "017",
            "-0b101",
            "+1_000",
            ".inf",
            "-.nan",
            "!!binary aGk=",
            "!!int 12",
            "!!str 3",
            "!!python/tuple [a]",
            "requirements.txt",
            "src",
            "base.yaml",
            "../outside",
            "/etc/passwd",
            "{spec: base.yaml}",
            "{spec: spec.yaml}",
            "\"a\\nRUN evil\"",
            "'$(id)'",
            "\"\"",
            "[]",
            "{}",
            "|\n  a\n  b",
            "&anchor [1, 2]",
            "*anchor",
            "*missing",
            "[a, *anchor]",
        ])
        .prop_map(str::to_string),
    ]
}

/// Flow-style values: scalars, lists and mappings, nested a few levels.
fn value() -> impl Strategy<Value = String> {
    scalar().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(", "))),
            prop::collection::vec(("[a-zA-Z_]{1,8}", inner), 0..4).prop_map(|entries| {
                let pairs: Vec<String> = entries.iter().map(|(k, v)| format!("{k}: {v}")).collect();
                format!("{{{}}}", pairs.join(", "))
            }),
        ]
    })
}

/// A value of the kind `field` takes, so that generated specs also get past reading into naming and planning.
fn plausible(field: &'static str) -> BoxedStrategy<String> {
    let word = "[a-z][a-z0-9._-]{0,10}";
    let list = |item: &'static str| {
        prop::collection::vec(item, 0..4)
            .prop_map(|v| format!("[{}]", v.join(", ")))
            .boxed()
    };
    match field {
        "packages"
        | "conda_packages"
        | "conda_channels"
        | "apt_packages"
        | "runtime_packages"
        | "entrypoint"
        | "commands"
        | "pip_extra_index_url" => list(word),
        "copy" => prop::sample::select(vec![
            "[src]",
            "[requirements.txt]",
            "[src, requirements.txt]",
            "[]",
        ])
        .prop_map(str::to_string)
        .boxed(),
        "env" | "builder_options" | "builder_config" => {
            prop::collection::vec(("[A-Z_]{1,6}", word), 0..3)
                .prop_map(|kv| {
                    let pairs: Vec<String> = kv.iter().map(|(k, v)| format!("{k}: {v}")).collect();
                    format!("{{{}}}", pairs.join(", "))
                })
                .boxed()
        }
        "python_version" => "\"3\\.[0-9]{1,2}\"".boxed(),
        "source_copy_mode" => prop::sample::select(vec!["2", "1", "3"])
            .prop_map(str::to_string)
            .boxed(),
        "requirements" => Just("requirements.txt".to_string()).boxed(),
        "source_root" => Just("src".to_string()).boxed(),
        "base_image" => prop_oneof![
            word.prop_map(|w| format!("{w}:1")),
            Just("{spec: base.yaml}".into())
        ]
        .boxed(),
        "pip_secret_mounts" => Just("[[requirements.txt, /run/secrets/pip]]".to_string()).boxed(),
        "tag_format" => Just("\"{spec_hash}-dev\"".to_string()).boxed(),
        "platform" => Just("linux/amd64".to_string()).boxed(),
        _ => word.prop_map(|w| w.to_string()).boxed(),
    }
}

/// A spec document: some fields (repeats allowed), each with a plausible value or a hostile one.
fn document() -> impl Strategy<Value = String> {
    let entry = prop::sample::select(FIELDS).prop_flat_map(|field| {
        prop_oneof![3 => plausible(field), 1 => value().boxed()].prop_map(move |v| (field, v))
    });
    prop::collection::vec(entry, 0..10)
        .prop_map(|fields| fields.iter().map(|(k, v)| format!("{k}: {v}\n")).collect())
}

/// A folder with the files generated specs name: a requirements file, a source folder, a base spec. One per test,
/// removed when the test ends (a folder kept in a static would never be dropped, and so never removed).
fn folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("requirements.txt"), "six==1.16.0\n").expect("write");
    std::fs::create_dir_all(dir.path().join("src")).expect("mkdir");
    std::fs::write(dir.path().join("src/app.py"), "print('hi')\n").expect("write");
    std::fs::write(
        dir.path().join("base.yaml"),
        "name: base\npackages: [numpy]\n",
    )
    .expect("write");
    dir
}

/// Reads, names and plans `text` as `file`: no panic, and a refusal names the file.
fn check(folder: &Path, text: &str, file: &str) -> Result<(), TestCaseError> {
    let path: PathBuf = folder.join(file);
    std::fs::write(&path, text).expect("write the spec");
    match load_spec(&path) {
        Ok(spec) => {
            let namer = Namer::new(None);
            let _ = namer.image_name(&spec);
            let _ = plan(&namer, &spec);
        }
        Err(e) => {
            let shown = e.to_string();
            prop_assert!(
                shown.contains(file),
                "a refused spec must name its file:\n{text}\n=> {shown}"
            );
        }
    }
    Ok(())
}

fn runner(seed: u8) -> TestRunner {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1500);
    TestRunner::new_with_rng(
        Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        },
        TestRng::from_seed(RngAlgorithm::ChaCha, &[seed; 32]),
    )
}

#[test]
fn generated_specs_are_named_or_refused_with_their_file() {
    let dir = folder();
    let result = runner(7).run(&document(), |text| {
        check(dir.path(), &text, "generated.yaml")
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

#[test]
fn specs_with_bytes_overwritten_are_named_or_refused_with_their_file() {
    let mangled = (
        document(),
        prop::collection::vec((any::<usize>(), any::<u8>()), 1..6),
    )
        .prop_map(|(text, cuts)| {
            let mut bytes = text.into_bytes();
            if !bytes.is_empty() {
                for (at, byte) in cuts {
                    let len = bytes.len();
                    bytes[at % len] = byte;
                }
            }
            String::from_utf8_lossy(&bytes).into_owned()
        });
    let dir = folder();
    let result = runner(11).run(&mangled, |text| check(dir.path(), &text, "mangled.yaml"));
    if let Err(e) = result {
        panic!("{e}");
    }
}
