//! # The Totem node
//!
//! The daemon's building blocks: the [`runtime`] event loop that drives the sans-IO core
//! over a [`transport`], with [`protect`]ion of every packet and a durable [`store`] for the
//! ring sequence. [`sam`] is the Simple Availability Manager (a supervisor that keeps a
//! local application alive, and its client library).
#![forbid(unsafe_code)]

pub mod client;
pub mod ipc;
pub mod protect;
pub mod runtime;
pub mod sam;
pub mod store;
pub mod transport;
