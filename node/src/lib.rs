//! # totem-node
//!
//! The Totem daemon (`totemd`), the admin tool (`totemctl`) and the CPG client library,
//! built around the sans-IO protocol core:
//!
//! - [`runtime`]: the event loop that drives a [`totem_core::cpg::CpgNode`] over a
//!   [`transport`], with [`protect`]ion of every packet and a durable [`store`] for the ring
//!   sequence.
//! - [`ipc`] and [`client`]: the local Unix socket and the CPG client library; [`window`]:
//!   the credit-based send window that lets a client multicast without a round trip.
//! - [`corosync`]: the client library with the API of the `rust-corosync` crate's `cpg`
//!   module, so that Corosync CPG programs port by changing an import.
//! - [`conf`]: corosync.conf syntax, mapped onto the core's [`totem_core::Config`] and the
//!   node-level settings (node list, crypto, paths, logging), with warnings for everything
//!   Totem accepts but does not act on.
//! - [`fragment`]: frames cut into datagrams of one Ethernet MTU (sent with UDP GSO).
//! - [`crypto`]: packet protection with the cluster key (AES-SIV, per-sender keys, replay
//!   window, downgrade protection).
//! - [`journal`]: `totemd --trace-file`, a line-per-record journal of everything a node
//!   does, which the end-to-end tests judge with the spec.
//! - [`keygen`]: generation of a cluster key file, as `corosync-keygen` does.
//! - [`sam`]: the Simple Availability Manager (a supervisor that keeps a local application
//!   alive, and its client library).
#![forbid(unsafe_code)]

pub mod client;
pub mod conf;
pub mod corosync;
pub mod crypto;
pub mod daemon;
pub mod events;
pub mod fragment;
pub mod frame;
pub mod fsutil;
pub mod ipc;
pub mod journal;
pub mod keygen;
pub mod protect;
pub mod runtime;
pub mod sam;
pub mod siv_batch;
pub mod store;
pub mod transport;
pub mod window;
