//! The six Totem message types, as plain values.
//!
//! The wire layout lives in [`crate::wire`]; these types carry serde derives so that traces
//! and model-checker states can record them.

use crate::ids::{NodeId, RingId, Seq};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// The most retransmit requests one token carries (Corosync's RETRANSMIT_ENTRIES_MAX).
pub const RTR_ENTRIES_MAX: usize = 30;

/// The most processors a JOIN or commit token may list (Corosync's PROCESSOR_COUNT_MAX).
pub const PROCESSORS_MAX: usize = 384;

/// Delivery guarantee requested by the sender.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub enum Guarantee {
    /// Delivered in the total order as soon as every earlier message is present locally.
    Agreed,
    /// Delivered in the same total order, but only once every member of the ring is known
    /// to hold the message.
    Safe,
}

/// Every message a node sends, as seen by the protocol.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub enum Message {
    Token(Token),
    Mcast(Mcast),
    MergeDetect(MergeDetect),
    Join(Join),
    CommitToken(CommitToken),
    TokenHoldCancel(TokenHoldCancel),
}

impl Message {
    /// A short name for logs and traces.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Token(_) => "token",
            Message::Mcast(_) => "mcast",
            Message::MergeDetect(_) => "merge-detect",
            Message::Join(_) => "join",
            Message::CommitToken(_) => "commit-token",
            Message::TokenHoldCancel(_) => "token-hold-cancel",
        }
    }
}

/// One ordered message, or (during recovery) a new-ring wrapper around an old-ring message.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct Mcast {
    /// The ring in which `seq` was assigned.
    pub ring_id: RingId,
    pub seq: Seq,
    /// The node that assigned `seq` (for a recovery wrapper: the node retransmitting it).
    pub origin: NodeId,
    pub guarantee: Guarantee,
    pub body: McastBody,
}

#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub enum McastBody {
    /// A frame of packed or fragmented application messages (see [`crate::pg`]).
    Frame(Bytes),
    /// An old-ring message re-sent in the new ring during recovery.
    Recovered(Box<Mcast>),
}

/// One request on the token: "someone please re-send `seq` of ring `ring_id`".
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct RtrEntry {
    pub ring_id: RingId,
    pub seq: Seq,
}

/// The ordering, reliability and flow-control token of an installed ring.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct Token {
    pub ring_id: RingId,
    /// Bumped by every forwarder; a node accepts only a token_seq newer than the last one.
    pub token_seq: u32,
    /// Highest sequence number assigned so far in this ring.
    pub seq: Seq,
    /// "All received up to": a lazily maintained low-water mark of the ring.
    pub aru: Seq,
    /// The node that last lowered or set `aru`; `None` once `aru == seq`.
    pub aru_addr: Option<NodeId>,
    /// Messages (new and retransmitted) sent during the last full rotation.
    pub fcc: u32,
    /// Sum over the ring of each node's pending messages.
    pub backlog: u32,
    /// Set during recovery while some node still has old-ring messages to re-send.
    pub retrans_flag: bool,
    /// Outstanding retransmit requests, at most [`RTR_ENTRIES_MAX`].
    pub rtr: Vec<RtrEntry>,
}

/// An idle representative's advertisement of its ring, so other partitions notice it.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct MergeDetect {
    pub sender: NodeId,
    pub ring_id: RingId,
}

/// A membership proposal during gather: who should be in the ring, who has failed.
/// A clean leave is a join with `leave` set and the sender in its own failed set.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct Join {
    pub sender: NodeId,
    /// Sorted ascending, no duplicates.
    pub proc_set: Vec<NodeId>,
    /// Sorted ascending, no duplicates.
    pub failed_set: Vec<NodeId>,
    /// The sequence of the sender's current ring id.
    pub ring_seq: u64,
    pub leave: bool,
}

/// One member's entry in the commit token, filled in on the first rotation.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct CommitMember {
    pub node: NodeId,
    /// The member's previous regular ring.
    pub old_ring_id: RingId,
    /// The member's aru in its previous ring.
    pub old_aru: Seq,
    pub high_delivered: Seq,
    /// Whether the member holds every message of its old ring up to its highest received.
    pub received_flag: bool,
}

/// Installs a new ring; travels around it twice.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct CommitToken {
    pub token_seq: u32,
    pub ring_id: RingId,
    /// Index of the next member to fill in its entry; equals `members.len()` after the
    /// first rotation.
    pub memb_index: u32,
    /// Sorted ascending by node id: the ring order.
    pub members: Vec<CommitMember>,
}

/// Asks the representative to release a held (idle) token.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct TokenHoldCancel {
    pub ring_id: RingId,
}
