//! # sim
//!
//! Deterministic simulation of Totem clusters, judged by the `spec` crate.
//!
//! The packet level ([`world`]) runs N real `totem-core` nodes over a seeded in-memory
//! network with loss, duplication, reordering, delay and a connectivity matrix, and with
//! process faults (crash, restart with or without persisted state, pause, clean leave, late
//! start). Every random choice derives from one seed, so a failing seed replays exactly:
//! `sim replay --seed S` with the same limits.
//!
//! - [`options`]: what one run does, drawn from its seed within the user's [`Limits`]
//!   (swarm testing: each seed switches fault kinds on or off and draws their rates).
//! - [`faults`]: the [`faults::Action`]s, the connectivity matrix and the drawing of a fault
//!   schedule.
//! - [`run`]: a safety phase with faults, then a liveness phase with everything healed,
//!   judged by the spec (the convergence bound is documented there).
//! - [`scenario`]: scripted runs (named regression scenarios).

pub mod cluster;
pub mod cpg;
pub mod faults;
pub mod options;
pub mod payload;
pub mod rng;
pub mod run;
pub mod scenario;
pub mod world;

pub use cpg::CpgWorkload;
pub use faults::{Action, FaultKinds, Timed, Trigger};
pub use options::{Limits, Options, StartChoice, StartMode};
pub use run::{RunReport, run, run_world};
pub use scenario::{Scenario, ScenarioReport};
