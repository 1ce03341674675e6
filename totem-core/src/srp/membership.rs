//! Membership (study §1.8): GATHER with JOIN messages, consensus, the commit token's first
//! rotation, token loss, merge detection and clean leave.
//!
//! Deviations from Corosync, each deliberate:
//! - A lone node does not need its own JOIN looped back through the network: it counts
//!   itself as agreeing when it enters GATHER, and commits at once if it proposes only
//!   itself.
//! - A foreign message or merge-detect from a member of this node's current ring that
//!   carries an older ring id is a late packet of a ring already replaced, not a sign of
//!   another partition: it is ignored instead of triggering a membership change.
//! - A JOIN's failed set is adopted not only from a member of this node's last ring (as in
//!   Corosync) but, from any sender, for the nodes outside that ring (see `process_join`).
//! - A ring attempt abandoned in COMMIT or RECOVERY restarts the membership from that
//!   attempt's members with an empty failed set, not from the sets that produced it (see
//!   `restart_from_installing`).
//! - A new ring's sequence is not exactly the highest seen + 4 but the first value of the
//!   representative incarnation's residue class at or above it, so that a node that lost its
//!   disk cannot create a ring id an earlier incarnation created (see
//!   `super::RING_SEQ_CLASS_BITS`).

use super::{GatherReason, Installing, Srp, State};
use crate::broken::Bug;
use crate::ids::{NodeId, RingId, Seq};
use crate::message::{CommitMember, CommitToken, Join, MergeDetect, Message};
use crate::node::{Dest, Output, Probe};
use crate::time::Time;
use crate::timer::TimerKind;

/// Insert `n` into a sorted set.
pub(crate) fn insert_sorted(set: &mut Vec<NodeId>, n: NodeId) {
    if let Err(i) = set.binary_search(&n) {
        set.insert(i, n);
    }
}

fn contains(set: &[NodeId], n: NodeId) -> bool {
    set.binary_search(&n).is_ok()
}

fn is_subset(a: &[NodeId], b: &[NodeId]) -> bool {
    a.iter().all(|&n| contains(b, n))
}

/// `a - b` for sorted sets.
pub(crate) fn minus(a: &[NodeId], b: &[NodeId]) -> Vec<NodeId> {
    a.iter().copied().filter(|&n| !contains(b, n)).collect()
}

impl Srp {
    /// The membership this node proposes: proc - failed.
    pub(crate) fn proposed(&self) -> Vec<NodeId> {
        minus(&self.memb.proc_set, &self.memb.failed_set)
    }

    /// (Re)enter GATHER: send a fresh JOIN, restart the join and consensus timers, and
    /// forget any ring that was being installed.
    pub(crate) fn gather(&mut self, now: Time, reason: GatherReason, out: &mut Vec<Output>) {
        let _ = reason;
        if self.state == State::Recovery {
            self.abandon_recovery();
        }
        self.memb.installing = None;
        self.last_token = None;
        self.stats.gathers += 1;
        insert_sorted(&mut self.memb.proc_set, self.me);
        self.send_join_jittered(now, out);
        self.timers.arm(TimerKind::Join, now + self.config.join);
        self.timers.arm(TimerKind::Consensus, now + self.config.consensus);
        for kind in [TimerKind::TokenRetransmit, TimerKind::TokenLoss, TimerKind::Merge, TimerKind::Hold] {
            self.timers.cancel(kind);
        }
        self.memb.consensus = vec![self.me];
        self.set_state(State::Gather, out);
        self.check_consensus(now, out);
    }

    /// Send the JOIN now, or after a random delay up to `send_join` (large rings use it to
    /// avoid a burst of JOINs; Corosync sleeps, a sans-IO core arms a timer).
    fn send_join_jittered(&mut self, now: Time, out: &mut Vec<Output>) {
        let jitter_ns = u64::try_from(self.config.send_join.as_nanos()).unwrap_or(u64::MAX);
        if jitter_ns == 0 {
            self.send_join(out);
        } else {
            let delay = self.random_below(jitter_ns);
            self.timers.arm(TimerKind::SendJoin, Time(now.0.saturating_add(delay)));
        }
    }

    pub(crate) fn send_join_timeout(&mut self, out: &mut Vec<Output>) {
        if self.state == State::Gather {
            self.send_join(out);
        }
    }

    fn send_join(&mut self, out: &mut Vec<Output>) {
        let join = Join {
            sender: self.me,
            proc_set: self.memb.proc_set.clone(),
            failed_set: self.memb.failed_set.clone(),
            ring_seq: self.memb.my_ring_seq,
            leave: false,
        };
        out.push(Output::Send { dest: Dest::All, msg: Message::Join(join) });
    }

    /// Announce a clean leave: a JOIN that lists this node as failed, so that the others
    /// reconfigure after a join period instead of a token timeout.
    pub(crate) fn leave(&mut self, out: &mut Vec<Output>) {
        let mut failed_set = self.memb.failed_set.clone();
        insert_sorted(&mut failed_set, self.me);
        let proc_set = minus(&self.memb.proc_set, &[self.me]);
        let join =
            Join { sender: self.me, proc_set, failed_set, ring_seq: self.memb.my_ring_seq, leave: true };
        out.push(Output::Send { dest: Dest::All, msg: Message::Join(join) });
        for kind in TimerKind::ALL {
            self.timers.cancel(kind);
        }
    }

    pub(crate) fn join_timeout(&mut self, now: Time, out: &mut Vec<Output>) {
        if self.state == State::Gather {
            self.send_join_jittered(now, out);
            self.timers.arm(TimerKind::Join, now + self.config.join);
        }
    }

    fn consensus_agreed(&self) -> bool {
        let proposed = self.proposed();
        let all_agree = proposed.iter().all(|&n| contains(&self.memb.consensus, n));
        // A node that failed to receive forms a ring of its own whatever is left of its
        // proposal (possibly nothing, once it has given up on everyone else).
        all_agree && (self.memb.failed_to_recv || !proposed.is_empty())
    }

    /// Members of the proposal that have not agreed become failed.
    fn fail_non_agreeing(&mut self) {
        for n in self.proposed() {
            if !contains(&self.memb.consensus, n) {
                insert_sorted(&mut self.memb.failed_set, n);
            }
        }
    }

    pub(crate) fn consensus_timeout(&mut self, now: Time, out: &mut Vec<Output>) {
        if self.state != State::Gather {
            return;
        }
        self.stats.consensus_timeouts += 1;
        if self.consensus_agreed() {
            // Everyone agreed but no commit token came: give it one token timeout more.
            self.memb.consensus = vec![self.me];
            self.timers.arm(TimerKind::TokenLoss, now + self.config.token);
        } else {
            self.fail_non_agreeing();
            self.gather(now, GatherReason::ConsensusTimeout, out);
        }
    }

    pub(crate) fn token_loss(&mut self, now: Time, out: &mut Vec<Output>) {
        self.stats.token_losses += 1;
        match self.state {
            State::Operational => self.gather(now, GatherReason::TokenLostOperational, out),
            State::Gather => {
                self.fail_non_agreeing();
                self.gather(now, GatherReason::ConsensusAgreedNoCommit, out);
            }
            State::Commit => {
                self.restart_from_installing();
                self.gather(now, GatherReason::TokenLostCommit, out);
            }
            State::Recovery => {
                self.restart_from_installing();
                self.gather(now, GatherReason::TokenLostRecovery, out);
            }
        }
    }

    /// The ring being installed is abandoned (token loss or a JOIN in COMMIT or RECOVERY):
    /// propose its members again, with nothing failed, as if it had been installed and then
    /// lost.
    ///
    /// Corosync keeps the proc and failed sets of the gather that produced the ring. By now
    /// they are stale: that gather's failures are already acted on (the ring excludes them),
    /// and the members that did install the ring have cleared theirs. Carried over, they
    /// came back in this node's JOINs, its ring-mates adopted them, and the ring that had
    /// just formed split again. A node left out is not forgotten: if it is alive its JOINs
    /// or messages bring it back; if it is dead it no longer holds up the next consensus.
    fn restart_from_installing(&mut self) {
        if let Some(installing) = &self.memb.installing {
            let mut members: Vec<NodeId> = installing.entries.iter().map(|e| e.node).collect();
            members.sort_unstable();
            self.memb.proc_set = members;
            self.memb.failed_set.clear();
        }
    }

    /// With consensus, the lowest proposed member creates the commit token; a node that
    /// failed to receive forms a ring of its own.
    fn check_consensus(&mut self, now: Time, out: &mut Vec<Output>) {
        if self.state != State::Gather || !self.consensus_agreed() {
            return;
        }
        if self.memb.failed_to_recv {
            self.memb.failed_to_recv = false;
            self.memb.proc_set = vec![self.me];
            self.memb.failed_set.clear();
            self.create_commit_token(now, out);
        } else if self.proposed().first() == Some(&self.me) {
            self.create_commit_token(now, out);
        }
    }

    fn create_commit_token(&mut self, now: Time, out: &mut Vec<Output>) {
        let proposed = self.proposed();
        let members =
            if self.bug(Bug::KeepFailedInCommit) { self.memb.proc_set.clone() } else { proposed.clone() };
        let seq = self.next_ring_seq(self.memb.highest_ring_seq.max(self.memb.my_ring_seq).saturating_add(4));
        let ring_id = RingId::new(self.me, seq);
        let entries = members
            .iter()
            .map(|&node| CommitMember {
                node,
                old_ring_id: RingId::new(node, 0),
                old_aru: Seq::ZERO,
                high_delivered: Seq::ZERO,
                received_flag: false,
            })
            .collect();
        let token = CommitToken { token_seq: 0, ring_id, memb_index: 0, members: entries };
        if self.config.probes {
            out.push(Output::Probe(Probe::Commit {
                ring_id,
                members,
                proc_minus_failed: proposed,
                via_consensus: true,
                agreed: self.memb.consensus.clone(),
            }));
        }
        self.enter_commit(now, token, out);
    }

    /// Fill this node's entry of the commit token, persist the new ring sequence, and pass
    /// the token on (study §1.8.4).
    fn enter_commit(&mut self, now: Time, mut token: CommitToken, out: &mut Vec<Output>) {
        let index = token.memb_index as usize;
        let old = self.regular();
        let entry = CommitMember {
            node: self.me,
            old_ring_id: old.ring_id,
            old_aru: old.my_aru,
            high_delivered: old.high_delivered,
            received_flag: old.my_aru == old.high_seq_received,
        };
        let Some(slot) = token.members.get_mut(index) else { return };
        *slot = entry;
        // Of the members filled so far that come from this node's old ring, only those with
        // the highest aru may claim to have received everything.
        let same_ring = |e: &&mut CommitMember| e.old_ring_id == entry.old_ring_id;
        let max_aru = token.members[..=index]
            .iter()
            .filter(|e| e.old_ring_id == entry.old_ring_id)
            .fold(entry.old_aru, |acc, e| acc.max(e.old_aru));
        for e in token.members[..=index].iter_mut().filter(same_ring) {
            if e.old_aru.is_before(max_aru) {
                e.received_flag = false;
            }
        }
        token.memb_index += 1;
        let successor = token.members[token.memb_index as usize % token.members.len()].node;

        self.timers.cancel(TimerKind::Join);
        self.timers.cancel(TimerKind::Consensus);
        self.timers.cancel(TimerKind::SendJoin);
        self.memb.my_ring_seq = token.ring_id.seq;
        self.memb.highest_ring_seq = self.memb.highest_ring_seq.max(token.ring_id.seq);
        self.memb.installing =
            Some(Installing { ring_id: token.ring_id, entries: token.members.clone(), originated: false });
        self.stats.commits += 1;
        self.set_state(State::Commit, out);
        // The new ring sequence must be durable before this node installs the ring (a
        // restart must never deliver a ring id twice), but the token need not wait for the
        // disk: installation waits for the runtime's confirmation instead (see
        // `handle_token`), so a slow fsync cannot make the commit token time out.
        out.push(Output::PersistRingSeq(self.memb.my_ring_seq));
        self.send_token(now, successor, Message::CommitToken(token), out);
    }

    /// The runtime confirms that ring sequence `seq` is durable.
    pub(crate) fn ring_seq_persisted(&mut self, seq: u64) {
        self.memb.persisted_ring_seq = self.memb.persisted_ring_seq.max(seq);
    }

    /// Send a token (ORF or commit) to `to`, keeping a copy for retransmission.
    pub(crate) fn send_token(&mut self, now: Time, to: NodeId, msg: Message, out: &mut Vec<Output>) {
        let msg = match msg {
            Message::CommitToken(mut t) => {
                t.token_seq = t.token_seq.wrapping_add(1);
                Message::CommitToken(t)
            }
            other => other,
        };
        out.push(Output::Send { dest: Dest::Node(to), msg: msg.clone() });
        self.last_token = Some((to, msg));
        self.timers.arm(TimerKind::TokenLoss, now + self.config.token);
        self.timers.arm(TimerKind::TokenRetransmit, now + self.config.token_retransmit);
    }

    pub(crate) fn handle_commit_token(
        &mut self,
        now: Time,
        token: CommitToken,
        sink: &mut impl super::FrameSink,
        out: &mut Vec<Output>,
    ) {
        let members: Vec<NodeId> = token.members.iter().map(|e| e.node).collect();
        let complete = token.memb_index as usize == members.len();
        match self.state {
            State::Gather => {
                let proposed = self.proposed();
                let my_turn = token.members.get(token.memb_index as usize).is_some_and(|e| e.node == self.me);
                if complete || !my_turn || members != proposed || token.ring_id.seq <= self.memb.my_ring_seq {
                    self.stats.messages_ignored += 1;
                    return;
                }
                if self.config.probes {
                    out.push(Output::Probe(Probe::Commit {
                        ring_id: token.ring_id,
                        members,
                        proc_minus_failed: proposed,
                        via_consensus: false,
                        agreed: self.memb.consensus.clone(),
                    }));
                }
                self.enter_commit(now, token, out);
            }
            State::Commit => {
                let ours = self.memb.installing.as_ref().is_some_and(|i| i.ring_id == token.ring_id);
                if ours && complete {
                    self.enter_recovery(now, token, out);
                }
            }
            State::Recovery => {
                let Some(installing) = self.memb.installing.as_mut() else { return };
                if installing.ring_id == token.ring_id && complete && token.ring_id.rep == self.me {
                    if installing.originated {
                        return;
                    }
                    // The second rotation is over: originate the new ring's first token.
                    installing.originated = true;
                    let first = self.initial_token();
                    self.handle_token(now, first, sink, out);
                }
            }
            State::Operational => self.stats.messages_ignored += 1,
        }
    }

    pub(crate) fn handle_join(&mut self, now: Time, join: Join, out: &mut Vec<Output>) {
        self.stats.joins_received += 1;
        self.memb.highest_ring_seq = self.memb.highest_ring_seq.max(join.ring_seq);
        match self.state {
            State::Operational => {
                let stale =
                    contains(&self.ring.members, join.sender) && join.ring_seq < self.ring.ring_id.seq;
                if contains(&join.failed_set, self.me) || stale {
                    return;
                }
                self.process_join(now, join, out);
                if self.state == State::Operational {
                    self.gather(now, GatherReason::JoinOperational, out);
                }
            }
            State::Gather => self.process_join(now, join, out),
            State::Commit | State::Recovery => {
                let from_member = self
                    .memb
                    .installing
                    .as_ref()
                    .is_some_and(|i| i.entries.iter().any(|e| e.node == join.sender));
                if !from_member || join.ring_seq < self.memb.my_ring_seq {
                    return;
                }
                let before = self.state;
                self.restart_from_installing();
                self.process_join(now, join, out);
                if self.state == before {
                    let reason = if before == State::Commit {
                        GatherReason::JoinCommit
                    } else {
                        GatherReason::JoinRecovery
                    };
                    self.gather(now, reason, out);
                }
            }
        }
    }

    /// study §1.8.2: agree, ignore, or merge what the JOIN knows into this node's sets.
    fn process_join(&mut self, now: Time, join: Join, out: &mut Vec<Output>) {
        let memb = &mut self.memb;
        if join.proc_set == memb.proc_set && join.failed_set == memb.failed_set {
            if !join.leave {
                insert_sorted(&mut memb.consensus, join.sender);
            }
            self.check_consensus(now, out);
            return;
        }
        if is_subset(&join.proc_set, &memb.proc_set) && is_subset(&join.failed_set, &memb.failed_set) {
            return;
        }
        if contains(&memb.failed_set, join.sender) {
            return;
        }
        let before = (memb.proc_set.len(), memb.failed_set.len());
        for &n in &join.proc_set {
            insert_sorted(&mut memb.proc_set, n);
        }
        // Failed entries: the sender's judgment of a member of this node's last ring is
        // taken only from a fellow member (Corosync), so that a partition between an outsider
        // and this ring cannot split it. About any other node this node knows nothing first
        // hand, so it takes the sender's word, wherever the sender comes from. Corosync does
        // not, and two nodes of different rings then disagree about a third until a consensus
        // timeout fails one of them, often a live one; a node the sender knows to be dead
        // also comes back with its proc set and holds up consensus for a full timeout.
        if contains(&join.failed_set, self.me) {
            insert_sorted(&mut self.memb.failed_set, join.sender);
        } else {
            let from_member = contains(&self.regular().members, join.sender);
            for &n in &join.failed_set {
                if n != self.me && (from_member || !contains(&self.regular().members, n)) {
                    insert_sorted(&mut self.memb.failed_set, n);
                }
            }
        }
        // Re-gather only if this node's sets grew. A JOIN whose failed set this node may
        // not wholly adopt (it names members of this node's ring and its sender is not one)
        // would otherwise count as new information every time, and two such nodes would
        // re-gather at each other's JOINs at network speed.
        if (self.memb.proc_set.len(), self.memb.failed_set.len()) == before {
            return;
        }
        self.gather(now, GatherReason::JoinNewInformation, out);
    }

    pub(crate) fn handle_merge_detect(&mut self, now: Time, detect: MergeDetect, out: &mut Vec<Output>) {
        if detect.ring_id != self.ring.ring_id {
            self.foreign_message(now, detect.sender, detect.ring_id, out);
        }
    }

    /// A message of another ring: another partition exists. OPERATIONAL and GATHER add its
    /// sender to the proposal (study §1.7.6).
    pub(crate) fn foreign_message(
        &mut self,
        now: Time,
        sender: NodeId,
        ring_id: RingId,
        out: &mut Vec<Output>,
    ) {
        if ring_id.seq < self.regular().ring_id.seq && contains(&self.regular().members, sender) {
            return;
        }
        match self.state {
            State::Operational => {
                insert_sorted(&mut self.memb.proc_set, sender);
                self.gather(now, GatherReason::ForeignMessageOperational, out);
            }
            State::Gather if !contains(&self.memb.proc_set, sender) => {
                insert_sorted(&mut self.memb.proc_set, sender);
                self.gather(now, GatherReason::ForeignMessageGather, out);
            }
            _ => {}
        }
    }
}
