//! The project file as the CLI reads it: berth-workflow's [`berth_workflow::project::Project`] (images, tasks,
//! registry, default image) with its `engine:` entry, which only the CLI's engine choice reads.

use std::ops::Deref;
use std::path::Path;

use berth_core::Result;

use super::engine::EngineSettings;

/// A project file, read and checked, with its engine settings.
#[derive(Debug, Clone)]
pub struct Project {
    project: berth_workflow::project::Project,
    /// Engine name and connection settings.
    pub engine: EngineSettings,
}

impl Project {
    /// The nearest `berth.yaml` at or above `dir`, read.
    pub fn find(dir: &Path) -> Result<Option<Project>> {
        let Some(project) = berth_workflow::project::Project::find(dir)? else {
            return Ok(None);
        };
        let engine = EngineSettings::read(&project.yaml)?;
        Ok(Some(Project { project, engine }))
    }
}

impl Deref for Project {
    type Target = berth_workflow::project::Project;

    fn deref(&self) -> &Self::Target {
        &self.project
    }
}
