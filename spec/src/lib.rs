//! # spec: the executable specification of Extended Virtual Synchrony, Totem and CPG
//!
//! This crate is the independent judge of the Totem reimplementation. It knows nothing of
//! the protocol's code: it imports nothing from `totem-core`, and its only input is a
//! recorded [`trace::Trace`], a time-ordered list of events (starts, crashes, clean leaves,
//! state losses, sends, configuration and message deliveries, a few internal probes:
//! sequence number assignment, receipt, buffer release, token visits, protocol state
//! changes and COMMIT entries, and what the closed process group service did for its
//! client connections: joins, leaves, multicasts, deliveries, view changes, totem view
//! changes, membership snapshots and exits). Callers (the simulator, the model checker)
//! translate what the core did into that vocabulary.
//!
//! Each property is one module with one predicate, stated precisely in the module's
//! documentation and checked by its `check` function, which returns the [`Violation`]s it
//! finds (empty when the trace satisfies the property). The properties restate the Extended
//! Virtual Synchrony specification (Moser, Amir, Melliar-Smith, Agarwal, "Extended Virtual
//! Synchrony", ICDCS 1994; labelled EVS-n), add Totem-level invariants that need the
//! internal probes (Amir et al., "The Totem single-ring ordering and membership protocol",
//! ACM TOCS 1995; labelled TOT-n), liveness properties checked after the network healed
//! (LIVE-n), and the guarantees of Corosync's closed process groups (CPG-n; the study's
//! section 4 describes the service, [`cpg_index`] the sessions and ring segments the CPG
//! checkers share). The numbering follows the project's study, sections 9.1 and 9.2;
//! [`PROPERTIES`] lists them all, with what each CPG property leaves to the simulator
//! (payload bytes) or cannot see (connection flags, queue levels).
//!
//! Entry points: [`check_safety`] runs every safety checker, [`check_liveness`] the
//! liveness checkers for a [`LivenessWindow`], [`tot10_timing::check`] the timing property
//! for caller-computed [`TimingBounds`]. [`TraceBuilder`] builds traces by hand for
//! tests.
//!
//! Robustness: a trace can be anything (a buggy core, a buggy recorder). No checker panics
//! on an odd trace; malformed traces are reported by TRACE-WF, and the other checkers skip
//! what they cannot judge. Every checker runs in O(n log n) time in the number of events,
//! or O(n * k) where k is the number of nodes, and returns its violations sorted by event
//! index, capped at [`MAX_VIOLATIONS_PER_PROPERTY`] (the last one then counts the rest).

#![forbid(unsafe_code)]

use std::fmt;

pub mod builder;
pub mod cpg_index;
pub mod index;
pub mod trace;

pub mod trace_wf;

pub mod evs1a_no_creation;
pub mod evs1b_no_duplication;
pub mod evs1c_delivery_configuration;
pub mod evs2a_self_inclusion;
pub mod evs2b_alternation;
pub mod evs2c_monotonic_rings;
pub mod evs2d_membership_agreement;
pub mod evs2e_transitional_arithmetic;
pub mod evs2f_transitional_agreement;
pub mod evs2g_moving_together;
pub mod evs3_self_delivery;
pub mod evs4_failure_atomicity;
pub mod evs5_causal_order;
pub mod evs6a_total_order;
pub mod evs6b_regular_gaps;
pub mod evs6c_transitional_gaps;
pub mod evs7_safe_delivery;

pub mod tot10_timing;
pub mod tot1_seq_assignment;
pub mod tot2_fifo;
pub mod tot3_operational_delivery;
pub mod tot4_token;
pub mod tot5_flow_control;
pub mod tot6_safe_release;
pub mod tot7_commit;
pub mod tot8_recovery;
pub mod tot9_state_machine;

pub mod live1_convergence;
pub mod live2_delivery;
pub mod live3_merge;

pub mod cpg10_totem_confchg;
pub mod cpg11_no_ghosts;
pub mod cpg12_lossless;
pub mod cpg13_integrity;
pub mod cpg14_snapshot;
pub mod cpg15_names;
pub mod cpg1_view_agreement;
pub mod cpg2_join;
pub mod cpg3_leave;
pub mod cpg4_view_arithmetic;
pub mod cpg5_sender_membership;
pub mod cpg6_virtual_synchrony;
pub mod cpg7_self_delivery;
pub mod cpg8_reasons;
pub mod cpg9_failure_views;

pub use builder::{TokenVisit, TraceBuilder};
pub use index::Index;
pub use tot10_timing::TimingBounds;
pub use trace::{
    ConfKind, CpgReason, CpgResult, Event, EventKind, Guarantee, MAX_GROUP_NAME_LEN, MsgId, Node, Process,
    ProtoState, Ring, Slot, Trace,
};

/// One way a trace breaks one property.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Violation {
    /// The property's id, as in [`PROPERTIES`] ("EVS-6a", "TOT-4", ...).
    pub property: &'static str,
    /// What happened, in words.
    pub message: String,
    /// Indices into `trace.events` of the events that show the violation.
    pub events: Vec<usize>,
}

impl Violation {
    /// A violation of `property`.
    pub fn new(property: &'static str, message: impl Into<String>, events: Vec<usize>) -> Self {
        Violation { property, message: message.into(), events }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.property, self.message)?;
        if !self.events.is_empty() {
            write!(f, " (events")?;
            for (k, e) in self.events.iter().enumerate() {
                write!(f, "{}{e}", if k == 0 { " " } else { ", " })?;
            }
            write!(f, ")")?;
        }
        Ok(())
    }
}

impl std::error::Error for Violation {}

/// At most this many violations are reported per property and trace; a longer list is cut
/// and its last entry says how many were left out. One bug tends to break a property many
/// times over, and a few million copies of the same report help nobody.
pub const MAX_VIOLATIONS_PER_PROPERTY: usize = 100;

/// Sort a checker's violations by their events (then message) so that the output does not
/// depend on hash-map iteration order, and cap them.
pub(crate) fn finish(mut violations: Vec<Violation>) -> Vec<Violation> {
    violations.sort_by(|a, b| a.events.cmp(&b.events).then_with(|| a.message.cmp(&b.message)));
    violations.dedup();
    if violations.len() > MAX_VIOLATIONS_PER_PROPERTY {
        let omitted = violations.len() - (MAX_VIOLATIONS_PER_PROPERTY - 1);
        violations.truncate(MAX_VIOLATIONS_PER_PROPERTY - 1);
        if let Some(property) = violations.first().map(|v| v.property) {
            violations.push(Violation::new(
                property,
                format!("{omitted} further violations omitted"),
                Vec::new(),
            ));
        }
    }
    violations
}

/// Protocol parameters the safety checkers need. The checkers are agnostic of ring size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Params {
    /// Most messages (new plus retransmitted) a node may send on one token visit (TOT-5).
    pub max_messages: u32,
    /// Flow-control window: most messages a ring sends per token rotation (TOT-5).
    pub window_size: u32,
}

impl Default for Params {
    /// Corosync's defaults: max_messages 17, window_size 50.
    fn default() -> Self {
        Params { max_messages: 17, window_size: 50 }
    }
}

/// The part of a run over which liveness is judged.
///
/// From `healed_at` on, the network among the nodes of `live` (the set S) is connected,
/// loss-free and fault-free (no crash, no restart of a node of S), and nodes outside S are
/// crashed or unreachable. The trace is expected to continue at least until `deadline`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LivenessWindow {
    /// Time from which the network was healed and fault free.
    pub healed_at: u64,
    /// Time by which the nodes of S must have converged (the caller computes the bound from
    /// its timeouts, see LIVE-1 and LIVE-3). Messages sent up to this time must be
    /// delivered by the end of the trace (LIVE-2), so a caller should stop sending early
    /// enough, or let the trace run on after the deadline.
    pub deadline: u64,
    /// The set S: nodes alive and connected. Order and duplicates do not matter.
    pub live: Vec<Node>,
}

/// Every property this crate checks: (id, one-line statement).
pub const PROPERTIES: &[(&str, &str)] = &[
    (trace_wf::ID, trace_wf::STATEMENT),
    (evs1a_no_creation::ID, evs1a_no_creation::STATEMENT),
    (evs1b_no_duplication::ID, evs1b_no_duplication::STATEMENT),
    (evs1c_delivery_configuration::ID, evs1c_delivery_configuration::STATEMENT),
    (evs2a_self_inclusion::ID, evs2a_self_inclusion::STATEMENT),
    (evs2b_alternation::ID, evs2b_alternation::STATEMENT),
    (evs2c_monotonic_rings::ID, evs2c_monotonic_rings::STATEMENT),
    (evs2d_membership_agreement::ID, evs2d_membership_agreement::STATEMENT),
    (evs2e_transitional_arithmetic::ID, evs2e_transitional_arithmetic::STATEMENT),
    (evs2f_transitional_agreement::ID, evs2f_transitional_agreement::STATEMENT),
    (evs2g_moving_together::ID, evs2g_moving_together::STATEMENT),
    (evs3_self_delivery::ID, evs3_self_delivery::STATEMENT),
    (evs4_failure_atomicity::ID, evs4_failure_atomicity::STATEMENT),
    (evs5_causal_order::ID, evs5_causal_order::STATEMENT),
    (evs6a_total_order::ID, evs6a_total_order::STATEMENT),
    (evs6b_regular_gaps::ID, evs6b_regular_gaps::STATEMENT),
    (evs6c_transitional_gaps::ID, evs6c_transitional_gaps::STATEMENT),
    (evs7_safe_delivery::ID, evs7_safe_delivery::STATEMENT),
    (tot1_seq_assignment::ID, tot1_seq_assignment::STATEMENT),
    (tot2_fifo::ID, tot2_fifo::STATEMENT),
    (tot3_operational_delivery::ID, tot3_operational_delivery::STATEMENT),
    (tot4_token::ID, tot4_token::STATEMENT),
    (tot5_flow_control::ID, tot5_flow_control::STATEMENT),
    (tot6_safe_release::ID, tot6_safe_release::STATEMENT),
    (tot7_commit::ID, tot7_commit::STATEMENT),
    (tot8_recovery::ID, tot8_recovery::STATEMENT),
    (tot9_state_machine::ID, tot9_state_machine::STATEMENT),
    (tot10_timing::ID, tot10_timing::STATEMENT),
    (live1_convergence::ID, live1_convergence::STATEMENT),
    (live2_delivery::ID, live2_delivery::STATEMENT),
    (live3_merge::ID, live3_merge::STATEMENT),
    (cpg1_view_agreement::ID, cpg1_view_agreement::STATEMENT),
    (cpg2_join::ID, cpg2_join::STATEMENT),
    (cpg3_leave::ID, cpg3_leave::STATEMENT),
    (cpg4_view_arithmetic::ID, cpg4_view_arithmetic::STATEMENT),
    (cpg5_sender_membership::ID, cpg5_sender_membership::STATEMENT),
    (cpg6_virtual_synchrony::ID, cpg6_virtual_synchrony::STATEMENT),
    (cpg7_self_delivery::ID, cpg7_self_delivery::STATEMENT),
    (cpg8_reasons::ID, cpg8_reasons::STATEMENT),
    (cpg9_failure_views::ID, cpg9_failure_views::STATEMENT),
    (cpg10_totem_confchg::ID, cpg10_totem_confchg::STATEMENT),
    (cpg11_no_ghosts::ID, cpg11_no_ghosts::STATEMENT),
    (cpg12_lossless::ID, cpg12_lossless::STATEMENT),
    (cpg13_integrity::ID, cpg13_integrity::STATEMENT),
    (cpg14_snapshot::ID, cpg14_snapshot::STATEMENT),
    (cpg15_names::ID, cpg15_names::STATEMENT),
];

/// Run every safety checker (TRACE-WF, EVS-*, TOT-1 to TOT-9, and the CPG properties but
/// CPG-7 and CPG-11) over `trace`. TOT-10 needs
/// loss-free runs and caller-computed bounds; call [`tot10_timing::check`] directly. The views of the trace
/// are computed once and shared. The result is grouped by property in [`PROPERTIES`] order
/// and sorted by event within a property.
pub fn check_safety(trace: &Trace, params: &Params) -> Vec<Violation> {
    let ix = Index::new(trace);
    let mut out = Vec::new();
    out.extend(trace_wf::check_indexed(&ix));
    out.extend(evs1a_no_creation::check_indexed(&ix));
    out.extend(evs1b_no_duplication::check_indexed(&ix));
    out.extend(evs1c_delivery_configuration::check_indexed(&ix));
    out.extend(evs2a_self_inclusion::check_indexed(&ix));
    out.extend(evs2b_alternation::check_indexed(&ix));
    out.extend(evs2c_monotonic_rings::check_indexed(&ix));
    out.extend(evs2d_membership_agreement::check_indexed(&ix));
    out.extend(evs2e_transitional_arithmetic::check_indexed(&ix));
    out.extend(evs2f_transitional_agreement::check_indexed(&ix));
    out.extend(evs2g_moving_together::check_indexed(&ix));
    out.extend(evs3_self_delivery::check_indexed(&ix));
    out.extend(evs4_failure_atomicity::check_indexed(&ix));
    out.extend(evs5_causal_order::check_indexed(&ix));
    out.extend(evs6a_total_order::check_indexed(&ix));
    out.extend(evs6b_regular_gaps::check_indexed(&ix));
    out.extend(evs6c_transitional_gaps::check_indexed(&ix));
    out.extend(evs7_safe_delivery::check_indexed(&ix));
    out.extend(tot1_seq_assignment::check_indexed(&ix));
    out.extend(tot2_fifo::check_indexed(&ix));
    out.extend(tot3_operational_delivery::check_indexed(&ix));
    out.extend(tot4_token::check_indexed(&ix));
    out.extend(tot5_flow_control::check_indexed(&ix, params));
    out.extend(tot6_safe_release::check_indexed(&ix));
    out.extend(tot7_commit::check_indexed(&ix));
    out.extend(tot8_recovery::check_indexed(&ix));
    out.extend(tot9_state_machine::check_indexed(&ix));
    out.extend(cpg1_view_agreement::check_indexed(&ix));
    out.extend(cpg2_join::check_indexed(&ix));
    out.extend(cpg3_leave::check_indexed(&ix));
    out.extend(cpg4_view_arithmetic::check_indexed(&ix));
    out.extend(cpg5_sender_membership::check_indexed(&ix));
    out.extend(cpg6_virtual_synchrony::check_indexed(&ix));
    out.extend(cpg8_reasons::check_indexed(&ix));
    out.extend(cpg9_failure_views::check_indexed(&ix));
    out.extend(cpg10_totem_confchg::check_indexed(&ix));
    out.extend(cpg12_lossless::check_indexed(&ix));
    out.extend(cpg13_integrity::check_indexed(&ix));
    out.extend(cpg14_snapshot::check_indexed(&ix));
    out.extend(cpg15_names::check_indexed(&ix));
    out
}

/// Run the liveness checkers LIVE-1 (convergence by `window.deadline`), LIVE-2 (delivery
/// of the survivors' messages), CPG-7 (self-delivery of joined survivors' CPG messages)
/// and CPG-11 (no ghosts in the survivors' final CPG views) over `trace`. LIVE-3 is LIVE-1 with a merge bound
/// and is called directly ([`live3_merge::check`]) by tests that heal a partition.
/// `_params` is unused today; it is part of the signature so that bounds derived from the
/// protocol parameters can be added without changing callers.
pub fn check_liveness(trace: &Trace, _params: &Params, window: &LivenessWindow) -> Vec<Violation> {
    let ix = Index::new(trace);
    let mut out = Vec::new();
    out.extend(live1_convergence::check_indexed(&ix, window));
    out.extend(live2_delivery::check_indexed(&ix, window));
    out.extend(cpg7_self_delivery::check_indexed(&ix, window));
    out.extend(cpg11_no_ghosts::check_indexed(&ix, window));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: a correct run with membership changes, packing and safe delivery passes every
    // safety checker, and liveness once converged.
    // Method: build it by hand: ring {1,2,3}, traffic, node 3 crashes, {1,2} reform with
    // transitional deliveries, 3 restarts and merges back, more traffic.
    #[test]
    fn realistic_trace_passes_everything() {
        let r1 = Ring::new(1, 4);
        let mut b = TraceBuilder::with_ring(r1, &[1, 2, 3]);
        b.multicast(1, Slot::new(r1, 1), &[1, 2, 3]);
        // Two messages packed into slot 2.
        let a = b.send(2);
        let c = b.send(2);
        b.broadcast(2, Slot::new(r1, 2), &[1, 2, 3]);
        for n in [1, 2, 3] {
            b.deliver(n, a, Slot::new(r1, 2));
            b.deliver(n, c, Slot::new(r1, 2));
        }
        // A safe message, received by all before delivery.
        let s = b.send_safe(3);
        b.broadcast(3, Slot::new(r1, 3), &[1, 2, 3]);
        for n in [1, 2, 3] {
            b.deliver_safe(n, s, Slot::new(r1, 3));
        }
        b.token(1, TokenVisit::new(r1, 1, 3, 3).sent(1, 0));
        b.token(2, TokenVisit::new(r1, 2, 3, 3).sent(1, 0));
        b.token(3, TokenVisit::new(r1, 3, 3, 3).sent(1, 0));
        b.release(1, r1, 3);
        // Node 3 sends slot 4, reaching only node 1 before crashing; node 1 sends slot 5.
        b.send(3);
        b.broadcast(3, Slot::new(r1, 4), &[1, 3]);
        b.crash(3);
        let late = b.send(1);
        b.broadcast(1, Slot::new(r1, 5), &[1, 2]);
        // {1,2} reform: slot 4 is originated outside the transitional set, so nobody
        // delivers it; slot 5 is delivered in the transitional configuration.
        let r2 = Ring::new(1, 8);
        for n in [1, 2] {
            b.trans(n, r2, &[1, 2]);
            b.deliver(n, late, Slot::new(r1, 5));
            b.reg(n, r2, &[1, 2]);
        }
        b.start(3);
        let r3 = Ring::new(3, 8);
        b.form(r3, &[3]);
        let r4 = Ring::new(1, 12);
        b.form(r4, &[1, 2, 3]);
        // Recovery wrapper at seq 1 of r4 is assigned but never delivered; traffic at 2.
        b.broadcast(1, Slot::new(r4, 1), &[1, 2, 3]);
        b.multicast(3, Slot::new(r4, 2), &[1, 2, 3]);
        let trace = b.build();
        let violations = check_safety(&trace, &Params::default());
        assert!(violations.is_empty(), "{violations:#?}");
        let window = LivenessWindow { healed_at: 0, deadline: u64::MAX, live: vec![1, 2, 3] };
        let violations = check_liveness(&trace, &Params::default(), &window);
        assert!(violations.is_empty(), "{violations:#?}");
    }

    // Goal: a correct run recorded with every probe (state changes, commits, a state loss
    // and a clean leave) passes every safety checker, TOT-10 and liveness.
    // Method: {1,2,3} installed with probes; node 3's last message reaches node 1 only
    // before node 3 crashes; {1,2} commit, node 2 recovers the message, both deliver it in
    // the old ring; node 3 restarts with its state lost and reuses ring seq 4 in its
    // singleton ring; node 2 leaves; {1,3} install and exchange a message.
    #[test]
    fn realistic_trace_with_probes_passes_everything() {
        let r1 = Ring::new(1, 4);
        let mut b = TraceBuilder::new();
        for n in [1, 2, 3] {
            b.start(n);
        }
        b.install(r1, &[1, 2, 3]);
        b.multicast(1, Slot::new(r1, 1), &[1, 2, 3]);
        b.multicast(2, Slot::new(r1, 2), &[1, 2, 3]);
        let m = b.send(3);
        b.broadcast(3, Slot::new(r1, 3), &[1, 3]);
        b.advance(10);
        b.crash(3);
        let r2 = Ring::new(1, 8);
        b.enter_commit(r2, &[1, 2]);
        b.move_all(&[1, 2], ProtoState::Recovery);
        b.receive(2, Slot::new(r1, 3));
        b.move_all(&[1, 2], ProtoState::Operational);
        b.deliver(1, m, Slot::new(r1, 3));
        b.deliver(2, m, Slot::new(r1, 3));
        b.form(r2, &[1, 2]);
        b.state_lost(3);
        b.start(3);
        b.install(Ring::new(3, 4), &[3]);
        b.advance(10);
        b.leave(2);
        let r3 = Ring::new(1, 12);
        b.install(r3, &[1, 3]);
        b.multicast(3, Slot::new(r3, 1), &[1, 3]);
        let trace = b.build();
        let violations = check_safety(&trace, &Params::default());
        assert!(violations.is_empty(), "{violations:#?}");
        let bounds = TimingBounds { crash_to_regular_ns: 100, leave_to_regular_ns: 100 };
        let violations = tot10_timing::check(&trace, &bounds);
        assert!(violations.is_empty(), "{violations:#?}");
        let window = LivenessWindow { healed_at: 0, deadline: u64::MAX, live: vec![1, 3] };
        let violations = check_liveness(&trace, &Params::default(), &window);
        assert!(violations.is_empty(), "{violations:#?}");
    }

    /// A CPG multicast carried by a Totem message with the same id: `CpgMcast` and `Send`
    /// at the sender, the slot at `nodes`, then at each node its Totem delivery followed by
    /// the CPG delivery to its connections in `to`.
    fn cpg_via_totem(
        b: &mut TraceBuilder,
        sender: (Node, u32, Process),
        slot: Slot,
        nodes: &[Node],
        to: &[(Node, u32)],
    ) -> MsgId {
        let (node, conn, process) = sender;
        let m = b.cpg_mcast(node, conn, b"g");
        b.send_msg(node, m, Guarantee::Agreed);
        b.broadcast(node, slot, nodes);
        for &n in nodes {
            b.deliver(n, m, slot);
            for &(_, c) in to.iter().filter(|(x, _)| *x == n) {
                b.cpg_deliver(n, c, b"g", process, m);
            }
        }
        m
    }

    // Goal: a correct run of the CPG service over Totem (joins, traffic carried by Totem
    // messages, a crash with NODEDOWN at the survivors' synchronization, a leave, a
    // snapshot, a restart, a merge with NODEUP, totem confchgs after every completed
    // synchronization) passes every safety and liveness checker.
    // Method: build it by hand with the CPG helpers.
    #[test]
    fn realistic_cpg_trace_passes_everything() {
        let g = b"g";
        let r1 = Ring::new(1, 4);
        let mut b = TraceBuilder::new();
        for n in [1, 2, 3] {
            b.start(n);
        }
        for (n, c) in [(1, 1), (2, 1), (2, 2), (3, 1)] {
            b.cpg_connect(n, c);
        }
        b.form(r1, &[1, 2, 3]);
        b.cpg_totem(r1, &[1, 2, 3]);
        let p = b.cpg_join_group(1, 1, g, 10);
        let q = b.cpg_join_group(2, 1, g, 20);
        let x = b.cpg_join_group(3, 1, g, 30);
        b.cpg_join_group(2, 2, b"h", 21);
        let all = [(1, 1), (2, 1), (3, 1)];
        cpg_via_totem(&mut b, (1, 1, p), Slot::new(r1, 1), &[1, 2, 3], &all);
        cpg_via_totem(&mut b, (3, 1, x), Slot::new(r1, 2), &[1, 2, 3], &all);
        b.cpg_send(2, 2);
        // Node 3 crashes; {1,2} form r2; the NODEDOWN confchg, then the totem confchg.
        b.crash(3);
        let r2 = Ring::new(1, 8);
        b.form(r2, &[1, 2]);
        b.cpg_node_down(&[3]);
        b.cpg_totem(r2, &[1, 2]);
        b.cpg_membership(1, 1, g, &[p, q]);
        let pair = [(1, 1), (2, 1)];
        cpg_via_totem(&mut b, (2, 1, q), Slot::new(r2, 1), &[1, 2], &pair);
        b.cpg_leave_group(2, 2);
        // Node 3 restarts alone, its new process joins, then the merge.
        b.start(3);
        b.cpg_connect(3, 1);
        let r3 = Ring::new(3, 8);
        b.form(r3, &[3]);
        b.cpg_totem(r3, &[3]);
        let y = Process::new(3, 31);
        b.cpg_join(3, 1, g, 31);
        b.cpg_confchg(3, 1, g, &[y], &[], &[(y, CpgReason::Join)]);
        let r4 = Ring::new(1, 12);
        b.form(r4, &[1, 2, 3]);
        let view = [p, q, y];
        for (n, c) in pair {
            b.cpg_confchg(n, c, g, &view, &[], &[(y, CpgReason::NodeUp)]);
        }
        b.cpg_confchg(3, 1, g, &view, &[], &[(p, CpgReason::NodeUp), (q, CpgReason::NodeUp)]);
        for (n, c) in [(1, 1), (2, 1), (2, 2), (3, 1)] {
            b.cpg_totem_confchg(n, c, r4, &[1, 2, 3]);
        }
        b.cpg_membership(3, 1, g, &view);
        cpg_via_totem(&mut b, (3, 1, y), Slot::new(r4, 1), &[1, 2, 3], &all);
        cpg_via_totem(&mut b, (1, 1, p), Slot::new(r4, 2), &[1, 2, 3], &all);
        let trace = b.build();
        let violations = check_safety(&trace, &Params::default());
        assert!(violations.is_empty(), "{violations:#?}");
        let window = LivenessWindow { healed_at: 0, deadline: u64::MAX, live: vec![1, 2, 3] };
        let violations = check_liveness(&trace, &Params::default(), &window);
        assert!(violations.is_empty(), "{violations:#?}");
        // The CPG-1 and CPG-6 segments cover every ring.
        let ix = Index::new(&trace);
        let rings: std::collections::BTreeSet<Ring> = ix.cpg_segments().iter().map(|s| s.key.ring).collect();
        assert_eq!(rings.into_iter().collect::<Vec<_>>(), vec![r1, r2, r4, r3]);
    }

    // Goal: the registry lists each property once.
    // Method: compare the number of ids with the number of distinct ids.
    #[test]
    fn registry_ids_are_unique() {
        let ids: std::collections::BTreeSet<&str> = PROPERTIES.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids.len(), PROPERTIES.len());
    }

    // Goal: violations print their property, message and events.
    // Method: format one.
    #[test]
    fn violation_display() {
        let v = Violation::new("EVS-1a", "boom", vec![3, 7]);
        assert_eq!(v.to_string(), "EVS-1a: boom (events 3, 7)");
    }

    // Goal: output is capped per property.
    // Method: finish() a list longer than the cap.
    #[test]
    fn finish_caps_and_sorts() {
        let vs: Vec<Violation> =
            (0..250).rev().map(|i| Violation::new("X", format!("v{i}"), vec![i])).collect();
        let out = finish(vs);
        assert_eq!(out.len(), MAX_VIOLATIONS_PER_PROPERTY);
        assert_eq!(out[0].events, vec![0]);
        assert_eq!(out[MAX_VIOLATIONS_PER_PROPERTY - 1].message, "151 further violations omitted");
    }
}
