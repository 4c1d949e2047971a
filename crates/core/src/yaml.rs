//! A YAML loader that reads values the way PyYAML's `safe_load` does, with a position for every node.
//!
//! flytekit builds an `ImageSpec` from `yaml.safe_load`, and the tag hashes Python's repr of the values, so the
//! type of every scalar matters: PyYAML follows YAML 1.1, where `yes` is `True`, `017` is 15 and `1e3` is a string.
//! yaml-rust2 parses the syntax (and gives line and column); this module resolves plain scalars with PyYAML's
//! implicit resolvers. Timestamps, merge keys and Python-specific tags are refused with a hint instead of guessed.
//! What a file may make berth allocate is bounded (see [`limits`]).

mod file;
mod limits;

use std::collections::HashMap;
use std::sync::LazyLock;

use regex::Regex;
use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

pub use limits::{
    read_file, MAX_ALIAS_BYTES, MAX_ALIAS_VALUES, MAX_DEPTH, MAX_TEXT_BYTES, MAX_VALUES,
};
use limits::{Budget, Size};

pub use file::YamlFile;

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
///
/// The events are pulled one at a time (yaml-rust2's `Parser::load` recurses once per nesting level) and the
/// parse stops at the first one past a [`limits`] bound, so no text can make this allocate without bound.
pub fn load(text: &str) -> Result<Option<Node>, YamlError> {
    if text.len() > MAX_TEXT_BYTES {
        return Err(YamlError {
            message: format!(
                "the file is larger than {} MiB; berth reads specs and project files, not data",
                MAX_TEXT_BYTES >> 20
            ),
            mark: Mark { line: 1, column: 1 },
        });
    }
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    loop {
        let (event, marker) = parser.next_token().map_err(|e| YamlError {
            message: e.info().to_string(),
            mark: mark_of(*e.marker()),
        })?;
        // One document, as `Parser::load(_, false)` reads: what follows its end is not parsed.
        let last = matches!(event, Event::DocumentEnd | Event::StreamEnd);
        builder.on_event(event, marker);
        if let Some(err) = builder.error {
            return Err(err);
        }
        if last {
            return Ok(builder.root);
        }
    }
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
        start: Size,
        mark: Mark,
        items: Vec<Node>,
    },
    Map {
        anchor: usize,
        start: Size,
        mark: Mark,
        entries: Vec<(Node, Node)>,
        /// Where each hashable key is in `entries`, so a mapping of many keys is not quadratic to read.
        index: HashMap<KeyId, usize>,
        key: Option<Node>,
    },
}

/// A mapping key as a Python dict compares it: `1`, `1.0` and `True` are one key.
#[derive(Debug, PartialEq, Eq, Hash)]
enum KeyId {
    Null,
    Int(i128),
    Float(u64),
    Str(String),
}

/// The key's identity, or `None` for keys no other key equals (NaN) or that berth compares one by one (lists
/// and mappings, which Python would refuse as unhashable).
fn key_id(value: &Value) -> Option<KeyId> {
    Some(match value {
        Value::Null => KeyId::Null,
        Value::Bool(b) => KeyId::Int(i128::from(*b)),
        Value::Int(i) => KeyId::Int(*i),
        Value::Float(f) if f.is_nan() => return None,
        // Exact, as Python compares an int with a float; the range check keeps the cast from saturating.
        Value::Float(f) if f.fract() == 0.0 && f.abs() < 1e38 => KeyId::Int(*f as i128),
        Value::Float(f) => KeyId::Float(f.to_bits()),
        Value::Str(s) => KeyId::Str(s.clone()),
        Value::Seq(_) | Value::Map(_) => return None,
    })
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    /// Anchored values with their size, which an alias adds again to the budget.
    anchors: HashMap<usize, (Node, Size)>,
    budget: Budget,
    root: Option<Node>,
    error: Option<YamlError>,
}

impl Builder {
    fn push_node(&mut self, node: Node) {
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map {
                entries,
                index,
                key,
                ..
            }) => match key.take() {
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
                    let slot = match key_id(&k.value) {
                        Some(id) => index.get(&id).copied().or_else(|| {
                            index.insert(id, entries.len());
                            None
                        }),
                        None => entries
                            .iter()
                            .position(|(existing, _)| existing.value == k.value),
                    };
                    match slot {
                        Some(i) => entries[i].1 = node,
                        None => entries.push((k, node)),
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

impl Builder {
    fn on_event(&mut self, ev: Event, marker: Marker) {
        if self.error.is_some() {
            return;
        }
        let mark = mark_of(marker);
        match ev {
            Event::Scalar(text, style, anchor, tag) => {
                if let Err(message) = self.budget.scalar(text.len()) {
                    return self.fail(message, mark);
                }
                match resolve_scalar(&text, style, tag.as_ref()) {
                    Ok(value) => {
                        let node = Node { value, mark };
                        if anchor > 0 {
                            let size = Size {
                                values: 1,
                                bytes: text.len(),
                            };
                            self.anchors.insert(anchor, (node.clone(), size));
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
                let start = self.budget.mark();
                if let Err(message) = self.budget.collection(self.stack.len() + 1) {
                    return self.fail(message, mark);
                }
                self.stack.push(Frame::Seq {
                    anchor,
                    start,
                    mark,
                    items: Vec::new(),
                });
            }
            Event::MappingStart(anchor, tag) => {
                if let Some(message) = unsupported_collection_tag(tag.as_ref(), "map") {
                    return self.fail(message, mark);
                }
                let start = self.budget.mark();
                if let Err(message) = self.budget.collection(self.stack.len() + 1) {
                    return self.fail(message, mark);
                }
                self.stack.push(Frame::Map {
                    anchor,
                    start,
                    mark,
                    entries: Vec::new(),
                    index: HashMap::new(),
                    key: None,
                });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (anchor, start, node) = match self.stack.pop() {
                    Some(Frame::Seq {
                        anchor,
                        start,
                        mark,
                        items,
                    }) => (
                        anchor,
                        start,
                        Node {
                            value: Value::Seq(items),
                            mark,
                        },
                    ),
                    Some(Frame::Map {
                        anchor,
                        start,
                        mark,
                        entries,
                        ..
                    }) => (
                        anchor,
                        start,
                        Node {
                            value: Value::Map(entries),
                            mark,
                        },
                    ),
                    None => return,
                };
                if anchor > 0 {
                    let size = self.budget.since(start);
                    self.anchors.insert(anchor, (node.clone(), size));
                }
                self.push_node(node);
            }
            Event::Alias(id) => match self.anchors.get(&id) {
                Some((node, size)) => {
                    // Counted before the copy is made: the copy is what the budget guards against.
                    let value = match self.budget.alias(*size) {
                        Ok(()) => node.value.clone(),
                        Err(message) => return self.fail(message, mark),
                    };
                    self.push_node(Node { value, mark });
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
    // from_str_radix takes a sign of its own (`0x-8...`, as Python's int() does), so the magnitude can be
    // i128::MIN and the product can overflow.
    sign.checked_mul(magnitude).map(Value::Int)
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
        // As in a Python dict, 1, 1.0 and True are one key.
        let node = load("1: a\n1.0: b\ntrue: c\n2: d\n")
            .expect("parses")
            .expect("doc");
        let Value::Map(entries) = node.value else {
            panic!("map")
        };
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].0.value, Value::Int(1));
        assert_eq!(entries[0].1.value, Value::Str("c".into()));
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

    /// Eight levels of ten aliases: 10^8 values from under 1 KB of text.
    pub(crate) fn billion_laughs() -> String {
        let mut text = String::from("name: app\nl0: &l0 [lol]\n");
        for level in 1..=8 {
            let refs = vec![format!("*l{}", level - 1); 10].join(", ");
            text.push_str(&format!("l{level}: &l{level} [{refs}]\n"));
        }
        text
    }

    #[test]
    fn nested_aliases_are_refused_at_the_alias_past_the_budget() {
        let text = billion_laughs();
        assert!(text.len() < 1024);
        let err = load(&text).expect_err("refused");
        assert!(err.message.contains("aliases"), "{}", err.message);
        // Level 4 holds 10^4 + ... values: the alias that crosses 10 000 copied values is on line 6.
        assert_eq!(err.mark.line, 6, "{err:?}");
        // A few aliases within the budget still work.
        assert!(load("a: &a [1, 2]\nb: [*a, *a, *a]\n").is_ok());
    }

    #[test]
    fn an_alias_of_a_long_string_counts_its_bytes() {
        let long = "x".repeat(MAX_ALIAS_BYTES / 4);
        let text = format!("a: &a {long}\nb: [*a, *a, *a, *a, *a]\n");
        let err = load(&text).expect_err("refused");
        assert_eq!(err.mark.line, 2);
    }

    #[test]
    fn depth_count_and_size_are_bounded() {
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        let err = load(&deep).expect_err("too deep");
        assert!(err.message.contains("nest"), "{}", err.message);
        assert_eq!(err.mark.column, MAX_DEPTH + 1);
        // Block nesting is not bounded by the scanner's flow level, and yaml-rust2's own loader recursed on it.
        let block = format!("{}x\n", "- ".repeat(100_000));
        let err = load(&block).expect_err("too deep");
        assert!(err.message.contains("nest"), "{err:?}");
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(load(&ok).is_ok());

        let many = format!("[{}]", vec!["1"; MAX_VALUES].join(","));
        let err = load(&many).expect_err("too many");
        assert!(err.message.contains("values"), "{}", err.message);

        let big = format!("a: '{}'", "x".repeat(MAX_TEXT_BYTES));
        let err = load(&big).expect_err("too large");
        assert!(err.message.contains("larger than"), "{}", err.message);
    }

    #[test]
    fn read_file_stops_past_the_limit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("big.yaml");
        // A multi-byte character across the cut must still give the size error, not a UTF-8 one.
        let text = format!(
            "a: '{}é{}'",
            "x".repeat(MAX_TEXT_BYTES - 4),
            "y".repeat(4096)
        );
        std::fs::write(&path, text).expect("write");
        let read = read_file(&path).expect("read");
        assert!(read.len() > MAX_TEXT_BYTES);
        assert!(load(&read)
            .expect_err("too large")
            .message
            .contains("larger than"));
    }

    #[test]
    fn tagged_integers_that_overflow_are_refused() {
        // Python's int() takes a sign after the prefix, as from_str_radix does; -(i128::MIN) overflows.
        let min = format!("-0x-{:x}", i128::MIN.unsigned_abs());
        let err = load(&format!("k: !!int '{min}'\n")).expect_err("overflow");
        assert!(err.message.contains("not an integer"), "{}", err.message);
        assert_eq!(scalar("!!int '0x-1'"), Value::Int(-1));
        assert!(load("k: !!int '99999999999999999999999999999999999999:0'\n").is_err());
    }
}
