//! Image names and tags, computed exactly as flytekit 1.16 computes `ImageSpec.tag` and `ImageSpec.id`.
//!
//! The id is the URL-safe base64 (unpadded) of the md5 of Python's `str()` of a dict holding the spec's non-None
//! fields in dataclass order, leaving out `pip_secret_mounts`, `builder` and `runtime_packages`. The tag is the id of
//! a copy of the spec in which a nested base spec became its image name, `source_root` the digest of its files,
//! `copy` the digest of the copied paths, `requirements` the sha1 of the file, and `registry_config` was dropped;
//! `-` becomes `_`, and `tag_format` may wrap it. A Flyte user who builds with berth has flytekit find the image.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use md5::{Digest, Md5};

use berth_digest::DigestCache;

use crate::error::{Error, ErrorKind, Result};
use crate::pyrepr::{repr_fields, PyValue};
use crate::spec::{BaseImage, Field, ImageSpec, FIELDS};

/// A full image reference computed from a spec: `registry/name:tag`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageName {
    /// Registry with optional path, if the spec names one.
    pub registry: Option<String>,
    /// Repository name.
    pub name: String,
    /// Tag.
    pub tag: String,
}

impl ImageName {
    /// The repository part, `registry/name` (or just `name`).
    pub fn repository(&self) -> String {
        match &self.registry {
            Some(r) => format!("{r}/{}", self.name),
            None => self.name.clone(),
        }
    }
}

impl fmt::Display for ImageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.repository(), self.tag)
    }
}

/// Computes names; holds the digest cache so unchanged source trees are not re-read.
pub struct Namer {
    cache: Option<DigestCache>,
}

impl Namer {
    /// A namer that caches tree digests in `cache`.
    pub fn new(cache: Option<DigestCache>) -> Self {
        Namer { cache }
    }

    /// The spec's full image name, `registry/name:tag`.
    pub fn image_name(&self, spec: &ImageSpec) -> Result<ImageName> {
        let tag = self.tag(spec)?;
        Ok(ImageName {
            registry: spec.registry.clone(),
            name: spec.name.clone(),
            tag,
        })
    }

    /// The spec's tag, as flytekit's `ImageSpec.tag`.
    pub fn tag(&self, spec: &ImageSpec) -> Result<String> {
        let fields = self.tag_fields(spec)?;
        let hash = id_of(&fields).replace('-', "_");
        match &spec.tag_format {
            Some(format) => apply_tag_format(format, &hash).map_err(|m| {
                Error::invalid(format!("{}: `tag_format`: {m}", spec.display_path()))
                    .with_operation("name")
            }),
            None => Ok(hash),
        }
    }

    fn tag_fields(&self, spec: &ImageSpec) -> Result<Vec<(String, PyValue)>> {
        let digest_error = |e: berth_digest::DigestError| {
            Error::new(ErrorKind::Io, e.to_string())
                .with_operation("hash sources")
                .with_source(e)
        };
        let cache = self.cache.as_ref();
        let mut fields = Vec::new();
        for &field in FIELDS {
            if field.excluded_from_id() || field == Field::RegistryConfig {
                continue;
            }
            let value = match field {
                Field::BaseImage => match &spec.base_image {
                    Some(BaseImage::Spec(base)) => {
                        Some(PyValue::Str(self.image_name(base)?.to_string()))
                    }
                    _ => plain_value(spec, field),
                },
                Field::SourceRoot => match spec.source_tree().map_err(digest_error)? {
                    Some(tree) => Some(PyValue::Str(tree.digest(cache).map_err(digest_error)?)),
                    // A root nothing is copied from (flytekit's NO_COPY) is hashed as its path.
                    None => plain_value(spec, field),
                },
                Field::Copy if !spec.copy.is_empty() => {
                    let paths: Vec<_> = spec.copy.iter().map(|c| c.absolute.clone()).collect();
                    Some(PyValue::Str(
                        berth_digest::copy_digest(&paths, cache).map_err(digest_error)?,
                    ))
                }
                Field::Requirements => match &spec.requirements {
                    Some(path) => Some(PyValue::Str(
                        berth_digest::requirements_digest(path).map_err(digest_error)?,
                    )),
                    None => None,
                },
                _ => plain_value(spec, field),
            };
            if let Some(value) = value {
                fields.push((field.name().to_string(), value));
            }
        }
        Ok(fields)
    }
}

/// flytekit's `ImageSpec.id` of the spec as written (no digests): the `_F_IMG_ID` a running task compares against.
pub fn spec_id(spec: &ImageSpec) -> String {
    id_of(&id_fields(spec))
}

fn id_fields(spec: &ImageSpec) -> Vec<(String, PyValue)> {
    FIELDS
        .iter()
        .filter(|f| !f.excluded_from_id())
        .filter_map(|&field| {
            let value = match (field, &spec.base_image) {
                (Field::BaseImage, Some(BaseImage::Spec(base))) => {
                    Some(PyValue::Dict(id_fields(base)))
                }
                _ => plain_value(spec, field),
            };
            value.map(|v| (field.name().to_string(), v))
        })
        .collect()
}

/// A field's value as flytekit holds it after `__post_init__` (lowercased name and registry, default platform).
fn plain_value(spec: &ImageSpec, field: Field) -> Option<PyValue> {
    if let Some((_, repr)) = spec.python_reprs.iter().find(|(f, _)| *f == field) {
        return Some(PyValue::Raw(repr.clone()));
    }
    match field {
        Field::Name => Some(PyValue::Str(spec.name.clone())),
        Field::Registry => spec.registry.clone().map(PyValue::Str),
        Field::Platform => Some(PyValue::Str(spec.platform.clone())),
        _ => spec
            .raw_field(field)
            .map(|node| PyValue::Yaml(node.value.clone())),
    }
}

fn id_of(fields: &[(String, PyValue)]) -> String {
    let mut text = String::new();
    repr_fields(fields, &mut text);
    URL_SAFE_NO_PAD.encode(Md5::digest(text.as_bytes()))
}

/// Python's `tag_format.format(spec_hash=hash)` for the forms a tag can use: `{spec_hash}`, `{spec_hash:.N}`,
/// `{{` and `}}`. Anything else is refused rather than guessed at.
pub fn apply_tag_format(format: &str, hash: &str) -> std::result::Result<String, String> {
    let mut out = String::new();
    let mut rest = format;
    while let Some(i) = rest.find(['{', '}']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if tail.starts_with("{{") || tail.starts_with("}}") {
            out.push_str(&tail[..1]);
            rest = &tail[2..];
            continue;
        }
        if tail.starts_with('}') {
            return Err("a single `}` must be doubled (`}}`)".into());
        }
        let end = tail.find('}').ok_or("a `{` is not closed")?;
        let field = &tail[1..end];
        let (name, spec) = field.split_once(':').unwrap_or((field, ""));
        if name != "spec_hash" {
            return Err(format!(
                "`{{{field}}}` is not supported; the only placeholder is {{spec_hash}}"
            ));
        }
        match spec {
            "" => out.push_str(hash),
            precision if precision.starts_with('.') => {
                let n: usize = precision[1..]
                    .parse()
                    .map_err(|_| format!("`{{{field}}}`: bad precision"))?;
                out.extend(hash.chars().take(n));
            }
            _ => {
                return Err(format!(
                    "`{{{field}}}`: only a precision such as `{{spec_hash:.8}}` is supported"
                ))
            }
        }
        rest = &tail[end + 1..];
    }
    out.push_str(rest);
    let valid = !out.is_empty()
        && out.len() <= 128
        && out
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && out
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if !valid {
        return Err(format!(
            "gives `{out}`, which is not a valid tag (letters, digits, _ . -; at most 128)"
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_format_follows_python_format() {
        assert_eq!(
            apply_tag_format("{spec_hash}-dev", "abc").as_deref(),
            Ok("abc-dev")
        );
        assert_eq!(
            apply_tag_format("v1-{spec_hash:.2}", "abc").as_deref(),
            Ok("v1-ab")
        );
        assert!(apply_tag_format("{other}", "abc").is_err());
        assert!(apply_tag_format("{spec_hash", "abc").is_err());
        assert!(apply_tag_format("bad tag {spec_hash}", "abc").is_err());
    }
}
