//! EVS-2c: monotonic ring ids.
//!
//! **Property.** For every node (across all its incarnations, in trace order), the ring
//! sequence numbers of the regular configurations it delivers are strictly increasing; in
//! particular no node delivers the same regular ring twice, even after a restart (the ring
//! sequence is persisted and bumped). The comparison restarts at a `StateLost` event: a
//! node whose persisted state was lost may deliver ring ids of its earlier incarnations
//! again, but never within one incarnation, nor across incarnations whose state was kept
//! (from the incarnation that followed the last loss on). Every regular configuration has
//! a non-empty member list in strictly ascending node-id order, and its ring's
//! representative is the smallest member.
//!
//! Source: EVS (Moser et al. 1994); study §9.1 EVS-2c and its COR notes.

use crate::index::{FastMap, Index};
use crate::trace::{ConfKind, EventKind, Node, Trace};
use crate::{Violation, finish};

pub const ID: &str = "EVS-2c";
pub const STATEMENT: &str = "Monotonic rings: per node (across restarts, unless its state was lost) REG ring seqs \
     strictly increase; REG members are non-empty, strictly ascending, and rep = min(members).";

/// Check EVS-2c over `trace`.
pub fn check(trace: &Trace) -> Vec<Violation> {
    check_indexed(&Index::new(trace))
}

/// Check EVS-2c using a shared index.
pub fn check_indexed(ix: &Index<'_>) -> Vec<Violation> {
    let mut out = Vec::new();
    // Per node: the last REG's ring seq, event and incarnation.
    let mut last: FastMap<Node, (u64, usize, u32)> = FastMap::default();
    for (i, e) in ix.trace().events.iter().enumerate() {
        if matches!(e.kind, EventKind::StateLost) {
            // Only a loss before a later incarnation resets; one inside an incarnation that
            // already delivered a REG is malformed (TRACE-WF) and changes nothing here.
            if last.get(&e.node).is_some_and(|&(_, _, inc)| inc < e.incarnation) {
                last.remove(&e.node);
            }
            continue;
        }
        let EventKind::Config { kind: ConfKind::Regular, ring, members, .. } = &e.kind else { continue };
        if let Some(&(seq, j, _)) = last.get(&e.node)
            && ring.seq <= seq
        {
            out.push(Violation::new(
                ID,
                format!("node {} delivers REG {ring:?} after a REG with ring seq {seq}", e.node),
                vec![j, i],
            ));
        }
        last.insert(e.node, (ring.seq, i, e.incarnation));
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

    // Goal: after a state loss, ring ids of earlier incarnations may recur; later
    // incarnations that kept their state are compared again.
    // Method: node 2 delivers 1.4 and 1.8, loses its state, delivers 2.4 (lower) and 1.12;
    // it crashes (state kept) and delivers 1.16.
    #[test]
    fn accepts_recurrence_after_state_loss() {
        let mut b = TraceBuilder::with_ring(Ring::new(1, 4), &[1, 2]);
        b.form(Ring::new(1, 8), &[1, 2]);
        b.crash(2);
        b.state_lost(2);
        b.start(2);
        b.form(Ring::new(2, 4), &[2]);
        b.form(Ring::new(1, 12), &[1, 2]);
        b.crash(2);
        b.start(2);
        b.form(Ring::new(1, 16), &[1, 2]);
        assert_eq!(check(&b.build()), vec![]);
    }

    // Goal: a state loss does not excuse a regression within the incarnation after it, nor
    // in a later incarnation that kept its state.
    // Method: node 2 loses its state, delivers 2.8 then 2.4; restarts (state kept) and
    // delivers 2.8 again.
    #[test]
    fn flags_regression_after_state_loss() {
        let mut b = TraceBuilder::with_ring(Ring::new(1, 12), &[1, 2]);
        b.crash(2);
        b.state_lost(2);
        b.start(2);
        let first = b.reg(2, Ring::new(2, 8), &[2]);
        let within = b.reg(2, Ring::new(2, 4), &[2]);
        b.crash(2);
        b.start(2);
        let across = b.reg(2, Ring::new(2, 4), &[2]);
        let v = check(&b.build());
        assert_eq!(v.len(), 2, "{v:#?}");
        assert_eq!(v[0].events, vec![first, within]);
        assert_eq!(v[1].events, vec![within, across]);
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
