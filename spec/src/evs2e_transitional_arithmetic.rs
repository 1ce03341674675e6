//! EVS-2e: transitional arithmetic.
//!
//! **Property.** Let node incarnation p deliver, consecutively, regular configuration r1,
//! transitional configuration t, regular configuration r2. Then, as sets:
//! - t.members ⊆ r1.members ∩ r2.members;
//! - t.left = r1.members − t.members;
//! - t.joined = ∅;
//! - r2.left = ∅;
//! - r2.joined = r2.members − t.members.
//!
//! When t is the first configuration of the incarnation, r1 is taken as empty (so t must be
//! empty, with nothing left). When no r2 follows t (crash or end of trace), the conditions
//! that mention r2 are skipped. Every regular configuration has an empty `left` list, and
//! no member, left or joined list holds a node twice. The `joined` list of a regular
//! configuration not preceded by a transitional one (a node started on a formed ring) is
//! not constrained.
//!
//! Source: EVS (Moser et al. 1994); study §9.1 EVS-2e, §1.8.6 steps 4, 5 and 9.

use crate::index::{ConfigView, Index, fmt_inc, node_set};
use crate::trace::{ConfKind, Node, Trace};
use crate::{Violation, finish};
use std::collections::BTreeSet;

pub const ID: &str = "EVS-2e";
pub const STATEMENT: &str = "Transitional arithmetic: for r1, t, r2 at p: t.members ⊆ r1 ∩ r2, t.left = r1 − t, \
     t.joined = ∅, r2.left = ∅, r2.joined = r2 − t.";

/// Check EVS-2e over `trace`.
pub fn check(trace: &Trace) -> Vec<Violation> {
    check_indexed(&Index::new(trace))
}

fn has_duplicates(list: &[Node]) -> bool {
    node_set(list).len() != list.len()
}

/// Check EVS-2e using a shared index.
pub fn check_indexed(ix: &Index<'_>) -> Vec<Violation> {
    let mut out = Vec::new();
    for h in ix.history().incarnations.values() {
        let configs: Vec<&ConfigView<'_>> = h.epochs.iter().map(|e| &e.config).collect();
        let mut bad = |c: &ConfigView<'_>, what: String, events: Vec<usize>| {
            out.push(Violation::new(
                ID,
                format!("{} {:?} {:?}: {what}", fmt_inc(h.key()), c.kind, c.ring),
                events,
            ));
        };
        for (k, c) in configs.iter().enumerate() {
            if has_duplicates(c.members) || has_duplicates(c.left) || has_duplicates(c.joined) {
                bad(c, "a list holds a node twice".to_string(), vec![c.event]);
            }
            if c.kind == ConfKind::Regular {
                if !c.left.is_empty() {
                    bad(c, format!("regular configuration with left = {:?}", c.left), vec![c.event]);
                }
                continue;
            }
            let t = node_set(c.members);
            if !c.joined.is_empty() {
                bad(c, format!("transitional configuration with joined = {:?}", c.joined), vec![c.event]);
            }
            // r1: the regular configuration just before, or empty at the start of the
            // incarnation; after another transitional configuration EVS-2b already
            // complains and there is nothing to compare with.
            let r1: Option<(BTreeSet<Node>, Option<usize>)> = match k.checked_sub(1).map(|j| configs[j]) {
                None => Some((BTreeSet::new(), None)),
                Some(p) if p.kind == ConfKind::Regular => Some((node_set(p.members), Some(p.event))),
                Some(_) => None,
            };
            if let Some((r1, r1_event)) = r1 {
                let events: Vec<usize> = r1_event.into_iter().chain([c.event]).collect();
                if !t.is_subset(&r1) {
                    bad(
                        c,
                        format!("members {t:?} not within the previous regular members {r1:?}"),
                        events.clone(),
                    );
                }
                let left: BTreeSet<Node> = r1.difference(&t).copied().collect();
                if node_set(c.left) != left {
                    bad(c, format!("left = {:?}, expected {left:?}", c.left), events);
                }
            }
            if let Some(r2) = configs.get(k + 1).filter(|n| n.kind == ConfKind::Regular) {
                let r2_members = node_set(r2.members);
                if !t.is_subset(&r2_members) {
                    bad(
                        c,
                        format!("members {t:?} not within the next regular members {r2_members:?}"),
                        vec![c.event, r2.event],
                    );
                }
                let joined: BTreeSet<Node> = r2_members.difference(&t).copied().collect();
                if node_set(r2.joined) != joined {
                    bad(
                        c,
                        format!(
                            "the next REG {:?} has joined = {:?}, expected {joined:?}",
                            r2.ring, r2.joined
                        ),
                        vec![c.event, r2.event],
                    );
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
    use crate::trace::Ring;

    // Goal: the builder's correct configurations pass through a split and a merge.
    // Method: {1,2,3} splits into {1,2} and {3}, then merges.
    #[test]
    fn accepts_split_and_merge() {
        let mut b = TraceBuilder::with_ring(Ring::new(1, 4), &[1, 2, 3]);
        b.form(Ring::new(1, 8), &[1, 2]);
        b.form(Ring::new(3, 8), &[3]);
        b.form(Ring::new(1, 12), &[1, 2, 3]);
        assert_eq!(check(&b.build()), vec![]);
    }

    // Goal: wrong left, wrong joined and a non-empty first TRANS are flagged.
    // Method: hand-write the configurations of a split {1,2,3} -> {1,2}.
    #[test]
    fn flags_wrong_arithmetic() {
        let r1 = Ring::new(1, 4);
        let mut b = TraceBuilder::with_ring(r1, &[1, 2, 3]);
        let r2 = Ring::new(1, 8);
        // Node 1 forgets that 3 left.
        let t1 = b.config(1, ConfKind::Transitional, r2, Some(r1), &[1, 2], &[], &[]);
        b.reg(1, r2, &[1, 2]);
        // Node 2 announces 3 as joined in the REG.
        b.trans(2, r2, &[1, 2]);
        let reg2 = b.config(2, ConfKind::Regular, r2, Some(r1), &[1, 2], &[], &[3]);
        // Node 4 starts with a non-empty TRANS.
        b.start(4);
        let t4 = b.config(4, ConfKind::Transitional, Ring::new(4, 8), None, &[4], &[], &[]);
        let v = check(&b.build());
        assert_eq!(v.len(), 3, "{v:#?}");
        assert!(v[0].events.contains(&t1) && v[0].message.contains("left"));
        assert!(v[1].events.contains(&reg2) && v[1].message.contains("joined"));
        assert_eq!(v[2].events, vec![t4]);
    }
}
