//! CPG-11: no ghosts (liveness).
//!
//! **Property.** Given a [`LivenessWindow`] with live set S and deadline D, survivors as
//! in CPG-7 (the last incarnations of the nodes of S that did not end), and sessions as
//! in [`crate::cpg_index`]; consider the sessions of survivors' connections that are alive
//! at the end of the trace. At the end of the trace:
//! - no such session still waits for its join confchg after joining by D, nor for its
//!   leave confchg after asking to leave by D;
//! - for every group G none of whose sessions joined, asked to leave or closed after D
//!   (the group is *settled*), every such session of G that is joined at the end has, as
//!   its latest view (the members of its latest confchg), exactly the processes of the
//!   such sessions of G that received their join confchg (a process whose leave is
//!   still pending, reported by the first rule, still counts as a member). No ghost (a
//!   process that went away, or one on a node outside S) and no missing member.
//!
//! The study compares with `cpg_membership_get`/cpgtool output on every node; here the
//! views the connections received are compared with the ground truth of the trace (the
//! snapshots themselves are CPG-14's business).
//!
//! Source: study §9.2 CPG-11; corosync#828 (ghost members after an aborted sync).

use crate::cpg_index::{Session, fmt_conn};
use crate::cpg7_self_delivery::survivors;
use crate::index::{FastSet, Index};
use crate::trace::{EventKind, Process, Trace, fmt_group};
use crate::{LivenessWindow, Violation, finish};
use std::collections::{BTreeMap, BTreeSet};

pub const ID: &str = "CPG-11";
pub const STATEMENT: &str = "No ghosts: after the network healed, every joined connection of a live node sees as \
     its group's view exactly the processes joined on the live nodes (the trace's ground truth, not cpgtool \
     output), and no join or leave stays pending.";

/// Check CPG-11 over `trace`.
pub fn check(trace: &Trace, window: &LivenessWindow) -> Vec<Violation> {
    check_indexed(&Index::new(trace), window)
}

/// Check CPG-11 using a shared index.
pub fn check_indexed(ix: &Index<'_>, window: &LivenessWindow) -> Vec<Violation> {
    let trace = ix.trace();
    let cpg = ix.cpg();
    let mut out = Vec::new();
    if cpg.sessions.is_empty() {
        return out;
    }
    let survivors = survivors(ix, window);
    let late = |i: Option<usize>| i.is_some_and(|i| trace.events[i].time > window.deadline);
    let mut unsettled: FastSet<&[u8]> = FastSet::default();
    for s in &cpg.sessions {
        if late(Some(s.join)) || late(s.leave_request) || late(s.end()) {
            unsettled.insert(s.group);
        }
    }
    let alive = |s: &Session<'_>| {
        survivors.contains(&(s.conn.0, s.conn.1))
            && cpg.conns.get(&s.conn).is_some_and(|h| h.end.is_none())
            && s.end().is_none()
    };
    // Per group: the members expected at the end, and the sessions whose views are judged.
    let mut joined: BTreeMap<&[u8], (BTreeSet<Process>, Vec<&Session<'_>>)> = BTreeMap::new();
    for s in cpg.sessions.iter().filter(|s| alive(s)) {
        if s.join_confchg.is_none() {
            if !late(Some(s.join)) {
                out.push(Violation::new(
                    ID,
                    format!("{} never receives its join confchg of {}", fmt_conn(s.conn), fmt_group(s.group)),
                    vec![s.join],
                ));
            }
            continue;
        }
        let entry = joined.entry(s.group).or_default();
        entry.0.insert(s.process());
        if let Some(l) = s.leave_request {
            if !late(Some(l)) {
                out.push(Violation::new(
                    ID,
                    format!(
                        "{} never receives its leave confchg of {}",
                        fmt_conn(s.conn),
                        fmt_group(s.group)
                    ),
                    vec![l],
                ));
            }
        } else {
            entry.1.push(s);
        }
    }
    for (group, (expect, sessions)) in joined {
        if unsettled.contains(group) {
            continue;
        }
        for s in sessions {
            let Some((view_event, view)) = s.events.iter().rev().find_map(|&i| match &trace.events[i].kind {
                EventKind::CpgConfchg { members, .. } => Some((i, members)),
                _ => None,
            }) else {
                continue;
            };
            let view: BTreeSet<Process> = view.iter().copied().collect();
            if view != expect {
                let ghosts: Vec<&Process> = view.difference(&expect).collect();
                let missing: Vec<&Process> = expect.difference(&view).collect();
                out.push(Violation::new(
                    ID,
                    format!(
                        "{} ends with a view of {} with ghosts {ghosts:?} and missing {missing:?}",
                        fmt_conn(s.conn),
                        fmt_group(group)
                    ),
                    vec![view_event],
                ));
            }
        }
    }
    finish(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::TraceBuilder;
    use crate::trace::{CpgReason, Ring};

    fn window(deadline: u64, live: &[u32]) -> LivenessWindow {
        LivenessWindow { healed_at: 0, deadline, live: live.to_vec() }
    }

    // Goal: views that converge after a crash, a leave and an exit pass; a join made after
    // the deadline leaves its group unjudged.
    // Method: {1,2,3}; node 3 crashes (NODEDOWN); node 2's second connection leaves,
    // node 1's second exits; after the deadline a process joins "h" and waits.
    #[test]
    fn accepts_converged_views() {
        let mut b = TraceBuilder::with_ring(Ring::new(1, 4), &[1, 2, 3]);
        b.cpg_join_group(1, 1, b"g", 10);
        b.cpg_join_group(1, 2, b"g", 11);
        b.cpg_join_group(2, 1, b"g", 20);
        b.cpg_join_group(2, 2, b"g", 21);
        b.cpg_join_group(3, 1, b"g", 30);
        b.cpg_join_group(1, 3, b"h", 12);
        b.crash(3);
        b.form(Ring::new(1, 8), &[1, 2]);
        b.cpg_node_down(&[3]);
        b.cpg_leave_group(2, 2);
        b.cpg_exit_group(1, 2);
        b.at(1000);
        b.cpg_join(2, 3, b"h", 22);
        assert_eq!(check(&b.build(), &window(500, &[1, 2])), vec![]);
    }

    // Goal: a ghost, a missing member and stuck requests are flagged.
    // Method: node 2 misses node 3's NODEDOWN (ghost); node 1 misses node 2's second
    // process's join (missing); node 1's third connection never completes its join, and
    // node 2's first never completes its leave.
    #[test]
    fn flags_ghosts_and_stuck_requests() {
        let mut b = TraceBuilder::with_ring(Ring::new(1, 4), &[1, 2, 3]);
        let p = b.cpg_join_group(1, 1, b"g", 10);
        let q = b.cpg_join_group(2, 1, b"g", 20);
        let x = b.cpg_join_group(3, 1, b"g", 30);
        b.cpg_join_group(2, 2, b"g", 21);
        let ghost_view = b.trace().events.len() - 2; // Node 2 conn 2's view after its join.
        b.crash(3);
        b.form(Ring::new(1, 8), &[1, 2]);
        b.cpg_confchg(1, 1, b"g", &[p, q], &[(x, CpgReason::NodeDown)], &[]);
        let stuck_join = b.cpg_join(1, 3, b"h", 12);
        let stuck_leave = b.cpg_leave(2, 1, b"g");
        let v = check(&b.build(), &window(u64::MAX, &[1, 2]));
        let summary: Vec<(&[usize], &str)> =
            v.iter().map(|v| (v.events.as_slice(), v.message.as_str())).collect();
        assert_eq!(v.len(), 4, "{summary:#?}");
        let has = |e: usize, text: &str| v.iter().any(|v| v.events == vec![e] && v.message.contains(text));
        assert!(has(ghost_view, "ghosts [3:30] and missing []"));
        assert!(
            v.iter()
                .any(|v| v.message.contains("node 1#0 conn 1 ends") && v.message.contains("missing [2:21]"))
        );
        assert!(has(stuck_join, "join confchg"));
        assert!(has(stuck_leave, "leave confchg"));
    }
}
