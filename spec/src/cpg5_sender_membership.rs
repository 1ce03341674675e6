//! CPG-5: sender membership.
//!
//! **Property.** Every `CpgDeliver` of group G in a session (see [`crate::cpg_index`])
//! that comes after a confchg of the session names a `sender` that is a member of the
//! session's latest confchg before it (the receiver's current view of G).
//!
//! Deliveries before the session's first confchg are CPG-2's business. In particular, a
//! message of a process removed by a NODEDOWN confchg is never delivered after that
//! confchg while the process is out of the view (the first half of CPG-9).
//!
//! Source: study §9.2 CPG-5.

use crate::cpg_index::fmt_conn;
use crate::index::{FastSet, Index};
use crate::trace::{EventKind, Process, Trace, fmt_group};
use crate::{Violation, finish};

pub const ID: &str = "CPG-5";
pub const STATEMENT: &str = "Sender membership: every delivered message's sender is a member of the receiver's \
     current view of the group.";

/// Check CPG-5 over `trace`.
pub fn check(trace: &Trace) -> Vec<Violation> {
    check_indexed(&Index::new(trace))
}

/// Check CPG-5 using a shared index.
pub fn check_indexed(ix: &Index<'_>) -> Vec<Violation> {
    let trace = ix.trace();
    let mut out = Vec::new();
    for s in &ix.cpg().sessions {
        let mut view: Option<(FastSet<Process>, usize)> = None;
        for &i in &s.events {
            match &trace.events[i].kind {
                EventKind::CpgConfchg { members, .. } => view = Some((members.iter().copied().collect(), i)),
                EventKind::CpgDeliver { sender, msg, .. } => {
                    if let Some((members, j)) = &view
                        && !members.contains(sender)
                    {
                        out.push(Violation::new(
                            ID,
                            format!(
                                "{} delivers {msg:?} of {} from {sender:?}, who is not in its view",
                                fmt_conn(s.conn),
                                fmt_group(s.group)
                            ),
                            vec![*j, i],
                        ));
                    }
                }
                _ => {}
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

    // Goal: deliveries from members pass, also after a member left and another joined.
    // Method: two members talk; one leaves; a third joins and talks.
    #[test]
    fn accepts_member_senders() {
        let mut b = TraceBuilder::with_ring(Ring::new(1, 4), &[1, 2, 3]);
        b.cpg_join_group(1, 1, b"g", 10);
        b.cpg_join_group(2, 1, b"g", 20);
        b.cpg_send(2, 1);
        b.cpg_leave_group(2, 1);
        b.cpg_join_group(3, 1, b"g", 30);
        b.cpg_send(3, 1);
        b.cpg_send(1, 1);
        assert_eq!(check(&b.build()), vec![]);
    }

    // Goal: a delivery from a process removed by NODEDOWN is flagged.
    // Method: node 2's process is removed from node 1's view, then its old message is
    // delivered there.
    #[test]
    fn flags_delivery_from_non_member() {
        let g = b"g";
        let mut b = TraceBuilder::with_ring(Ring::new(1, 4), &[1, 2]);
        let p = b.cpg_join_group(1, 1, g, 10);
        let q = b.cpg_join_group(2, 1, g, 20);
        let m = b.cpg_mcast(2, 1, g);
        let down = b.cpg_confchg(1, 1, g, &[p], &[(q, CpgReason::NodeDown)], &[]);
        let late = b.cpg_deliver(1, 1, g, q, m);
        let v = check(&b.build());
        assert_eq!(v.len(), 1, "{v:#?}");
        assert_eq!(v[0].events, vec![down, late]);
    }
}
