//! TOT-6: safe buffer release.
//!
//! **Property.** When node p emits `Release { ring: r, up_to: u }`, every member of r has
//! already received (has a `Receive` earlier in the trace, at any incarnation) every slot
//! (r, s) with s <= u that is assigned anywhere in the trace (`Assign` events). The members
//! of r are the nodes with any `Token` or `Receive` event of ring r in the trace.
//!
//! A message may be freed only once no member can ask for its retransmission. This is a
//! property of our design, not of Corosync, which can release early on duplicate or foreign
//! tokens (study §1.7 steps 5 and 14). A slot assigned only after the release (s <= u) also
//! counts as a violation: the release covered a message that did not exist yet.
//!
//! One violation is reported per (ring, member).
//!
//! Source: Totem (Amir et al. 1995), the aru rule for discarding messages; study §9.1 TOT-6.

use crate::index::{FastMap, FastSet, Index};
use crate::trace::{EventKind, Node, Ring, Trace};
use crate::{Violation, finish};
use std::collections::BTreeSet;

pub const ID: &str = "TOT-6";
pub const STATEMENT: &str = "Safe release: when p frees ring r up to u, every node with Token or Receive events in r has \
     received every assigned seq <= u of r.";

/// Check TOT-6 over `trace`.
pub fn check(trace: &Trace) -> Vec<Violation> {
    check_indexed(&Index::new(trace))
}

/// Check TOT-6 using a shared index.
pub fn check_indexed(ix: &Index<'_>) -> Vec<Violation> {
    let trace = ix.trace();
    let released: FastSet<Ring> = trace
        .events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Release { ring, .. } => Some(*ring),
            _ => None,
        })
        .collect();
    if released.is_empty() {
        return Vec::new();
    }
    let mut members: FastMap<Ring, BTreeSet<Node>> = FastMap::default();
    let mut assigned: FastMap<Ring, BTreeSet<u32>> = FastMap::default();
    // (ring, node) -> seq -> first receive
    let mut receives: FastMap<(Ring, Node), FastMap<u32, usize>> = FastMap::default();
    for (i, e) in trace.events.iter().enumerate() {
        match &e.kind {
            EventKind::Token { ring, .. } if released.contains(ring) => {
                members.entry(*ring).or_default().insert(e.node);
            }
            EventKind::Receive { slot } if released.contains(&slot.ring) => {
                members.entry(slot.ring).or_default().insert(e.node);
                receives.entry((slot.ring, e.node)).or_default().entry(slot.seq).or_insert(i);
            }
            EventKind::Assign { slot } if released.contains(&slot.ring) => {
                assigned.entry(slot.ring).or_default().insert(slot.seq);
            }
            _ => {}
        }
    }
    // For each (ring, member): prefix[k] = (latest first-receive among the k + 1 lowest
    // assigned seqs, the seq where that latest one was found); usize::MAX when missing.
    let assigned: FastMap<Ring, Vec<u32>> =
        assigned.into_iter().map(|(r, s)| (r, s.into_iter().collect())).collect();
    let mut prefix: FastMap<(Ring, Node), Vec<(usize, u32)>> = FastMap::default();
    let empty = FastMap::default();
    for (ring, nodes) in &members {
        let Some(seqs) = assigned.get(ring) else { continue };
        for &q in nodes {
            let got = receives.get(&(*ring, q)).unwrap_or(&empty);
            let mut worst = (0usize, 0u32);
            let list: Vec<(usize, u32)> = seqs
                .iter()
                .map(|s| {
                    let at = got.get(s).copied().unwrap_or(usize::MAX);
                    if at > worst.0 {
                        worst = (at, *s);
                    }
                    worst
                })
                .collect();
            prefix.insert((*ring, q), list);
        }
    }
    let mut out = Vec::new();
    let mut reported: FastSet<(Ring, Node)> = FastSet::default();
    for (i, e) in trace.events.iter().enumerate() {
        let EventKind::Release { ring, up_to } = &e.kind else { continue };
        let (Some(seqs), Some(nodes)) = (assigned.get(ring), members.get(ring)) else { continue };
        // Number of assigned seqs <= up_to.
        let count = seqs.partition_point(|s| s <= up_to);
        if count == 0 {
            continue;
        }
        for &q in nodes {
            let Some(&(at, seq)) = prefix.get(&(*ring, q)).and_then(|p| p.get(count - 1)) else { continue };
            if at > i && reported.insert((*ring, q)) {
                let what = if at == usize::MAX {
                    "never receives".to_string()
                } else {
                    "has not yet received".to_string()
                };
                let mut events = vec![i];
                if at != usize::MAX {
                    events.push(at);
                }
                out.push(Violation::new(
                    ID,
                    format!(
                        "node {} releases {ring:?} up to {up_to}, but member {q} {what} seq {seq}",
                        e.node
                    ),
                    events,
                ));
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

    // Goal: releasing what every member holds passes.
    // Method: two slots reach both nodes; node 1 releases up to 2 (and up to 5).
    #[test]
    fn accepts_release_after_receipt() {
        let r = Ring::new(1, 4);
        let mut b = TraceBuilder::with_ring(r, &[1, 2]);
        b.broadcast(1, Slot::new(r, 1), &[1, 2]);
        b.broadcast(2, Slot::new(r, 2), &[1, 2]);
        b.release(1, r, 2);
        b.release(2, r, 5);
        assert_eq!(check(&b.build()), vec![]);
    }

    // Goal: releasing a slot a member has not received yet is flagged.
    // Method: node 3 receives seq 2 only after node 1 released up to 2.
    #[test]
    fn flags_early_release() {
        let r = Ring::new(1, 4);
        let mut b = TraceBuilder::with_ring(r, &[1, 2, 3]);
        b.broadcast(1, Slot::new(r, 1), &[1, 2, 3]);
        b.broadcast(2, Slot::new(r, 2), &[1, 2]);
        let release = b.release(1, r, 2);
        let late = b.receive(3, Slot::new(r, 2));
        let v = check(&b.build());
        assert_eq!(v.len(), 1, "{v:#?}");
        assert_eq!(v[0].events, vec![release, late]);
        assert!(v[0].message.contains("member 3 has not yet received seq 2"));
    }
}
