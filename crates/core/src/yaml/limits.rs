//! What one YAML file may make berth allocate.
//!
//! Specs and project files come from repositories and pull requests, so a small file must not be able to make
//! berth build a huge value. Aliases are the lever: berth copies the anchored value at every alias (PyYAML
//! shares it, but flytekit's tag hashes the repr, which expands it anyway), so eight levels of ten aliases in
//! one kilobyte ("billion laughs") would be 10^8 values. The budget counts what the loaded value will hold,
//! aliases expanded, and stops the parse at the first event past a limit.

use std::io::Read;
use std::path::Path;

/// The largest file berth reads as YAML. A spec is a few hundred bytes; a project file a few kilobytes.
pub const MAX_TEXT_BYTES: usize = 1 << 20;
/// How deeply collections may nest. Specs nest four levels; the parser and every walk over a value recurse.
pub const MAX_DEPTH: usize = 64;
/// How many values (scalars and collections, aliases expanded) one document may hold.
pub const MAX_VALUES: usize = 100_000;
/// How many values all aliases of a document may copy together.
pub const MAX_ALIAS_VALUES: usize = 10_000;
/// How many bytes of scalar text all aliases of a document may copy together.
pub const MAX_ALIAS_BYTES: usize = 1 << 20;

/// Reads a YAML file, stopping one byte past [`MAX_TEXT_BYTES`] so that [`super::load`] refuses it with a
/// position instead of berth reading a file of any size into memory.
pub fn read_file(path: &Path) -> std::io::Result<String> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_TEXT_BYTES as u64 + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() > MAX_TEXT_BYTES {
        // The text is refused for its size; a character cut in two at the end must not hide that.
        return Ok(String::from_utf8_lossy(&bytes).into_owned());
    }
    String::from_utf8(bytes).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// The size of a loaded value: how many values it holds and how many bytes of scalar text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Size {
    pub values: usize,
    pub bytes: usize,
}

impl Size {
    fn since(self, start: Size) -> Size {
        Size {
            values: self.values - start.values,
            bytes: self.bytes - start.bytes,
        }
    }
}

/// The running count for one document.
#[derive(Debug, Default)]
pub(super) struct Budget {
    total: Size,
    aliased: Size,
}

impl Budget {
    /// Where the count stands; a collection remembers it at its start to learn its own size at its end.
    pub fn mark(&self) -> Size {
        self.total
    }

    /// The size added since `start`.
    pub fn since(&self, start: Size) -> Size {
        self.total.since(start)
    }

    /// Counts a scalar of `bytes` bytes.
    pub fn scalar(&mut self, bytes: usize) -> Result<(), String> {
        self.add(Size { values: 1, bytes })
    }

    /// Counts the start of a collection nested `depth` levels deep (the top level is 1).
    pub fn collection(&mut self, depth: usize) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(format!(
                "values nest more than {MAX_DEPTH} levels deep; a spec needs a handful"
            ));
        }
        self.add(Size {
            values: 1,
            bytes: 0,
        })
    }

    /// Counts an alias that copies a value of `size`.
    pub fn alias(&mut self, size: Size) -> Result<(), String> {
        self.aliased.values = self.aliased.values.saturating_add(size.values);
        self.aliased.bytes = self.aliased.bytes.saturating_add(size.bytes);
        if self.aliased.values > MAX_ALIAS_VALUES || self.aliased.bytes > MAX_ALIAS_BYTES {
            return Err(format!(
                "aliases in this file expand to more than {MAX_ALIAS_VALUES} values or {} KiB of text \
                 (each alias copies its anchor's whole value, so nested aliases multiply); write the values out \
                 or use fewer aliases",
                MAX_ALIAS_BYTES >> 10
            ));
        }
        self.add(size)
    }

    fn add(&mut self, size: Size) -> Result<(), String> {
        self.total.values = self.total.values.saturating_add(size.values);
        self.total.bytes = self.total.bytes.saturating_add(size.bytes);
        if self.total.values > MAX_VALUES {
            return Err(format!(
                "the document holds more than {MAX_VALUES} values; berth reads specs and project files, not data"
            ));
        }
        Ok(())
    }
}
