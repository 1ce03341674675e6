//! LIVE-1: convergence.
//!
//! **Property.** Given a [`LivenessWindow`] with live set S and deadline D: for every node
//! n of S, the last incarnation of n in the trace has not crashed nor left (a node that
//! left cleanly is no more alive than a crashed one), and its last
//! configuration event in the whole trace is a regular configuration whose member set is
//! exactly S and whose event time is at most D; and all nodes of S end in the same ring.
//!
//! So by the deadline every node of S delivered the same regular configuration with
//! members exactly S, and no configuration change happened after it. The trace is taken to
//! cover the run up to at least D (a trace has no end marker; the caller knows when it
//! stopped). An empty S is vacuously converged.
//!
//! The bound D − healed_at is the caller's: it depends on the timeouts (token loss,
//! consensus, join, merge detection) and the ring size.
//!
//! Source: Totem (Amir et al. 1995), membership termination; study §9.1 LIVE-1.

use crate::index::{Index, fmt_inc, node_set};
use crate::trace::{ConfKind, Node, Ring, Trace};
use crate::{LivenessWindow, Violation, finish};
use std::collections::{BTreeMap, BTreeSet};

pub const ID: &str = "LIVE-1";
pub const STATEMENT: &str = "Convergence: by the deadline every node of S delivered the same REG with members exactly S, \
     and no configuration change follows.";

/// Check LIVE-1 over `trace`.
pub fn check(trace: &Trace, window: &LivenessWindow) -> Vec<Violation> {
    check_indexed(&Index::new(trace), window)
}

/// Check LIVE-1 using a shared index.
pub fn check_indexed(ix: &Index<'_>, window: &LivenessWindow) -> Vec<Violation> {
    finish(convergence(ix, window, ID))
}

/// The convergence predicate, reported under `property` (shared with LIVE-3).
pub(crate) fn convergence(ix: &Index<'_>, window: &LivenessWindow, property: &'static str) -> Vec<Violation> {
    let live: BTreeSet<Node> = node_set(&window.live);
    let history = ix.history();
    let trace = ix.trace();
    let mut out = Vec::new();
    let mut rings: BTreeMap<Ring, Vec<Node>> = BTreeMap::new();
    let mut ring_events: Vec<usize> = Vec::new();
    for &n in &live {
        let Some(h) = history.last_incarnation(n) else {
            out.push(Violation::new(property, format!("node {n} of the live set has no events"), Vec::new()));
            continue;
        };
        if let Some(c) = h.end() {
            let how = if h.crash == Some(c) { "crashed" } else { "having left" };
            out.push(Violation::new(
                property,
                format!("{} of the live set ends {how}", fmt_inc(h.key())),
                vec![c],
            ));
            continue;
        }
        let Some(last) = h.epochs.last().map(|e| &e.config) else {
            out.push(Violation::new(
                property,
                format!("{} never delivers a configuration", fmt_inc(h.key())),
                Vec::new(),
            ));
            continue;
        };
        let time = trace.events.get(last.event).map_or(0, |e| e.time);
        if last.kind != ConfKind::Regular {
            out.push(Violation::new(
                property,
                format!("{} ends in a transitional configuration of {:?}", fmt_inc(h.key()), last.ring),
                vec![last.event],
            ));
        } else if node_set(last.members) != live {
            out.push(Violation::new(
                property,
                format!(
                    "{} ends in {:?} with members {:?}, not the live set {live:?}",
                    fmt_inc(h.key()),
                    last.ring,
                    last.members
                ),
                vec![last.event],
            ));
        } else if time > window.deadline {
            out.push(Violation::new(
                property,
                format!(
                    "{} installs {:?} at {time}, after the deadline {}",
                    fmt_inc(h.key()),
                    last.ring,
                    window.deadline
                ),
                vec![last.event],
            ));
        } else {
            rings.entry(last.ring).or_default().push(n);
            ring_events.push(last.event);
        }
    }
    if rings.len() > 1 {
        out.push(Violation::new(
            property,
            format!("the live set ends in different rings: {rings:?}"),
            ring_events,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::TraceBuilder;

    // Goal: survivors of a crash that reform with exactly the live set pass.
    // Method: {1,2,3}, node 3 crashes, {1,2} reform before the deadline.
    #[test]
    fn accepts_converged() {
        let mut b = TraceBuilder::with_ring(Ring::new(1, 4), &[1, 2, 3]);
        b.crash(3);
        b.form(Ring::new(1, 8), &[1, 2]);
        let deadline = b.now();
        let w = LivenessWindow { healed_at: 0, deadline, live: vec![2, 1] };
        assert_eq!(check(&b.build(), &w), vec![]);
    }

    // Goal: not converging (stale membership, trailing TRANS, late install, split rings)
    // is flagged.
    // Method: {1,2,3} with 3 crashed: node 1 ends in a TRANS, node 2 still in {1,2,3}.
    // Separately: two nodes ending in different rings with the same members.
    #[test]
    fn flags_not_converged() {
        let mut b = TraceBuilder::with_ring(Ring::new(1, 4), &[1, 2, 3]);
        b.crash(3);
        let t = b.trans(1, Ring::new(1, 8), &[1, 2]);
        let w = LivenessWindow { healed_at: 0, deadline: 1000, live: vec![1, 2] };
        let v = check(&b.build(), &w);
        assert_eq!(v.len(), 2, "{v:#?}");
        assert!(v.iter().any(|v| v.events == vec![t]));

        let mut b = TraceBuilder::with_ring(Ring::new(1, 4), &[1, 2]);
        b.crash(2);
        b.start(2);
        b.form(Ring::new(1, 8), &[1, 2]);
        b.config(2, ConfKind::Transitional, Ring::new(1, 12), Some(Ring::new(1, 8)), &[2], &[1], &[]);
        b.config(2, ConfKind::Regular, Ring::new(1, 12), Some(Ring::new(1, 8)), &[1, 2], &[], &[1]);
        let w = LivenessWindow { healed_at: 0, deadline: 1000, live: vec![1, 2] };
        let v = check(&b.build(), &w);
        assert_eq!(v.len(), 1, "{v:#?}");
        assert!(v[0].message.contains("different rings"));

        let mut b = TraceBuilder::with_ring(Ring::new(1, 4), &[1]);
        b.at(5000);
        b.form(Ring::new(1, 8), &[1]);
        let w = LivenessWindow { healed_at: 0, deadline: 1000, live: vec![1] };
        let v = check(&b.build(), &w);
        assert_eq!(v.len(), 1, "{v:#?}");
        assert!(v[0].message.contains("after the deadline"));
    }

    // Goal: a node of S that left cleanly is not alive; the others converging without it
    // pass when it is left out of S.
    // Method: {1,2,3}, node 3 leaves, {1,2} reform; judge with S = {1,2,3} and {1,2}.
    #[test]
    fn left_node_is_not_live() {
        let mut b = TraceBuilder::with_ring(Ring::new(1, 4), &[1, 2, 3]);
        let leave = b.leave(3);
        b.form(Ring::new(1, 8), &[1, 2]);
        let trace = b.build();
        let w = LivenessWindow { healed_at: 0, deadline: 1000, live: vec![1, 2, 3] };
        let v = check(&trace, &w);
        assert!(v.iter().any(|v| v.events == vec![leave] && v.message.contains("having left")), "{v:#?}");
        let w = LivenessWindow { healed_at: 0, deadline: 1000, live: vec![1, 2] };
        assert_eq!(check(&trace, &w), vec![]);
    }
}
