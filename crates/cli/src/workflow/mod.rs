//! Building many images as one run: the distinct images of a set of specs or of a project ([`units`]), checked,
//! built and pushed with bounded concurrency ([`run`]), and the lock file that maps a project's tasks to
//! immutable references ([`lock`]).

pub mod image_lock;
pub mod lock;
pub mod push_via;
pub mod run;
pub mod units;
