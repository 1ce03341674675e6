//! EVS-4: failure atomicity.
//!
//! **Property.** If node incarnations p and q both deliver, consecutively, regular
//! configuration r1, a transitional configuration t, and regular configuration r2, then the
//! set of messages p delivered while r1 was its current configuration equals q's, and the
//! set p delivered while t was current equals q's. (So they agree on the exact point where
//! r1 ends.) Transitional configurations are identified by (r1, r2); EVS-2f checks that p's
//! and q's are identical.
//!
//! Source: EVS (Moser et al. 1994), failure atomicity; study §9.1 EVS-4.

use crate::index::{FastMap, Index, fmt_inc};
use crate::trace::{ConfKind, MsgId, Ring, Trace};
use crate::{Violation, finish};
use std::collections::BTreeSet;

pub const ID: &str = "EVS-4";
pub const STATEMENT: &str = "Failure atomicity: nodes delivering r1, the same TRANS, then r2 delivered the same set \
     of messages in r1 and the same set in the TRANS.";

/// Check EVS-4 over `trace`.
pub fn check(trace: &Trace) -> Vec<Violation> {
    check_indexed(&Index::new(trace))
}

struct Reference {
    reg: BTreeSet<MsgId>,
    trans: BTreeSet<MsgId>,
    reg_event: usize,
    trans_event: usize,
}

fn difference_sample(a: &BTreeSet<MsgId>, b: &BTreeSet<MsgId>) -> String {
    let only_a: Vec<&MsgId> = a.difference(b).take(3).collect();
    let only_b: Vec<&MsgId> = b.difference(a).take(3).collect();
    format!("first only in one: {only_a:?}, first only in the other: {only_b:?}")
}

/// Check EVS-4 using a shared index.
pub fn check_indexed(ix: &Index<'_>) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut reference: FastMap<(Ring, Ring), Reference> = FastMap::default();
    for h in ix.history().incarnations.values() {
        for w in h.epochs.windows(3) {
            let (r1, t, r2) = (&w[0], &w[1], &w[2]);
            if r1.config.kind != ConfKind::Regular
                || t.config.kind != ConfKind::Transitional
                || r2.config.kind != ConfKind::Regular
            {
                continue;
            }
            let reg: BTreeSet<MsgId> = r1.deliveries.iter().map(|d| d.msg).collect();
            let trans: BTreeSet<MsgId> = t.deliveries.iter().map(|d| d.msg).collect();
            let key = (r1.config.ring, r2.config.ring);
            match reference.get(&key) {
                None => {
                    reference.insert(
                        key,
                        Reference { reg, trans, reg_event: r1.config.event, trans_event: t.config.event },
                    );
                }
                Some(seen) => {
                    if seen.reg != reg {
                        out.push(Violation::new(
                            ID,
                            format!(
                                "{} delivered {} messages in {:?} before moving to {:?}, another node {}; {}",
                                fmt_inc(h.key()),
                                reg.len(),
                                key.0,
                                key.1,
                                seen.reg.len(),
                                difference_sample(&reg, &seen.reg)
                            ),
                            vec![seen.reg_event, r1.config.event],
                        ));
                    }
                    if seen.trans != trans {
                        out.push(Violation::new(
                            ID,
                            format!(
                                "{} delivered {} messages in the TRANS {:?} -> {:?}, another node {}; {}",
                                fmt_inc(h.key()),
                                trans.len(),
                                key.0,
                                key.1,
                                seen.trans.len(),
                                difference_sample(&trans, &seen.trans)
                            ),
                            vec![seen.trans_event, t.config.event],
                        ));
                    }
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
    use crate::trace::Slot;

    // Goal: equal sets pass, also when a third node leaves with fewer messages.
    // Method: {1,2,3}; node 3 misses slot 2 and goes to its own ring; 1 and 2 agree.
    #[test]
    fn accepts_equal_sets() {
        let r1 = Ring::new(1, 4);
        let mut b = TraceBuilder::with_ring(r1, &[1, 2, 3]);
        b.multicast(1, Slot::new(r1, 1), &[1, 2, 3]);
        let m = b.send(2);
        b.broadcast(2, Slot::new(r1, 2), &[1, 2]);
        let r2 = Ring::new(1, 8);
        for n in [1, 2] {
            b.trans(n, r2, &[1, 2]);
            b.deliver(n, m, Slot::new(r1, 2));
            b.reg(n, r2, &[1, 2]);
        }
        b.form(Ring::new(3, 8), &[3]);
        assert_eq!(check(&b.build()), vec![]);
    }

    // Goal: nodes moving together with different delivered sets are flagged.
    // Method: node 1 delivers slot 2 in r1, node 2 in the TRANS.
    #[test]
    fn flags_different_sets() {
        let r1 = Ring::new(1, 4);
        let mut b = TraceBuilder::with_ring(r1, &[1, 2]);
        let m = b.send(2);
        b.broadcast(2, Slot::new(r1, 1), &[1, 2]);
        b.deliver(1, m, Slot::new(r1, 1));
        let r2 = Ring::new(1, 8);
        b.trans(1, r2, &[1, 2]);
        b.reg(1, r2, &[1, 2]);
        b.trans(2, r2, &[1, 2]);
        b.deliver(2, m, Slot::new(r1, 1));
        b.reg(2, r2, &[1, 2]);
        let v = check(&b.build());
        assert_eq!(v.len(), 2, "{v:#?}");
    }
}
