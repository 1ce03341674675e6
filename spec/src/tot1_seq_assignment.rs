//! TOT-1: sequence number assignment.
//!
//! **Property.** Over the `Assign` events of the whole trace:
//! - each slot (ring, seq) is assigned at most once (so by exactly one node), and seq 0 is
//!   never assigned;
//! - within a ring, the assigned seqs have no holes: if seq s > 1 is assigned, so is s − 1.
//!   A ring's trailing seqs may be unassigned (the ring ended).
//!
//! And, for rings that have `Assign` events at all, Totem messages do not come from
//! nowhere: every `Receive` of a slot of such a ring is of an assigned slot, and a node
//! other than the assigner receives it only after the `Assign`.
//!
//! The recovery wrappers that occupy the first seqs of a new ring are assignments like any
//! other. Seqs never wrap within a ring (see [`crate::trace`]).
//!
//! Source: Totem (Amir et al. 1995), the token's seq field; study §9.1 TOT-1.

use crate::index::{FastMap, FastSet, Index};
use crate::trace::{EventKind, Node, Ring, Slot, Trace};
use crate::{Violation, finish};

pub const ID: &str = "TOT-1";
pub const STATEMENT: &str = "Seq assignment: each slot is assigned once, by one node; a ring's assigned seqs are 1, 2, \
     3, ... without holes; every received slot was assigned before others receive it.";

/// Check TOT-1 over `trace`.
pub fn check(trace: &Trace) -> Vec<Violation> {
    check_indexed(&Index::new(trace))
}

/// Check TOT-1 using a shared index.
pub fn check_indexed(ix: &Index<'_>) -> Vec<Violation> {
    let trace = ix.trace();
    let mut out = Vec::new();
    let mut assigned: FastMap<Slot, (Node, usize)> = FastMap::default();
    let mut per_ring: FastMap<Ring, Vec<(u32, usize)>> = FastMap::default();
    for (i, e) in trace.events.iter().enumerate() {
        let EventKind::Assign { slot } = &e.kind else { continue };
        if slot.seq == 0 {
            out.push(Violation::new(
                ID,
                format!("node {} assigns seq 0 of {:?}", e.node, slot.ring),
                vec![i],
            ));
            continue;
        }
        match assigned.get(slot) {
            Some(&(node, j)) => out.push(Violation::new(
                ID,
                format!("{slot:?} assigned by node {node} and again by node {}", e.node),
                vec![j, i],
            )),
            None => {
                assigned.insert(*slot, (e.node, i));
                per_ring.entry(slot.ring).or_default().push((slot.seq, i));
            }
        }
    }
    for (ring, list) in &mut per_ring {
        list.sort_unstable();
        let mut expected = 1u32;
        for &(seq, at) in list.iter() {
            if seq > expected {
                out.push(Violation::new(
                    ID,
                    format!(
                        "seqs {expected}..{} of {ring:?} are never assigned, though seq {seq} is",
                        seq - 1
                    ),
                    vec![at],
                ));
                break;
            }
            expected = seq.saturating_add(1);
        }
    }
    let mut unassigned_reported: FastSet<Slot> = FastSet::default();
    for (i, e) in trace.events.iter().enumerate() {
        let EventKind::Receive { slot } = &e.kind else { continue };
        if !per_ring.contains_key(&slot.ring) {
            continue;
        }
        match assigned.get(slot) {
            None => {
                if unassigned_reported.insert(*slot) {
                    out.push(Violation::new(
                        ID,
                        format!("node {} receives {slot:?}, which nobody assigned", e.node),
                        vec![i],
                    ));
                }
            }
            Some(&(node, j)) if node != e.node && i < j => out.push(Violation::new(
                ID,
                format!("node {} receives {slot:?} before node {node} assigns it", e.node),
                vec![i, j],
            )),
            Some(_) => {}
        }
    }
    finish(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::TraceBuilder;

    // Goal: contiguous assignment by several nodes passes, with an unassigned tail.
    // Method: nodes 1, 2, 1 assign seqs 1, 2, 3 and everyone receives them.
    #[test]
    fn accepts_contiguous() {
        let r = Ring::new(1, 4);
        let mut b = TraceBuilder::with_ring(r, &[1, 2]);
        b.broadcast(1, Slot::new(r, 1), &[1, 2]);
        b.broadcast(2, Slot::new(r, 2), &[1, 2]);
        b.broadcast(1, Slot::new(r, 3), &[1, 2]);
        assert_eq!(check(&b.build()), vec![]);
    }

    // Goal: a double assignment, a hole, a receipt of an unassigned slot and a receipt
    // before assignment are each flagged.
    // Method: build all four in one ring.
    #[test]
    fn flags_bad_assignment() {
        let r = Ring::new(1, 4);
        let mut b = TraceBuilder::with_ring(r, &[1, 2]);
        b.broadcast(1, Slot::new(r, 1), &[1, 2]);
        let twice = b.assign(2, Slot::new(r, 1));
        let early = b.receive(2, Slot::new(r, 2));
        b.assign(1, Slot::new(r, 2));
        let after_hole = b.assign(1, Slot::new(r, 4));
        let ghost = b.receive(2, Slot::new(r, 9));
        let v = check(&b.build());
        assert_eq!(v.len(), 4, "{v:#?}");
        assert!(v.iter().any(|v| v.events.last() == Some(&twice)));
        assert!(v.iter().any(|v| v.events.first() == Some(&early)));
        assert!(v.iter().any(|v| v.events == vec![after_hole] && v.message.contains("3..3")));
        assert!(v.iter().any(|v| v.events == vec![ghost]));
    }
}
