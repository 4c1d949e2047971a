//! A project's images as the units of one run, and what its `berth.lock` should say: before a build (names
//! without digests, for `berth build --check`) and after one (each task's immutable reference, from the
//! outcomes).

use std::collections::HashMap;

use berth_core::spec::ImageSpec;
use berth_core::tag::Namer;
use berth_core::{Error, Result};

use crate::lock::Lock;
use crate::project::Project;
use crate::run::Outcome;
use crate::units::{units, Unit};

/// The images of a project, named, with the units a run makes of them.
pub struct ProjectUnits {
    /// The named images' specs, in file order.
    pub images: Vec<(String, ImageSpec)>,
    /// The distinct images to check and build, bases first.
    pub units: Vec<Unit>,
    /// Each named image's unit.
    unit_of: HashMap<String, usize>,
    /// Tasks in file order, each with its image's name (`None`: the default image).
    tasks: Vec<(String, Option<String>)>,
}

impl ProjectUnits {
    /// Loads the project's specs (with `registry` for specs that name none) and names them.
    pub fn new(project: &Project, namer: &Namer, registry: Option<String>) -> Result<Self> {
        let images = project.load_images(registry)?;
        let labelled: Vec<(String, &ImageSpec)> =
            images.iter().map(|(n, s)| (n.clone(), s)).collect();
        let units = units(namer, &labelled)?;
        let mut unit_of = HashMap::new();
        for (image, spec) in &images {
            let name = namer.image_name(spec)?.to_string();
            let Some(at) = units.iter().position(|u| u.name.to_string() == name) else {
                return Err(Error::invalid(format!(
                    "image `{image}` ({name}) is not among the project's images"
                )));
            };
            unit_of.insert(image.clone(), at);
        }
        Ok(ProjectUnits {
            images,
            units,
            unit_of,
            tasks: project.tasks.clone(),
        })
    }

    /// Whether a task runs in the default image.
    pub fn uses_default_image(&self) -> bool {
        self.tasks.iter().any(|(_, image)| image.is_none())
    }

    fn unit(&self, image: &str) -> &Unit {
        // every task's image is a named image (checked when the project was read), and each has a unit
        &self.units[self.unit_of[image]]
    }

    /// What the lock must name now, without digests: `default_image` is the default image's name, when a
    /// task uses it.
    pub fn wanted(&self, default_image: Option<String>) -> Lock {
        let mut wanted = Lock::default();
        for (image, _) in &self.images {
            wanted
                .images
                .insert(image.clone(), self.unit(image).name.to_string());
        }
        for (task, image) in &self.tasks {
            let name = match image {
                Some(image) => Some(self.unit(image).name.to_string()),
                None => default_image.clone(),
            };
            wanted.tasks.extend(name.map(|n| (task.clone(), n)));
        }
        wanted.default_image = default_image;
        wanted
    }

    /// The lock a run's `outcomes` (one per unit) give, with `default_ref` (the default image's immutable
    /// reference) for tasks that run in it; and what is missing from it because it is not in a registry
    /// (``image `x` ``, ``task `y` ``). A lock with anything missing must not be written.
    pub fn locked(&self, outcomes: &[Outcome], default_ref: Option<String>) -> (Lock, Vec<String>) {
        let reference = |image: &str| {
            let unit = self.unit(image);
            let at = self.unit_of[image];
            outcomes
                .get(at)
                .and_then(Outcome::digest)
                .map(|d| format!("{}@{d}", unit.name))
        };
        let mut lock = Lock {
            default_image: default_ref.clone(),
            ..Lock::default()
        };
        let mut missing = Vec::new();
        for (image, _) in &self.images {
            match reference(image) {
                Some(r) => {
                    lock.images.insert(image.clone(), r);
                }
                None => missing.push(format!("image `{image}`")),
            }
        }
        for (task, image) in &self.tasks {
            let r = match image {
                Some(image) => reference(image),
                None => default_ref.clone(),
            };
            match r {
                Some(r) => {
                    lock.tasks.insert(task.clone(), r);
                }
                None => missing.push(format!("task `{task}`")),
            }
        }
        (lock, missing)
    }

    /// The project's tasks, in file order.
    pub fn tasks(&self) -> impl Iterator<Item = &str> {
        self.tasks.iter().map(|(task, _)| task.as_str())
    }
}
