//! A YAML loader that reads values the way PyYAML's `safe_load` does, with a position for every node.
//!
//! flytekit builds an `ImageSpec` from `yaml.safe_load`, and the tag hashes Python's repr of the values, so the
//! type of every scalar matters: PyYAML follows YAML 1.1, where `yes` is `True`, `017` is 15 and `1e3` is a string.
//! yaml-rust2 parses the syntax (and gives line and column); this module resolves plain scalars with PyYAML's
//! implicit resolvers. Timestamps, merge keys and Python-specific tags are refused with a hint instead of guessed.

use std::collections::HashMap;
use std::sync::LazyLock;

use regex::Regex;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A position in the YAML text, 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Mark {
    /// Line number, starting at 1.
    pub line: usize,
    /// Column number, starting at 1.
    pub column: usize,
}

/// A value with the position it was read from.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// The value, typed as PyYAML would type it.
    pub value: Value,
    /// Where the value starts in the text.
    pub mark: Mark,
}

/// A YAML value typed as PyYAML's safe loader types it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `~`, `null`, or nothing.
    Null,
    /// `true`, `yes`, `on`, ... (YAML 1.1).
    Bool(bool),
    /// An integer (decimal, `0x`, `0b`, leading-zero octal, `1:30` sexagesimal).
    Int(i128),
    /// A float (needs a dot in YAML 1.1, or `.inf` / `.nan`).
    Float(f64),
    /// A string.
    Str(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping in insertion order; a repeated key keeps its first position and takes the last value, as a
    /// Python dict does.
    Map(Vec<(Node, Node)>),
}

impl Value {
    /// The string, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// A short name of the value's type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "a number",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

/// A YAML syntax error or a value berth refuses to guess at.
#[derive(Debug, Clone, PartialEq)]
pub struct YamlError {
    /// What is wrong.
    pub message: String,
    /// Where.
    pub mark: Mark,
}

/// Parses one YAML document. Returns `None` for an empty document.
pub fn load(text: &str) -> Result<Option<Node>, YamlError> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    parser.load(&mut builder, false).map_err(|e| YamlError {
        message: e.info().to_string(),
        mark: mark_of(*e.marker()),
    })?;
    if let Some(err) = builder.error {
        return Err(err);
    }
    Ok(builder.root)
}

fn mark_of(m: Marker) -> Mark {
    Mark {
        line: m.line(),
        column: m.col() + 1,
    }
}

enum Frame {
    Seq {
        anchor: usize,
        mark: Mark,
        items: Vec<Node>,
    },
    Map {
        anchor: usize,
        mark: Mark,
        entries: Vec<(Node, Node)>,
        key: Option<Node>,
    },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    root: Option<Node>,
    error: Option<YamlError>,
}

impl Builder {
    fn push_node(&mut self, node: Node) {
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map { entries, key, .. }) => match key.take() {
                None => {
                    if let Value::Str(k) = &node.value {
                        if k == "<<" && self.error.is_none() {
                            self.error = Some(YamlError {
                                message: "merge keys (`<<`) are not supported in specs: write the keys out".into(),
                                mark: node.mark,
                            });
                        }
                    }
                    *key = Some(node);
                }
                Some(k) => {
                    if let Some(slot) = entries
                        .iter_mut()
                        .find(|(existing, _)| same_key(&existing.value, &k.value))
                    {
                        slot.1 = node;
                    } else {
                        entries.push((k, node));
                    }
                }
            },
        }
    }

    fn fail(&mut self, message: String, mark: Mark) {
        if self.error.is_none() {
            self.error = Some(YamlError { message, mark });
        }
    }
}

fn same_key(a: &Value, b: &Value) -> bool {
    match (a, b) {
        // Python: 1 == 1.0 == True as dict keys.
        (Value::Int(x), Value::Float(y)) | (Value::Float(y), Value::Int(x)) => (*x as f64) == *y,
        (Value::Bool(x), Value::Int(y)) | (Value::Int(y), Value::Bool(x)) => i128::from(*x) == *y,
        _ => a == b,
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, marker: Marker) {
        if self.error.is_some() {
            return;
        }
        let mark = mark_of(marker);
        match ev {
            Event::Scalar(text, style, anchor, tag) => {
                match resolve_scalar(&text, style, tag.as_ref()) {
                    Ok(value) => {
                        let node = Node { value, mark };
                        if anchor > 0 {
                            self.anchors.insert(anchor, node.clone());
                        }
                        self.push_node(node);
                    }
                    Err(message) => self.fail(message, mark),
                }
            }
            Event::SequenceStart(anchor, tag) => {
                if let Some(message) = unsupported_collection_tag(tag.as_ref(), "seq") {
                    return self.fail(message, mark);
                }
                self.stack.push(Frame::Seq {
                    anchor,
                    mark,
                    items: Vec::new(),
                });
            }
            Event::MappingStart(anchor, tag) => {
                if let Some(message) = unsupported_collection_tag(tag.as_ref(), "map") {
                    return self.fail(message, mark);
                }
                self.stack.push(Frame::Map {
                    anchor,
                    mark,
                    entries: Vec::new(),
                    key: None,
                });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (anchor, node) = match self.stack.pop() {
                    Some(Frame::Seq {
                        anchor,
                        mark,
                        items,
                    }) => (
                        anchor,
                        Node {
                            value: Value::Seq(items),
                            mark,
                        },
                    ),
                    Some(Frame::Map {
                        anchor,
                        mark,
                        entries,
                        ..
                    }) => (
                        anchor,
                        Node {
                            value: Value::Map(entries),
                            mark,
                        },
                    ),
                    None => return,
                };
                if anchor > 0 {
                    self.anchors.insert(anchor, node.clone());
                }
                self.push_node(node);
            }
            Event::Alias(id) => match self.anchors.get(&id) {
                Some(node) => {
                    let node = Node {
                        value: node.value.clone(),
                        mark,
                    };
                    self.push_node(node);
                }
                None => self.fail("alias to an unknown anchor".into(), mark),
            },
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd => {}
        }
    }
}

const CORE_TAG: &str = "tag:yaml.org,2002:";

fn unsupported_collection_tag(tag: Option<&Tag>, expected: &str) -> Option<String> {
    let tag = tag?;
    if (tag.handle == CORE_TAG && tag.suffix == expected)
        || (tag.handle == "!" && tag.suffix.is_empty())
    {
        return None;
    }
    Some(format!(
        "the tag `{}{}` is not supported in specs",
        tag.handle, tag.suffix
    ))
}

fn resolve_scalar(text: &str, style: TScalarStyle, tag: Option<&Tag>) -> Result<Value, String> {
    if let Some(tag) = tag {
        if tag.handle == "!" && tag.suffix.is_empty() {
            return Ok(Value::Str(text.to_string()));
        }
        if tag.handle != CORE_TAG {
            return Err(format!(
                "the tag `{}{}` is not supported in specs",
                tag.handle, tag.suffix
            ));
        }
        return match tag.suffix.as_str() {
            "str" => Ok(Value::Str(text.to_string())),
            "null" => Ok(Value::Null),
            "bool" => bool_value(text)
                .map(Value::Bool)
                .ok_or_else(|| format!("`{text}` is not a boolean")),
            "int" => int_value(text).ok_or_else(|| format!("`{text}` is not an integer")),
            "float" => float_value(text).ok_or_else(|| format!("`{text}` is not a float")),
            other => Err(format!("the tag `!!{other}` is not supported in specs")),
        };
    }
    if style != TScalarStyle::Plain {
        return Ok(Value::Str(text.to_string()));
    }
    Ok(resolve_plain(text)?.unwrap_or_else(|| Value::Str(text.to_string())))
}

static INT_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+|[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+)$",
    )
    .expect("valid regex")
});

static FLOAT_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
    )
    .expect("valid regex")
});

static TIMESTAMP_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^(?:[0-9]{4}-[0-9]{2}-[0-9]{2}|[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}(?:[Tt]|[ \t]+)[0-9]{1,2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]*)?(?:[ \t]*(?:Z|[-+][0-9]{1,2}(?::[0-9]{2})?))?)$",
    )
    .expect("valid regex")
});

/// Resolves a plain scalar with PyYAML's implicit resolvers; `None` means it stays a string.
fn resolve_plain(text: &str) -> Result<Option<Value>, String> {
    if matches!(text, "" | "~" | "null" | "Null" | "NULL") {
        return Ok(Some(Value::Null));
    }
    if let Some(b) = bool_value(text) {
        return Ok(Some(Value::Bool(b)));
    }
    if INT_RE.is_match(text) {
        return int_value(text)
            .map(Some)
            .ok_or_else(|| format!("the integer `{text}` is too large"));
    }
    if FLOAT_RE.is_match(text) {
        return Ok(float_value(text));
    }
    if TIMESTAMP_RE.is_match(text) {
        return Err(format!(
            "`{text}` reads as a date in YAML; quote it (\"{text}\") if you mean the text"
        ));
    }
    if text == "=" {
        return Err("a bare `=` is a YAML 1.1 value key; quote it (\"=\")".into());
    }
    Ok(None)
}

fn bool_value(text: &str) -> Option<bool> {
    match text {
        "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => Some(true),
        "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => Some(false),
        _ => None,
    }
}

fn split_sign(text: &str) -> (i128, &str) {
    match text.as_bytes().first() {
        Some(b'-') => (-1, &text[1..]),
        Some(b'+') => (1, &text[1..]),
        _ => (1, text),
    }
}

fn int_value(text: &str) -> Option<Value> {
    let cleaned: String = text.chars().filter(|c| *c != '_').collect();
    let (sign, digits) = split_sign(&cleaned);
    let magnitude = if digits == "0" {
        0
    } else if let Some(bin) = digits.strip_prefix("0b") {
        i128::from_str_radix(bin, 2).ok()?
    } else if let Some(hex) = digits.strip_prefix("0x") {
        i128::from_str_radix(hex, 16).ok()?
    } else if digits.starts_with('0') {
        i128::from_str_radix(digits, 8).ok()?
    } else if digits.contains(':') {
        let mut total: i128 = 0;
        for part in digits.split(':') {
            total = total
                .checked_mul(60)?
                .checked_add(part.parse::<i128>().ok()?)?;
        }
        total
    } else {
        digits.parse::<i128>().ok()?
    };
    Some(Value::Int(sign * magnitude))
}

fn float_value(text: &str) -> Option<Value> {
    let cleaned: String = text
        .chars()
        .filter(|c| *c != '_')
        .collect::<String>()
        .to_lowercase();
    let (sign, digits) = split_sign(&cleaned);
    let sign = sign as f64;
    let magnitude = if digits == ".inf" {
        f64::INFINITY
    } else if digits == ".nan" {
        f64::NAN
    } else if digits.contains(':') {
        let mut total = 0.0;
        for part in digits.split(':') {
            total = total * 60.0 + part.parse::<f64>().ok()?;
        }
        total
    } else {
        digits.parse::<f64>().ok()?
    };
    Some(Value::Float(sign * magnitude))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar(text: &str) -> Value {
        let doc = format!("k: {text}\n");
        match load(&doc).expect("parses").expect("not empty").value {
            Value::Map(entries) => entries[0].1.value.clone(),
            other => panic!("not a map: {other:?}"),
        }
    }

    #[test]
    fn yaml_1_1_scalars_resolve_like_pyyaml() {
        assert_eq!(scalar("yes"), Value::Bool(true));
        assert_eq!(scalar("Off"), Value::Bool(false));
        assert_eq!(scalar("'yes'"), Value::Str("yes".into()));
        assert_eq!(scalar("017"), Value::Int(15));
        assert_eq!(scalar("0x1F"), Value::Int(31));
        assert_eq!(scalar("0b101"), Value::Int(5));
        assert_eq!(scalar("1_000"), Value::Int(1000));
        assert_eq!(scalar("1:30"), Value::Int(90));
        assert_eq!(scalar("-7"), Value::Int(-7));
        assert_eq!(scalar("3.10"), Value::Float(3.1));
        assert_eq!(scalar("1e3"), Value::Str("1e3".into()));
        assert_eq!(scalar("1.0e+3"), Value::Float(1000.0));
        assert_eq!(scalar(".inf"), Value::Float(f64::INFINITY));
        assert_eq!(scalar("~"), Value::Null);
        assert_eq!(scalar(""), Value::Null);
        assert_eq!(scalar("0o17"), Value::Str("0o17".into()));
    }

    #[test]
    fn dates_and_merge_keys_are_refused_with_a_position() {
        let err = load("a: 1\nb: 2001-12-14\n").expect_err("date refused");
        assert_eq!(err.mark.line, 2);
        assert!(err.message.contains("quote it"));
        assert!(load("a: &x {b: 1}\nc:\n  <<: *x\n").is_err());
    }

    #[test]
    fn repeated_keys_keep_first_position_and_last_value() {
        let node = load("a: 1\nb: 2\na: 3\n").expect("parses").expect("doc");
        let Value::Map(entries) = node.value else {
            panic!("map")
        };
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].0.value, Value::Str("a".into()));
        assert_eq!(entries[0].1.value, Value::Int(3));
    }

    #[test]
    fn aliases_copy_the_anchored_value() {
        let node = load("a: &v [x, y]\nb: *v\n").expect("parses").expect("doc");
        let Value::Map(entries) = node.value else {
            panic!("map")
        };
        assert_eq!(entries[0].1.value, entries[1].1.value);
    }

    #[test]
    fn syntax_errors_have_line_and_column() {
        let err = load("a: [1, 2\nb: 3\n").expect_err("unclosed");
        assert!(err.mark.line >= 1);
    }
}
