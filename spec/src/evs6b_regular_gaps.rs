//! EVS-6b: gap-freedom in regular configurations.
//!
//! **Property.** Let node incarnation p deliver message m with slot (r, s) while its
//! current configuration is the regular configuration r. Then p delivered, before m:
//! - every message that any node delivered with slot ring r and slot seq < s, and
//! - every message that shares m's slot (packing) and that some node delivered before m.
//!
//! "The messages of r" are those some node delivered: sequence numbers that carry no
//! application message, such as the recovery wrappers occupying seqs 1..k of a new ring
//! (study §1.8.6 step 10), are consumed without delivery and are not expected. The order of
//! packed messages among themselves is EVS-6a's business; here it only matters that none is
//! skipped.
//!
//! One violation is reported per (incarnation, configuration) for the seq rule (a single
//! gap would otherwise be reported at every later delivery).
//!
//! Source: EVS (Moser et al. 1994); study §9.1 EVS-6b (corrected version), §1.7.4.

use crate::index::{FastSet, Index, fmt_inc};
use crate::trace::{ConfKind, MsgId, Trace};
use crate::{Violation, finish};

pub const ID: &str = "EVS-6b";
pub const STATEMENT: &str = "Gap-freedom in REG: p delivering m at (r, s) in REG r has already delivered every message \
     any node delivered at ring r with a lower seq, and those packed before m in its slot.";

/// Check EVS-6b over `trace`.
pub fn check(trace: &Trace) -> Vec<Violation> {
    check_indexed(&Index::new(trace))
}

/// Check EVS-6b using a shared index.
pub fn check_indexed(ix: &Index<'_>) -> Vec<Violation> {
    let ring_messages = ix.ring_messages();
    let messages = ix.messages();
    let first_event = |m: &MsgId| messages.first_delivery(m).map(|d| d.event);
    let mut out = Vec::new();
    for h in ix.history().incarnations.values() {
        let mut delivered: FastSet<MsgId> = h.unconfigured.iter().map(|d| d.msg).collect();
        for epoch in &h.epochs {
            let c = &epoch.config;
            let list = match c.kind {
                ConfKind::Regular => ring_messages.get(&c.ring).map(Vec::as_slice),
                ConfKind::Transitional => None,
            };
            let mut next = 0;
            let mut reported = false;
            for d in &epoch.deliveries {
                if delivered.contains(&d.msg) {
                    continue;
                }
                if let Some(list) = list
                    && d.slot.ring == c.ring
                {
                    while next < list.len() && delivered.contains(&list[next].1) {
                        next += 1;
                    }
                    if let Some(&(seq, missing)) = list.get(next)
                        && seq < d.slot.seq
                        && !reported
                    {
                        reported = true;
                        out.push(Violation::new(
                            ID,
                            format!(
                                "{} delivers {:?} at {:?} in REG {:?} without having delivered {missing:?} at seq {seq}",
                                fmt_inc(h.key()),
                                d.msg,
                                d.slot,
                                c.ring
                            ),
                            [d.event].into_iter().chain(first_event(&missing)).collect(),
                        ));
                    }
                    for pred in ix.same_slot_predecessors(d.slot, d.msg) {
                        if !delivered.contains(pred) {
                            out.push(Violation::new(
                                ID,
                                format!(
                                    "{} delivers {:?} in REG {:?} without {pred:?}, packed before it in {:?}",
                                    fmt_inc(h.key()),
                                    d.msg,
                                    c.ring,
                                    d.slot
                                ),
                                [d.event].into_iter().chain(first_event(pred)).collect(),
                            ));
                        }
                    }
                }
                delivered.insert(d.msg);
            }
        }
    }
    finish(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::TraceBuilder;
    use crate::trace::{Ring, Slot};

    // Goal: gap-free delivery passes, with a packed slot and an undelivered recovery seq.
    // Method: seq 1 is a wrapper (assigned, never delivered); seq 2 packs two messages.
    #[test]
    fn accepts_gap_free() {
        let r = Ring::new(1, 4);
        let mut b = TraceBuilder::with_ring(r, &[1, 2]);
        b.broadcast(1, Slot::new(r, 1), &[1, 2]);
        let a = b.send(2);
        let c = b.send(2);
        b.broadcast(2, Slot::new(r, 2), &[1, 2]);
        for n in [1, 2] {
            b.deliver(n, a, Slot::new(r, 2));
            b.deliver(n, c, Slot::new(r, 2));
        }
        b.multicast(1, Slot::new(r, 3), &[1, 2]);
        assert_eq!(check(&b.build()), vec![]);
    }

    // Goal: skipping a seq that another node delivered is flagged once.
    // Method: node 2 skips seq 1 and delivers seqs 2 and 3.
    #[test]
    fn flags_skipped_seq() {
        let r = Ring::new(1, 4);
        let mut b = TraceBuilder::with_ring(r, &[1, 2]);
        let m1 = b.send(1);
        let m2 = b.send(1);
        let m3 = b.send(1);
        for (k, m) in [m1, m2, m3].into_iter().enumerate() {
            let s = Slot::new(r, k as u32 + 1);
            b.deliver(1, m, s);
            if k > 0 {
                b.deliver(2, m, s);
            }
        }
        let v = check(&b.build());
        assert_eq!(v.len(), 1, "{v:#?}");
        assert!(v[0].message.contains("at seq 1"));
    }

    // Goal: skipping a message packed earlier in the same slot is flagged.
    // Method: node 2 delivers only the second message of slot 1.
    #[test]
    fn flags_skipped_packed_message() {
        let r = Ring::new(1, 4);
        let mut b = TraceBuilder::with_ring(r, &[1, 2]);
        let a = b.send(1);
        let c = b.send(1);
        let s = Slot::new(r, 1);
        b.deliver(1, a, s);
        b.deliver(1, c, s);
        let bad = b.deliver(2, c, s);
        let v = check(&b.build());
        assert_eq!(v.len(), 1, "{v:#?}");
        assert_eq!(v[0].events[0], bad);
    }
}
