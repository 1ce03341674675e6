//! TRACE-WF: the trace is well formed.
//!
//! **Property.** Checked in trace order:
//! - event times never decrease;
//! - node ids are non-zero;
//! - the first event of every incarnation is `Start`, or `StateLost` directly followed (as
//!   the node's next event) by the `Start` of the same incarnation; no incarnation has a
//!   second `Start`, and `StateLost` occurs nowhere else (a `StateLost` carries the number
//!   of the incarnation it precedes);
//! - a node's incarnations follow each other: once an event of incarnation i + 1 appears,
//!   no event of incarnation i (or earlier) appears again, and incarnation numbers grow by
//!   exactly one (the first one seen need not be 0, so that a trace may begin mid-run);
//! - nothing happens in an incarnation after its `Crash` or its `Leave` (both end it);
//! - every `Send` names its own sender: `msg.origin` and `msg.incarnation` are the event's
//!   node and incarnation, and the counters one incarnation sends are strictly increasing
//!   (so message ids are unique);
//! - CPG: every `CpgMcast` names its own sender likewise, with counters strictly increasing
//!   over the incarnation's `CpgMcast` events (a separate sequence from its `Send`s: the
//!   two may share ids, see [`crate::trace`]); nothing happens on a connection after its
//!   `CpgExit` (a connection number is never reused within an incarnation). Like every
//!   event, CPG events belong to a started incarnation (the rules above).
//!
//! These are obligations of the recorder rather than of the protocol, but the other
//! properties are only meaningful on a well-formed trace, so a broken recorder must not go
//! unnoticed. The other checkers do not rely on them: they skip what they cannot judge.

use crate::index::{FastMap, Index, fmt_inc};
use crate::trace::{EventKind, Node, Trace};
use crate::{Violation, finish};

pub const ID: &str = "TRACE-WF";
pub const STATEMENT: &str = "The trace is well formed: times non-decreasing, every incarnation starts with Start \
     (or StateLost then Start), incarnations of a node follow each other, nothing after Crash or Leave, Send ids \
     name their sender with increasing counters; CpgMcast ids likewise; nothing on a CPG connection after its \
     CpgExit.";

/// Check TRACE-WF over `trace`.
pub fn check(trace: &Trace) -> Vec<Violation> {
    check_indexed(&Index::new(trace))
}

struct NodeState {
    incarnation: u32,
    /// Some event of the incarnation was seen.
    seen: bool,
    /// The incarnation's `Start` was seen (or its missing Start was reported).
    started: bool,
    /// A `StateLost` that still waits for its `Start`.
    state_lost: Option<usize>,
    /// The event that ended the incarnation (Crash or Leave) and its name.
    end: Option<(usize, &'static str)>,
    last_counter: Option<(u64, usize)>,
    last_cpg_counter: Option<(u64, usize)>,
    /// CPG connections that exited: conn -> its CpgExit.
    exited: FastMap<u32, usize>,
}

impl NodeState {
    fn new(incarnation: u32) -> Self {
        NodeState {
            incarnation,
            seen: false,
            started: false,
            state_lost: None,
            end: None,
            last_counter: None,
            last_cpg_counter: None,
            exited: FastMap::default(),
        }
    }
}

/// Check TRACE-WF using a shared index.
pub fn check_indexed(ix: &Index<'_>) -> Vec<Violation> {
    let trace = ix.trace();
    let mut out = Vec::new();
    let mut last_time: Option<(u64, usize)> = None;
    let mut nodes: FastMap<Node, NodeState> = FastMap::default();
    for (i, e) in trace.events.iter().enumerate() {
        let inc = e.incarnation_key();
        if let Some((t, j)) = last_time
            && e.time < t
        {
            out.push(Violation::new(ID, format!("time goes backwards from {t} to {}", e.time), vec![j, i]));
        }
        last_time = Some((e.time, i));
        if e.node == 0 {
            out.push(Violation::new(ID, "event at node id 0", vec![i]));
        }
        let is_start = matches!(e.kind, EventKind::Start);
        let is_opener = is_start || matches!(e.kind, EventKind::StateLost);
        let state = nodes.entry(e.node).or_insert_with(|| NodeState::new(e.incarnation));
        if let Some(j) = state.state_lost.take()
            && !(is_start && e.incarnation == state.incarnation)
        {
            out.push(Violation::new(
                ID,
                format!(
                    "StateLost of {} is followed by {} of {}, not by its Start",
                    fmt_inc((e.node, state.incarnation)),
                    e.kind.name(),
                    fmt_inc(inc)
                ),
                vec![j, i],
            ));
            // The incarnation's opening was reported; do not report its first event too.
            state.started = true;
        }
        if e.incarnation < state.incarnation {
            out.push(Violation::new(
                ID,
                format!(
                    "event of {} after incarnation {} of the node started",
                    fmt_inc(inc),
                    state.incarnation
                ),
                vec![i],
            ));
            continue;
        } else if e.incarnation > state.incarnation {
            if e.incarnation != state.incarnation.saturating_add(1) {
                out.push(Violation::new(
                    ID,
                    format!("{} follows incarnation {}", fmt_inc(inc), state.incarnation),
                    vec![i],
                ));
            }
            *state = NodeState::new(e.incarnation);
        } else if let Some((c, what)) = state.end {
            out.push(Violation::new(
                ID,
                format!("{} has a {} event after its {what}", fmt_inc(inc), e.kind.name()),
                vec![c, i],
            ));
        }
        let first_of_incarnation = !state.seen;
        state.seen = true;
        if !is_opener && !state.started {
            out.push(Violation::new(
                ID,
                format!("first event of {} is {}, not Start", fmt_inc(inc), e.kind.name()),
                vec![i],
            ));
            state.started = true;
        }
        match &e.kind {
            EventKind::Start => {
                if state.started {
                    out.push(Violation::new(ID, format!("{} starts twice", fmt_inc(inc)), vec![i]));
                }
                state.started = true;
            }
            EventKind::StateLost => {
                if first_of_incarnation && !state.started {
                    state.state_lost = Some(i);
                } else {
                    out.push(Violation::new(
                        ID,
                        format!("StateLost of {} is not its first event", fmt_inc(inc)),
                        vec![i],
                    ));
                }
            }
            EventKind::Crash | EventKind::Leave => {
                state.end.get_or_insert((i, e.kind.name()));
            }
            EventKind::Send { msg, .. } => {
                if msg.sender() != inc {
                    out.push(Violation::new(
                        ID,
                        format!("{} sends {msg:?}, which names another sender", fmt_inc(inc)),
                        vec![i],
                    ));
                } else {
                    if let Some((c, j)) = state.last_counter
                        && msg.counter <= c
                    {
                        out.push(Violation::new(
                            ID,
                            format!("{} sends counter {} after counter {c}", fmt_inc(inc), msg.counter),
                            vec![j, i],
                        ));
                    }
                    state.last_counter = Some((msg.counter, i));
                }
            }
            EventKind::CpgMcast { msg, .. } => {
                if msg.sender() != inc {
                    out.push(Violation::new(
                        ID,
                        format!("{} multicasts {msg:?}, which names another sender", fmt_inc(inc)),
                        vec![i],
                    ));
                } else {
                    if let Some((c, j)) = state.last_cpg_counter
                        && msg.counter <= c
                    {
                        out.push(Violation::new(
                            ID,
                            format!("{} multicasts counter {} after counter {c}", fmt_inc(inc), msg.counter),
                            vec![j, i],
                        ));
                    }
                    state.last_cpg_counter = Some((msg.counter, i));
                }
            }
            _ => {}
        }
        if let Some(conn) = e.kind.cpg_conn() {
            if let Some(&x) = state.exited.get(&conn) {
                out.push(Violation::new(
                    ID,
                    format!("{} conn {conn} has a {} event after its CpgExit", fmt_inc(inc), e.kind.name()),
                    vec![x, i],
                ));
            } else if matches!(e.kind, EventKind::CpgExit { .. }) {
                state.exited.insert(conn, i);
            }
        }
    }
    for (node, state) in &nodes {
        if let Some(j) = state.state_lost {
            out.push(Violation::new(
                ID,
                format!("StateLost of {} is not followed by its Start", fmt_inc((*node, state.incarnation))),
                vec![j],
            ));
        }
    }
    finish(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::TraceBuilder;
    use crate::trace::{CpgResult, Guarantee, MsgId, Ring, Slot};

    // Goal: a normal trace with a restart is well formed.
    // Method: start, traffic, crash, restart, traffic.
    #[test]
    fn accepts_restart() {
        let r = Ring::new(1, 4);
        let mut b = TraceBuilder::with_ring(r, &[1, 2]);
        b.multicast(1, Slot::new(r, 1), &[1, 2]);
        b.crash(2);
        b.start(2);
        b.send(2);
        assert_eq!(check(&b.build()), vec![]);
    }

    // Goal: each malformation is flagged.
    // Method: one trace with a missing Start, time going back, an event after Crash, a
    // foreign Send id and a repeated counter.
    #[test]
    fn flags_malformations() {
        let mut b = TraceBuilder::new();
        b.send(1); // Node 1 never started.
        b.start(2);
        b.at(0);
        b.send(2); // Time went back.
        b.send_msg(2, MsgId::new(2, 0, 0), Guarantee::Agreed); // Counter repeated.
        b.send_msg(2, MsgId::new(3, 0, 7), Guarantee::Agreed); // Foreign id.
        b.crash(2);
        b.send(2); // After crash.
        let v = check(&b.build());
        let messages: Vec<&str> = v.iter().map(|v| v.message.as_str()).collect();
        assert_eq!(v.len(), 5, "{messages:#?}");
        assert!(messages[0].contains("not Start"));
        assert!(messages[1].contains("time goes backwards"));
        assert!(messages[2].contains("counter 0 after counter 0"));
        assert!(messages[3].contains("names another sender"));
        assert!(messages[4].contains("after its Crash"));
    }

    // Goal: a clean leave and a restart with lost state are well formed.
    // Method: node 2 leaves and restarts; node 1 crashes and restarts after StateLost
    // (also as the very first event of a node); traffic after each start.
    #[test]
    fn accepts_leave_and_state_loss() {
        let r = Ring::new(1, 4);
        let mut b = TraceBuilder::with_ring(r, &[1, 2]);
        b.leave(2);
        b.start(2);
        b.send(2);
        b.crash(1);
        b.state_lost(1);
        b.start(1);
        b.send(1);
        b.state_lost(3);
        b.start(3);
        b.leave(3);
        assert_eq!(check(&b.build()), vec![]);
    }

    // Goal: events after Leave and misplaced or dangling StateLost events are flagged.
    // Method: an event after a Leave; a StateLost followed by a Send; a StateLost in the
    // middle of an incarnation; a StateLost at the end of the trace.
    #[test]
    fn flags_leave_and_state_loss_malformations() {
        let mut b = TraceBuilder::new();
        b.start(1);
        let leave = b.leave(1);
        b.send(1);
        let after = b.trace().events.len() - 1;
        let v = check(b.trace());
        assert_eq!(v.len(), 1, "{v:#?}");
        assert_eq!(v[0].events, vec![leave, after]);
        assert!(v[0].message.contains("after its Leave"));

        let mut b = TraceBuilder::new();
        let lost = b.state_lost(2);
        b.send(2);
        let send = b.trace().events.len() - 1;
        b.start(3);
        let middle = b.event(3, EventKind::StateLost);
        b.start(4);
        b.crash(4);
        let dangling = b.state_lost(4);
        let v = check(&b.build());
        let summary: Vec<(&[usize], &str)> =
            v.iter().map(|v| (v.events.as_slice(), v.message.as_str())).collect();
        assert_eq!(v.len(), 3, "{summary:#?}");
        assert_eq!(v[0].events, vec![lost, send]);
        assert!(v[0].message.contains("not by its Start"));
        assert_eq!(v[1].events, vec![middle]);
        assert!(v[1].message.contains("not its first event"));
        assert_eq!(v[2].events, vec![dangling]);
        assert!(v[2].message.contains("not followed by its Start"));
    }

    // Goal: CPG events follow the incarnation rules, and the CPG-specific rules hold.
    // Method: a correct join/multicast/exit passes; then a foreign CpgMcast id, a repeated
    // CpgMcast counter, an event after CpgExit, and a CPG event before Start are flagged.
    #[test]
    fn cpg_rules() {
        let g = b"g";
        let mut b = TraceBuilder::with_ring(Ring::new(1, 4), &[1]);
        b.cpg_join_group(1, 7, g, 100);
        b.cpg_send(1, 7);
        b.cpg_exit(1, 7);
        b.cpg_join_group(1, 8, g, 100);
        assert_eq!(check(b.trace()), vec![]);

        let foreign = b.cpg_mcast_msg(1, 8, g, MsgId::new(2, 0, 0), Guarantee::Agreed, CpgResult::Ok);
        let again = b.cpg_mcast_msg(1, 8, g, MsgId::new(1, 0, 0), Guarantee::Agreed, CpgResult::Ok);
        let exit = b.cpg_exit(1, 8);
        let after = b.cpg_leave(1, 8, g);
        let early = b.cpg_join(5, 1, g, 1);
        let v = check(&b.build());
        let summary: Vec<(&[usize], &str)> =
            v.iter().map(|v| (v.events.as_slice(), v.message.as_str())).collect();
        assert_eq!(v.len(), 4, "{summary:#?}");
        assert!(v[0].events.contains(&again) && v[0].message.contains("counter 0 after counter 0"));
        assert_eq!(v[1].events, vec![foreign]);
        assert_eq!(v[2].events, vec![exit, after]);
        assert_eq!(v[3].events, vec![early]);
    }

    // Goal: an old incarnation reappearing after a newer one is flagged.
    // Method: hand-push an event of incarnation 0 after incarnation 1 started.
    #[test]
    fn flags_stale_incarnation() {
        let mut b = TraceBuilder::new();
        b.start(1);
        b.start(1);
        let mut t = b.build();
        t.push(100, 1, 0, EventKind::Crash);
        let v = check(&t);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].events, vec![2]);
    }
}
