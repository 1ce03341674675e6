//! # The Totem node
//!
//! The daemon's building blocks: the [`runtime`] event loop that drives the sans-IO core
//! over a [`transport`], with [`protect`]ion of every packet and a durable [`store`] for the
//! ring sequence.
#![forbid(unsafe_code)]

pub mod client;
pub mod ipc;
pub mod protect;
pub mod runtime;
pub mod store;
pub mod transport;
