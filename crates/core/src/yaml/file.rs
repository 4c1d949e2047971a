//! Reading berth's own YAML files (the project's `berth.yaml`, the user's `config.yaml`): a mapping of known keys,
//! every error pointing at a line and column with what to write instead.

use std::path::{Path, PathBuf};

use crate::yaml::{self, Node, Value};
use crate::{Error, Result};

/// A mapping read from a YAML file, with the file for messages.
#[derive(Debug, Clone)]
pub struct YamlFile {
    /// The file.
    pub path: PathBuf,
    /// Its top-level entries, in file order.
    pub entries: Vec<(String, Node)>,
}

impl YamlFile {
    /// Reads `path`; an empty file is an empty mapping. Keys outside `known` are errors naming the nearest one.
    pub fn read(path: &Path, known: &[&str]) -> Result<YamlFile> {
        let text = yaml::read_file(path).map_err(|e| Error::io(path, e))?;
        let root = yaml::load(&text).map_err(|e| at(path, &e.mark, e.message))?;
        let entries = match root {
            None => Vec::new(),
            Some(Node {
                value: Value::Null, ..
            }) => Vec::new(),
            Some(Node {
                value: Value::Map(entries),
                ..
            }) => entries,
            Some(other) => {
                return Err(at(
                    path,
                    &other.mark,
                    format!(
                        "expected a mapping of settings, found {}",
                        other.value.type_name()
                    ),
                ))
            }
        };
        let file = YamlFile {
            path: path.to_path_buf(),
            entries: Vec::new(),
        };
        let entries = file.keys(entries, known, "setting")?;
        Ok(YamlFile { entries, ..file })
    }

    /// The mapping's entries as `(key, value)`, refusing keys outside `known` (`what` names them in messages).
    pub fn keys(
        &self,
        entries: Vec<(Node, Node)>,
        known: &[&str],
        what: &str,
    ) -> Result<Vec<(String, Node)>> {
        entries
            .into_iter()
            .map(|(key, value)| {
                let Value::Str(name) = &key.value else {
                    return Err(self.error(&key, format!("{what} names are text")));
                };
                if !known.contains(&name.as_str()) {
                    let nearest = known
                        .iter()
                        .min_by_key(|k| strsim::damerau_levenshtein(name, k))
                        .filter(|k| strsim::damerau_levenshtein(name, k) <= 3.max(k.len() / 3));
                    let advice = match nearest {
                        Some(k) => format!("did you mean `{k}`?"),
                        None => format!("known: {}", known.join(", ")),
                    };
                    return Err(self.error(&key, format!("unknown {what} `{name}`; {advice}")));
                }
                Ok((name.clone(), value))
            })
            .collect()
    }

    /// The value of `key`, unless absent or null.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entries
            .iter()
            .find(|(k, v)| k == key && v.value != Value::Null)
            .map(|(_, v)| v)
    }

    /// The text value of `key`.
    pub fn text(&self, key: &str) -> Result<Option<String>> {
        self.get(key).map(|n| self.text_of(n, key)).transpose()
    }

    /// A node that must be text.
    pub fn text_of(&self, node: &Node, key: &str) -> Result<String> {
        match &node.value {
            Value::Str(s) if !s.trim().is_empty() => Ok(s.trim().to_string()),
            Value::Int(i) => Ok(i.to_string()),
            Value::Float(_) => Err(self.error(
                node,
                format!(
                    "`{key}` must be text; quote it (e.g. \"3.10\") so YAML does not read a number"
                ),
            )),
            other => Err(self.error(
                node,
                format!("`{key}` must be text, found {}", other.type_name()),
            )),
        }
    }

    /// An error at `node`.
    pub fn error(&self, node: &Node, message: impl std::fmt::Display) -> Error {
        at(&self.path, &node.mark, message)
    }
}

fn at(path: &Path, mark: &yaml::Mark, message: impl std::fmt::Display) -> Error {
    Error::invalid(format!(
        "{}:{}:{}: {message}",
        path.display(),
        mark.line,
        mark.column
    ))
    .with_operation("read config")
}
