//! # SAM: the Simple Availability Manager
//!
//! A supervisor keeps one local application alive: `totemctl sam run --interval 2s
//! --policy restart -- app args` starts `app`, expects health checks from it once checking
//! is started, and recovers when the application misses one interval (warn signal), two
//! intervals (SIGKILL), dies, or loses quorum (`--quorum`): it restarts it with the next
//! instance id, or quits with its status. The application talks to its supervisor through
//! the blocking client library [`Sam`], over the channel named in `$TOTEM_SAM_SOCKET`.
//!
//! - [`client`]: the library for applications (Corosync's `sam_*` calls).
//! - [`supervisor`]: the supervisor (Corosync's SAM parent process).
//! - [`proto`]: the messages between them.
//! - [`quorum`]: where the quorum policy learns quorum (the daemon, or a fake).
//! - [`state`]: the state files that `sam status` lists.
//! - [`cli`]: `sam run` and `sam status`.
//!
//! Unlike Corosync, where the application forks itself inside `sam_register` and the
//! original process becomes the supervisor, here the supervisor is a separate command that
//! spawns the application: Rust programs cannot safely fork once threads exist, and a
//! supervisor command works for any program, including one that only needs its death
//! watched (interval 0, no library at all).

pub mod cli;
pub mod client;
pub mod proto;
pub mod quorum;
pub mod state;
pub mod supervisor;

pub use cli::{SamCommand, SamRunArgs, sam_cli_main};
pub use client::{Sam, SamError, SamState, Supervision};
pub use nix::sys::signal::Signal;
pub use proto::Policy;
