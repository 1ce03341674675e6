//! The single-ring protocol: total ordering, reliability and flow control on a ring.
//!
//! One [`Srp`] is one node's view of the protocol. It is driven by the [`crate::Node`] that
//! owns it and writes its effects into the caller's output vector. Frames it delivers are
//! handed up through [`FrameSink`] so that application messages come out interleaved
//! correctly with configuration changes.

mod membership;
mod ordering;
mod recovery;
pub mod sort_queue;

use crate::config::Config;
use crate::ids::{NodeId, RingId, Seq};
use crate::message::{CommitMember, Guarantee, Mcast, Message};
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
    /// Exchanging JOIN messages to agree on a new membership.
    Gather,
    /// The commit token is on its first rotation.
    Commit,
    /// The new ring exists; old-ring messages are exchanged before it is installed.
    Recovery,
}

/// Where delivered frames go: the packing layer above, which turns them into application
/// messages.
pub(crate) trait FrameSink {
    fn deliver_frame(&mut self, mcast: &Mcast, out: &mut Vec<Output>);
    /// `node` left the membership: drop any message of it still being reassembled.
    fn forget_sender(&mut self, node: NodeId);
    /// A new ring is installed: no message still being reassembled will ever complete (its
    /// sender sends it again whole in the new ring).
    fn ring_installed(&mut self);
}

/// Why a node (re)entered GATHER (study §1.5), for logs and traces.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub enum GatherReason {
    ConsensusTimeout,
    TokenLostOperational,
    ConsensusAgreedNoCommit,
    TokenLostCommit,
    TokenLostRecovery,
    FailedToReceive,
    ForeignMessageOperational,
    ForeignMessageGather,
    MergeOperational,
    MergeGather,
    JoinNewInformation,
    JoinOperational,
    JoinCommit,
    JoinRecovery,
    Startup,
}

/// A frame waiting for a token visit to be assigned a sequence number.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct PendingFrame {
    pub frame: Bytes,
    pub guarantee: Guarantee,
    /// For the frames of a message that spans several: the whole message and this frame's
    /// index, so that a message cut by a ring change can be sent again whole.
    pub part_of: Option<(Bytes, u32)>,
}

/// Counters for operators and tests. Not part of the protocol's decisions.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Default, Serialize, Deserialize)]
pub struct Stats {
    pub tokens_accepted: u64,
    pub tokens_duplicate: u64,
    pub tokens_foreign: u64,
    pub tokens_retransmitted: u64,
    pub token_losses: u64,
    pub gathers: u64,
    pub commits: u64,
    pub rings_installed: u64,
    pub joins_received: u64,
    pub consensus_timeouts: u64,
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

/// Membership state: the proposal being agreed during GATHER and the ring being installed.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Membership {
    /// Proposed processors (sorted), always including this node.
    pub proc_set: Vec<NodeId>,
    /// Processors considered failed (sorted); a subset of proc_set or not, it is removed
    /// from it to form the ring.
    pub failed_set: Vec<NodeId>,
    /// Nodes whose JOIN carried exactly this node's current sets since it last entered
    /// GATHER (sorted).
    pub consensus: Vec<NodeId>,
    /// The highest ring sequence seen anywhere (own rings, JOINs, persisted state).
    pub highest_ring_seq: u64,
    /// The sequence of the ring this node last committed to.
    pub my_ring_seq: u64,
    /// This node concluded it cannot receive and removes itself.
    pub failed_to_recv: bool,
    /// COMMIT and RECOVERY: the ring being installed.
    pub installing: Option<Installing>,
    /// The highest ring sequence the runtime has confirmed durable. A ring is installed
    /// only once its sequence is.
    pub persisted_ring_seq: u64,
}

/// The ring being installed, from the commit token.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub(crate) struct Installing {
    pub ring_id: RingId,
    /// The members' entries (complete once the first rotation is over).
    pub entries: Vec<CommitMember>,
    /// The representative has originated the new ring's first ORF token.
    pub originated: bool,
}

/// RECOVERY bookkeeping (study §1.8.5).
#[derive(Clone, PartialEq, Eq, Hash, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Recovery {
    /// Old-ring messages this node will re-send in the new ring.
    pub queue: VecDeque<Mcast>,
    /// Members of the old ring moving together into the new one.
    pub trans: Vec<NodeId>,
    /// Highest old-ring seq any member of the transitional set had delivered (in its
    /// regular configuration) before the change: Safe messages up to it are known safe.
    pub trans_high_delivered: Seq,
    pub set_retrans_flag: bool,
    pub retrans_flag_count: u32,
    pub install_seq: Seq,
    pub rotation_counter: u32,
    /// Old-ring seqs this node has reported holding (in wrapped form), for probes only.
    pub announced: std::collections::BTreeSet<u32>,
}

/// One node's single-ring protocol.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct Srp {
    pub(crate) config: Config,
    pub(crate) me: NodeId,
    pub(crate) state: State,
    /// OPERATIONAL, GATHER, COMMIT: the last regular ring. RECOVERY: the new ring.
    pub(crate) ring: RingState,
    /// RECOVERY only: the last regular ring, whose messages are being recovered.
    pub(crate) old_ring: Option<RingState>,
    pub(crate) memb: Membership,
    pub(crate) recovery: Recovery,
    pub(crate) timers: TimerTable,
    /// Locally originated frames not yet assigned a sequence number.
    pub(crate) pending: VecDeque<PendingFrame>,
    /// Frames of the layer above's synchronization round (CPG's joinlists): sent before
    /// `pending`, and the only frames sent while `app_held`.
    pub(crate) sync_pending: VecDeque<PendingFrame>,
    /// With a synchronizing layer above (`sync_barrier`), every newly installed ring holds
    /// application frames back until that layer reports its round complete, so that traffic
    /// queued before a membership change is ordered after the change's reconciliation.
    pub(crate) sync_barrier: bool,
    pub(crate) app_held: bool,
    /// The last token (ORF or commit) this node sent, kept for retransmission.
    pub(crate) last_token: Option<(NodeId, Message)>,
    pub(crate) stats: Stats,
    /// State of the node's seeded generator (SplitMix64).
    pub(crate) rng: u64,
}

impl Srp {
    /// A node that is already a member of an operational ring (see
    /// [`crate::Node::new_on_ring`]).
    pub(crate) fn on_ring(config: Config, me: NodeId, ring_id: RingId, members: Vec<NodeId>) -> Self {
        let memb = Membership {
            proc_set: members.clone(),
            highest_ring_seq: ring_id.seq,
            my_ring_seq: ring_id.seq,
            persisted_ring_seq: ring_id.seq,
            ..Membership::default()
        };
        let rng = config.rng_seed ^ u64::from(me.0).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        Srp {
            ring: RingState::new(me, ring_id, members),
            old_ring: None,
            memb,
            recovery: Recovery::default(),
            config,
            me,
            state: State::Operational,
            timers: TimerTable::default(),
            pending: VecDeque::new(),
            sync_pending: VecDeque::new(),
            sync_barrier: false,
            app_held: false,
            last_token: None,
            stats: Stats::default(),
            rng,
        }
    }

    /// A uniformly drawn value in [0, bound) from the node's seeded generator.
    pub(crate) fn random_below(&mut self, bound: u64) -> u64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % bound.max(1)
    }

    /// A node that belongs to no ring yet. Its placeholder "ring" has no members and an id
    /// no other ring has: (this node, persisted sequence + 1).
    ///
    /// Without persisted state (a first start, or a lost disk) the node cannot know which
    /// ring ids it used before. Corosync then starts from 0 and may reuse an id; we draw a
    /// random base below 2^40 from the node's seeded generator instead, so a node that lost
    /// its state does not reuse ring ids (with overwhelming probability). Ring sequences only
    /// need to grow, not to be small.
    pub(crate) fn fresh(config: Config, me: NodeId, persisted_ring_seq: Option<u64>) -> Self {
        let mut srp = Srp::on_ring(config, me, RingId::new(me, 0), Vec::new());
        let base = match persisted_ring_seq {
            Some(seq) => seq,
            None if srp.bug(crate::broken::Bug::ReuseRingSeq) => 0,
            None => srp.random_below(1 << 40),
        };
        let seq = base.saturating_add(1);
        srp.ring.ring_id = RingId::new(me, seq);
        srp.memb.highest_ring_seq = seq;
        srp.memb.my_ring_seq = seq;
        srp.memb.persisted_ring_seq = seq;
        srp.memb.proc_set = vec![me];
        srp.state = State::Gather;
        srp
    }

    /// The ring whose regular configuration this node is in (or was in, before the change
    /// being installed).
    pub(crate) fn regular(&self) -> &RingState {
        self.old_ring.as_ref().unwrap_or(&self.ring)
    }

    pub(crate) fn set_state(&mut self, to: State, out: &mut Vec<Output>) {
        if self.state != to {
            if self.config.probes {
                out.push(Output::Probe(crate::node::Probe::State { from: self.state, to }));
            }
            self.state = to;
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
        self.pending.len() + self.sync_pending.len()
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
