//! `berth doctor`'s checks: why berth cannot build here, and the command that fixes it.
//!
//! [`machine`] is the only part that looks at the machine (files, paths, sockets, `PATH`); the engine and
//! registry probes go through the same code the other commands use. Everything that decides ok, warning or
//! problem is a pure function over what they found, so it is tested with real-looking inputs.

pub mod accounts;
pub mod engines;
pub mod machine;
pub mod packages;
pub mod registry;
pub mod report;
pub mod rootless;
pub mod socket_access;
pub mod subids;
