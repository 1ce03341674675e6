//! A Corosync-compatible face of the client library, shaped like the `rust-corosync` crate
//! (Corosync's own Rust bindings) so that an existing program ports by changing its import:
//!
//! ```text
//! - extern crate rust_corosync as corosync;
//! - use corosync::{cpg, NodeId};
//! + use totem_node::corosync::{self, cpg, NodeId};
//! ```
//!
//! Only [`cpg`] exists: Totem has no cmap, cfg, quorum or votequorum service. This module
//! holds what `rust-corosync` keeps at its crate root and `cpg` uses: [`NodeId`],
//! [`CsError`], [`Result`] and [`DispatchFlags`]. The names, variants and numeric values are
//! Corosync's (`cs_error_t`, `cs_dispatch_flags_t`), so code that matches on them or logs
//! them keeps working; `TrackFlags` is left out because no CPG call takes it.
//!
//! The functions block the calling thread (as libcpg does); do not call them from inside an
//! async task — use [`crate::client`] there.

pub mod cpg;

use std::fmt;

/// Corosync's error codes (`cs_error_t`), with the same numeric values. `CsOk` is never
/// returned as an error; it is here because the enum has it.
#[derive(Debug, Eq, PartialEq, Copy, Clone, Hash)]
#[repr(u32)]
pub enum CsError {
    CsOk = 1,
    CsErrLibrary = 2,
    CsErrVersion = 3,
    CsErrInit = 4,
    CsErrTimeout = 5,
    CsErrTryAgain = 6,
    CsErrInvalidParam = 7,
    CsErrNoMemory = 8,
    CsErrBadHandle = 9,
    CsErrBusy = 10,
    CsErrAccess = 11,
    CsErrNotExist = 12,
    CsErrNameTooLong = 13,
    CsErrExist = 14,
    CsErrNoSpace = 15,
    CsErrInterrupt = 16,
    CsErrNameNotFound = 17,
    CsErrNoResources = 18,
    CsErrNotSupported = 19,
    CsErrBadOperation = 20,
    CsErrFailedOperation = 21,
    CsErrMessageError = 22,
    CsErrQueueFull = 23,
    CsErrQueueNotAvailable = 24,
    CsErrBadFlags = 25,
    CsErrTooBig = 26,
    CsErrNoSection = 27,
    CsErrContextNotFound = 28,
    CsErrTooManyGroups = 30,
    CsErrSecurity = 100,
    /// An unknown code (kept for rust-corosync compatibility; Totem never returns it).
    CsErrRustCompat = 998,
    /// A string conversion failed (kept for rust-corosync compatibility).
    CsErrRustString = 999,
}

/// The result of every call: a [`CsError`] on failure.
pub type Result<T> = std::result::Result<T, CsError>;

impl CsError {
    /// The `cs_error_t` value, for programs that log or compare the number.
    pub fn code(self) -> u32 {
        self as u32
    }
}

impl fmt::Display for CsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The strings rust-corosync prints: the variant name without its `Cs` prefix.
        let s = match self {
            CsError::CsOk => "OK",
            CsError::CsErrLibrary => "ErrLibrary",
            CsError::CsErrVersion => "ErrVersion",
            CsError::CsErrInit => "ErrInit",
            CsError::CsErrTimeout => "ErrTimeout",
            CsError::CsErrTryAgain => "ErrTryAgain",
            CsError::CsErrInvalidParam => "ErrInvalidParam",
            CsError::CsErrNoMemory => "ErrNoMemory",
            CsError::CsErrBadHandle => "ErrBadHandle",
            CsError::CsErrBusy => "ErrBusy",
            CsError::CsErrAccess => "ErrAccess",
            CsError::CsErrNotExist => "ErrNotExist",
            CsError::CsErrNameTooLong => "ErrNameTooLong",
            CsError::CsErrExist => "ErrExist",
            CsError::CsErrNoSpace => "ErrNoSpace",
            CsError::CsErrInterrupt => "ErrInterrupt",
            CsError::CsErrNameNotFound => "ErrNameNotFound",
            CsError::CsErrNoResources => "ErrNoResources",
            CsError::CsErrNotSupported => "ErrNotSupported",
            CsError::CsErrBadOperation => "ErrBadOperation",
            CsError::CsErrFailedOperation => "ErrFailedOperation",
            CsError::CsErrMessageError => "ErrMessageError",
            CsError::CsErrQueueFull => "ErrQueueFull",
            CsError::CsErrQueueNotAvailable => "ErrQueueNotAvailable",
            CsError::CsErrBadFlags => "ErrBadFlags",
            CsError::CsErrTooBig => "ErrTooBig",
            CsError::CsErrNoSection => "ErrNoSection",
            CsError::CsErrContextNotFound => "ErrContextNotFound",
            CsError::CsErrTooManyGroups => "ErrTooManyGroups",
            CsError::CsErrSecurity => "ErrSecurity",
            CsError::CsErrRustCompat => "ErrRustCompat",
            CsError::CsErrRustString => "ErrRustString",
        };
        f.write_str(s)
    }
}

impl std::error::Error for CsError {}

/// How much `dispatch` does (Corosync's `cs_dispatch_flags_t`, same values):
/// - `One`: run one callback, waiting for one if none is pending;
/// - `All`: run every pending callback, then return without waiting;
/// - `Blocking`: run callbacks as they come until the handle is finalized or the daemon
///   goes away;
/// - `OneNonblocking`: run one pending callback, or return `CsErrTryAgain` at once.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum DispatchFlags {
    One = 1,
    All = 2,
    Blocking = 3,
    OneNonblocking = 4,
}

/// A Corosync node id. Converts to and from `u32`, as in rust-corosync.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId {
    id: u32,
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.id)
    }
}

impl From<u32> for NodeId {
    fn from(id: u32) -> NodeId {
        NodeId { id }
    }
}

impl From<NodeId> for u32 {
    fn from(nodeid: NodeId) -> u32 {
        nodeid.id
    }
}

impl From<totem_core::NodeId> for NodeId {
    fn from(id: totem_core::NodeId) -> NodeId {
        NodeId { id: id.0 }
    }
}
