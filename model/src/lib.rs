//! # model: stateright models of totem-core
//!
//! [`TotemModel`] runs N copies of the real `totem_core::Node` over a network that may lose,
//! duplicate and reorder packets within budgets, fires any armed timer at any step, crashes
//! and restarts machines, and lets applications send: raw Totem messages, or (with
//! [`Settings::cpg`]) CPG clients that join, leave, multicast and exit on top of the real
//! `totem_core::cpg::CpgNode`. Every spec safety property is an `always` property over the
//! trace of each state; `sometimes` properties show that the interesting behaviour (ring
//! formation, delivery everywhere, merge, Safe delivery, a NODEDOWN view change) is
//! reachable at the chosen bounds. See `README.md` for researchers.
#![forbid(unsafe_code)]

pub mod core;
pub mod cpg;
pub mod describe;
pub mod fingerprint;
pub mod history;
pub mod mapping;
pub mod model;
pub mod run;

pub use cpg::CpgBudgets;
pub use model::{Action, Guarantees, Identity, ModelState, Settings, Start, Timers, TotemModel};
