//! TOT-7: membership agreement at COMMIT.
//!
//! **Property.** For every `Commit { ring: R, members, proc_minus_failed, via_consensus,
//! agreed }` event at node p:
//! - `members` is non-empty and strictly ascending (sorted, no duplicates), and equals
//!   `proc_minus_failed` as a set (p commits only to the membership it proposes itself);
//! - R's representative is the smallest member, and p is a member;
//! - if `via_consensus` (p created the commit token): p is the smallest member and
//!   `agreed` includes every member (p held an identical JOIN from each);
//! - otherwise (p accepted a commit token): an earlier event in the trace is a
//!   `via_consensus` `Commit` for R with the same members (the token's creator);
//! - every `Commit` event for R, at any node, has the same members;
//! - every regular configuration of ring R, at any node, has the members of R's `Commit`
//!   events (when R has any).
//!
//! Member lists are compared as sets in the last three rules (their order is the first
//! rule's business), and the checks on a `Commit` whose own members are malformed stop at
//! the first rule, so that one bad list is reported once.
//!
//! Source: Totem (Amir et al. 1995), membership protocol; study §1.8.2-§1.8.4 and §9.1
//! TOT-7.

use crate::index::{FastMap, Index, node_set};
use crate::trace::{ConfKind, EventKind, Node, Ring, Trace};
use crate::{Violation, finish};
use std::collections::BTreeSet;

pub const ID: &str = "TOT-7";
pub const STATEMENT: &str = "Membership agreement: a node commits to ring R only with members = its own proc - failed, \
     sorted, rep = min, itself included; by consensus (as the lowest, all members agreed) or by accepting the \
     creator's token; all Commits and REGs of R agree on the members.";

/// Check TOT-7 over `trace`.
pub fn check(trace: &Trace) -> Vec<Violation> {
    check_indexed(&Index::new(trace))
}

/// Check TOT-7 using a shared index.
pub fn check_indexed(ix: &Index<'_>) -> Vec<Violation> {
    let trace = ix.trace();
    let mut out = Vec::new();
    // Per ring: the first Commit event's member set and index.
    let mut first_commit: FastMap<Ring, (BTreeSet<Node>, usize)> = FastMap::default();
    // Per ring: the member sets created by consensus so far (usually one).
    let mut created: FastMap<Ring, Vec<BTreeSet<Node>>> = FastMap::default();
    for (i, e) in trace.events.iter().enumerate() {
        let EventKind::Commit { ring, members, proc_minus_failed, via_consensus, agreed } = &e.kind else {
            continue;
        };
        let p = e.node;
        let Some(&min) = members.first() else {
            out.push(Violation::new(ID, format!("node {p} commits to {ring:?} with no members"), vec![i]));
            continue;
        };
        if !members.windows(2).all(|w| w[0] < w[1]) {
            out.push(Violation::new(
                ID,
                format!("node {p} commits to {ring:?} with members {members:?}, not strictly ascending"),
                vec![i],
            ));
            continue;
        }
        let set = node_set(members);
        if set != node_set(proc_minus_failed) {
            out.push(Violation::new(
                ID,
                format!(
                    "node {p} commits to {ring:?} with members {members:?} but proposes {proc_minus_failed:?}"
                ),
                vec![i],
            ));
        }
        if ring.rep != min {
            out.push(Violation::new(
                ID,
                format!("node {p} commits to {ring:?} whose representative is not the lowest of {members:?}"),
                vec![i],
            ));
        }
        if !set.contains(&p) {
            out.push(Violation::new(
                ID,
                format!("node {p} commits to {ring:?} with members {members:?}, which exclude it"),
                vec![i],
            ));
        }
        if *via_consensus {
            if p != min {
                out.push(Violation::new(
                    ID,
                    format!(
                        "node {p} creates the commit token of {ring:?} but is not the lowest of {members:?}"
                    ),
                    vec![i],
                ));
            }
            let agreed = node_set(agreed);
            let missing: Vec<Node> = set.difference(&agreed).copied().collect();
            if !missing.is_empty() {
                out.push(Violation::new(
                    ID,
                    format!(
                        "node {p} creates the commit token of {ring:?} without the agreement of {missing:?}"
                    ),
                    vec![i],
                ));
            }
        } else if !created.get(ring).is_some_and(|sets| sets.contains(&set)) {
            out.push(Violation::new(
                ID,
                format!(
                    "node {p} accepts a commit token of {ring:?} with members {members:?} that nobody created"
                ),
                vec![i],
            ));
        }
        match first_commit.get(ring) {
            Some((seen, j)) if *seen != set => out.push(Violation::new(
                ID,
                format!("node {p} commits to {ring:?} with members {set:?}, an earlier Commit had {seen:?}"),
                vec![*j, i],
            )),
            Some(_) => {}
            None => {
                first_commit.insert(*ring, (set.clone(), i));
            }
        }
        if *via_consensus {
            let sets = created.entry(*ring).or_default();
            if !sets.contains(&set) {
                sets.push(set);
            }
        }
    }
    for (i, e) in trace.events.iter().enumerate() {
        let EventKind::Config { kind: ConfKind::Regular, ring, members, .. } = &e.kind else { continue };
        let Some((committed, j)) = first_commit.get(ring) else { continue };
        let set = node_set(members);
        if set != *committed {
            out.push(Violation::new(
                ID,
                format!(
                    "node {} delivers REG {ring:?} with members {set:?}, but {ring:?} was committed with {committed:?}",
                    e.node
                ),
                vec![*j, i],
            ));
        }
    }
    finish(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::TraceBuilder;

    // Goal: a correct membership round passes.
    // Method: install {1,2,3}, then {1,2} after node 3 crashes; node 2 accepts the token
    // after proposing the same set in another order.
    #[test]
    fn accepts_correct_rounds() {
        let mut b = TraceBuilder::new();
        for n in [1, 2, 3] {
            b.start(n);
        }
        b.install(Ring::new(1, 4), &[1, 2, 3]);
        b.crash(3);
        let r = Ring::new(1, 8);
        b.commit(1, r, &[1, 2], &[2, 1], true, &[1, 2, 3]);
        b.commit(2, r, &[1, 2], &[2, 1], false, &[]);
        b.form(r, &[1, 2]);
        assert_eq!(check(&b.build()), vec![]);
    }

    // Goal: every rule is enforced.
    // Method: one Commit per broken rule, and a REG that disagrees with its Commits.
    #[test]
    fn flags_each_rule() {
        let mut b = TraceBuilder::new();
        for n in [1, 2, 3, 4] {
            b.start(n);
        }
        let r = Ring::new(1, 4);
        let unsorted = b.commit(1, r, &[2, 1], &[1, 2], true, &[1, 2]);
        let proposal = b.commit(1, r, &[1, 2], &[1, 2, 3], true, &[1, 2]);
        b.commit(1, r, &[1, 2], &[1, 2], true, &[1, 2]);
        let not_member = b.commit(3, r, &[1, 2], &[1, 2], false, &[]);
        let bad_rep = b.commit(2, Ring::new(2, 8), &[1, 2], &[1, 2], false, &[]);
        let not_lowest = b.commit(2, Ring::new(1, 12), &[1, 2], &[1, 2], true, &[1, 2]);
        let no_agreement = b.commit(1, Ring::new(1, 16), &[1, 2], &[1, 2], true, &[1]);
        let orphan = b.commit(4, Ring::new(3, 20), &[3, 4], &[3, 4], false, &[]);
        let other = b.commit(2, r, &[1, 2, 3], &[1, 2, 3], false, &[]);
        let reg = b.reg(2, r, &[1, 2, 3]);
        let v = check(&b.build());
        let summary: Vec<(&[usize], &str)> =
            v.iter().map(|v| (v.events.as_slice(), v.message.as_str())).collect();
        let expect: Vec<(Vec<usize>, &str)> = vec![
            (vec![unsorted], "not strictly ascending"),
            (vec![proposal], "proposes"),
            (vec![not_member], "exclude it"),
            (vec![bad_rep], "representative"),
            (vec![bad_rep], "nobody created"),
            (vec![not_lowest], "not the lowest"),
            (vec![no_agreement], "without the agreement of [2]"),
            (vec![orphan], "nobody created"),
            (vec![other], "nobody created"),
            (vec![proposal, other], "an earlier Commit had"),
            (vec![proposal, reg], "was committed with"),
        ];
        assert_eq!(v.len(), expect.len(), "{summary:#?}");
        for (events, text) in expect {
            assert!(
                v.iter().any(|v| v.events == events && v.message.contains(text)),
                "{events:?} {text}: {summary:#?}"
            );
        }
    }
}
