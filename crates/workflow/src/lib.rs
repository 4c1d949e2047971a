//! berth's project workflow as a library: what the `berth build` command does between reading its arguments and
//! printing its results, for any front end (the CLI, a Python binding, a server) to drive.
//!
//! A run takes a set of specs or a project ([`project::Project`], `berth.yaml`), turns them into the distinct
//! images to make, bases before the images built on them ([`units`]), asks the registries about all of them at
//! once, builds what is missing with at most `jobs` builds at a time, each image as a task of its own, and pushes
//! each as soon as it is built, overlapping the next builds ([`run`]). A failure stops only the images built on
//! it. A project's tasks are then mapped to immutable references in `berth.lock` ([`lock`]). Two berths on one
//! machine never build the same image at once ([`image_lock`]).
//!
//! The library prints nothing and decides no exit status: it reports through core's
//! [`Progress`](berth_core::engine::Progress) ([`report::RunProgress`]) and returns an
//! [`Outcome`](run::Outcome) per image. It chooses no engine either: the caller passes one, connected or opened on
//! first use ([`engine::OpenEngine`]), and the registry access of the run ([`registries::Registries`]).

mod build;
pub mod engine;
mod hints;
pub mod image_lock;
pub mod lock;
pub mod project;
pub mod project_units;
pub mod push_via;
pub mod registries;
pub mod report;
pub mod run;
pub mod units;

pub use build::push;
pub use engine::OpenEngine;
pub use push_via::PushVia;
pub use registries::Registries;
pub use report::RunProgress;
pub use run::{run, Context, IfUnknown, Outcome, RunOptions};
pub use units::{units, Unit};
