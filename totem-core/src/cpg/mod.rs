//! Closed process groups (CPG) on top of extended virtual synchrony.
//!
//! Processes on every node join named groups and multicast to them; every member of a group
//! sees the same messages and the same view changes in the same order (study §4). The
//! service is sans-IO like the rest of the core: [`CpgNode`] owns a [`Node`](crate::Node)
//! and the group state, takes requests from local connections and the node's inputs, and
//! emits the node's [`Output`](crate::Output)s plus [`Output::Cpg`](crate::Output::Cpg)
//! events for the connections.
//!
//! # The synchronization barrier
//!
//! Join, leave and mcast travel as ordinary Totem messages, so every node applies them at
//! the same point of the total order. A membership change is different: each node learns of
//! it from its own configuration change. After every regular configuration the service runs
//! a *synchronization round* (study §4.4): each member multicasts a *joinlist* of its local
//! processes, tagged with the ring id; when the joinlists of all members have been
//! delivered (one point of the total order, the same at every member), each node applies
//! the round: processes of nodes that left (its *downlist*: members of the last
//! synchronized ring that are missing from a transitional configuration since) go with one NODEDOWN
//! view change per group, processes announced by merging nodes arrive with one NODEUP view
//! change per group, processes that no joinlist mentions go as PROCDOWN ("zombies"), and
//! every connection gets a Totem view change. Until then:
//! - application traffic is held: the node sends no application frame of the new ring
//!   before its own round completed ([`Node::enable_sync_barrier`](crate::Node::enable_sync_barrier)),
//!   so every new-ring message is ordered after the round at every member, and
//! - mcast returns [`CpgError::TryAgain`].
//!
//! A round interrupted by another configuration change is void: its joinlists are
//! discarded (a node that announced itself and died inside the round leaves no ghost,
//! Corosync's #828), and the next round's downlist still counts from the last *completed*
//! round: a node that left in the interrupted transition is down even if it is back in
//! the latest transitional configuration (Corosync forgets it, and the members then miss
//! that node's messages of the other side without a view change: a virtual synchrony gap).
//!
//! One message per member per round suffices: Corosync's SERVICE_BUILD and BARRIER exist to
//! run several services in turn; with one service the last joinlist is the barrier.
//!
//! # Where we differ from Corosync
//!
//! - A connection's own LEAVE view change ends its membership: it gets nothing more for the
//!   group and may join again (Corosync 3.x keeps the handle in LEAVE_STARTED, study §4.3).
//! - mcast on a connection that is not joined returns [`CpgError::NotExist`] instead of
//!   being dropped after an OK.
//! - Leave checks the group against the connection's group.
//! - Messages of up to [`CPG_MESSAGE_MAX`] bytes are one Totem message: they arrive whole,
//!   and a membership change never interrupts them (a message cut by a ring change is sent
//!   again whole in the new ring), so [`CpgError::Interrupt`] is never returned today.
//! - Safe delivery is supported (Corosync's CPG accepts only agreed).

mod msg;
mod node;
mod service;

pub use msg::{MCAST_HEADER_MAX, MsgError};
pub use node::CpgNode;
pub use service::CpgStats;

use crate::ids::{NodeId, RingId};
use crate::message::Guarantee;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::fmt;
use thiserror::Error;

/// The longest group name, in bytes (Corosync's CPG_MAX_NAME_LENGTH).
pub const GROUP_NAME_MAX: usize = 128;
/// The largest CPG message payload (1 MiB).
pub const CPG_MESSAGE_MAX: usize = 1024 * 1024;

/// A group name: up to [`GROUP_NAME_MAX`] arbitrary bytes. Names are equal when they have
/// the same length and bytes, and are ordered by (length, bytes) like Corosync's.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GroupName(Bytes);

impl GroupName {
    pub fn new(name: &[u8]) -> Result<GroupName, CpgError> {
        if name.len() > GROUP_NAME_MAX {
            return Err(CpgError::NameTooLong { len: name.len() });
        }
        Ok(GroupName(Bytes::copy_from_slice(name)))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Ord for GroupName {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.len().cmp(&other.0.len()).then_with(|| self.0.cmp(&other.0))
    }
}

impl PartialOrd for GroupName {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Debug for GroupName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(&self.0))
    }
}

/// A process: the node it runs on and its pid. Ordered by (node, pid).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Process {
    pub node: NodeId,
    pub pid: u32,
}

impl fmt::Debug for Process {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.node.0, self.pid)
    }
}

/// Why a process joined or left a view (Corosync's `cpg_reason_t`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub enum Reason {
    /// The process called join.
    Join,
    /// The process called leave.
    Leave,
    /// The process's node left the Totem membership.
    NodeDown,
    /// The process was in the group on a node that merged in.
    NodeUp,
    /// The process went away without leave (exit, crash, zombie cleanup during a sync).
    ProcDown,
}

/// A local client connection, unique within one [`CpgNode`].
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub struct ConnId(pub u32);

/// Options a connection chooses when it is created.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default, Serialize, Deserialize)]
pub struct ConnFlags {
    /// Send one Totem view change (the last synchronized ring) right after the
    /// connection's first view change (Corosync's `CPG_MODEL_V1_DELIVER_INITIAL_TOTEM_CONF`).
    pub deliver_initial_totem_conf: bool,
}

/// Why a request was refused. A refused request changed nothing.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Error, Serialize, Deserialize)]
pub enum CpgError {
    /// Flow control: a synchronization is running or the send queue is full. Retry later.
    #[error("try again: synchronization in progress or send queue full")]
    TryAgain,
    #[error("group name of {len} bytes exceeds the {GROUP_NAME_MAX}-byte limit")]
    NameTooLong { len: usize },
    /// Join: the connection is already joined, or another local connection already joined
    /// the group with this pid.
    #[error("already joined")]
    Exist,
    /// Join while the connection's leave is not yet complete; leave while its join is not
    /// yet complete.
    #[error("busy: the previous join or leave is still in progress")]
    Busy,
    /// Leave or mcast on a connection that is not in that group.
    #[error("not joined to that group")]
    NotExist,
    #[error("message of {len} bytes exceeds the {max}-byte limit")]
    TooBig { len: usize, max: usize },
    /// The connection does not exist (never created, or closed).
    #[error("no such connection")]
    BadHandle,
    /// A large message was cut by a membership change (never today, see the module docs).
    #[error("interrupted by a membership change")]
    Interrupt,
}

/// Something the service hands to one local connection, in that connection's order.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct Event {
    pub conn: ConnId,
    pub kind: EventKind,
}

#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub enum EventKind {
    /// A message multicast to `group` by `sender`.
    Deliver { group: GroupName, sender: Process, guarantee: Guarantee, payload: Bytes },
    /// A view change of `group`: the members after it (sorted), and who left and joined.
    Confchg {
        group: GroupName,
        members: Vec<Process>,
        left: Vec<(Process, Reason)>,
        joined: Vec<(Process, Reason)>,
    },
    /// The Totem membership after a completed synchronization; `initial` marks the one a
    /// [`ConnFlags::deliver_initial_totem_conf`] connection gets after its first view change.
    TotemConfchg { ring_id: RingId, members: Vec<NodeId>, initial: bool },
}
