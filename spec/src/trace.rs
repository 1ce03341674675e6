//! The trace vocabulary: what the judge sees of a run.
//!
//! This module deliberately shares no types with `totem-core`; callers (the simulator, the
//! model checker) translate the core's outputs into these events. A bug in the core's types
//! therefore cannot silently become a bug in the judge.
//!
//! A trace is one global, time-ordered list of events. Each event happened at one node
//! incarnation. "Happened before" in real time is the list order.
//!
//! Sequence numbers (`Slot::seq`, `token_seq`, `Release::up_to`) never wrap within one ring
//! in our traces (a ring would need 2^32 messages), so the checkers compare them as plain
//! `u32` values.
//!
//! # Closed process groups (CPG)
//!
//! The `Cpg*` events record what the CPG service did for its local clients. A client
//! connection is identified by the event's (node, incarnation) and a `conn` number unique
//! within that node incarnation; it dies with its incarnation, or earlier with its
//! [`EventKind::CpgExit`]. A connection is in at most one group at a time, as the process
//! [`Process`] (node, pid) given in its join. Group names are binary byte strings, equal
//! when they have the same length and the same bytes (a `Vec<u8>` compares exactly so); at
//! most [`MAX_GROUP_NAME_LEN`] bytes are allowed.
//!
//! Recorder obligations: request events (`CpgJoin`, `CpgLeave`, `CpgMcast`) are recorded
//! when the request is answered, before anything they cause; callback events
//! (`CpgDeliver`, `CpgConfchg`, `CpgTotemConfchg`) when the service hands them to the
//! connection, in the connection's order; every `CpgMcast` gets a fresh [`MsgId`] of its
//! own incarnation (a retry after `TryAgain` gets a new one), and a message keeps that id
//! wherever it is delivered. When the core also records the Totem-level `Send`/`Deliver`
//! of the message that carries a CPG multicast, it may use the same id (CPG-9 then uses
//! the delivery's slot). `CpgTotemConfchg` records only the totem confchgs a completed
//! synchronization sends to every connection, not the initial one a connection created
//! with `DELIVER_INITIAL_TOTEM_CONF` gets after its first confchg: the checkers use the
//! former to locate the end of a synchronization, and without the connection's flags the
//! two cannot be told apart. `CpgMembership` is recorded only for snapshots taken right
//! after a confchg with no newer event pending.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A node's id (non-zero).
pub type Node = u32;

/// A ring identity: (representative, ring sequence).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Ring {
    pub rep: Node,
    pub seq: u64,
}

impl fmt::Debug for Ring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.rep, self.seq)
    }
}

/// An application message's unique identity: who sent it, in which incarnation, and a
/// per-incarnation counter starting at 0.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MsgId {
    pub origin: Node,
    pub incarnation: u32,
    pub counter: u64,
}

impl fmt::Debug for MsgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "m{}/{}/{}", self.origin, self.incarnation, self.counter)
    }
}

/// The delivery guarantee an application asked for.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub enum Guarantee {
    Agreed,
    Safe,
}

/// Longest group name accepted, in bytes (Corosync's `CPG_MAX_NAME_LENGTH`).
pub const MAX_GROUP_NAME_LEN: usize = 128;

/// A CPG process: the node it runs on and its pid. Ordered by (node, pid), the order of
/// CPG member lists.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Process {
    pub node: Node,
    pub pid: u32,
}

impl fmt::Debug for Process {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.node, self.pid)
    }
}

impl Process {
    /// Process `pid` on `node`.
    pub const fn new(node: Node, pid: u32) -> Self {
        Process { node, pid }
    }
}

/// Why a process joined or left a CPG view (Corosync's `cpg_reason_t`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub enum CpgReason {
    /// The process called join.
    Join,
    /// The process called leave.
    Leave,
    /// The process's node left the Totem membership.
    NodeDown,
    /// The process was already in the group on a node that merged in.
    NodeUp,
    /// The process went away without leave (exit, crash, zombie cleanup during a sync).
    ProcDown,
}

/// The result of a CPG request (the subset of Corosync's `cs_error_t` CPG uses).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub enum CpgResult {
    Ok,
    TryAgain,
    Exist,
    NotExist,
    NameTooLong,
    Busy,
    Interrupt,
    BadHandle,
    InvalidParam,
}

/// A node's protocol state (Totem's OPERATIONAL, GATHER, COMMIT, RECOVERY).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub enum ProtoState {
    Operational,
    Gather,
    Commit,
    Recovery,
}

/// Transitional or regular configuration.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub enum ConfKind {
    Transitional,
    Regular,
}

/// One event at one node incarnation.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Event {
    /// Simulated time in nanoseconds (non-decreasing along the trace).
    pub time: u64,
    pub node: Node,
    /// The node's incarnation: 0 for its first start, +1 at every restart.
    pub incarnation: u32,
    pub kind: EventKind,
}

/// Totem-level message identity: a sequence number within a ring. Several application
/// messages may share one (packing); one application message may span several
/// (fragmentation; it is then identified by the seq that completed it).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub struct Slot {
    pub ring: Ring,
    pub seq: u32,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum EventKind {
    /// The incarnation started (first event of every incarnation).
    Start,
    /// The node's persisted state (its highest ring sequence) was lost before this
    /// incarnation: recorded right before its `Start`. Ring ids of earlier incarnations may
    /// then legitimately recur at this node (EVS-2c spans only incarnations whose state was
    /// kept).
    StateLost,
    /// The incarnation left the ring cleanly (its last event, like `Crash`).
    Leave,
    /// Internal: the node's protocol state changed.
    State { from: ProtoState, to: ProtoState },
    /// Internal: the node entered COMMIT for `ring`, whose member list is `members`.
    /// `proc_minus_failed` is the node's own proposal at that moment. `via_consensus` is true
    /// when the node created the commit token itself (it is the lowest member and holds
    /// consensus: `agreed` lists the nodes whose identical JOIN it held), false when it
    /// accepted a commit token it received.
    Commit {
        ring: Ring,
        members: Vec<Node>,
        proc_minus_failed: Vec<Node>,
        via_consensus: bool,
        agreed: Vec<Node>,
    },
    /// The incarnation ended abruptly (last event of a crashed incarnation).
    Crash,
    /// The application handed `msg` to the group layer.
    Send { msg: MsgId, guarantee: Guarantee },
    /// A configuration was delivered to the application. `prev_ring` is the ring of the
    /// regular configuration this node delivered last (None at the first configuration of an
    /// incarnation); together with `ring` it identifies a transitional configuration.
    Config {
        kind: ConfKind,
        ring: Ring,
        prev_ring: Option<Ring>,
        members: Vec<Node>,
        left: Vec<Node>,
        joined: Vec<Node>,
    },
    /// `msg` was delivered to the application in the node's current configuration. `slot`
    /// is where Totem ordered it (its last fragment); `guarantee` is what it was delivered
    /// under.
    Deliver { msg: MsgId, slot: Slot, guarantee: Guarantee },
    /// Internal: this node assigned `slot.seq` in `slot.ring` to a Totem message it originated.
    Assign { slot: Slot },
    /// Internal: this node now holds Totem message `slot` (first receipt, or its own send).
    Receive { slot: Slot },
    /// Internal: this node freed its copies of every message of `ring` up to and including
    /// `up_to` (it will never retransmit them).
    Release { ring: Ring, up_to: u32 },
    /// Internal: this node accepted and processed a token of `ring` and forwarded (or held)
    /// it with these values.
    Token {
        ring: Ring,
        token_seq: u32,
        seq: u32,
        aru: u32,
        /// 0 when the token's aru equals its seq.
        aru_addr: Node,
        /// Retransmit requests the forwarded token carries.
        rtr: Vec<Slot>,
        /// New messages this node sent on this visit.
        sent_new: u32,
        /// Messages this node re-sent on this visit.
        retransmitted: u32,
    },
    /// CPG: connection `conn` asked to join `group` as process (node, `pid`), and got
    /// `result` (recorded when the reply is given, before the join takes effect).
    CpgJoin { conn: u32, group: Vec<u8>, pid: u32, result: CpgResult },
    /// CPG: connection `conn` asked to leave `group` and got `result`.
    CpgLeave { conn: u32, group: Vec<u8>, result: CpgResult },
    /// CPG: the application multicast `msg` to `group` on connection `conn` and got `result`
    /// (`Ok` means accepted; `TryAgain` is flow control, `Interrupt` a large message cut by
    /// a view change).
    CpgMcast { conn: u32, group: Vec<u8>, msg: MsgId, guarantee: Guarantee, result: CpgResult },
    /// CPG: `msg`, multicast by process `sender`, was delivered to connection `conn` in
    /// `group`.
    CpgDeliver { conn: u32, group: Vec<u8>, sender: Process, msg: MsgId },
    /// CPG: a view change of `group` was delivered to connection `conn`: the members after
    /// the change, and the processes that left and joined, each with its reason.
    CpgConfchg {
        conn: u32,
        group: Vec<u8>,
        members: Vec<Process>,
        left: Vec<(Process, CpgReason)>,
        joined: Vec<(Process, CpgReason)>,
    },
    /// CPG: the Totem membership after a completed synchronization (ring and members) was
    /// delivered to connection `conn` (not recorded for the initial totem confchg of
    /// `DELIVER_INITIAL_TOTEM_CONF`, see the module documentation).
    CpgTotemConfchg { conn: u32, ring: Ring, members: Vec<Node> },
    /// CPG: a membership snapshot of `group` that the application took on connection `conn`
    /// right after a view change, with no newer event pending.
    CpgMembership { conn: u32, group: Vec<u8>, members: Vec<Process> },
    /// CPG: the connection's process exited, or the connection closed, without a leave.
    /// The connection's last event.
    CpgExit { conn: u32 },
}

/// A whole recorded run.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct Trace {
    pub events: Vec<Event>,
}

impl Trace {
    pub fn push(&mut self, time: u64, node: Node, incarnation: u32, kind: EventKind) {
        self.events.push(Event { time, node, incarnation, kind });
    }
}

impl Ring {
    /// The ring with representative `rep` and ring sequence `seq`.
    pub const fn new(rep: Node, seq: u64) -> Self {
        Ring { rep, seq }
    }
}

impl MsgId {
    /// The message `counter` of incarnation `incarnation` of node `origin`.
    pub const fn new(origin: Node, incarnation: u32, counter: u64) -> Self {
        MsgId { origin, incarnation, counter }
    }

    /// The (node, incarnation) that sent this message.
    pub const fn sender(&self) -> (Node, u32) {
        (self.origin, self.incarnation)
    }
}

impl Slot {
    /// Sequence number `seq` of ring `ring`.
    pub const fn new(ring: Ring, seq: u32) -> Self {
        Slot { ring, seq }
    }
}

impl Event {
    /// The (node, incarnation) at which this event happened.
    pub const fn incarnation_key(&self) -> (Node, u32) {
        (self.node, self.incarnation)
    }
}

impl EventKind {
    /// A short name of the event's variant, for messages.
    pub const fn name(&self) -> &'static str {
        match self {
            EventKind::Start => "Start",
            EventKind::StateLost => "StateLost",
            EventKind::Leave => "Leave",
            EventKind::State { .. } => "State",
            EventKind::Commit { .. } => "Commit",
            EventKind::Crash => "Crash",
            EventKind::Send { .. } => "Send",
            EventKind::Config { .. } => "Config",
            EventKind::Deliver { .. } => "Deliver",
            EventKind::Assign { .. } => "Assign",
            EventKind::Receive { .. } => "Receive",
            EventKind::Release { .. } => "Release",
            EventKind::Token { .. } => "Token",
            EventKind::CpgJoin { .. } => "CpgJoin",
            EventKind::CpgLeave { .. } => "CpgLeave",
            EventKind::CpgMcast { .. } => "CpgMcast",
            EventKind::CpgDeliver { .. } => "CpgDeliver",
            EventKind::CpgConfchg { .. } => "CpgConfchg",
            EventKind::CpgTotemConfchg { .. } => "CpgTotemConfchg",
            EventKind::CpgMembership { .. } => "CpgMembership",
            EventKind::CpgExit { .. } => "CpgExit",
        }
    }

    /// The CPG connection number of a `Cpg*` event (None for other events).
    pub const fn cpg_conn(&self) -> Option<u32> {
        match self {
            EventKind::CpgJoin { conn, .. }
            | EventKind::CpgLeave { conn, .. }
            | EventKind::CpgMcast { conn, .. }
            | EventKind::CpgDeliver { conn, .. }
            | EventKind::CpgConfchg { conn, .. }
            | EventKind::CpgTotemConfchg { conn, .. }
            | EventKind::CpgMembership { conn, .. }
            | EventKind::CpgExit { conn } => Some(*conn),
            _ => None,
        }
    }

    /// The group a `Cpg*` event names, if any.
    pub fn cpg_group(&self) -> Option<&[u8]> {
        match self {
            EventKind::CpgJoin { group, .. }
            | EventKind::CpgLeave { group, .. }
            | EventKind::CpgMcast { group, .. }
            | EventKind::CpgDeliver { group, .. }
            | EventKind::CpgConfchg { group, .. }
            | EventKind::CpgMembership { group, .. } => Some(group),
            _ => None,
        }
    }
}

/// A group name for messages: quoted when it is printable ASCII, in hex otherwise, and
/// cut after 40 bytes.
pub fn fmt_group(group: &[u8]) -> String {
    let shown = &group[..group.len().min(40)];
    let more = if group.len() > 40 { format!("...({} bytes)", group.len()) } else { String::new() };
    if shown.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        format!("\"{}\"{more}", String::from_utf8_lossy(shown))
    } else {
        let hex: String = shown.iter().map(|b| format!("{b:02x}")).collect();
        format!("0x{hex}{more}")
    }
}

impl Trace {
    /// An empty trace.
    pub fn new() -> Self {
        Trace::default()
    }

    /// Number of events.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// True when the trace has no event.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}
