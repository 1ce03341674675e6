//! # totem-node
//!
//! The building blocks of the Totem daemon (`totemd`) and admin tool (`totemctl`) that sit
//! between the sans-IO protocol core and the operating system:
//!
//! - [`conf`]: corosync.conf syntax, mapped onto the core's [`totem_core::Config`] and the
//!   node-level settings (node list, crypto, paths, logging), with warnings for everything
//!   Totem accepts but does not act on.
//! - [`crypto`]: packet protection with the cluster key (AES-SIV, per-sender keys, replay
//!   window, downgrade protection).
//! - [`keygen`]: generation of a cluster key file, as `corosync-keygen` does.
//!
//! The runtime (sockets, timers, IPC) is built on top of these modules.
#![forbid(unsafe_code)]

pub mod conf;
pub mod crypto;
pub mod fsutil;
pub mod keygen;
