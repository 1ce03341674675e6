//! Ordering on an operational ring: token processing (study §1.7), message receipt,
//! retransmission, flow control, buffer release and delivery.
//!
//! Deviations from Corosync, each deliberate:
//! - Buffers are freed only on accepted tokens. Corosync also frees on duplicate and foreign
//!   tokens, bounded by a single aru reading, which can free a message some member lacks.
//! - Safe delivery exists: a message sent as Safe is delivered only once the token's aru has
//!   covered it on two successive visits, i.e. once every member holds it.
//! - The fair share of the window is computed from the node's current backlog (the paper's
//!   formula) rather than its previous one.

use super::{FrameSink, RingState, Srp, State};
use crate::broken::Bug;
use crate::config::SORT_QUEUE_SLOTS;
use crate::ids::Seq;
use crate::message::{
    Guarantee, Mcast, McastBody, Message, RTR_ENTRIES_MAX, RtrEntry, Token, TokenHoldCancel,
};
use crate::node::{Dest, Output, Probe};
use crate::time::Time;
use crate::timer::TimerKind;

impl Srp {
    /// Process an ORF token addressed to this node.
    pub(crate) fn handle_token(
        &mut self,
        now: Time,
        mut token: Token,
        sink: &mut impl FrameSink,
        out: &mut Vec<Output>,
    ) {
        if !matches!(self.state, State::Operational | State::Recovery) {
            self.stats.messages_ignored += 1;
            return;
        }
        if token.ring_id != self.ring.ring_id && !self.bug(Bug::AcceptOldRingToken) {
            self.stats.tokens_foreign += 1;
            return;
        }
        if !self.ring.token_seq.is_before(Seq(token.token_seq)) {
            self.stats.tokens_duplicate += 1;
            return;
        }
        self.stats.tokens_accepted += 1;
        let forward = self.track_idle(now, &token);

        // The aru on this visit and the previous one: every member holds everything up to
        // the lower of the two (study §1.7 step 14).
        let prev_aru = self.ring.last_aru;
        self.ring.last_aru = token.aru;
        let two_visit_aru = prev_aru.min(token.aru);

        let mut allowed = self.transmits_allowed(&token);
        let retransmitted =
            if self.bug(Bug::NeverRetransmit) { 0 } else { self.retransmit(&mut token, allowed, out) };
        allowed -= retransmitted;
        self.request_missing(&mut token);
        let forward = forward
            || (self.config.cancel_token_hold_on_retransmit && (!token.rtr.is_empty() || retransmitted > 0));
        if !self.sort_queue_has_room(&token, allowed) {
            allowed = 0;
        }
        let sent_new = self.send_new(&mut token, allowed, out);
        self.ring.my_aru = self.ring.queue.contiguous_from(self.ring.my_aru);
        self.update_flow_control(&mut token, sent_new + retransmitted);
        self.update_aru(&mut token, prev_aru);
        if self.ring.aru_count > self.config.fail_recv_const && token.aru_addr == Some(self.me) {
            // This node has held the ring's aru back for fail_recv_const rotations: it cannot
            // receive. It removes itself (Corosync's rule) and does not forward the token.
            self.memb.failed_to_recv = true;
            crate::srp::membership::insert_sorted(&mut self.memb.failed_set, self.me);
            self.gather(now, crate::srp::GatherReason::FailedToReceive, out);
            return;
        }
        self.ring.token_seq = Seq(token.token_seq);
        token.token_seq = token.token_seq.wrapping_add(1);

        if self.state == State::Operational {
            let release_bound = if self.bug(Bug::EarlyRelease) { token.aru } else { two_visit_aru };
            self.release(release_bound.min(self.ring.high_delivered), out);
            self.ring.safe_line = self.ring.safe_line.max(two_visit_aru);
        }

        if self.config.probes {
            out.push(Output::Probe(Probe::Token {
                ring_id: token.ring_id,
                token_seq: self.ring.token_seq.0,
                seq: token.seq,
                aru: token.aru,
                aru_addr: token.aru_addr,
                rtr: token.rtr.clone(),
                sent_new,
                retransmitted,
            }));
        }
        if self.state == State::Recovery
            && self.recovery_visit(&mut token)
            && self.memb.persisted_ring_seq >= self.ring.ring_id.seq
        {
            self.enter_operational(now, sink, out);
        }
        self.forward_token(now, token, forward, out);
        if self.state == State::Operational {
            self.deliver(sink, out);
        }
    }

    /// Idle detection and the hold decision (study §1.7 steps 2 and 4). Returns whether the
    /// token should be forwarded now.
    fn track_idle(&mut self, now: Time, token: &Token) -> bool {
        let ring = &mut self.ring;
        if token.seq == ring.last_seq {
            ring.seq_unchanged = ring.seq_unchanged.saturating_add(1);
            if ring.ring_id.rep == self.me && !self.timers.is_armed(TimerKind::Merge) {
                self.timers.arm(TimerKind::Merge, now + self.config.merge);
            }
        } else {
            ring.seq_unchanged = 0;
            self.timers.cancel(TimerKind::Merge);
            self.timers.cancel(TimerKind::Hold);
        }
        ring.last_seq = token.seq;
        let rep = ring.ring_id.rep == self.me;
        let limit = self.config.seqno_unchanged_const;
        ring.held = if rep { ring.seq_unchanged > limit } else { ring.seq_unchanged >= limit };
        !(rep && ring.held)
    }

    /// How many messages (retransmitted first, then new) this visit may send (study §1.7.2).
    fn transmits_allowed(&self, token: &Token) -> u32 {
        if self.bug(Bug::SendPastWindow) {
            return u32::try_from(self.backlog()).unwrap_or(u32::MAX).max(1);
        }
        let window = self.config.window_size;
        let mut allowed = self.config.max_messages.min(window.saturating_sub(token.fcc));
        let cbl = self.backlog() as u64;
        let total = (u64::from(token.backlog) + cbl).saturating_sub(u64::from(self.ring.pbl));
        if let Some(share) = (u64::from(window) * cbl).checked_div(total)
            && share > 0
            && u64::from(allowed) > share
        {
            allowed = share as u32;
        }
        allowed
    }

    /// Messages waiting for a token visit: old-ring messages in RECOVERY, frames otherwise.
    fn backlog(&self) -> usize {
        if self.state == State::Recovery {
            self.recovery.queue.len()
        } else {
            self.sync_pending.len() + if self.app_held { 0 } else { self.pending.len() }
        }
    }

    /// Answer retransmit requests for messages this node holds, within the budget.
    fn retransmit(&mut self, token: &mut Token, allowed: u32, out: &mut Vec<Output>) -> u32 {
        let mut sent = 0;
        let ring_id = self.ring.ring_id;
        let queue = &self.ring.queue;
        token.rtr.retain(|entry| {
            if sent >= allowed || entry.ring_id != ring_id {
                return true;
            }
            match queue.get(entry.seq) {
                Some(m) => {
                    out.push(Output::Send { dest: Dest::All, msg: Message::Mcast(m.clone()) });
                    sent += 1;
                    false
                }
                None => true,
            }
        });
        self.stats.retransmissions += u64::from(sent);
        sent
    }

    /// Add requests for holes seen missing on `miss_count_const` visits.
    fn request_missing(&mut self, token: &mut Token) {
        let ring_id = self.ring.ring_id;
        let mut seq = self.ring.my_aru.next();
        while seq.is_before_or_eq(token.seq) && token.rtr.len() < RTR_ENTRIES_MAX {
            if let Some(misses) = self.ring.queue.note_miss(seq)
                && misses >= self.config.miss_count_const
                && !token.rtr.iter().any(|e| e.ring_id == ring_id && e.seq == seq)
            {
                token.rtr.push(RtrEntry { ring_id, seq });
                self.stats.retransmit_requests += 1;
            }
            if !self.ring.queue.in_window(seq) {
                break;
            }
            seq = seq.next();
        }
    }

    /// Never let the ring's seq run further ahead of this node's oldest buffered message than
    /// the sort queue can hold, with a window of slack (study §1.7 step 12).
    fn sort_queue_has_room(&self, token: &Token, allowed: u32) -> bool {
        let limit = SORT_QUEUE_SLOTS - self.config.window_size;
        match token.seq.add(allowed).since(self.ring.queue.released()) {
            Some(ahead) => ahead < limit,
            None => false,
        }
    }

    /// Assign sequence numbers to pending frames and multicast them.
    fn send_new(&mut self, token: &mut Token, allowed: u32, out: &mut Vec<Output>) -> u32 {
        let mut sent = 0;
        while sent < allowed {
            let (guarantee, body) = if self.state == State::Recovery {
                let Some(old) = self.recovery.queue.pop_front() else { break };
                (old.guarantee, McastBody::Recovered(Box::new(old)))
            } else {
                let next = match self.sync_pending.pop_front() {
                    Some(frame) => Some(frame),
                    None if self.app_held => None,
                    None => self.pending.pop_front(),
                };
                let Some(pending) = next else { break };
                (pending.guarantee, McastBody::Frame(pending.frame))
            };
            token.seq = token.seq.next();
            let mcast =
                Mcast { ring_id: self.ring.ring_id, seq: token.seq, origin: self.me, guarantee, body };
            if self.config.probes {
                out.push(Output::Probe(Probe::Assign { ring_id: mcast.ring_id, seq: mcast.seq }));
                out.push(Output::Probe(Probe::Receive { ring_id: mcast.ring_id, seq: mcast.seq }));
            }
            self.ring.queue.insert(token.seq, mcast.clone());
            self.ring.high_seq_received = self.ring.high_seq_received.max(token.seq);
            out.push(Output::Send { dest: Dest::All, msg: Message::Mcast(mcast) });
            sent += 1;
        }
        self.stats.mcasts_sent += u64::from(sent);
        sent
    }

    /// fcc is a sliding count over the last rotation: replace this node's previous
    /// contribution with this visit's. Likewise for the backlog.
    fn update_flow_control(&mut self, token: &mut Token, sent: u32) {
        token.fcc = token.fcc.saturating_add(sent).saturating_sub(self.ring.trc);
        self.ring.trc = sent;
        let cbl = u32::try_from(self.backlog()).unwrap_or(u32::MAX);
        token.backlog = token.backlog.saturating_add(cbl).saturating_sub(self.ring.pbl);
        self.ring.pbl = cbl;
    }

    /// Lower the token's aru to this node's, or raise it if this node set it (study §1.7
    /// step 16), and count visits on which it is stuck (step 17).
    fn update_aru(&mut self, token: &mut Token, prev_aru: Seq) {
        let my_aru = self.ring.my_aru;
        if my_aru.is_before(token.aru) || token.aru_addr == Some(self.me) || token.aru_addr.is_none() {
            token.aru = my_aru;
            token.aru_addr = if token.aru == token.seq { None } else { Some(self.me) };
        }
        if token.aru == prev_aru && token.aru_addr.is_some() {
            self.ring.aru_count = self.ring.aru_count.saturating_add(1);
        } else {
            self.ring.aru_count = 0;
        }
    }

    /// Free every buffered message up to `up_to`: it will never be retransmitted again.
    fn release(&mut self, up_to: Seq, out: &mut Vec<Output>) {
        if let Some(released) = self.ring.queue.release(up_to)
            && self.config.probes
        {
            out.push(Output::Probe(Probe::Release { ring_id: self.ring.ring_id, up_to: released }));
        }
    }

    /// Keep a copy for retransmission, send it on (unless holding) and re-arm the timers.
    fn forward_token(&mut self, now: Time, token: Token, forward: bool, out: &mut Vec<Output>) {
        self.timers.arm(TimerKind::TokenLoss, now + self.config.token);
        let successor = self.ring.successor;
        if forward {
            out.push(Output::Send { dest: Dest::Node(successor), msg: Message::Token(token.clone()) });
            self.timers.arm(TimerKind::TokenRetransmit, now + self.config.token_retransmit);
            self.timers.cancel(TimerKind::Hold);
        } else {
            self.timers.arm(TimerKind::Hold, now + self.config.hold);
            self.timers.cancel(TimerKind::TokenRetransmit);
        }
        self.last_token = Some((successor, Message::Token(token)));
    }

    /// Resend the kept token copy to the successor.
    pub(crate) fn resend_token(&mut self, now: Time, out: &mut Vec<Output>) {
        if let Some((to, token)) = &self.last_token {
            out.push(Output::Send { dest: Dest::Node(*to), msg: token.clone() });
            self.stats.tokens_retransmitted += 1;
        }
        self.timers.arm(TimerKind::TokenRetransmit, now + self.config.token_retransmit);
    }

    /// A multicast message arrived.
    pub(crate) fn handle_mcast(
        &mut self,
        now: Time,
        mcast: Mcast,
        sink: &mut impl FrameSink,
        out: &mut Vec<Output>,
    ) {
        let ours = mcast.ring_id == self.ring.ring_id && self.state != State::Commit;
        if !ours {
            self.stats.mcasts_foreign += 1;
            self.foreign_message(now, mcast.origin, mcast.ring_id, out);
            return;
        }
        let seq = mcast.seq;
        let recovered = match (&mcast.body, &self.old_ring) {
            (McastBody::Recovered(inner), Some(old))
                if inner.ring_id == old.ring_id && !old.queue.contains(inner.seq) =>
            {
                Some((old.ring_id, inner.seq))
            }
            _ => None,
        };
        if !self.ring.queue.in_window(seq) {
            // Already released (an old duplicate) or too far ahead (it will be re-requested).
            self.stats.mcasts_out_of_window += 1;
            return;
        }
        if !self.ring.queue.insert(seq, mcast) {
            self.stats.mcasts_duplicate += 1;
            return;
        }
        self.stats.mcasts_received += 1;
        if self.config.probes {
            out.push(Output::Probe(Probe::Receive { ring_id: self.ring.ring_id, seq }));
            // From now on this node holds the old-ring message, wrapped.
            if let Some((old_ring, old_seq)) = recovered
                && self.recovery.announced.insert(old_seq.0)
            {
                out.push(Output::Probe(Probe::Receive { ring_id: old_ring, seq: old_seq }));
            }
        }
        self.ring.high_seq_received = self.ring.high_seq_received.max(seq);
        self.ring.my_aru = self.ring.queue.contiguous_from(self.ring.my_aru);
        if self.state == State::Operational {
            self.deliver(sink, out);
        }
    }

    /// Deliver messages of the current ring in sequence order.
    pub(crate) fn deliver(&mut self, sink: &mut impl FrameSink, out: &mut Vec<Output>) {
        let safe_line = if self.bug(Bug::SafeOnFirstReceipt) { None } else { Some(self.ring.safe_line) };
        let past_gap = self.bug(Bug::DeliverPastGap);
        self.stats.frames_delivered += deliver_in_order(&mut self.ring, safe_line, past_gap, sink, out);
    }

    /// This node queued a message while the ring idles: ask the representative to release
    /// the held token (study §1.7.5).
    pub(crate) fn cancel_hold_if_held(&mut self, now: Time, out: &mut Vec<Output>) {
        if self.state == State::Operational && self.ring.held {
            let cancel = TokenHoldCancel { ring_id: self.ring.ring_id };
            out.push(Output::Send { dest: Dest::All, msg: Message::TokenHoldCancel(cancel) });
            self.handle_hold_cancel(now, cancel, out);
        }
    }

    pub(crate) fn handle_hold_cancel(&mut self, now: Time, cancel: TokenHoldCancel, out: &mut Vec<Output>) {
        if cancel.ring_id != self.ring.ring_id || self.state != State::Operational {
            return;
        }
        self.ring.seq_unchanged = 0;
        self.ring.held = false;
        if self.timers.take(TimerKind::Hold) {
            self.resend_token(now, out);
        }
    }

    /// Timer expiry: ordering timers here, membership timers in `membership`.
    pub(crate) fn handle_timer(&mut self, now: Time, kind: TimerKind, out: &mut Vec<Output>) {
        match kind {
            TimerKind::TokenRetransmit | TimerKind::Hold => {
                if self.state != State::Gather {
                    self.resend_token(now, out);
                }
            }
            TimerKind::Merge => {
                if self.state == State::Operational && self.is_rep() {
                    let detect = crate::message::MergeDetect { sender: self.me, ring_id: self.ring.ring_id };
                    out.push(Output::Send { dest: Dest::All, msg: Message::MergeDetect(detect) });
                }
            }
            TimerKind::TokenLoss => self.token_loss(now, out),
            TimerKind::Join => self.join_timeout(now, out),
            TimerKind::Consensus => self.consensus_timeout(now, out),
            TimerKind::SendJoin => self.send_join_timeout(out),
        }
    }

    /// The initial token of a freshly installed ring, originated by its representative.
    pub(crate) fn initial_token(&self) -> Token {
        Token {
            ring_id: self.ring.ring_id,
            token_seq: 0,
            seq: Seq::ZERO,
            aru: Seq::ZERO,
            aru_addr: None,
            fcc: 0,
            backlog: 0,
            retrans_flag: false,
            rtr: Vec::new(),
        }
    }
}

/// Deliver `ring`'s messages in sequence order from its delivery point, stopping at the first
/// hole and at the first Safe message after `safe_line` (`None`: Safe is not waited for).
/// Returns how many frames were delivered.
pub(crate) fn deliver_in_order(
    ring: &mut RingState,
    safe_line: Option<Seq>,
    past_gap: bool,
    sink: &mut impl FrameSink,
    out: &mut Vec<Output>,
) -> u64 {
    let mut delivered = 0;
    loop {
        let next = ring.high_delivered.next();
        let Some(mcast) = ring.queue.get(next) else {
            if past_gap && next.is_before(ring.high_seq_received) && ring.queue.in_window(next) {
                ring.high_delivered = next;
                continue;
            }
            break;
        };
        if mcast.guarantee == Guarantee::Safe && safe_line.is_some_and(|line| !next.is_before_or_eq(line)) {
            break;
        }
        ring.high_delivered = next;
        delivered += 1;
        sink.deliver_frame(mcast, out);
    }
    delivered
}
