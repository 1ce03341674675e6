//! # sim
//!
//! Deterministic simulation of Totem clusters, judged by the `spec` crate.
//!
//! The packet level ([`world`]) runs N real `totem-core` nodes over a seeded in-memory
//! network with loss, duplication, reordering and delay. Every random choice derives from
//! one seed, so a failing seed replays exactly: `sim replay --seed S` with the same limits.

pub mod options;
pub mod payload;
pub mod rng;
pub mod run;
pub mod world;

pub use options::{Limits, Options};
pub use run::{RunReport, run, run_world};
