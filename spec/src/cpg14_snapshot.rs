//! CPG-14: snapshot consistency.
//!
//! **Property.** Every `CpgMembership` snapshot of group G taken on a connection whose open
//! session of G has received its join confchg lists, as a set, exactly the members of the
//! session's latest confchg before the snapshot.
//!
//! The recorder takes snapshots only right after a confchg with no newer event pending
//! (see [`crate::trace::EventKind::CpgMembership`]), so the node's own view of the group is
//! the one the connection last saw. Snapshots of groups the connection is not in are not
//! judged: nothing in the trace says what the node's view of them was.
//!
//! Source: study §9.2 CPG-14, §4.2 (`cpg_membership_get`).

use crate::cpg_index::fmt_conn;
use crate::index::Index;
use crate::trace::{EventKind, Process, Trace, fmt_group};
use crate::{Violation, finish};
use std::collections::BTreeSet;

pub const ID: &str = "CPG-14";
pub const STATEMENT: &str = "Snapshot consistency: a membership snapshot taken right after a confchg lists exactly \
     that confchg's members.";

/// Check CPG-14 over `trace`.
pub fn check(trace: &Trace) -> Vec<Violation> {
    check_indexed(&Index::new(trace))
}

/// Check CPG-14 using a shared index.
pub fn check_indexed(ix: &Index<'_>) -> Vec<Violation> {
    let trace = ix.trace();
    let mut out = Vec::new();
    for s in &ix.cpg().sessions {
        let Some(joined) = s.join_confchg else { continue };
        for &i in &s.snapshots {
            if i < joined {
                continue;
            }
            let EventKind::CpgMembership { members: snapshot, .. } = &trace.events[i].kind else { continue };
            // The session's latest confchg before the snapshot.
            let k = s.events.partition_point(|&e| e < i);
            let Some((j, view)) = s.events[..k].iter().rev().find_map(|&j| match &trace.events[j].kind {
                EventKind::CpgConfchg { members, .. } => Some((j, members)),
                _ => None,
            }) else {
                continue;
            };
            let want: BTreeSet<Process> = view.iter().copied().collect();
            let got: BTreeSet<Process> = snapshot.iter().copied().collect();
            if want != got {
                out.push(Violation::new(
                    ID,
                    format!(
                        "{} snapshot of {} lists {:?}, but its latest view is {:?}",
                        fmt_conn(s.conn),
                        fmt_group(s.group),
                        got.iter().collect::<Vec<_>>(),
                        want.iter().collect::<Vec<_>>()
                    ),
                    vec![j, i],
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
    use crate::trace::Ring;

    // Goal: snapshots equal to the latest view pass, also after deliveries, and snapshots
    // of other groups are not judged.
    // Method: two joins, a snapshot, a message, a snapshot, a snapshot of another group.
    #[test]
    fn accepts_matching_snapshots() {
        let mut b = TraceBuilder::with_ring(Ring::new(1, 4), &[1, 2]);
        let p = b.cpg_join_group(1, 1, b"g", 10);
        let q = b.cpg_join_group(2, 1, b"g", 20);
        b.cpg_membership(1, 1, b"g", &[p, q]);
        b.cpg_send(2, 1);
        b.cpg_membership(1, 1, b"g", &[q, p]);
        b.cpg_membership(1, 1, b"other", &[]);
        assert_eq!(check(&b.build()), vec![]);
    }

    // Goal: a snapshot missing a member is flagged.
    // Method: after node 2's join, node 1's snapshot lists only itself.
    #[test]
    fn flags_stale_snapshot() {
        let mut b = TraceBuilder::with_ring(Ring::new(1, 4), &[1, 2]);
        let p = b.cpg_join_group(1, 1, b"g", 10);
        b.cpg_join_group(2, 1, b"g", 20);
        let view = b.trace().events.len() - 2; // Node 1's confchg for the second join.
        let snap = b.cpg_membership(1, 1, b"g", &[p]);
        let v = check(&b.build());
        assert_eq!(v.len(), 1, "{v:#?}");
        assert_eq!(v[0].events, vec![view, snap]);
    }
}
