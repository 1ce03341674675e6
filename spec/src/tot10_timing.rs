//! TOT-10: timing of membership changes (simulation, no loss).
//!
//! **Property.** Given [`TimingBounds`]: let incarnation x end with `Crash` (resp. `Leave`)
//! at time T, and let B be `crash_to_regular_ns` (resp. `leave_to_regular_ns`). For every
//! incarnation y of another node that is alive at that event, whose last regular
//! configuration before it contains x's node, and that does not itself crash or leave by
//! T + B: y delivers, after x's end and by T + B, a regular configuration that shows x's
//! departure, that is, one whose members do not contain x's node, or that lists it in
//! `joined` (x came back as a new incarnation and was readmitted before y noticed the old
//! one was gone: the new ring still marks the change).
//!
//! When y delivers no such configuration and the trace ends before T + B, nothing can be
//! said and y is not judged.
//!
//! This property holds only under loss-free, fault-free conditions between the end and the
//! bound, and the bounds depend on the configuration (crash: about token + consensus +
//! a join round and a few rotations; clean leave: a join round and a few rotations, since a
//! LEAVE puts the node in everyone's failed list at once, study §1.8.1), so
//! [`crate::check_safety`] does not run it: the caller (simulator scenarios) does, with
//! bounds it computes from its timeouts.
//!
//! Source: Totem (Amir et al. 1995); study §1.8.1 and §9.1 TOT-10.

use crate::index::{FastMap, Inc, Index, fmt_inc};
use crate::trace::{ConfKind, EventKind, Node, Ring, Trace};
use crate::{Violation, finish};
use std::collections::BTreeSet;

pub const ID: &str = "TOT-10";
pub const STATEMENT: &str = "Timing: after a member crashes (leaves) at T, every other member alive until T + bound \
     delivers a REG without it by T + bound (not run by check_safety; needs loss-free runs).";

/// The time bounds TOT-10 judges against, in nanoseconds of trace time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimingBounds {
    /// From a member's `Crash` to the survivors' regular configuration without it.
    pub crash_to_regular_ns: u64,
    /// From a member's `Leave` to the others' regular configuration without it.
    pub leave_to_regular_ns: u64,
}

/// Check TOT-10 over `trace`.
pub fn check(trace: &Trace, bounds: &TimingBounds) -> Vec<Violation> {
    check_indexed(&Index::new(trace), bounds)
}

/// A regular configuration, as TOT-10 needs it.
struct Reg<'t> {
    event: usize,
    time: u64,
    ring: Ring,
    members: &'t [Node],
    joined: &'t [Node],
}

/// Check TOT-10 using a shared index.
pub fn check_indexed(ix: &Index<'_>, bounds: &TimingBounds) -> Vec<Violation> {
    let trace = ix.trace();
    let history = ix.history();
    let Some(trace_end) = trace.events.iter().map(|e| e.time).max() else { return Vec::new() };
    let time_of = |i: usize| trace.events.get(i).map_or(0, |e| e.time);
    let mut regs: FastMap<Inc, Vec<Reg<'_>>> = FastMap::default();
    for h in history.incarnations.values() {
        let list = h
            .epochs
            .iter()
            .map(|e| &e.config)
            .filter(|c| c.kind == ConfKind::Regular)
            .map(|c| Reg {
                event: c.event,
                time: time_of(c.event),
                ring: c.ring,
                members: c.members,
                joined: c.joined,
            })
            .collect();
        regs.insert(h.key(), list);
    }
    let nodes: BTreeSet<Node> = history.incarnations.keys().map(|&(n, _)| n).collect();
    let mut out = Vec::new();
    for (i, e) in trace.events.iter().enumerate() {
        let (bound, what) = match e.kind {
            EventKind::Crash => (bounds.crash_to_regular_ns, "crashes"),
            EventKind::Leave => (bounds.leave_to_regular_ns, "leaves"),
            _ => continue,
        };
        let x = e.node;
        let deadline = e.time.saturating_add(bound);
        for &y in &nodes {
            if y == x {
                continue;
            }
            // y's incarnation alive at event i.
            let Some(h) = history
                .incarnations
                .range((y, 0)..=(y, u32::MAX))
                .rev()
                .map(|(_, h)| h)
                .find(|h| h.first_event < i)
            else {
                continue;
            };
            if let Some(end) = h.end()
                && (end < i || time_of(end) <= deadline)
            {
                continue;
            }
            let Some(list) = regs.get(&h.key()) else { continue };
            let split = list.partition_point(|r| r.event < i);
            let Some(before) = split.checked_sub(1).and_then(|k| list.get(k)) else { continue };
            if !before.members.contains(&x) {
                continue;
            }
            let after = list[split..]
                .iter()
                .find(|r| !r.members.contains(&x) || r.joined.contains(&x) || r.time > deadline);
            let late = match after {
                Some(r) if r.time <= deadline => continue,
                Some(r) => Some(r),
                None if trace_end < deadline => continue,
                None => None,
            };
            let mut events = vec![i, before.event];
            let outcome = match late {
                Some(r) => {
                    events.push(r.event);
                    format!("its next REG {:?} comes at {}", r.ring, r.time)
                }
                None => "it never delivers one".to_string(),
            };
            events.sort_unstable();
            out.push(Violation::new(
                ID,
                format!(
                    "node {x} {what} at {}; {} (in REG {:?} with it) must deliver a REG without it by {deadline}, \
                     but {outcome}",
                    e.time,
                    fmt_inc(h.key()),
                    before.ring,
                ),
                events,
            ));
        }
    }
    finish(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::TraceBuilder;

    const BOUNDS: TimingBounds = TimingBounds { crash_to_regular_ns: 100, leave_to_regular_ns: 20 };

    // Goal: timely reconfigurations pass; survivors that end before the bound, nodes not
    // in a ring with the departed node, and a trace ending before the bound are not judged;
    // a quick restart readmitted in the next ring counts as noticed.
    // Method: {1,2,3,4}; node 4 crashes at 1000 and {1,2,3} reform at 1090; node 3 leaves
    // at 2000 and {1,2} reform at 2015; node 5 is alone throughout. Then node 2 crashes
    // and restarts and {1,2} reform with 2 joined; finally node 1 crashes at the end.
    #[test]
    fn accepts_timely_changes() {
        let mut b = TraceBuilder::with_ring(Ring::new(1, 4), &[1, 2, 3, 4]);
        b.start(5);
        b.form(Ring::new(5, 4), &[5]);
        b.at(1000);
        b.crash(4);
        b.at(1090);
        b.form(Ring::new(1, 8), &[1, 2, 3]);
        b.at(2000);
        b.leave(3);
        b.at(2015);
        b.form(Ring::new(1, 12), &[1, 2]);
        b.at(3000);
        b.crash(2);
        b.start(2);
        b.at(3050);
        b.form(Ring::new(1, 16), &[1, 2]);
        b.at(4000);
        b.crash(1);
        assert_eq!(check(&b.build(), &BOUNDS), vec![]);
    }

    // Goal: a late reconfiguration and a missing one are flagged.
    // Method: node 3 crashes at 1000, {1,2} reform at 1200 (bound 100); node 2 leaves at
    // 2000 and node 1 never reconfigures, the trace running on to 3000.
    #[test]
    fn flags_late_changes() {
        let mut b = TraceBuilder::with_ring(Ring::new(1, 4), &[1, 2, 3]);
        b.at(1000);
        let crash = b.crash(3);
        b.at(1200);
        b.form(Ring::new(1, 8), &[1, 2]);
        b.at(2000);
        let leave = b.leave(2);
        b.at(3000);
        b.send(1);
        let v = check(&b.build(), &BOUNDS);
        assert_eq!(v.len(), 3, "{v:#?}");
        assert!(v[0].events.contains(&crash) && v[0].message.contains("node 1#0"), "{v:#?}");
        assert!(v[0].message.contains("comes at 1201"), "{v:#?}");
        assert!(v[1].events.contains(&crash) && v[1].message.contains("comes at 1203"), "{v:#?}");
        assert!(v[2].events.contains(&leave));
        assert!(v[2].message.contains("node 2 leaves at 2000; node 1#0") && v[2].message.contains("never"));
    }
}
