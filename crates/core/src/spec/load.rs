//! Reading a spec file: YAML, field checks with positions, path resolution, nested base specs.

use std::path::{Component, Path, PathBuf};

use super::check;
use super::flytekit::{enum_member, FromPython};
use super::{BaseImage, BuilderConfig, CopyEntry, Field, ImageSpec, SecretMount};
use crate::error::{Error, Result};
use crate::pyrepr::str_value;
use crate::yaml::{self, Mark, Node, Value};

/// Values a project gives every spec it loads, where the spec itself says nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpecDefaults {
    /// `registry` for specs (and their base specs) that set none; it takes part in the tag exactly as if the
    /// spec file said it.
    pub registry: Option<String>,
}

/// Loads a spec file, resolving relative paths against its folder and loading a nested base spec.
pub fn load_spec(path: &Path) -> Result<ImageSpec> {
    load_spec_with(path, &SpecDefaults::default())
}

/// [`load_spec`] with project defaults, applied to the spec and its base specs.
pub fn load_spec_with(path: &Path, defaults: &SpecDefaults) -> Result<ImageSpec> {
    let mut chain = Vec::new();
    load_chained(path, &mut chain, defaults)
}

/// Loads a spec from text as if it were the file `path` (which need not exist; its folder is used for paths).
pub fn load_spec_str(text: &str, path: &Path) -> Result<ImageSpec> {
    let file = absolute(path)?;
    let mut chain = vec![file.clone()];
    parse(text, &file, &mut chain, &SpecDefaults::default())
}

/// Loads a spec written inline in another YAML file (a project file's `images:` entry): `node` is the mapping of
/// ImageSpec fields, `file` the file it is in (relative paths resolve against its folder; errors point into it).
pub fn load_inline_spec(node: &Node, file: &Path, defaults: &SpecDefaults) -> Result<ImageSpec> {
    let file = absolute(file)?;
    let mut chain = vec![file.clone()];
    parse_root(node.clone(), &file, &mut chain, defaults, None)
}

/// Loads the fields of a spec a flytekit process sent (see [`super::flytekit`]): `file` stands for the spec in
/// messages and its folder is the working directory paths resolve against. An enum member becomes its value,
/// hashed as its Python repr; no project defaults apply, since flytekit names the image.
pub(super) fn load_python_spec(
    mut fields: Node,
    file: &Path,
    extras: &FromPython,
) -> Result<ImageSpec> {
    let mut reprs = Vec::new();
    let mut extras = extras.clone();
    if let Value::Map(entries) = &mut fields.value {
        for (key, value) in entries.iter_mut() {
            if let Some((repr, plain, member)) = enum_member(value) {
                let field = key.value.as_str().and_then(Field::from_name);
                if field == Some(Field::SourceCopyMode) {
                    extras.copy_mode_member = Some(member.to_string());
                }
                let plain = plain.clone();
                reprs.extend(field.map(|f| (f, repr)));
                value.value = plain;
            }
        }
    }
    let mut chain = vec![file.to_path_buf()];
    let defaults = SpecDefaults::default();
    let mut spec = parse_root(fields, file, &mut chain, &defaults, Some(&extras))?;
    spec.python_reprs = reprs;
    Ok(spec)
}

fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).map_err(|e| Error::io(path, e))
}

fn load_chained(
    path: &Path,
    chain: &mut Vec<PathBuf>,
    defaults: &SpecDefaults,
) -> Result<ImageSpec> {
    let file = absolute(path)?;
    let text = yaml::read_file(&file).map_err(|e| {
        Error::io(&file, e)
            .with_operation("read spec")
            .with_hint("check the spec path; it is relative to where you run berth")
    })?;
    let canonical = file.canonicalize().unwrap_or_else(|_| file.clone());
    if chain.contains(&canonical) {
        let cycle: Vec<String> = chain
            .iter()
            .chain([&canonical])
            .map(|p| p.display().to_string())
            .collect();
        return Err(Error::invalid(format!(
            "base_image specs form a cycle: {}",
            cycle.join(" -> ")
        )));
    }
    chain.push(canonical);
    let spec = parse(&text, &file, chain, defaults);
    chain.pop();
    spec
}

/// An error at a position in a spec file.
pub(super) fn at(file: &Path, mark: Mark, message: impl std::fmt::Display) -> Error {
    if mark.line == 0 {
        // A spec sent as JSON by a program: there is no line to point at.
        return Error::invalid(format!("{}: {message}", file.display()))
            .with_operation("read spec");
    }
    Error::invalid(format!(
        "{}:{}:{}: {message}",
        file.display(),
        mark.line,
        mark.column
    ))
    .with_operation("read spec")
}

fn parse(
    text: &str,
    file: &Path,
    chain: &mut Vec<PathBuf>,
    defaults: &SpecDefaults,
) -> Result<ImageSpec> {
    let root = yaml::load(text).map_err(|e| at(file, e.mark, e.message))?;
    let Some(root) = root else {
        return Err(at(
            file,
            Mark { line: 1, column: 1 },
            "the spec is empty: write its fields, starting with `name: my-image` (without one, flytekit's default name `flytekit` applies)",
        ));
    };
    parse_root(root, file, chain, defaults, None)
}

fn parse_root(
    root: Node,
    file: &Path,
    chain: &mut Vec<PathBuf>,
    defaults: &SpecDefaults,
    python: Option<&FromPython>,
) -> Result<ImageSpec> {
    let Value::Map(entries) = root.value else {
        return Err(at(
            file,
            root.mark,
            format!(
                "expected a mapping of ImageSpec fields, found {}",
                root.value.type_name()
            ),
        ));
    };
    let mut raw = Vec::with_capacity(entries.len());
    for (key, value) in entries {
        let Value::Str(name) = &key.value else {
            return Err(at(
                file,
                key.mark,
                format!("field names are text, found {}", key.value.type_name()),
            ));
        };
        let Some(field) = Field::from_name(name) else {
            let suggestion = match Field::nearest(name) {
                Some(f) => format!("; did you mean `{f}`?"),
                None => "; see `berth render --help` for the fields".to_string(),
            };
            return Err(at(
                file,
                key.mark,
                format!("unknown field `{name}`{suggestion}"),
            ));
        };
        raw.push((field, value));
    }
    if let Some(registry) = &defaults.registry {
        let unset = |(f, n): &(Field, Node)| *f == Field::Registry && n.value == Value::Null;
        if !raw.iter().any(|(f, _)| *f == Field::Registry) || raw.iter().any(unset) {
            raw.retain(|entry| !unset(entry));
            raw.push((
                Field::Registry,
                Node {
                    value: Value::Str(registry.clone()),
                    mark: root.mark,
                },
            ));
        }
    }
    let dir = file
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/"));
    let reader = Reader {
        file,
        dir: &dir,
        raw: &raw,
        defaults,
        python,
    };
    reader.build(chain)
}

struct Reader<'a> {
    file: &'a Path,
    dir: &'a Path,
    raw: &'a [(Field, Node)],
    defaults: &'a SpecDefaults,
    /// Set for a spec a flytekit process sent: its copy modes are flytekit's own.
    python: Option<&'a FromPython>,
}

impl Reader<'_> {
    fn node(&self, field: Field) -> Option<&Node> {
        self.raw
            .iter()
            .find(|(f, n)| *f == field && n.value != Value::Null)
            .map(|(_, n)| n)
    }

    fn err(&self, node: &Node, field: Field, message: impl std::fmt::Display) -> Error {
        at(self.file, node.mark, format!("`{field}`: {message}"))
    }

    fn string(&self, field: Field) -> Result<Option<String>> {
        let Some(node) = self.node(field) else {
            return Ok(None);
        };
        match &node.value {
            Value::Str(s) => Ok(Some(s.clone())),
            Value::Float(_) | Value::Int(_) => {
                let written = str_value(&node.value);
                if self.python.is_some() {
                    return Err(self.err(
                        node,
                        field,
                        format!("expected a str, found the number {written}; pass it as text, e.g. {field}=\"3.10\""),
                    ));
                }
                Err(self.err(
                    node,
                    field,
                    format!("expected text, found the number {written}; YAML reads unquoted versions as numbers (3.10 becomes 3.1), so quote it: {field}: \"<version>\""),
                ))
            }
            other => Err(self.err(
                node,
                field,
                format!("expected text, found {}", other.type_name()),
            )),
        }
    }

    fn strings(&self, field: Field) -> Result<Option<Vec<String>>> {
        let Some(node) = self.node(field) else {
            return Ok(None);
        };
        let Value::Seq(items) = &node.value else {
            return Err(self.err(
                node,
                field,
                format!("expected a list of text, found {}", node.value.type_name()),
            ));
        };
        items
            .iter()
            .map(|item| match &item.value {
                Value::Str(s) => Ok(s.clone()),
                other => Err(self.err(
                    item,
                    field,
                    format!(
                        "expected a list of text, found {} in it; quote the item",
                        other.type_name()
                    ),
                )),
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    fn path(&self, field: Field, must_be_dir: bool) -> Result<Option<PathBuf>> {
        let Some(text) = self.string(field)? else {
            return Ok(None);
        };
        let node = self.node(field).expect("string() found it");
        let path = self.dir.join(&text);
        let meta = std::fs::metadata(&path).map_err(|e| {
            self.err(
                node,
                field,
                format!("{} cannot be read: {e}", path.display()),
            )
            .with_hint("paths in a spec are relative to the spec file's folder")
        })?;
        if must_be_dir && !meta.is_dir() {
            return Err(self.err(node, field, format!("{} is not a folder", path.display())));
        }
        if !must_be_dir && meta.is_dir() {
            return Err(self.err(
                node,
                field,
                format!("{} is a folder; expected a file", path.display()),
            ));
        }
        Ok(Some(path))
    }

    fn build(&self, chain: &mut Vec<PathBuf>) -> Result<ImageSpec> {
        let name = self
            .string(Field::Name)?
            .unwrap_or_else(|| "flytekit".to_string())
            .to_lowercase();
        if let Some(node) = self.node(Field::Name) {
            check::repository_name(&name).map_err(|m| self.err(node, Field::Name, m))?;
        }
        let registry = self.string(Field::Registry)?.map(|r| r.to_lowercase());
        if let (Some(r), Some(node)) = (&registry, self.node(Field::Registry)) {
            check::registry(r).map_err(|m| self.err(node, Field::Registry, m))?;
        }
        let platform = self
            .string(Field::Platform)?
            .unwrap_or_else(|| default_platform(registry.as_deref()));

        let (source_root, source_files) = match self.python {
            None => {
                let root = self.path(Field::SourceRoot, true)?;
                self.check_copy_mode(root.is_some())?;
                (root, None)
            }
            Some(python) => self.python_source(python)?,
        };

        if let Some(node) = self.node(Field::BuilderOptions) {
            if !matches!(node.value, Value::Map(_)) {
                return Err(self.err(node, Field::BuilderOptions, "expected a mapping"));
            }
        }
        let tag_format = self.string(Field::TagFormat)?;
        if let (Some(format), Some(node)) = (&tag_format, self.node(Field::TagFormat)) {
            crate::tag::apply_tag_format(format, "x")
                .map_err(|m| self.err(node, Field::TagFormat, m))?;
        }
        let _builder = self.string(Field::Builder)?;

        Ok(ImageSpec {
            file: self.file.to_path_buf(),
            dir: self.dir.to_path_buf(),
            raw: self.raw.to_vec(),
            name,
            python_version: self.string(Field::PythonVersion)?,
            source_root,
            source_files,
            env: self.env()?,
            registry,
            packages: self.strings(Field::Packages)?.unwrap_or_default(),
            conda_packages: self.strings(Field::CondaPackages)?.unwrap_or_default(),
            conda_channels: self.strings(Field::CondaChannels)?.unwrap_or_default(),
            requirements: self.path(Field::Requirements, false)?,
            apt_packages: self.strings(Field::AptPackages)?.unwrap_or_default(),
            cuda: self.string(Field::Cuda)?,
            cudnn: self.string(Field::Cudnn)?,
            base_image: self.base_image(chain)?,
            platform,
            pip_index: self.string(Field::PipIndex)?,
            pip_extra_index_url: self.strings(Field::PipExtraIndexUrl)?.unwrap_or_default(),
            pip_secret_mounts: self.secret_mounts()?,
            pip_extra_args: self.string(Field::PipExtraArgs)?,
            registry_config: self
                .string(Field::RegistryConfig)?
                .map(|p| self.dir.join(p)),
            entrypoint: self.strings(Field::Entrypoint)?,
            commands: self.strings(Field::Commands)?.unwrap_or_default(),
            tag_format,
            copy: self.copy_entries()?,
            python_exec: self.string(Field::PythonExec)?,
            runtime_packages: self.strings(Field::RuntimePackages)?.unwrap_or_default(),
            builder_config: self.builder_config()?,
            python_reprs: Vec::new(),
        })
    }

    /// flytekit's copy modes, as its tag and default builder read them: the member LOADED_MODULES copies the files
    /// the process listed, NO_COPY nothing (the root is then hashed as a path, as when the mode is unset); ALL, or
    /// any plain value (which flytekit compares unequal to every member), copies every file.
    fn python_source(
        &self,
        python: &FromPython,
    ) -> Result<(Option<PathBuf>, Option<Vec<PathBuf>>)> {
        let Some(node) = self.node(Field::SourceCopyMode) else {
            return Ok((None, None));
        };
        let member = python.copy_mode_member.as_deref();
        if member == Some("NO_COPY") {
            return Ok((None, None));
        }
        let Some(root) = self.path(Field::SourceRoot, true)? else {
            return Err(self.err(
                node,
                Field::SourceCopyMode,
                "copies from `source_root`, which is not set (flytekit refuses it as well)",
            ));
        };
        if member != Some("LOADED_MODULES") {
            return Ok((Some(root), None));
        }
        match &python.source_files {
            Some(files) => Ok((Some(root), Some(files.clone()))),
            None => Err(self.err(
                node,
                Field::SourceCopyMode,
                "LOADED_MODULES needs the list of imported files, which the flytekit plugin sends",
            )),
        }
    }

    fn item(&self, field: Field, index: usize) -> &Node {
        let node = self.node(field).expect("field was read");
        match &node.value {
            Value::Seq(items) => &items[index],
            _ => node,
        }
    }

    fn check_copy_mode(&self, has_source_root: bool) -> Result<()> {
        match (self.node(Field::SourceCopyMode), has_source_root) {
            (None, false) => Ok(()),
            (None, true) => {
                let node = self.node(Field::SourceRoot).expect("source_root is set");
                Err(self.err(
                    node,
                    Field::SourceRoot,
                    "without `source_copy_mode`, flytekit copies LOADED_MODULES, which depends on what a Python process imported and cannot be reproduced; add `source_copy_mode: 2` (ALL) to copy every file under source_root",
                ))
            }
            (Some(node), has_root) => {
                if node.value != Value::Int(2) {
                    return Err(self.err(
                        node,
                        Field::SourceCopyMode,
                        format!(
                            "berth supports 2 (ALL: every file under source_root, minus .gitignore/.dockerignore); found {}. To copy no source, remove source_root",
                            str_value(&node.value)
                        ),
                    ));
                }
                if !has_root {
                    return Err(self.err(
                        node,
                        Field::SourceCopyMode,
                        "needs `source_root`, the folder to copy from",
                    ));
                }
                Ok(())
            }
        }
    }

    fn env(&self) -> Result<Vec<(String, String)>> {
        let Some(node) = self.node(Field::Env) else {
            return Ok(Vec::new());
        };
        let Value::Map(entries) = &node.value else {
            return Err(self.err(
                node,
                Field::Env,
                format!(
                    "expected a mapping of NAME: value, found {}",
                    node.value.type_name()
                ),
            ));
        };
        entries
            .iter()
            .map(|(k, v)| {
                let Value::Str(key) = &k.value else {
                    return Err(self.err(k, Field::Env, "variable names are text"));
                };
                if matches!(v.value, Value::Seq(_) | Value::Map(_)) {
                    return Err(self.err(
                        v,
                        Field::Env,
                        format!(
                            "the value of {key} must be text, found {}",
                            v.value.type_name()
                        ),
                    ));
                }
                Ok((key.clone(), str_value(&v.value)))
            })
            .collect()
    }

    fn base_image(&self, chain: &mut Vec<PathBuf>) -> Result<Option<BaseImage>> {
        let Some(node) = self.node(Field::BaseImage) else {
            return Ok(None);
        };
        match &node.value {
            Value::Str(reference) => Ok(Some(BaseImage::Reference(reference.clone()))),
            Value::Map(entries) => {
                let spec_path = match entries.as_slice() {
                    [(k, v)] if k.value.as_str() == Some("spec") => v.value.as_str(),
                    _ => None,
                };
                let Some(spec_path) = spec_path else {
                    return Err(self.err(
                        node,
                        Field::BaseImage,
                        "expected an image reference or `{spec: other-spec.yaml}`",
                    ));
                };
                let nested = load_chained(&self.dir.join(spec_path), chain, self.defaults)
                    .map_err(|e| e.context(format!("{}: base_image spec", self.file.display())))?;
                Ok(Some(BaseImage::Spec(Box::new(nested))))
            }
            other => Err(self.err(
                node,
                Field::BaseImage,
                format!("expected an image reference, found {}", other.type_name()),
            )),
        }
    }

    fn secret_mounts(&self) -> Result<Vec<SecretMount>> {
        let Some(node) = self.node(Field::PipSecretMounts) else {
            return Ok(Vec::new());
        };
        let expected = "expected a list of [secret file, mount path] pairs";
        let Value::Seq(items) = &node.value else {
            return Err(self.err(node, Field::PipSecretMounts, expected));
        };
        items
            .iter()
            .map(|item| match &item.value {
                Value::Seq(pair) => match pair.as_slice() {
                    [src, dst] => match (&src.value, &dst.value) {
                        (Value::Str(src), Value::Str(dst)) => Ok(SecretMount {
                            source: self.dir.join(src),
                            target: dst.clone(),
                        }),
                        _ => Err(self.err(item, Field::PipSecretMounts, expected)),
                    },
                    _ => Err(self.err(item, Field::PipSecretMounts, expected)),
                },
                _ => Err(self.err(item, Field::PipSecretMounts, expected)),
            })
            .collect()
    }

    fn copy_entries(&self) -> Result<Vec<CopyEntry>> {
        let Some(entries) = self.strings(Field::Copy)? else {
            return Ok(Vec::new());
        };
        let root = self
            .dir
            .canonicalize()
            .map_err(|e| Error::io(self.dir, e))?;
        entries
            .iter()
            .enumerate()
            .map(|(i, entry)| {
                let node = self.item(Field::Copy, i);
                let relative = Path::new(entry);
                if relative.is_absolute() || relative.components().any(|c| c == Component::ParentDir) {
                    return Err(self.err(
                        node,
                        Field::Copy,
                        format!("`{entry}` must be a path inside the spec's folder, without `..` and not absolute"),
                    )
                    .with_hint("move the files the image needs under the spec's folder (or move the spec up, e.g. to the project root) and name them relative to it"));
                }
                let absolute = self.dir.join(relative);
                let resolved = absolute.canonicalize().map_err(|e| {
                    self.err(node, Field::Copy, format!("{} cannot be read: {e}", absolute.display()))
                })?;
                if !resolved.starts_with(&root) {
                    return Err(self.err(
                        node,
                        Field::Copy,
                        format!("`{entry}` leads outside the spec's folder through a symlink (to {})", resolved.display()),
                    ));
                }
                let posix: Vec<String> = relative
                    .components()
                    .filter_map(|c| match c {
                        Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
                        _ => None,
                    })
                    .collect();
                if posix.is_empty() {
                    return Err(self.err(node, Field::Copy, "copying the spec's whole folder is not supported; name the files or folders to copy"));
                }
                Ok(CopyEntry { relative: posix.join("/"), is_dir: resolved.is_dir(), absolute })
            })
            .collect()
    }

    fn builder_config(&self) -> Result<BuilderConfig> {
        let mut config = BuilderConfig::default();
        let Some(node) = self.node(Field::BuilderConfig) else {
            return Ok(config);
        };
        let Value::Map(entries) = &node.value else {
            return Err(self.err(
                node,
                Field::BuilderConfig,
                "expected a mapping such as {uv_image: ...}",
            ));
        };
        for (k, v) in entries {
            let slot = match k.value.as_str() {
                Some("uv_image") => &mut config.uv_image,
                Some("micromamba_image") => &mut config.micromamba_image,
                _ => continue,
            };
            let Value::Str(image) = &v.value else {
                return Err(self.err(v, Field::BuilderConfig, "expected an image reference"));
            };
            *slot = image.clone();
        }
        Ok(config)
    }
}

/// flytekit's default platform: arm64 only when pushing to a `localhost:` registry from an arm64 machine.
fn default_platform(registry: Option<&str>) -> String {
    let arm = matches!(std::env::consts::ARCH, "aarch64" | "arm64");
    if arm && registry.is_some_and(|r| r.starts_with("localhost:")) {
        "linux/arm64".into()
    } else {
        "linux/amd64".into()
    }
}
