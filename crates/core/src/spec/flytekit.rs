//! A spec handed over by a flytekit process: its `ImageSpec` dataclass fields as JSON, read into the same
//! [`ImageSpec`] a YAML file gives, so the name, plan and build are berth's usual ones.
//!
//! The flytekit plugin (python/berth_flytekit) sends one object:
//!
//! ```json
//! {"fields": {"name": "app", "registry": "ghcr.io/me", "source_root": "/src", "copy": ["a.py"],
//!             "source_copy_mode": {"$enum": "CopyFileDetection", "$member": "LOADED_MODULES", "$value": 1}, ...},
//!  "source_files": ["/src/app/main.py", ...]}
//! ```
//!
//! `fields` holds the values exactly as the dataclass holds them after `__post_init__` (JSON keeps their Python
//! types: str, int, float, bool, None, list, dict in insertion order); an enum member, which JSON cannot hold, is
//! the object above, hashed as Python's `repr` prints it, and a float JSON cannot hold is `{"$float": "inf"}`
//! (or `-inf`, `nan`), and an int beyond 64 bits `{"$int": "123..."}`. Keys starting with `$` are not valid Python identifiers nor flytekit values of their own. Relative paths resolve against the working directory, as
//! flytekit resolves them. `source_files` is what flytekit's own `ls_files` listed in that process for
//! LOADED_MODULES (the modules it imported), since only that process knows them.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

use super::ImageSpec;
use crate::error::{Error, Result};
use crate::yaml::{Mark, Node, Value};

/// What only a flytekit process can tell about its spec, beyond the fields.
#[derive(Debug, Clone, Default)]
pub(super) struct FromPython {
    /// The files LOADED_MODULES copies, listed by flytekit in the process that imported them.
    pub source_files: Option<Vec<PathBuf>>,
    /// The `CopyFileDetection` member `source_copy_mode` holds (`ALL`, `LOADED_MODULES`, `NO_COPY`), if it is one:
    /// flytekit compares against the members, so a plain int there copies every file whatever its value.
    pub copy_mode_member: Option<String>,
}

/// Reads a spec sent by the flytekit plugin (see the module docs); relative paths resolve against `cwd`.
pub fn load_flytekit_json(text: &str, cwd: &Path) -> Result<ImageSpec> {
    let bad = |m: String| {
        Error::invalid(format!("the ImageSpec sent by the flytekit plugin: {m}"))
            .with_operation("read spec")
            .with_hint("the plugin and the berth binary come from the same package; reinstall it")
    };
    let root = parse_json(text).map_err(|e| bad(e.to_string()))?;
    let Value::Map(entries) = root.value else {
        return Err(bad("expected a JSON object".into()));
    };
    let mut fields = None;
    let mut extras = FromPython::default();
    for (key, value) in entries {
        match (key.value.as_str(), value.value) {
            (Some("fields"), v @ Value::Map(_)) => {
                fields = Some(Node {
                    value: v,
                    mark: root.mark,
                })
            }
            (Some("source_files"), Value::Null) => {}
            (Some("source_files"), Value::Seq(items)) => {
                let files = items
                    .into_iter()
                    .map(|item| match item.value {
                        Value::Str(s) => Ok(cwd.join(s)),
                        _ => Err(bad("`source_files` must be a list of paths".into())),
                    })
                    .collect::<Result<Vec<_>>>()?;
                extras.source_files = Some(files);
            }
            (other, _) => return Err(bad(format!("unexpected key {other:?}"))),
        }
    }
    let fields = fields.ok_or_else(|| bad("no `fields` object".into()))?;
    let name = match &fields.value {
        Value::Map(e) => e
            .iter()
            .find(|(k, _)| k.value.as_str() == Some("name"))
            .and_then(|(_, v)| v.value.as_str().map(str::to_string)),
        _ => None,
    };
    // Errors name the spec as `<cwd>/ImageSpec(name)`; its folder is the one relative paths resolve against.
    let file = cwd.join(format!(
        "ImageSpec({})",
        name.as_deref().unwrap_or("flytekit")
    ));
    super::load::load_python_spec(fields, &file, &extras)
}

/// A Python enum member sent as `{"$enum": ..., "$member": ..., "$value": ...}`: its repr, its value for the typed
/// reading, and its member name.
pub(super) fn enum_member(node: &Node) -> Option<(String, &Value, &str)> {
    let Value::Map(entries) = &node.value else {
        return None;
    };
    let get = |key: &str| {
        entries
            .iter()
            .find(|(k, _)| k.value.as_str() == Some(key))
            .map(|(_, v)| &v.value)
    };
    if entries.len() != 3 {
        return None;
    }
    let (Some(Value::Str(class)), Some(Value::Str(member)), Some(value)) =
        (get("$enum"), get("$member"), get("$value"))
    else {
        return None;
    };
    let mut repr = String::new();
    crate::pyrepr::repr_value(value, &mut repr);
    Some((format!("<{class}.{member}: {repr}>"), value, member))
}

/// Positions mean nothing in a JSON document a program wrote; line 0 tells [`super::load`] to print none.
const NO_MARK: Mark = Mark { line: 0, column: 0 };

fn parse_json(text: &str) -> serde_json::Result<Node> {
    let mut de = serde_json::Deserializer::from_str(text);
    let node = de.deserialize_any(NodeVisitor)?;
    de.end()?;
    Ok(node)
}

/// Builds [`Node`]s straight from the JSON tokens, so objects keep their key order (a Python dict's order, which
/// the tag hashes) without serde_json's `preserve_order` feature changing every map in the workspace.
struct NodeVisitor;

fn node(value: Value) -> Node {
    Node {
        value,
        mark: NO_MARK,
    }
}

impl<'de> de::Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> std::result::Result<Node, E> {
        Ok(node(Value::Null))
    }

    fn visit_bool<E>(self, v: bool) -> std::result::Result<Node, E> {
        Ok(node(Value::Bool(v)))
    }

    fn visit_i64<E>(self, v: i64) -> std::result::Result<Node, E> {
        Ok(node(Value::Int(v.into())))
    }

    fn visit_u64<E>(self, v: u64) -> std::result::Result<Node, E> {
        Ok(node(Value::Int(v.into())))
    }

    fn visit_f64<E>(self, v: f64) -> std::result::Result<Node, E> {
        Ok(node(Value::Float(v)))
    }

    fn visit_str<E>(self, v: &str) -> std::result::Result<Node, E> {
        Ok(node(Value::Str(v.to_string())))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(node(Value::Seq(items)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Node, A::Error> {
        let mut entries: Vec<(Node, Node)> = Vec::new();
        while let Some((key, value)) = map.next_entry::<String, Node>()? {
            // Python's json.dumps never repeats a key; were one repeated, keep dict semantics anyway.
            match entries
                .iter_mut()
                .find(|(k, _)| k.value.as_str() == Some(&key))
            {
                Some(slot) => slot.1 = value,
                None => entries.push((node(Value::Str(key)), value)),
            }
        }
        if let [(key, value)] = entries.as_slice() {
            if key.value.as_str() == Some("$int") {
                // An int beyond 64 bits (serde_json would read it as a float, losing digits).
                return match value.value.as_str().map(str::parse::<i128>) {
                    Some(Ok(int)) => Ok(node(Value::Int(int))),
                    _ => Err(de::Error::custom(
                        "`$int` holds an integer of at most 128 bits",
                    )),
                };
            }
            if key.value.as_str() == Some("$float") {
                let float = match value.value.as_str() {
                    Some("inf") => f64::INFINITY,
                    Some("-inf") => f64::NEG_INFINITY,
                    Some("nan") => f64::NAN,
                    _ => return Err(de::Error::custom("`$float` is one of inf, -inf, nan")),
                };
                return Ok(node(Value::Float(float)));
            }
        }
        Ok(node(Value::Map(entries)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_keep_their_key_order_and_python_types() {
        let n = parse_json(
            r#"{"b": 1, "a": [2.5, true, null, "x", {"$float": "-inf"}, {"$int": "123456789012345678901234567890"}]}"#,
        )
        .expect("valid");
        let Value::Map(entries) = n.value else {
            panic!("a map")
        };
        let keys: Vec<_> = entries.iter().map(|(k, _)| k.value.as_str()).collect();
        assert_eq!(keys, [Some("b"), Some("a")]);
        let mut repr = String::new();
        crate::pyrepr::repr_value(&entries[1].1.value, &mut repr);
        assert_eq!(
            repr,
            "[2.5, True, None, 'x', -inf, 123456789012345678901234567890]"
        );
    }

    #[test]
    fn an_enum_member_is_hashed_as_its_python_repr() {
        let n = parse_json(r#"{"$enum": "CopyFileDetection", "$member": "ALL", "$value": 2}"#)
            .expect("valid");
        let (repr, value, member) = enum_member(&n).expect("an enum member");
        assert_eq!(repr, "<CopyFileDetection.ALL: 2>");
        assert_eq!(value, &Value::Int(2));
        assert_eq!(member, "ALL");
    }

    #[test]
    fn errors_speak_python() {
        let cwd = Path::new("/");
        let err = load_flytekit_json(r#"{"fields": {"name": "x", "python_version": 3.1}}"#, cwd)
            .expect_err("a number");
        assert!(
            err.to_string().contains(r#"python_version="3.10""#),
            "{err}"
        );
        assert!(
            err.to_string().starts_with("read spec: /ImageSpec(x): "),
            "{err}"
        );
        let lm = r#"{"fields": {"name": "x", "source_root": "/", "source_copy_mode":
            {"$enum": "CopyFileDetection", "$member": "LOADED_MODULES", "$value": 1}}}"#;
        let err = load_flytekit_json(lm, cwd).expect_err("no file list");
        assert!(err.to_string().contains("LOADED_MODULES needs"), "{err}");
    }

    #[test]
    fn malformed_input_is_an_invalid_spec_error() {
        let cwd = Path::new("/");
        for text in [
            "[]",
            "{",
            r#"{"fields": {}, "extra": 1}"#,
            r#"{"source_files": null}"#,
        ] {
            let err = load_flytekit_json(text, cwd).expect_err(text);
            assert_eq!(err.kind(), crate::ErrorKind::InvalidSpec, "{text}");
        }
    }
}
