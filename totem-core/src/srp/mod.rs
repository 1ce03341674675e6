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
    /// This incarnation's residue class of ring sequences (see [`RING_SEQ_CLASS_BITS`]):
    /// every ring id it creates as representative has `seq % 2^bits == ring_seq_class`.
    pub ring_seq_class: u64,
}

/// Ring sequences a representative creates are confined to a residue class modulo
/// 2^RING_SEQ_CLASS_BITS that each incarnation draws at start from its seeded generator:
/// the new ring's sequence is the smallest value of the class that is at least 4 above the
/// highest sequence the node has seen (Corosync: exactly that + 4).
///
/// Why: a ring id is (representative, sequence), and it must name one ring forever. Within
/// an incarnation the sequences a node proposes strictly increase, and a restart with the
/// persisted sequence continues above it. But a node that lost its disk (or crashed before
/// the last sequence it proposed was durable) does not know what it proposed before; it
/// adopts the highest sequence it hears in JOINs, and when every node that knew its latest
/// rings is gone or was paused meanwhile, that is an older value, from which it would
/// compute again an id it had given to another ring (or to a commit token that may still
/// be in flight). No rule can recover knowledge nobody kept; instead, incarnations of one
/// node never share a class unless they drew the same one, so their ring ids are disjoint
/// whatever they adopt: two incarnations reuse an id only with probability 2^-24 per pair
/// (and then only if their sequences also meet). The price: sequences grow by up to 2^24
/// per ring, so u64 lasts for 2^40 ring changes (over 30 000 years at one per second).
/// Nodes other than the representative accept any sequence above their own, as before.
pub(crate) const RING_SEQ_CLASS_BITS: u32 = 24;

/// The smallest value of residue class `class` modulo 2^`bits` that is at least
/// `at_least` (saturating at u64::MAX, after 2^40 ring changes with 24 bits).
pub(crate) fn ring_seq_in_class(at_least: u64, class: u64, bits: u32) -> u64 {
    let modulus = 1u64 << bits;
    let class = class & (modulus - 1);
    let candidate = (at_least & !(modulus - 1)) | class;
    if candidate >= at_least { candidate } else { candidate.saturating_add(modulus) }
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
        let mut srp = Srp {
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
        };
        srp.memb.ring_seq_class = srp.random_below(1 << RING_SEQ_CLASS_BITS);
        srp
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
    /// no other ring has: (this node, the first sequence of its class above the persisted
    /// one). Without persisted state (a first start, or a lost disk) it counts from 0, as
    /// Corosync does; its class keeps it off the ring ids of its earlier incarnations.
    pub(crate) fn fresh(config: Config, me: NodeId, persisted_ring_seq: Option<u64>) -> Self {
        let mut srp = Srp::on_ring(config, me, RingId::new(me, 0), Vec::new());
        let seq = srp.next_ring_seq(persisted_ring_seq.unwrap_or(0).saturating_add(1));
        srp.ring.ring_id = RingId::new(me, seq);
        srp.memb.highest_ring_seq = seq;
        srp.memb.my_ring_seq = seq;
        srp.memb.persisted_ring_seq = seq;
        srp.memb.proc_set = vec![me];
        srp.state = State::Gather;
        srp
    }

    /// The sequence of a ring this node creates: the first of its class at or above
    /// `at_least` (see [`RING_SEQ_CLASS_BITS`]). The `ReuseRingSeq` variant numbers as
    /// Corosync does, without a class.
    pub(crate) fn next_ring_seq(&self, at_least: u64) -> u64 {
        if self.bug(crate::broken::Bug::ReuseRingSeq) {
            return at_least;
        }
        ring_seq_in_class(at_least, self.memb.ring_seq_class, RING_SEQ_CLASS_BITS)
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

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: the next ring sequence is the first value of the class at or above the bound,
    // and values of different classes never coincide. Method: bounds on, just below and just
    // above class members, at 0 and near u64::MAX.
    #[test]
    fn ring_seq_in_class_rounds_up_into_the_class() {
        let bits = RING_SEQ_CLASS_BITS;
        let m = 1u64 << bits;
        assert_eq!(ring_seq_in_class(0, 5, bits), 5);
        assert_eq!(ring_seq_in_class(5, 5, bits), 5);
        assert_eq!(ring_seq_in_class(6, 5, bits), m + 5);
        assert_eq!(ring_seq_in_class(3 * m + 4, 5, bits), 3 * m + 5);
        assert_eq!(ring_seq_in_class(3 * m + 4, m + 5, bits), 3 * m + 5, "the class is taken modulo 2^bits");
        assert_eq!(ring_seq_in_class(u64::MAX - 1, 0, bits), u64::MAX, "saturates");
        for at_least in [0u64, 1, 4, m - 1, m, 7 * m + 3, 1 << 41] {
            let a = ring_seq_in_class(at_least, 17, bits);
            let b = ring_seq_in_class(at_least, 18, bits);
            assert!(a >= at_least && b >= at_least && a < at_least + m && b < at_least + m);
            assert_eq!(a % m, 17);
            assert_eq!(b % m, 18);
        }
    }
}
