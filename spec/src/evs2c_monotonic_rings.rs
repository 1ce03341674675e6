//! EVS-2c: monotonic ring ids.
//!
//! **Property.** For every node (across all its incarnations, in trace order), the ring
//! sequence numbers of the regular configurations it delivers are strictly increasing; in
//! particular no node delivers the same regular ring twice, even after a restart (the ring
//! sequence is persisted and bumped). Every regular configuration has a non-empty member
//! list in strictly ascending node-id order, and its ring's representative is the smallest
//! member.
//!
//! Source: EVS (Moser et al. 1994); study §9.1 EVS-2c and its COR notes.

use crate::index::{FastMap, Index};
use crate::trace::{ConfKind, EventKind, Node, Trace};
use crate::{Violation, finish};

pub const ID: &str = "EVS-2c";
pub const STATEMENT: &str = "Monotonic rings: per node (across restarts) REG ring seqs strictly increase; REG members \
     are non-empty, strictly ascending, and rep = min(members).";

/// Check EVS-2c over `trace`.
pub fn check(trace: &Trace) -> Vec<Violation> {
    check_indexed(&Index::new(trace))
}

/// Check EVS-2c using a shared index.
pub fn check_indexed(ix: &Index<'_>) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut last: FastMap<Node, (u64, usize)> = FastMap::default();
    for (i, e) in ix.trace().events.iter().enumerate() {
        let EventKind::Config { kind: ConfKind::Regular, ring, members, .. } = &e.kind else { continue };
        if let Some(&(seq, j)) = last.get(&e.node)
            && ring.seq <= seq
        {
            out.push(Violation::new(
                ID,
                format!("node {} delivers REG {ring:?} after a REG with ring seq {seq}", e.node),
                vec![j, i],
            ));
        }
        last.insert(e.node, (ring.seq, i));
        if !members.windows(2).all(|w| w[0] < w[1]) {
            out.push(Violation::new(
                ID,
                format!("REG {ring:?} members {members:?} are not strictly ascending"),
                vec![i],
            ));
        }
        match members.iter().min() {
            None => out.push(Violation::new(ID, format!("REG {ring:?} has no members"), vec![i])),
            Some(&min) if min != ring.rep => out.push(Violation::new(
                ID,
                format!("REG {ring:?} has representative {} but members {members:?}", ring.rep),
                vec![i],
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
    use crate::trace::Ring;

    // Goal: increasing rings across a restart pass.
    // Method: form, restart node 2, form a higher ring.
    #[test]
    fn accepts_increasing_rings() {
        let mut b = TraceBuilder::with_ring(Ring::new(1, 4), &[1, 2]);
        b.crash(2);
        b.start(2);
        b.form(Ring::new(2, 8), &[2]);
        b.form(Ring::new(1, 12), &[1, 2]);
        assert_eq!(check(&b.build()), vec![]);
    }

    // Goal: a repeated ring after restart, unsorted members and a wrong rep are flagged.
    // Method: restart node 2 and let it deliver ring 1.4 again; then REGs with bad lists.
    #[test]
    fn flags_regressions_and_bad_lists() {
        let r1 = Ring::new(1, 4);
        let mut b = TraceBuilder::with_ring(r1, &[1, 2]);
        b.crash(2);
        b.start(2);
        let again = b.config(2, ConfKind::Regular, r1, None, &[1, 2], &[], &[]);
        let unsorted = b.config(1, ConfKind::Regular, Ring::new(1, 8), None, &[2, 1], &[], &[]);
        let wrong_rep = b.config(1, ConfKind::Regular, Ring::new(2, 12), None, &[1, 2], &[], &[]);
        let v = check(&b.build());
        assert_eq!(v.len(), 3, "{v:#?}");
        assert_eq!(v[0].events.last(), Some(&again));
        assert_eq!(v[1].events, vec![unsorted]);
        assert_eq!(v[2].events, vec![wrong_rep]);
    }
}
