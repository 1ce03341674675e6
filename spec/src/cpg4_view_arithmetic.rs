//! CPG-4: view arithmetic.
//!
//! **Property.** For every confchg C of a session (see [`crate::cpg_index`]) of group G:
//! - `C.members` is sorted strictly ascending by (node, pid) (so it has no duplicates),
//!   and neither `C.left` nor `C.joined` names a process twice;
//! - `C.left ∩ C.members = ∅` and `C.joined ⊆ C.members`;
//! - when C is not the session's first confchg, let B be the members of the session's
//!   previous confchg; then, as sets, `C.members = (B − C.left) ∪ C.joined`, and
//!   `C.joined ∩ B = ∅` (a member does not join again).
//!
//! The session's first confchg (its join confchg) lists the whole group as it stood when
//! the process joined, which the connection did not see before, so only the first two
//! rules apply to it. (The study's "members_before is empty before the first confchg"
//! would wrongly require a joiner's first view to hold only itself.) A `left` entry that
//! names a process outside B is tolerated: it changes nothing, and Corosync emits such
//! entries when a leave overtakes the synchronization that re-adds a process. Member
//! entries carry no reason in this vocabulary, so the study's "member entries have reason
//! 0" has nothing to check.
//!
//! Source: study §9.2 CPG-4, §4.2 (confchg callback).

use crate::cpg_index::fmt_conn;
use crate::index::{FastSet, Index};
use crate::trace::{EventKind, Process, Trace, fmt_group};
use crate::{Violation, finish};
use std::collections::BTreeSet;

pub const ID: &str = "CPG-4";
pub const STATEMENT: &str = "View arithmetic: members sorted by (node, pid) without duplicates; left ∩ members = ∅; \
     joined ⊆ members; after the session's first confchg, members = (previous − left) ∪ joined and joined ∩ \
     previous = ∅.";

/// Check CPG-4 over `trace`.
pub fn check(trace: &Trace) -> Vec<Violation> {
    check_indexed(&Index::new(trace))
}

fn has_duplicates(list: impl Iterator<Item = Process>) -> bool {
    let mut seen = FastSet::default();
    list.into_iter().any(|p| !seen.insert(p))
}

/// Check CPG-4 using a shared index.
pub fn check_indexed(ix: &Index<'_>) -> Vec<Violation> {
    let trace = ix.trace();
    let cpg = ix.cpg();
    let mut out = Vec::new();
    for s in &cpg.sessions {
        let mut before: Option<(BTreeSet<Process>, usize)> = None;
        for &i in &s.events {
            let EventKind::CpgConfchg { members, left, joined, .. } = &trace.events[i].kind else { continue };
            let mut bad = |what: String, events: Vec<usize>| {
                out.push(Violation::new(
                    ID,
                    format!("{} confchg of {}: {what}", fmt_conn(s.conn), fmt_group(s.group)),
                    events,
                ));
            };
            if members.windows(2).any(|w| w[0] >= w[1]) {
                bad(format!("members {members:?} are not strictly ascending"), vec![i]);
            }
            if has_duplicates(left.iter().map(|(p, _)| *p)) || has_duplicates(joined.iter().map(|(p, _)| *p))
            {
                bad("left or joined names a process twice".to_string(), vec![i]);
            }
            let after: BTreeSet<Process> = members.iter().copied().collect();
            let left_set: BTreeSet<Process> = left.iter().map(|(p, _)| *p).collect();
            let joined_set: BTreeSet<Process> = joined.iter().map(|(p, _)| *p).collect();
            let both: Vec<Process> = left_set.intersection(&after).copied().collect();
            if !both.is_empty() {
                bad(format!("{both:?} left but are members"), vec![i]);
            }
            let absent: Vec<Process> = joined_set.difference(&after).copied().collect();
            if !absent.is_empty() {
                bad(format!("{absent:?} joined but are not members"), vec![i]);
            }
            if let Some((b, j)) = &before {
                let again: Vec<Process> = joined_set.intersection(b).copied().collect();
                if !again.is_empty() {
                    bad(format!("{again:?} join but were already members"), vec![*j, i]);
                }
                let expect: BTreeSet<Process> =
                    b.difference(&left_set).chain(joined_set.iter()).copied().collect();
                if expect != after {
                    bad(
                        format!(
                            "members {:?}, but (previous − left) ∪ joined = {:?}",
                            after.iter().collect::<Vec<_>>(),
                            expect.iter().collect::<Vec<_>>()
                        ),
                        vec![*j, i],
                    );
                }
            }
            before = Some((after, i));
        }
    }
    finish(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::TraceBuilder;
    use crate::trace::{CpgReason, Ring};

    // Goal: the views of joins, leaves, exits and a node failure pass.
    // Method: three processes on three nodes join; one leaves, one exits, node 3 fails.
    #[test]
    fn accepts_correct_views() {
        let mut b = TraceBuilder::with_ring(Ring::new(1, 4), &[1, 2, 3]);
        b.cpg_join_group(1, 1, b"g", 10);
        b.cpg_join_group(2, 1, b"g", 20);
        b.cpg_join_group(2, 2, b"g", 21);
        b.cpg_join_group(3, 1, b"g", 30);
        b.cpg_leave_group(2, 1);
        b.cpg_exit_group(2, 2);
        b.crash(3);
        b.form(Ring::new(1, 8), &[1, 2]);
        b.cpg_node_down(&[3]);
        assert_eq!(check(&b.build()), vec![]);
    }

    // Goal: each arithmetic rule is flagged.
    // Method: after a correct join, confchgs with unsorted members, a duplicate left
    // entry, a left member, a joined non-member, a re-joining member, and a wrong sum.
    #[test]
    fn flags_bad_views() {
        let g = b"g";
        let mut b = TraceBuilder::with_ring(Ring::new(1, 4), &[1]);
        let p = b.cpg_join_group(1, 1, g, 10);
        let (q, r) = (Process::new(2, 1), Process::new(3, 1));
        let unsorted = b.cpg_confchg(1, 1, g, &[r, p], &[], &[(r, CpgReason::NodeUp)]);
        let dup = b.cpg_confchg(1, 1, g, &[p], &[(r, CpgReason::NodeDown), (r, CpgReason::NodeDown)], &[]);
        let left_member = b.cpg_confchg(1, 1, g, &[p, q], &[(q, CpgReason::Leave)], &[]);
        let joined_absent = b.cpg_confchg(1, 1, g, &[p], &[(q, CpgReason::Leave)], &[(r, CpgReason::Join)]);
        let rejoin = b.cpg_confchg(1, 1, g, &[p, q], &[], &[(p, CpgReason::Join), (q, CpgReason::Join)]);
        let sum = b.cpg_confchg(1, 1, g, &[p, q, r], &[], &[]);
        let v = check(&b.build());
        let summary: Vec<(&[usize], &str)> =
            v.iter().map(|v| (v.events.as_slice(), v.message.as_str())).collect();
        assert_eq!(v.len(), 8, "{summary:#?}");
        let has =
            |events: &[usize], text: &str| v.iter().any(|v| v.events == events && v.message.contains(text));
        assert!(has(&[unsorted], "ascending"));
        assert!(has(&[dup], "twice"));
        assert!(has(&[left_member], "left but are members"));
        assert!(has(&[dup, left_member], "previous"));
        assert!(has(&[joined_absent], "joined but are not members"));
        assert!(has(&[left_member, joined_absent], "previous"));
        assert!(has(&[joined_absent, rejoin], "already members"));
        assert!(has(&[rejoin, sum], "previous"));
    }
}
