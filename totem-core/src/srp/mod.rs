//! The single-ring protocol: total ordering, reliability and flow control on a ring.
//!
//! One [`Srp`] is one node's view of the protocol. It is driven by the [`crate::Node`] that
//! owns it and writes its effects into the caller's output vector. Frames it delivers are
//! handed up through [`FrameSink`] so that application messages come out interleaved
//! correctly with configuration changes.

mod ordering;
pub mod sort_queue;

use crate::config::Config;
use crate::ids::{NodeId, RingId, Seq};
use crate::message::{Guarantee, Mcast};
use crate::node::Output;
use crate::timer::TimerTable;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sort_queue::SortQueue;
use std::collections::VecDeque;

/// The protocol state of a node (study §1.5).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub enum State {
    /// Normal ordered operation of an installed ring.
    Operational,
}

/// Where delivered frames go: the packing layer above, which turns them into application
/// messages.
pub(crate) trait FrameSink {
    fn deliver_frame(&mut self, mcast: &Mcast, out: &mut Vec<Output>);
}

/// A frame waiting for a token visit to be assigned a sequence number.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct PendingFrame {
    pub frame: Bytes,
    pub guarantee: Guarantee,
}

/// Counters for operators and tests. Not part of the protocol's decisions.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Default, Serialize, Deserialize)]
pub struct Stats {
    pub tokens_accepted: u64,
    pub tokens_duplicate: u64,
    pub tokens_foreign: u64,
    pub tokens_retransmitted: u64,
    pub token_losses: u64,
    pub mcasts_sent: u64,
    pub mcasts_received: u64,
    pub mcasts_duplicate: u64,
    pub mcasts_foreign: u64,
    pub mcasts_out_of_window: u64,
    pub retransmissions: u64,
    pub retransmit_requests: u64,
    pub frames_delivered: u64,
    pub messages_ignored: u64,
}

/// Ordering state of the ring this node is operating in.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub(crate) struct RingState {
    pub ring_id: RingId,
    /// Sorted ascending: the ring order.
    pub members: Vec<NodeId>,
    /// The next member in ring order (this node itself in a singleton ring).
    pub successor: NodeId,
    pub queue: SortQueue,
    /// Every message up to this one is present locally.
    pub my_aru: Seq,
    pub high_seq_received: Seq,
    pub high_delivered: Seq,
    /// The aru the token carried when it arrived on this node's previous visit.
    pub last_aru: Seq,
    /// Every message up to this one is known to be held by every member: a Safe message
    /// may be delivered once it is at or below this line.
    pub safe_line: Seq,
    /// token_seq of the last accepted token.
    pub token_seq: Seq,
    /// The token's seq on the previous visit (idle detection).
    pub last_seq: Seq,
    pub seq_unchanged: u32,
    /// The ring is idle: this node has seen the same token seq for a while.
    pub held: bool,
    /// Consecutive visits on which the aru did not move while some node held it back.
    pub aru_count: u32,
    /// Messages this node sent on its last visit (its contribution to the token's fcc).
    pub trc: u32,
    /// Backlog this node reported on its last visit.
    pub pbl: u32,
}

impl RingState {
    pub fn new(me: NodeId, ring_id: RingId, members: Vec<NodeId>) -> Self {
        let successor = successor_of(me, &members);
        RingState {
            ring_id,
            members,
            successor,
            queue: SortQueue::new(Seq::ZERO),
            my_aru: Seq::ZERO,
            high_seq_received: Seq::ZERO,
            high_delivered: Seq::ZERO,
            last_aru: Seq::ZERO,
            safe_line: Seq::ZERO,
            token_seq: Seq::ZERO.prev(),
            last_seq: Seq::ZERO,
            seq_unchanged: 0,
            held: false,
            aru_count: 0,
            trc: 0,
            pbl: 0,
        }
    }
}

/// The member after `me` in ascending order, wrapping to the lowest.
fn successor_of(me: NodeId, members: &[NodeId]) -> NodeId {
    members.iter().copied().find(|&n| n > me).or_else(|| members.first().copied()).unwrap_or(me)
}

/// One node's single-ring protocol.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct Srp {
    pub(crate) config: Config,
    pub(crate) me: NodeId,
    pub(crate) state: State,
    pub(crate) ring: RingState,
    pub(crate) timers: TimerTable,
    /// Locally originated frames not yet assigned a sequence number.
    pub(crate) pending: VecDeque<PendingFrame>,
    /// The last token this node sent, kept for retransmission.
    pub(crate) last_token: Option<crate::message::Token>,
    pub(crate) stats: Stats,
}

impl Srp {
    /// A node that is already a member of an operational ring (see
    /// [`crate::Node::new_on_ring`]).
    pub(crate) fn on_ring(config: Config, me: NodeId, ring_id: RingId, members: Vec<NodeId>) -> Self {
        Srp {
            ring: RingState::new(me, ring_id, members),
            config,
            me,
            state: State::Operational,
            timers: TimerTable::default(),
            pending: VecDeque::new(),
            last_token: None,
            stats: Stats::default(),
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn ring_id(&self) -> RingId {
        self.ring.ring_id
    }

    pub fn members(&self) -> &[NodeId] {
        &self.ring.members
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    pub(crate) fn is_rep(&self) -> bool {
        self.ring.ring_id.rep == self.me
    }

    #[cfg(feature = "broken")]
    pub(crate) fn bug(&self, bug: crate::broken::Bug) -> bool {
        self.config.bug == Some(bug)
    }

    #[cfg(not(feature = "broken"))]
    #[inline(always)]
    pub(crate) fn bug(&self, _bug: crate::broken::Bug) -> bool {
        false
    }
}
