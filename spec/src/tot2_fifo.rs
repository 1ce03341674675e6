//! TOT-2: FIFO without gaps per originator within a ring.
//!
//! **Property.** Let node incarnation p deliver message m, sent by incarnation o with
//! counter c, with slot ring r (in a regular or a transitional configuration). Then p
//! delivered, before m, every message m' of o with counter < c that any node delivered
//! with slot ring r.
//!
//! Messages of o that were ordered in another ring (queued across a ring change and sent
//! later) are not constrained. Combined with EVS-6b and EVS-6c this says a sender's
//! messages are assigned seqs in sending order and never skipped by a receiver.
//!
//! One violation is reported per (p, o, r).
//!
//! Source: Totem (Amir et al. 1995); study §9.1 TOT-2.

use crate::index::{FastMap, FastSet, Inc, Index, fmt_inc};
use crate::trace::{MsgId, Ring, Trace};
use crate::{Violation, finish};
use std::collections::BTreeSet;

pub const ID: &str = "TOT-2";
pub const STATEMENT: &str = "FIFO within a ring: p delivering o's message m at ring r has delivered every message of o \
     sent before m that anyone delivered at ring r.";

/// Check TOT-2 over `trace`.
pub fn check(trace: &Trace) -> Vec<Violation> {
    check_indexed(&Index::new(trace))
}

/// Check TOT-2 using a shared index.
pub fn check_indexed(ix: &Index<'_>) -> Vec<Violation> {
    let messages = ix.messages();
    let mut per_sender: FastMap<(Inc, Ring), Vec<(u64, MsgId)>> = FastMap::default();
    for (msg, deliveries) in &messages.deliveries {
        let rings: BTreeSet<Ring> = deliveries.iter().map(|d| d.slot.ring).collect();
        for ring in rings {
            per_sender.entry((msg.sender(), ring)).or_default().push((msg.counter, *msg));
        }
    }
    for list in per_sender.values_mut() {
        list.sort_unstable();
    }
    let mut out = Vec::new();
    for h in ix.history().incarnations.values() {
        let mut delivered: FastSet<MsgId> = FastSet::default();
        let mut cursor: FastMap<(Inc, Ring), (usize, bool)> = FastMap::default();
        for d in h.distinct_deliveries() {
            let key = (d.msg.sender(), d.slot.ring);
            let list = per_sender.get(&key).map_or(&[][..], Vec::as_slice);
            let (next, reported) = cursor.entry(key).or_insert((0, false));
            while *next < list.len() && delivered.contains(&list[*next].1) {
                *next += 1;
            }
            if let Some(&(counter, missing)) = list.get(*next)
                && counter < d.msg.counter
                && !*reported
            {
                *reported = true;
                out.push(Violation::new(
                    ID,
                    format!(
                        "{} delivers {:?} at {:?} without having delivered {missing:?}, sent before it and delivered at {:?} elsewhere",
                        fmt_inc(h.key()),
                        d.msg,
                        d.slot,
                        d.slot.ring
                    ),
                    [d.event].into_iter().chain(messages.first_delivery(&missing).map(|x| x.event)).collect(),
                ));
            }
            delivered.insert(d.msg);
        }
    }
    finish(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::TraceBuilder;
    use crate::trace::Slot;

    // Goal: in-order delivery passes, also when an earlier message went to another ring.
    // Method: node 1's first message is ordered in r1 and delivered only there; its next
    // two are ordered in r2.
    #[test]
    fn accepts_fifo() {
        let r1 = Ring::new(1, 4);
        let mut b = TraceBuilder::with_ring(r1, &[1, 2]);
        b.multicast(1, Slot::new(r1, 1), &[1]);
        let r2 = Ring::new(1, 8);
        b.form(r2, &[1, 2]);
        b.multicast(1, Slot::new(r2, 1), &[1, 2]);
        b.multicast(1, Slot::new(r2, 2), &[1, 2]);
        assert_eq!(check(&b.build()), vec![]);
    }

    // Goal: skipping an earlier message of the same sender in the same ring is flagged.
    // Method: node 2 delivers node 1's second message but not its first.
    #[test]
    fn flags_skipped_message() {
        let r = Ring::new(1, 4);
        let mut b = TraceBuilder::with_ring(r, &[1, 2]);
        let a = b.send(1);
        let c = b.send(1);
        b.deliver(1, a, Slot::new(r, 1));
        b.deliver(1, c, Slot::new(r, 2));
        let bad = b.deliver(2, c, Slot::new(r, 2));
        let v = check(&b.build());
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].events[0], bad);
    }
}
