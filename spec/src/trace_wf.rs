//! TRACE-WF: the trace is well formed.
//!
//! **Property.** Checked in trace order:
//! - event times never decrease;
//! - node ids are non-zero;
//! - the first event of every incarnation is `Start`, and no incarnation has a second
//!   `Start`;
//! - a node's incarnations follow each other: once an event of incarnation i + 1 appears,
//!   no event of incarnation i (or earlier) appears again, and incarnation numbers grow by
//!   exactly one (the first one seen need not be 0, so that a trace may begin mid-run);
//! - nothing happens in an incarnation after its `Crash`;
//! - every `Send` names its own sender: `msg.origin` and `msg.incarnation` are the event's
//!   node and incarnation, and the counters one incarnation sends are strictly increasing
//!   (so message ids are unique).
//!
//! These are obligations of the recorder rather than of the protocol, but the other
//! properties are only meaningful on a well-formed trace, so a broken recorder must not go
//! unnoticed. The other checkers do not rely on them: they skip what they cannot judge.

use crate::index::{FastMap, Index, fmt_inc};
use crate::trace::{EventKind, Node, Trace};
use crate::{Violation, finish};

pub const ID: &str = "TRACE-WF";
pub const STATEMENT: &str = "The trace is well formed: times non-decreasing, every incarnation starts with Start, \
     incarnations of a node follow each other, nothing after Crash, Send ids name their sender with increasing counters.";

/// Check TRACE-WF over `trace`.
pub fn check(trace: &Trace) -> Vec<Violation> {
    check_indexed(&Index::new(trace))
}

struct NodeState {
    incarnation: u32,
    crash: Option<usize>,
    last_counter: Option<(u64, usize)>,
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
        match nodes.get_mut(&e.node) {
            None => {
                if !is_start {
                    out.push(Violation::new(
                        ID,
                        format!("first event of {} is {}, not Start", fmt_inc(inc), e.kind.name()),
                        vec![i],
                    ));
                }
                nodes.insert(
                    e.node,
                    NodeState { incarnation: e.incarnation, crash: None, last_counter: None },
                );
            }
            Some(state) => {
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
                    if !is_start {
                        out.push(Violation::new(
                            ID,
                            format!("first event of {} is {}, not Start", fmt_inc(inc), e.kind.name()),
                            vec![i],
                        ));
                    }
                    *state = NodeState { incarnation: e.incarnation, crash: None, last_counter: None };
                } else {
                    if let Some(c) = state.crash {
                        out.push(Violation::new(
                            ID,
                            format!("{} has a {} event after its Crash", fmt_inc(inc), e.kind.name()),
                            vec![c, i],
                        ));
                    }
                    if is_start {
                        out.push(Violation::new(ID, format!("{} starts twice", fmt_inc(inc)), vec![i]));
                    }
                }
            }
        }
        let Some(state) = nodes.get_mut(&e.node) else { continue };
        match &e.kind {
            EventKind::Crash => {
                state.crash.get_or_insert(i);
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
            _ => {}
        }
    }
    finish(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::TraceBuilder;
    use crate::trace::{Guarantee, MsgId, Ring, Slot};

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
