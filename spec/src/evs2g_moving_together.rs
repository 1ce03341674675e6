//! EVS-2g: the transitional set is the set of processors moving together.
//!
//! **Property.** Let node incarnation p deliver transitional configuration t whose previous
//! regular ring (at p) is r1, and let r2 = t.ring (the new ring). Then:
//! - (forward) for every q in t.members, every incarnation of q that delivers the regular
//!   configuration r2 delivered r1 as its last regular configuration before r2;
//! - (converse) every node q that delivers r2 with r1 as its previous regular
//!   configuration, and that is a member of both r1 (as p delivered it) and r2, is in
//!   t.members.
//!
//! The initial empty transitional configuration (no r1) is exempt. The r2 member set used
//! by the converse is p's own r2 if p delivers it next, otherwise q's.
//!
//! Source: EVS (Moser et al. 1994); study §9.1 EVS-2g.

use crate::index::{ConfigView, FastMap, Index, fmt_inc};
use crate::trace::{ConfKind, Node, Ring, Trace};
use crate::{Violation, finish};

pub const ID: &str = "EVS-2g";
pub const STATEMENT: &str = "Moving together: members of TRANS t (r1 -> r2) that deliver r2 came from r1, and every \
     node of r1 ∩ r2 that delivers r2 right after r1 is in t.";

/// Check EVS-2g over `trace`.
pub fn check(trace: &Trace) -> Vec<Violation> {
    check_indexed(&Index::new(trace))
}

struct Arrival<'t> {
    node: Node,
    prev_reg: Option<Ring>,
    config: ConfigView<'t>,
}

/// Check EVS-2g using a shared index.
pub fn check_indexed(ix: &Index<'_>) -> Vec<Violation> {
    let history = ix.history();
    let mut arrivals: FastMap<Ring, Vec<Arrival<'_>>> = FastMap::default();
    for h in history.incarnations.values() {
        for epoch in h.epochs.iter().filter(|e| e.config.kind == ConfKind::Regular) {
            let c = epoch.config;
            arrivals.entry(c.ring).or_default().push(Arrival {
                node: h.node,
                prev_reg: c.prev_reg,
                config: c,
            });
        }
    }
    let mut out = Vec::new();
    for h in history.incarnations.values() {
        let mut last_reg: Option<&ConfigView<'_>> = None;
        for (k, epoch) in h.epochs.iter().enumerate() {
            let t = &epoch.config;
            if t.kind == ConfKind::Regular {
                last_reg = Some(t);
                continue;
            }
            let Some(r1) = last_reg else { continue };
            let r2 = t.ring;
            let Some(arrived) = arrivals.get(&r2) else { continue };
            let own_r2 = h
                .epochs
                .get(k + 1)
                .map(|e| &e.config)
                .filter(|c| c.kind == ConfKind::Regular && c.ring == r2);
            for a in arrived {
                let came_from_r1 = a.prev_reg == Some(r1.ring);
                let in_t = t.has_member(a.node);
                if in_t && !came_from_r1 {
                    out.push(Violation::new(
                        ID,
                        format!(
                            "{}'s TRANS {:?} (from {:?}) lists node {}, which enters {r2:?} from {:?}",
                            fmt_inc(h.key()),
                            r2,
                            r1.ring,
                            a.node,
                            a.prev_reg
                        ),
                        vec![t.event, a.config.event],
                    ));
                }
                let r2_members = own_r2.map_or(a.config.members, |c| c.members);
                if !in_t && came_from_r1 && r1.has_member(a.node) && r2_members.contains(&a.node) {
                    out.push(Violation::new(
                        ID,
                        format!(
                            "{}'s TRANS {:?} (from {:?}) misses node {}, which also moves from {:?} to {r2:?}",
                            fmt_inc(h.key()),
                            r2,
                            r1.ring,
                            a.node,
                            r1.ring
                        ),
                        vec![t.event, a.config.event],
                    ));
                }
            }
        }
    }
    finish(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::TraceBuilder;

    // Goal: a correct merge of two partitions passes.
    // Method: split {1,2,3} into {1,2} and {3}, merge back.
    #[test]
    fn accepts_merge() {
        let mut b = TraceBuilder::with_ring(Ring::new(1, 4), &[1, 2, 3]);
        b.form(Ring::new(1, 8), &[1, 2]);
        b.form(Ring::new(3, 8), &[3]);
        b.form(Ring::new(1, 12), &[1, 2, 3]);
        assert_eq!(check(&b.build()), vec![]);
    }

    // Goal: a TRANS listing a node from another ring, and one missing a node moving
    // alongside, are both flagged.
    // Method: at the merge, node 1's TRANS says {1,3} (3 came from 3.8, and 2 is missing).
    #[test]
    fn flags_wrong_transitional_set() {
        let mut b = TraceBuilder::with_ring(Ring::new(1, 4), &[1, 2, 3]);
        b.form(Ring::new(1, 8), &[1, 2]);
        b.form(Ring::new(3, 8), &[3]);
        let r = Ring::new(1, 12);
        let t = b.trans(1, r, &[1, 3]);
        b.reg(1, r, &[1, 2, 3]);
        b.trans(2, r, &[1, 2]);
        b.reg(2, r, &[1, 2, 3]);
        b.trans(3, r, &[3]);
        b.reg(3, r, &[1, 2, 3]);
        let v = check(&b.build());
        assert_eq!(v.len(), 2, "{v:#?}");
        assert!(v.iter().all(|v| v.events[0] == t));
        assert!(v.iter().any(|v| v.message.contains("misses node 2")));
        assert!(v.iter().any(|v| v.message.contains("lists node 3")));
    }
}
