//! EVS-2f: transitional agreement.
//!
//! **Property.** If node incarnations p and q both deliver regular configuration r1, then a
//! transitional configuration, then regular configuration r2, consecutively, then their two
//! transitional configurations are identical: same ring, same member set, same left set,
//! same joined set.
//!
//! Source: EVS (Moser et al. 1994); study §9.1 EVS-2f.

use crate::index::{FastMap, Index, fmt_inc, node_set};
use crate::trace::{ConfKind, Node, Ring, Trace};
use crate::{Violation, finish};
use std::collections::BTreeSet;

pub const ID: &str = "EVS-2f";
pub const STATEMENT: &str = "Transitional agreement: nodes delivering REG r1 then REG r2 consecutively delivered \
     identical TRANS configurations in between.";

/// Check EVS-2f over `trace`.
pub fn check(trace: &Trace) -> Vec<Violation> {
    check_indexed(&Index::new(trace))
}

type TransShape = (Ring, BTreeSet<Node>, BTreeSet<Node>, BTreeSet<Node>);

/// Check EVS-2f using a shared index.
pub fn check_indexed(ix: &Index<'_>) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut first: FastMap<(Ring, Ring), (TransShape, usize)> = FastMap::default();
    for h in ix.history().incarnations.values() {
        for w in h.epochs.windows(3) {
            let (r1, t, r2) = (&w[0].config, &w[1].config, &w[2].config);
            if r1.kind != ConfKind::Regular
                || t.kind != ConfKind::Transitional
                || r2.kind != ConfKind::Regular
            {
                continue;
            }
            let shape: TransShape = (t.ring, node_set(t.members), node_set(t.left), node_set(t.joined));
            match first.get(&(r1.ring, r2.ring)) {
                Some((seen, j)) if *seen != shape => out.push(Violation::new(
                    ID,
                    format!(
                        "between {:?} and {:?}, {} delivers TRANS (ring, members, left, joined) = {shape:?}, another node {seen:?}",
                        r1.ring,
                        r2.ring,
                        fmt_inc(h.key())
                    ),
                    vec![*j, t.event],
                )),
                Some(_) => {}
                None => {
                    first.insert((r1.ring, r2.ring), (shape, t.event));
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

    // Goal: identical transitional configurations pass.
    // Method: {1,2,3} -> {1,2} via the builder.
    #[test]
    fn accepts_identical_trans() {
        let mut b = TraceBuilder::with_ring(Ring::new(1, 4), &[1, 2, 3]);
        b.form(Ring::new(1, 8), &[1, 2]);
        assert_eq!(check(&b.build()), vec![]);
    }

    // Goal: two nodes moving r1 -> r2 with different transitional sets are flagged.
    // Method: node 2 delivers TRANS {2} while node 1 delivers TRANS {1,2}.
    #[test]
    fn flags_different_trans() {
        let r1 = Ring::new(1, 4);
        let r2 = Ring::new(1, 8);
        let mut b = TraceBuilder::with_ring(r1, &[1, 2, 3]);
        b.trans(1, r2, &[1, 2]);
        b.reg(1, r2, &[1, 2]);
        let bad = b.trans(2, r2, &[2]);
        b.reg(2, r2, &[1, 2]);
        let v = check(&b.build());
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].events.last(), Some(&bad));
    }
}
