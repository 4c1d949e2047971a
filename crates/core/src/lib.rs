//! berth's engine-free core.
//!
//! A spec (flytekit's `ImageSpec` fields in YAML, [`spec`]) gets a deterministic name (`registry/name:tag`, equal
//! to flytekit's, [`tag`]) and an engine-neutral [`plan`] of build steps, which Docker and Podman receive as a
//! Dockerfile ([`render`]) and containerd executes step by step. Engines implement the small
//! [`engine::ContainerEngine`] trait in their own crates; every failure is an [`error::Error`] classified by kind.
//! Each backend also exports an [`provider::EngineProvider`] (name, settings, detection, connect) for the
//! table front ends iterate. Nothing here talks to an engine or a network.

pub mod background;
pub mod doctor;
pub mod engine;
pub mod error;
pub mod image_config;
pub mod lines;
pub mod operation;
pub mod plan;
pub mod platform;
pub mod process;
pub mod provider;
pub mod pyrepr;
pub mod reference;
pub mod render;
pub mod shell;
pub mod spec;
pub mod tag;
pub mod yaml;

pub use error::{Error, ErrorKind, ErrorStatus, Result};
pub use operation::Operation;
