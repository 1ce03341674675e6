//! RECOVERY (study §1.8.5) and the installation of a new ring with Extended Virtual
//! Synchrony's configuration delivery (§1.8.6).
//!
//! Deviations from Corosync, each deliberate:
//! - Recovery counters are reset on every RECOVERY entry.
//! - Old-ring messages are delivered exactly per EVS: in the old regular configuration up to
//!   the first hole; then the transitional configuration; then the remaining old-ring
//!   messages whose originators are in the transitional set; then the regular
//!   configuration. Corosync's "deliver after the gap" TODO is resolved this way.
//! - A Safe old-ring message is delivered in the old regular configuration only if some
//!   member of the transitional set had already delivered it there (the commit token
//!   carries each member's delivery point), otherwise in the transitional configuration, so
//!   that every member of the transitional set delivers the same messages in each
//!   configuration.
//! - A transitional configuration carries the previous regular ring id as well as the new
//!   ring id: several merging rings share the new id.

use super::ordering::deliver_in_order;
use super::{FrameSink, RingState, Srp, State};
use crate::broken::Bug;
use crate::config::SORT_QUEUE_SLOTS;
use crate::ids::NodeId;
use crate::message::{CommitToken, McastBody, Message, Token};
use crate::node::{ConfigChange, ConfigKind, Output};
use crate::time::Time;

impl Srp {
    /// The commit token completed its first rotation: the new ring exists. Work out who
    /// moves together from the old ring, queue the old-ring messages this node must re-send,
    /// and start the second rotation.
    pub(crate) fn enter_recovery(&mut self, now: Time, token: CommitToken, out: &mut Vec<Output>) {
        let old = &self.ring;
        let new_members: Vec<NodeId> = token.members.iter().map(|e| e.node).collect();
        let trans_entries: Vec<_> = token
            .members
            .iter()
            .filter(|e| e.old_ring_id == old.ring_id && old.members.binary_search(&e.node).is_ok())
            .collect();
        let trans: Vec<NodeId> = trans_entries.iter().map(|e| e.node).collect();
        let trans_high_delivered =
            trans_entries.iter().fold(old.high_delivered, |acc, e| acc.max(e.high_delivered));

        let mut queue = std::collections::VecDeque::new();
        let needs_exchange = trans_entries.iter().any(|e| !e.received_flag);
        if needs_exchange && !self.bug(Bug::SkipRecoveryRetransmissions) {
            // Everything above the lowest aru of the transitional set that this node holds:
            // every member re-sends it, so each ends up with every message any of them had.
            let low = trans_entries.iter().fold(old.high_seq_received, |acc, e| acc.min(e.old_aru));
            let count = old.high_seq_received.since(low).unwrap_or(0).min(SORT_QUEUE_SLOTS);
            for i in 1..=count {
                if let Some(m) = old.queue.get(low.add(i)) {
                    queue.push_back(m.clone());
                }
            }
        }
        self.recovery = super::Recovery { queue, trans, trans_high_delivered, ..Default::default() };
        if let Some(installing) = self.memb.installing.as_mut() {
            installing.entries = token.members.clone();
        }
        let new_ring = RingState::new(self.me, token.ring_id, new_members);
        let successor = new_ring.successor;
        self.old_ring = Some(std::mem::replace(&mut self.ring, new_ring));
        self.set_state(State::Recovery, out);
        self.send_token(now, successor, Message::CommitToken(token), out);
    }

    /// Give up on the ring being recovered: the old ring becomes current again, so the next
    /// attempt recovers its messages afresh.
    ///
    /// Old-ring messages that arrived wrapped in the abandoned ring are kept: they are unwrapped
    /// into the old ring's queue, as installation would have done. This node has announced
    /// holding them (see `handle_mcast`), so the next attempt must count and re-send them;
    /// Corosync drops them with the recovery queue.
    pub(crate) fn abandon_recovery(&mut self) {
        if let Some(mut old) = self.old_ring.take() {
            unwrap_recovered(&self.ring, &mut old);
            self.ring = old;
        }
        self.recovery = super::Recovery::default();
    }

    /// RECOVERY bookkeeping on a token visit (study §1.8.5). Returns true when the node may
    /// install the new ring: every old-ring message has been re-sent and every member holds
    /// all of them.
    pub(crate) fn recovery_visit(&mut self, token: &mut Token) -> bool {
        let r = &mut self.recovery;
        if !r.queue.is_empty() && !token.retrans_flag {
            token.retrans_flag = true;
            r.set_retrans_flag = true;
        } else if r.queue.is_empty() && token.retrans_flag && r.set_retrans_flag {
            token.retrans_flag = false;
            r.set_retrans_flag = false;
        }
        if token.retrans_flag {
            r.retrans_flag_count = 0;
        } else {
            r.retrans_flag_count = r.retrans_flag_count.saturating_add(1);
        }
        if r.retrans_flag_count == 2 {
            r.install_seq = token.seq;
        }
        if r.retrans_flag_count >= 3 && r.install_seq.is_before_or_eq(token.aru) {
            r.rotation_counter = r.rotation_counter.saturating_add(1);
        } else {
            r.rotation_counter = 0;
        }
        r.rotation_counter >= 2
    }

    /// Install the new ring, delivering the EVS configuration sequence (study §1.8.6).
    pub(crate) fn enter_operational(&mut self, _now: Time, sink: &mut impl FrameSink, out: &mut Vec<Output>) {
        let Some(mut old) = self.old_ring.take() else { return };
        self.set_state(State::Operational, out);

        // Old-ring messages recovered through the new ring fill the old ring's holes.
        unwrap_recovered(&self.ring, &mut old);

        let trans = std::mem::take(&mut self.recovery.trans);
        let new_members = self.ring.members.clone();
        let left = super::membership::minus(&old.members, &trans);
        let joined = super::membership::minus(&new_members, &trans);
        let prev_ring_id = (!old.members.is_empty()).then_some(old.ring_id);
        let transitional = ConfigChange {
            kind: ConfigKind::Transitional,
            ring_id: self.ring.ring_id,
            prev_ring_id,
            members: trans.clone(),
            left: left.clone(),
            joined: Vec::new(),
        };

        // 1. The old regular configuration: up to the first hole, and Safe messages only
        //    as far as some member of the transitional set had delivered.
        let trans_first = self.bug(Bug::TransBeforeOldMessages);
        if trans_first {
            out.push(Output::Config(transitional.clone()));
        }
        let safe_line = old.safe_line.max(self.recovery.trans_high_delivered);
        self.stats.frames_delivered += deliver_in_order(&mut old, Some(safe_line), false, sink, out);

        // 2. The transitional configuration, then the rest of the old ring's messages whose
        //    originators moved with this node, skipping holes.
        if !trans_first {
            out.push(Output::Config(transitional));
        }
        let count = old.high_seq_received.since(old.high_delivered).unwrap_or(0).min(SORT_QUEUE_SLOTS);
        for i in 1..=count {
            if let Some(m) = old.queue.get(old.high_delivered.add(i))
                && trans.binary_search(&m.origin).is_ok()
            {
                self.stats.frames_delivered += 1;
                sink.deliver_frame(m, out);
            }
        }
        for &node in &left {
            sink.forget_sender(node);
        }
        sink.ring_installed();

        // 3. The regular configuration of the new ring.
        out.push(Output::Config(ConfigChange {
            kind: ConfigKind::Regular,
            ring_id: self.ring.ring_id,
            prev_ring_id,
            members: new_members.clone(),
            left: Vec::new(),
            joined,
        }));

        // The new ring's first sequence numbers carry recovery wrappers: consumed, never
        // delivered.
        while let Some(m) = self.ring.queue.get(self.ring.high_delivered.next()) {
            if !matches!(m.body, McastBody::Recovered(_)) {
                break;
            }
            self.ring.high_delivered = self.ring.high_delivered.next();
        }
        self.memb.proc_set = new_members;
        self.memb.failed_set.clear();
        self.memb.consensus.clear();
        self.memb.installing = None;
        self.recovery = super::Recovery::default();
        self.stats.rings_installed += 1;
    }
}

/// Move the old-ring messages that arrived wrapped in `new` (re-sent during recovery) into
/// `old`'s queue where they fill holes, and advance `old`'s aru over them.
fn unwrap_recovered(new: &RingState, old: &mut RingState) {
    for (_, wrapper) in new.queue.iter() {
        let McastBody::Recovered(inner) = &wrapper.body else { continue };
        // (Its Receive probe was emitted when the wrapper arrived.)
        if inner.ring_id == old.ring_id
            && old.queue.in_window(inner.seq)
            && old.queue.insert(inner.seq, (**inner).clone())
        {
            old.high_seq_received = old.high_seq_received.max(inner.seq);
        }
    }
    old.my_aru = old.queue.contiguous_from(old.my_aru);
}
