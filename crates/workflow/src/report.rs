//! How a run reports: through core's [`Progress`], once for the run (status lines and warnings) and once per
//! image (its build and push), so a front end renders them as it likes and the library prints nothing.

use berth_core::engine::{NoProgress, Progress, ProgressEvent};

/// Where a run's progress goes. The run itself sends [`ProgressEvent::Line`] for status lines
/// (`name: building on docker`) and [`ProgressEvent::Warning`] for lines a person must see whatever the
/// verbosity; both name the image they concern. Each image's build and push report to [`RunProgress::image`].
pub trait RunProgress: Progress {
    /// Progress of the build and push of `image` (its short name), shown as that image's.
    fn image(&self, image: &str) -> Box<dyn Progress>;
}

impl RunProgress for NoProgress {
    fn image(&self, _image: &str) -> Box<dyn Progress> {
        Box::new(NoProgress)
    }
}

/// A status line.
pub(crate) fn say(progress: &dyn Progress, text: String) {
    progress.event(ProgressEvent::Line(text));
}

/// A line shown at every verbosity.
pub(crate) fn warn(progress: &dyn Progress, text: String) {
    progress.event(ProgressEvent::Warning(text));
}
