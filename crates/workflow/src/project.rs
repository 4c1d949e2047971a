//! The project file, `berth.yaml` at the project root (found by walking up from the current folder, as cargo
//! finds `Cargo.toml`): the engine, the default registry and image, named images, and which image each task runs.
//!
//! ```yaml
//! engine: podman
//! registry: ghcr.io/my-org
//! default_image: ghcr.io/my-org/flytekit:py3.12-1.16.31   # else flytekit's scheme
//! images:
//!   base: specs/base.yaml                 # a spec file, relative to this file
//!   trainer:                              # or a spec written inline
//!     base_image: {spec: specs/base.yaml}
//!     packages: [torch]
//! tasks:
//!   prepare: base
//!   train: trainer
//!   report:                               # no image: the default image
//! ```
//!
//! The `engine:` entry is the front end's to read (choosing an engine is not the workflow's business): it is kept
//! as written, in [`Project::yaml`].

use std::path::{Path, PathBuf};

use berth_core::spec::{load_inline_spec, load_spec_with, ImageSpec, SpecDefaults};
use berth_core::yaml::{Node, Value, YamlFile};
use berth_core::{Error, Result};

/// The project file's name.
pub const PROJECT_FILE: &str = "berth.yaml";

/// Keys a project file may have.
const KEYS: &[&str] = &[
    "engine",
    "registry",
    "default_image",
    "python_version",
    "images",
    "tasks",
];

/// Where a named image's spec is.
#[derive(Debug, Clone)]
pub enum ImageSource {
    /// A spec file (absolute).
    File(PathBuf),
    /// A spec written in the project file.
    Inline(Node),
}

/// A project file, read and checked.
#[derive(Debug, Clone)]
pub struct Project {
    /// The file (absolute).
    pub file: PathBuf,
    /// The file's entries as read, for the settings a front end reads itself (`engine:`).
    pub yaml: YamlFile,
    /// Registry for specs that name none.
    pub registry: Option<String>,
    /// The image of tasks that name none.
    pub default_image: Option<String>,
    /// Python version of flytekit's default image scheme.
    pub python_version: Option<String>,
    /// Named images, in file order.
    pub images: Vec<(String, ImageSource)>,
    /// Tasks in file order, each with its image's name (`None`: the default image).
    pub tasks: Vec<(String, Option<String>)>,
}

impl Project {
    /// The nearest `berth.yaml` at or above `dir`, read.
    pub fn find(dir: &Path) -> Result<Option<Project>> {
        for folder in dir.ancestors() {
            let path = folder.join(PROJECT_FILE);
            if path.is_file() {
                return Project::read(&path).map(Some);
            }
        }
        Ok(None)
    }

    /// Reads a project file.
    pub fn read(path: &Path) -> Result<Project> {
        let path = std::path::absolute(path).map_err(|e| Error::io(path, e))?;
        let file = YamlFile::read(&path, KEYS)?;
        let dir = path.parent().unwrap_or(Path::new("/")).to_path_buf();
        let images = match file.get("images") {
            None => Vec::new(),
            Some(node) => read_images(&file, node, &dir)?,
        };
        let tasks = match file.get("tasks") {
            None => Vec::new(),
            Some(node) => read_tasks(&file, node, &images)?,
        };
        Ok(Project {
            registry: file.text("registry")?.map(|r| r.to_lowercase()),
            default_image: file.text("default_image")?,
            python_version: file.text("python_version")?,
            images,
            tasks,
            file: path,
            yaml: file,
        })
    }

    /// The folder of the project file.
    pub fn dir(&self) -> &Path {
        self.file.parent().unwrap_or(Path::new("/"))
    }

    /// Loads every named image's spec, with `registry` for specs (and base specs) that name none.
    pub fn load_images(&self, registry: Option<String>) -> Result<Vec<(String, ImageSpec)>> {
        let defaults = SpecDefaults { registry };
        self.images
            .iter()
            .map(|(name, source)| {
                let spec = match source {
                    ImageSource::File(path) => load_spec_with(path, &defaults),
                    ImageSource::Inline(node) => load_inline_spec(node, &self.file, &defaults),
                };
                spec.map(|s| (name.clone(), s))
                    .map_err(|e| e.context(format!("image `{name}` of {}", self.file.display())))
            })
            .collect()
    }
}

fn read_images(file: &YamlFile, node: &Node, dir: &Path) -> Result<Vec<(String, ImageSource)>> {
    let Value::Map(entries) = &node.value else {
        return Err(file.error(
            node,
            "`images` must map image names to spec files or inline specs",
        ));
    };
    let mut images = Vec::new();
    for (key, value) in entries {
        let name = file.text_of(key, "image name")?;
        let source = match &value.value {
            Value::Str(path) => {
                let path = dir.join(path);
                if !path.is_file() {
                    return Err(file
                        .error(value, format!("image `{name}`: no spec file at {}", path.display()))
                        .with_hint("spec paths are relative to berth.yaml"));
                }
                ImageSource::File(path)
            }
            Value::Map(_) => ImageSource::Inline(value.clone()),
            other => {
                return Err(file.error(
                    value,
                    format!(
                        "image `{name}`: expected a spec file path or an inline spec (a mapping of ImageSpec \
                         fields), found {}",
                        other.type_name()
                    ),
                ))
            }
        };
        images.push((name, source));
    }
    Ok(images)
}

fn read_tasks(
    file: &YamlFile,
    node: &Node,
    images: &[(String, ImageSource)],
) -> Result<Vec<(String, Option<String>)>> {
    let Value::Map(entries) = &node.value else {
        return Err(file.error(
            node,
            "`tasks` must map task names to image names (or nothing, for the default image)",
        ));
    };
    entries
        .iter()
        .map(|(key, value)| {
            let task = file.text_of(key, "task name")?;
            if value.value == Value::Null {
                return Ok((task, None));
            }
            let image = file.text_of(value, &format!("tasks.{task}"))?;
            if !images.iter().any(|(name, _)| *name == image) {
                let known: Vec<&str> = images.iter().map(|(n, _)| n.as_str()).collect();
                return Err(file
                    .error(
                        value,
                        format!("task `{task}` names the image `{image}`, which `images` does not define"),
                    )
                    .with_hint(if known.is_empty() {
                        "add it under `images:`, or leave the task's value empty for the default image".to_string()
                    } else {
                        format!("images defined here: {}", known.join(", "))
                    }));
            }
            Ok((task, Some(image)))
        })
        .collect()
}
