//! # totem-core
//!
//! The Totem single-ring ordering and membership protocol, as a deterministic sans-IO state
//! machine. No sockets, clocks, threads or global randomness: time and input come in through
//! [`Node`]'s methods, and everything the caller must do (send, deliver, persist) comes out
//! as [`Output`]s. The same inputs always produce the same outputs, byte for byte.
//!
//! Modules:
//! - [`ids`]: node ids, ring ids and serial-number arithmetic.
//! - [`message`]: the six Totem message types.
//! - [`wire`]: the hand-written wire codec.
//! - [`config`]: protocol parameters with Corosync's defaults and validation.
//! - [`pg`]: packing small application messages into frames and fragmenting large ones.
//! - [`srp`]: the single-ring protocol (ordering, flow control, retransmission, delivery).
//! - [`node`]: the node: srp plus packing, the API the runtime drives.
//! - [`cpg`]: closed process groups with the synchronization barrier, on top of a node.
//! - [`loopback`]: a lossless in-memory driver for benchmarks and directed tests.
#![forbid(unsafe_code)]

pub mod broken;
pub mod config;
pub mod cpg;
pub mod ids;
pub mod loopback;
pub mod message;
pub mod node;
pub mod pg;
pub mod srp;
pub mod time;
pub mod timer;
pub mod wire;

pub use config::{Config, ConfigError, TimingBase};
pub use ids::{NodeId, RingId, Seq};
pub use message::{Guarantee, Message};
pub use node::{ConfigChange, ConfigKind, Delivery, Dest, Node, Output, Probe, SubmitError};
pub use time::Time;
pub use timer::TimerKind;
