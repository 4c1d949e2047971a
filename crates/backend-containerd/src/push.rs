//! Pushing (in progress).

use berth_core::engine::{Progress, PushedImage, TransferOptions};
use berth_core::Result;

use crate::ContainerdEngine;

pub(crate) async fn push(
    _engine: &ContainerdEngine,
    _reference: &str,
    _options: &TransferOptions,
    _progress: &dyn Progress,
) -> Result<PushedImage> {
    Err(berth_core::Error::unsupported(
        crate::ENGINE,
        "push",
        "not yet",
    ))
}
