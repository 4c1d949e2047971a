//! The engine a run builds on, given by the caller: choosing one (flags, files, detection) is the front end's
//! business. A run opens it only when something must be built, once, and every image shares it.

use std::sync::Arc;

use async_trait::async_trait;
use berth_core::engine::ContainerEngine;
use berth_core::Result;

/// Opens the engine of a run when the first build needs it (a run in which every image is already in its
/// registry never connects). An engine already connected opens as itself.
#[async_trait]
pub trait OpenEngine: Send + Sync {
    /// Connects (and may say so through the caller's own output); called at most once per run.
    async fn open(&self) -> Result<Arc<dyn ContainerEngine>>;
}

#[async_trait]
impl OpenEngine for Arc<dyn ContainerEngine> {
    async fn open(&self) -> Result<Arc<dyn ContainerEngine>> {
        Ok(self.clone())
    }
}
