//! `berth doctor`'s checks that are not about one engine: whether each engine of the table answers and which
//! one berth would build with ([`engines`]), what killed berth processes left in each
//! engine ([`leftovers`]), the registry's credentials ([`registry`]), and the report
//! ([`report`]). Each engine's own checks (rootless Podman, Docker's `daemon.json`) come from its provider
//! (`EngineProvider::doctor` in berth-core), so this module names no engine.
//!
//! Everything that decides ok, warning or problem is a pure function over what the probes found, so it is tested
//! with real-looking inputs.

pub mod engines;
pub mod leftovers;
pub mod registry;
pub mod report;
