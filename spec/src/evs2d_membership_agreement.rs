//! EVS-2d: agreement on regular configurations.
//!
//! **Property.** Any two regular configurations with the same ring id, delivered at any
//! nodes, have the same member set. (Member order is EVS-2c's business; here the lists are
//! compared as sets.)
//!
//! Source: EVS (Moser et al. 1994); study §9.1 EVS-2d.

use crate::index::{FastMap, Index, node_set};
use crate::trace::{ConfKind, EventKind, Node, Ring, Trace};
use crate::{Violation, finish};
use std::collections::BTreeSet;

pub const ID: &str = "EVS-2d";
pub const STATEMENT: &str =
    "Agreement: every REG configuration with the same ring id has the same member set, at every node.";

/// Check EVS-2d over `trace`.
pub fn check(trace: &Trace) -> Vec<Violation> {
    check_indexed(&Index::new(trace))
}

/// Check EVS-2d using a shared index.
pub fn check_indexed(ix: &Index<'_>) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut first: FastMap<Ring, (BTreeSet<Node>, usize)> = FastMap::default();
    for (i, e) in ix.trace().events.iter().enumerate() {
        let EventKind::Config { kind: ConfKind::Regular, ring, members, .. } = &e.kind else { continue };
        let set = node_set(members);
        match first.get(ring) {
            Some((seen, j)) if *seen != set => out.push(Violation::new(
                ID,
                format!("REG {ring:?} delivered with members {seen:?} and with {set:?} (node {})", e.node),
                vec![*j, i],
            )),
            Some(_) => {}
            None => {
                first.insert(*ring, (set, i));
            }
        }
    }
    finish(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::TraceBuilder;

    // Goal: all nodes agreeing on each REG passes.
    // Method: form two rings.
    #[test]
    fn accepts_agreement() {
        let mut b = TraceBuilder::with_ring(Ring::new(1, 4), &[1, 2, 3]);
        b.form(Ring::new(1, 8), &[1, 2]);
        assert_eq!(check(&b.build()), vec![]);
    }

    // Goal: two nodes with different member sets for one ring are flagged.
    // Method: node 3 delivers REG 1.4 as {1,3}.
    #[test]
    fn flags_disagreement() {
        let r = Ring::new(1, 4);
        let mut b = TraceBuilder::with_ring(r, &[1, 2]);
        b.start(3);
        let bad = b.reg(3, r, &[1, 3]);
        let v = check(&b.build());
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].events.last(), Some(&bad));
    }
}
