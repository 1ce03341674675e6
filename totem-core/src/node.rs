//! The node: the single-ring protocol plus packing, behind the API a runtime drives.
//!
//! # Driving a node
//!
//! A runtime (the daemon, the simulator, the model checker) owns a [`Node`] and calls:
//! - [`Node::handle_message`] for every authenticated, decoded message from the network,
//! - [`Node::handle_timeout`] when the deadline from [`Node::poll_timeout`] has passed
//!   (firing a timer that is no longer armed is harmless: it is ignored),
//! - [`Node::submit`] for every application message,
//! - [`Node::ring_seq_persisted`] once the value of an [`Output::PersistRingSeq`] is durable.
//!
//! Each call appends [`Output`]s that the runtime carries out in order: send a message
//! ([`Dest::All`] means every other member; [`Dest::Node`] may name this node itself, in a
//! one-node ring, and must then be looped back), hand a delivery or configuration change to
//! the application. `now` must never decrease between calls.
//!
//! # Starting on a formed ring
//!
//! Until the membership protocol forms rings by itself, [`Node::new_on_ring`] starts every
//! node of a known membership directly in one operational ring: give each node the same
//! ring id and member list, then call [`Node::start`] on each. The representative (the
//! lowest id) originates the token.

use crate::config::{Config, ConfigError, MESSAGE_SIZE_MAX};
use crate::ids::{NodeId, RingId, Seq};
use crate::message::{Guarantee, Mcast, McastBody, Message, RtrEntry};
use crate::pg::{Packer, Reassembler};
use crate::srp::{FrameSink, PendingFrame, Srp, State, Stats};
use crate::time::Time;
use crate::timer::TimerKind;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use thiserror::Error;

/// Where a message goes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub enum Dest {
    /// Every member of the ring except this node (the node has already processed its own
    /// copy).
    All,
    /// One node, possibly this one.
    Node(NodeId),
}

/// Something the runtime must do, in the order given.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub enum Output {
    Send {
        dest: Dest,
        msg: Message,
    },
    Deliver(Delivery),
    Config(ConfigChange),
    /// The runtime must make this ring sequence durable (write and fsync), then confirm with
    /// [`Node::ring_seq_persisted`]; the node installs no ring of a higher sequence before
    /// that (the token keeps circulating meanwhile). After
    /// a restart the runtime hands the stored value back to [`Node::new`], so that a restarted
    /// node never reuses a ring id.
    PersistRingSeq(u64),
    /// An internal event, emitted only when [`Config::probes`] is set (for the spec).
    Probe(Probe),
    /// An event for a local CPG connection (only from a [`crate::cpg::CpgNode`]).
    Cpg(crate::cpg::Event),
}

/// One application message, delivered in the total order.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct Delivery {
    pub origin: NodeId,
    /// Where Totem ordered it: the ring and sequence number of its last frame.
    pub ring_id: RingId,
    pub seq: Seq,
    pub guarantee: Guarantee,
    pub payload: Bytes,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub enum ConfigKind {
    Transitional,
    Regular,
}

/// A configuration change delivered to the application.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct ConfigChange {
    pub kind: ConfigKind,
    pub ring_id: RingId,
    /// The regular configuration this node was in before; with `ring_id` it identifies a
    /// transitional configuration (several merging rings share the new ring id).
    pub prev_ring_id: Option<RingId>,
    /// Sorted ascending.
    pub members: Vec<NodeId>,
    pub left: Vec<NodeId>,
    pub joined: Vec<NodeId>,
}

/// Internal events the spec's checkers need (assignment, receipt, release, token visits).
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub enum Probe {
    /// This node assigned `seq` to a message it originated.
    Assign { ring_id: RingId, seq: Seq },
    /// This node now holds message `seq` (first receipt or own send).
    Receive { ring_id: RingId, seq: Seq },
    /// This node freed every message up to `up_to`.
    Release { ring_id: RingId, up_to: Seq },
    /// This node accepted a token and forwarded (or held) it with these values.
    Token {
        ring_id: RingId,
        token_seq: u32,
        seq: Seq,
        aru: Seq,
        aru_addr: Option<NodeId>,
        rtr: Vec<RtrEntry>,
        sent_new: u32,
        retransmitted: u32,
    },
    /// The protocol state changed.
    State { from: State, to: State },
    /// This node entered COMMIT for `ring_id` (see the spec's TOT-7).
    Commit {
        ring_id: RingId,
        members: Vec<NodeId>,
        proc_minus_failed: Vec<NodeId>,
        via_consensus: bool,
        agreed: Vec<NodeId>,
    },
}

/// Why an application message was not accepted. Nothing was queued.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Error)]
pub enum SubmitError {
    /// The send queue is full; retry after deliveries have progressed.
    #[error("send queue full, try again")]
    TryAgain,
    #[error("message of {len} bytes exceeds the {max}-byte limit")]
    TooLarge { len: usize, max: usize },
    #[error("empty messages cannot be sent")]
    Empty,
}

/// How a message of the layer above is queued for sending.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub enum Class {
    /// Application traffic: bounded by `pending_queue_max` ([`SubmitError::TryAgain`]), held
    /// during a synchronization round (see [`Node::enable_sync_barrier`]).
    App,
    /// In the application order but never refused for a full queue: for the few messages
    /// that must not be lost to flow control (a process's exit notice).
    Control,
    /// The synchronization round's own messages: sent before any application frame, also
    /// while application frames are held.
    Sync,
}

/// Where the frames of one message go.
enum Queue {
    Back,
    /// A message cut by a ring change: first in the application queue.
    Front,
    Sync,
}

/// The layer above the ring: per-sender reassembly of application messages.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Default, Serialize, Deserialize)]
struct Upper {
    reassemblers: BTreeMap<NodeId, Reassembler>,
    /// Frames that failed to parse (a bug or a forged packet; counted, never fatal).
    bad_frames: u64,
    /// Always empty between calls; kept to avoid an allocation per frame.
    scratch: Vec<Bytes>,
}

impl FrameSink for Upper {
    fn forget_sender(&mut self, node: NodeId) {
        self.reassemblers.remove(&node);
    }

    fn ring_installed(&mut self) {
        self.reassemblers.clear();
    }

    fn deliver_frame(&mut self, mcast: &Mcast, out: &mut Vec<Output>) {
        let McastBody::Frame(frame) = &mcast.body else { return };
        let reassembler = self.reassemblers.entry(mcast.origin).or_default();
        if reassembler.push_frame(frame, &mut self.scratch).is_err() {
            self.bad_frames += 1;
        }
        for payload in self.scratch.drain(..) {
            out.push(Output::Deliver(Delivery {
                origin: mcast.origin,
                ring_id: mcast.ring_id,
                seq: mcast.seq,
                guarantee: mcast.guarantee,
                payload,
            }));
        }
    }
}

/// A snapshot of a node's condition, for operators and tests.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Status {
    pub node: NodeId,
    pub state: State,
    pub ring_id: RingId,
    pub members: Vec<NodeId>,
    pub pending_frames: usize,
    pub stats: Stats,
    pub bad_frames: u64,
}

/// One Totem node. See the module documentation for how to drive it.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct Node {
    srp: Srp,
    packer: Packer,
    upper: Upper,
    started: bool,
    shut_down: bool,
}

impl Node {
    /// A node that belongs to no ring yet. [`Node::start`] makes it gather: it forms a ring
    /// with whoever answers (alone, a ring of its own). `persisted_ring_seq` is the last value
    /// of [`Output::PersistRingSeq`] that the runtime stored (None on a first start or after
    /// the state was lost). Every incarnation draws the residue class of the ring sequences
    /// it will create from its seeded generator, `Config::rng_seed`, so a runtime must give
    /// every start a fresh seed from real entropy (the daemon takes its boot id): that is
    /// what keeps a node that lost its disk off its earlier ring ids.
    pub fn new(config: Config, me: NodeId, persisted_ring_seq: Option<u64>) -> Result<Node, ConfigError> {
        config.validate()?;
        if me.0 == 0 {
            return Err(ConfigError { key: "nodeid", value: "0".into(), rule: "must be non-zero" });
        }
        #[cfg(feature = "broken")]
        let persisted_ring_seq =
            if config.bug == Some(crate::broken::Bug::ReuseRingSeq) { None } else { persisted_ring_seq };
        let packer = Packer::new(config.frame_size_max());
        let srp = Srp::fresh(config, me, persisted_ring_seq);
        Ok(Node { srp, packer, upper: Upper::default(), started: false, shut_down: false })
    }

    /// A node that starts as a member of an already-formed operational ring. `members` must
    /// contain `me`; every member must be given the same `ring_id` and `members`.
    pub fn new_on_ring(
        config: Config,
        me: NodeId,
        ring_id: RingId,
        members: &[NodeId],
    ) -> Result<Node, ConfigError> {
        config.validate()?;
        let mut members = members.to_vec();
        members.sort_unstable();
        members.dedup();
        if me.0 == 0 || !members.contains(&me) {
            return Err(ConfigError {
                key: "members",
                value: format!("{members:?}"),
                rule: "must contain this node's non-zero id",
            });
        }
        if ring_id.rep != members[0] {
            return Err(ConfigError {
                key: "ring_id",
                value: format!("{ring_id:?}"),
                rule: "the representative must be the lowest member",
            });
        }
        let packer = Packer::new(config.frame_size_max());
        Ok(Node {
            srp: Srp::on_ring(config, me, ring_id, members),
            packer,
            upper: Upper::default(),
            started: false,
            shut_down: false,
        })
    }

    /// Start the protocol. Call once, before any other input. A node made by [`Node::new`]
    /// enters GATHER; one made by [`Node::new_on_ring`] announces its ring to the application
    /// and, at the representative, originates the token.
    pub fn start(&mut self, now: Time, out: &mut Vec<Output>) {
        if self.started {
            return;
        }
        self.started = true;
        if self.srp.state() == State::Gather {
            self.srp.gather(now, crate::srp::GatherReason::Startup, out);
            return;
        }
        let members = self.srp.members().to_vec();
        out.push(Output::Config(ConfigChange {
            kind: ConfigKind::Regular,
            ring_id: self.srp.ring_id(),
            prev_ring_id: None,
            members: members.clone(),
            left: Vec::new(),
            joined: members,
        }));
        self.srp.timers.arm(TimerKind::TokenLoss, now + self.srp.config.token);
        if self.srp.is_rep() {
            let token = self.srp.initial_token();
            self.srp.handle_token(now, token, &mut self.upper, out);
        }
    }

    /// A message arrived from `from` (already authenticated and decoded).
    pub fn handle_message(&mut self, now: Time, from: NodeId, msg: Message, out: &mut Vec<Output>) {
        let _ = from;
        if self.shut_down || !self.started {
            return;
        }
        match msg {
            Message::Token(token) => {
                // Small messages packed since the last visit ride this one.
                if let Some((frame, guarantee)) = self.packer.flush() {
                    self.srp.pending.push_back(PendingFrame { frame, guarantee, part_of: None });
                }
                let installed = self.srp.stats().rings_installed;
                self.srp.handle_token(now, token, &mut self.upper, out);
                if self.srp.stats().rings_installed != installed {
                    self.resend_cut_message();
                }
            }
            Message::Mcast(mcast) => self.srp.handle_mcast(now, mcast, &mut self.upper, out),
            Message::TokenHoldCancel(cancel) => self.srp.handle_hold_cancel(now, cancel, out),
            Message::MergeDetect(detect) => self.srp.handle_merge_detect(now, detect, out),
            Message::Join(join) => self.srp.handle_join(now, join, out),
            Message::CommitToken(token) => self.srp.handle_commit_token(now, token, &mut self.upper, out),
        }
    }

    /// A timer's deadline passed (or a model checker chose to fire it).
    pub fn handle_timeout(&mut self, now: Time, kind: TimerKind, out: &mut Vec<Output>) {
        if !self.shut_down && self.srp.timers.take(kind) {
            self.srp.handle_timer(now, kind, out);
        }
    }

    /// The ring sequence of an earlier [`Output::PersistRingSeq`] is now durable.
    pub fn ring_seq_persisted(&mut self, now: Time, seq: u64, out: &mut Vec<Output>) {
        let _ = (now, out);
        self.srp.ring_seq_persisted(seq);
    }

    /// Leave the ring cleanly: the others reconfigure within a join period instead of a
    /// token timeout. Afterwards the node ignores every input.
    pub fn shutdown(&mut self, now: Time, out: &mut Vec<Output>) {
        let _ = now;
        if !self.shut_down {
            self.shut_down = true;
            self.srp.leave(out);
        }
    }

    pub fn is_shut_down(&self) -> bool {
        self.shut_down
    }

    /// Queue an application message for ordered delivery to every member.
    pub fn submit(
        &mut self,
        now: Time,
        payload: &[u8],
        guarantee: Guarantee,
        out: &mut Vec<Output>,
    ) -> Result<(), SubmitError> {
        self.submit_as(now, payload, guarantee, Class::App, out)
    }

    /// Whether the application queue can take a message of `len` bytes now ([`Node::submit`]
    /// would not answer [`SubmitError::TryAgain`] for the queue's sake).
    pub fn has_room(&self, len: usize) -> bool {
        self.srp.pending.len() + self.packer.frames_for(len) <= self.srp.config.pending_queue_max
    }

    /// Queue a message of the layer above in one of the send classes (see [`Class`]).
    pub fn submit_as(
        &mut self,
        now: Time,
        payload: &[u8],
        guarantee: Guarantee,
        class: Class,
        out: &mut Vec<Output>,
    ) -> Result<(), SubmitError> {
        if payload.is_empty() {
            return Err(SubmitError::Empty);
        }
        if payload.len() > MESSAGE_SIZE_MAX {
            return Err(SubmitError::TooLarge { len: payload.len(), max: MESSAGE_SIZE_MAX });
        }
        if class == Class::App && !self.has_room(payload.len()) {
            return Err(SubmitError::TryAgain);
        }
        if (class == Class::Sync || self.packer.staged_guarantee().is_some_and(|g| g != guarantee))
            && let Some((frame, g)) = self.packer.flush()
        {
            // Never let a sync message share a frame with (held) application messages, nor
            // mix guarantees in one frame.
            self.srp.pending.push_back(PendingFrame { frame, guarantee: g, part_of: None });
        }
        let mut frames = Vec::new();
        self.packer.push(payload, guarantee, &mut frames);
        if !frames.is_empty() || class == Class::Sync {
            // The message spans frames (or jumps the queue): close its last frame too, so
            // that no other message shares it, and keep the whole message with its frames
            // (see `resend_cut_message`).
            frames.extend(self.packer.flush());
            let queue = if class == Class::Sync { Queue::Sync } else { Queue::Back };
            self.queue_frames(Bytes::copy_from_slice(payload), frames, queue);
        }
        self.srp.cancel_hold_if_held(now, out);
        Ok(())
    }

    /// Have every newly installed ring hold application frames back until
    /// [`Node::release_app_traffic`]; [`Class::Sync`] frames still flow. For a layer above
    /// that reconciles its state after each membership change (CPG's sync barrier). Call
    /// before [`Node::start`].
    pub fn enable_sync_barrier(&mut self) {
        self.srp.sync_barrier = true;
        if self.started {
            return;
        }
        self.srp.app_held = true;
    }

    /// The layer above completed its synchronization for the current ring: application
    /// frames flow again.
    pub fn release_app_traffic(&mut self, now: Time, out: &mut Vec<Output>) {
        if self.srp.app_held {
            self.srp.app_held = false;
            if !self.srp.pending.is_empty() || !self.packer.is_empty() {
                self.srp.cancel_hold_if_held(now, out);
            }
        }
    }

    /// Whether application frames are being held for a synchronization round.
    pub fn app_traffic_held(&self) -> bool {
        self.srp.app_held
    }

    /// Queue the frames of one message: at the back of its class's queue, or (`Front`, for a
    /// message cut by a ring change) at the front of the application queue.
    fn queue_frames(&mut self, whole: Bytes, frames: Vec<(Bytes, Guarantee)>, queue: Queue) {
        let parts = frames.len();
        let pending = frames.into_iter().enumerate().map(|(i, (frame, guarantee))| PendingFrame {
            frame,
            guarantee,
            part_of: (parts > 1).then(|| (whole.clone(), i as u32)),
        });
        match queue {
            Queue::Front => {
                for p in pending.collect::<Vec<_>>().into_iter().rev() {
                    self.srp.pending.push_front(p);
                }
            }
            Queue::Sync => self.srp.sync_pending.extend(pending),
            Queue::Back => self.srp.pending.extend(pending),
        }
    }

    /// A new ring was installed while a message's frames were only partly sent: its first
    /// frames belong to the old ring, where no receiver can complete it. Drop its remaining
    /// frames and send it again whole, first, in the new ring, so that every message is
    /// ordered entirely within one ring and delivered by all of that ring's members.
    fn resend_cut_message(&mut self) {
        let Some(PendingFrame { part_of: Some((whole, part)), guarantee, .. }) = self.srp.pending.front()
        else {
            return;
        };
        if *part == 0 {
            return;
        }
        let (whole, guarantee) = (whole.clone(), *guarantee);
        while self.srp.pending.front().is_some_and(|f| f.part_of.as_ref().is_some_and(|(_, i)| *i > 0)) {
            self.srp.pending.pop_front();
        }
        let mut packer = Packer::new(self.srp.config.frame_size_max());
        let mut frames = Vec::new();
        packer.push(&whole, guarantee, &mut frames);
        frames.extend(packer.flush());
        self.queue_frames(whole, frames, Queue::Front);
    }

    /// The earliest armed timer, if any.
    pub fn poll_timeout(&self) -> Option<(Time, TimerKind)> {
        self.srp.timers.next()
    }

    /// Every armed timer with its deadline.
    pub fn armed_timers(&self) -> impl Iterator<Item = (TimerKind, Time)> + '_ {
        self.srp.timers.armed()
    }

    pub fn id(&self) -> NodeId {
        self.srp.me
    }

    pub fn config(&self) -> &Config {
        &self.srp.config
    }

    /// The protocol counters alone (cheaper than [`Node::status`]).
    pub fn stats(&self) -> &crate::srp::Stats {
        self.srp.stats()
    }

    pub fn status(&self) -> Status {
        Status {
            node: self.srp.me,
            state: self.srp.state(),
            ring_id: self.srp.ring_id(),
            members: self.srp.members().to_vec(),
            pending_frames: self.srp.pending_len() + usize::from(!self.packer.is_empty()),
            stats: self.srp.stats().clone(),
            bad_frames: self.upper.bad_frames,
        }
    }
}
