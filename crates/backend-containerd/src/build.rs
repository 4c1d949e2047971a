//! Executing a build plan (in progress).

use berth_core::engine::{BuildOptions, BuiltImage, Progress};
use berth_core::plan::BuildPlan;
use berth_core::Result;

use crate::ContainerdEngine;

pub(crate) async fn build(
    _engine: &ContainerdEngine,
    _plan: &BuildPlan,
    _options: &BuildOptions,
    _progress: &dyn Progress,
) -> Result<BuiltImage> {
    Err(berth_core::Error::unsupported(
        crate::ENGINE,
        "build",
        "not yet",
    ))
}
