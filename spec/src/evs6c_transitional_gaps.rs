//! EVS-6c: the gap rule in transitional configurations.
//!
//! **Property.** Let node incarnation p deliver message m with slot (r, s) while its
//! current configuration is the transitional configuration t, whose previous regular ring
//! at p is r0. Then:
//! - (origin) m's origin is a member of t;
//! - (gaps) if r = r0: p delivered before m every message m' that any node delivered with
//!   slot ring r0, slot seq < s, and origin in t.members, and every message packed before
//!   m in its slot (by some node's order) whose origin is in t.members;
//! - (after REG) if r = r0: s is greater than the seq of every message p delivered in the
//!   regular configuration r0.
//!
//! (That r = r0 at all is EVS-1c.) The first rule and the third are Corosync's stronger
//! COR-6c; the second is EVS's rule. Holes left by originators outside the transitional set
//! are legal: those messages may never reach the survivors.
//!
//! One violation of the gap rule is reported per (incarnation, configuration).
//!
//! Source: EVS (Moser et al. 1994); study §9.1 EVS-6c and COR-6c, §1.8.6 steps 3 and 7.

use crate::index::{FastSet, Index, fmt_inc, node_set};
use crate::trace::{ConfKind, MsgId, Ring, Trace};
use crate::{Violation, finish};

pub const ID: &str = "EVS-6c";
pub const STATEMENT: &str = "Gaps in TRANS t (after REG r0): delivered messages originate in t.members, follow every \
     lower-seq r0 message from t.members that anyone delivered, and have higher seqs than all of p's r0 deliveries.";

/// Check EVS-6c over `trace`.
pub fn check(trace: &Trace) -> Vec<Violation> {
    check_indexed(&Index::new(trace))
}

/// Check EVS-6c using a shared index.
pub fn check_indexed(ix: &Index<'_>) -> Vec<Violation> {
    let ring_messages = ix.ring_messages();
    let messages = ix.messages();
    let first_event = |m: &MsgId| messages.first_delivery(m).map(|d| d.event);
    let mut out = Vec::new();
    for h in ix.history().incarnations.values() {
        let mut delivered: FastSet<MsgId> = h.unconfigured.iter().map(|d| d.msg).collect();
        // The last regular ring and the highest seq of that ring delivered in it.
        let mut reg_high: Option<(Ring, Option<(u32, usize)>)> = None;
        for epoch in &h.epochs {
            let c = &epoch.config;
            if c.kind == ConfKind::Regular {
                let mut high: Option<(u32, usize)> = None;
                for d in epoch.deliveries.iter().filter(|d| d.slot.ring == c.ring) {
                    if high.is_none_or(|(s, _)| d.slot.seq > s) {
                        high = Some((d.slot.seq, d.event));
                    }
                }
                reg_high = Some((c.ring, high));
                delivered.extend(epoch.deliveries.iter().map(|d| d.msg));
                continue;
            }
            let members = node_set(c.members);
            let r0 = c.prev_reg;
            let list = r0.and_then(|r| ring_messages.get(&r)).map_or(&[][..], Vec::as_slice);
            let high = reg_high.filter(|(r, _)| Some(*r) == r0).and_then(|(_, h)| h);
            let mut next = 0;
            let mut reported = false;
            for d in &epoch.deliveries {
                if delivered.contains(&d.msg) {
                    continue;
                }
                if !members.contains(&d.msg.origin) {
                    out.push(Violation::new(
                        ID,
                        format!(
                            "{} delivers {:?} in TRANS {:?} whose members {:?} exclude its origin",
                            fmt_inc(h.key()),
                            d.msg,
                            c.ring,
                            c.members
                        ),
                        vec![c.event, d.event],
                    ));
                }
                if Some(d.slot.ring) == r0 {
                    if let Some((seq, at)) = high
                        && d.slot.seq <= seq
                    {
                        out.push(Violation::new(
                            ID,
                            format!(
                                "{} delivers {:?} at {:?} in TRANS {:?} after delivering seq {seq} in the regular configuration",
                                fmt_inc(h.key()),
                                d.msg,
                                d.slot,
                                c.ring
                            ),
                            vec![at, d.event],
                        ));
                    }
                    while next < list.len()
                        && (delivered.contains(&list[next].1) || !members.contains(&list[next].1.origin))
                    {
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
                                "{} delivers {:?} at {:?} in TRANS {:?} without having delivered {missing:?} at seq {seq} from a member",
                                fmt_inc(h.key()),
                                d.msg,
                                d.slot,
                                c.ring
                            ),
                            [d.event].into_iter().chain(first_event(&missing)).collect(),
                        ));
                    }
                    for pred in ix.same_slot_predecessors(d.slot, d.msg) {
                        if members.contains(&pred.origin) && !delivered.contains(pred) {
                            out.push(Violation::new(
                                ID,
                                format!(
                                    "{} delivers {:?} in TRANS {:?} without {pred:?}, packed before it in {:?}",
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
    use crate::trace::Slot;

    /// Ring {1,2,3}: seq 1 from node 1 delivered by all in REG; seq 2 from node 3 (who then
    /// crashes) reaches node 1 only; seq 3 from node 2 reaches 1 and 2.
    fn prefix() -> (TraceBuilder, Ring, [MsgId; 3]) {
        let r = Ring::new(1, 4);
        let mut b = TraceBuilder::with_ring(r, &[1, 2, 3]);
        let m1 = b.multicast(1, Slot::new(r, 1), &[1, 2, 3]);
        let m2 = b.send(3);
        b.broadcast(3, Slot::new(r, 2), &[1, 3]);
        b.crash(3);
        let m3 = b.send(2);
        b.broadcast(2, Slot::new(r, 3), &[1, 2]);
        (b, r, [m1, m2, m3])
    }

    // Goal: skipping a hole left by an originator outside the transitional set passes.
    // Method: 1 and 2 move to r2 with TRANS {1,2}; seq 2 (from 3) is skipped, seq 3 is
    // delivered in the TRANS.
    #[test]
    fn accepts_hole_from_departed_origin() {
        let (mut b, r, [_, _, m3]) = prefix();
        let r2 = Ring::new(1, 8);
        for n in [1, 2] {
            b.trans(n, r2, &[1, 2]);
            b.deliver(n, m3, Slot::new(r, 3));
            b.reg(n, r2, &[1, 2]);
        }
        assert_eq!(check(&b.build()), vec![]);
    }

    // Goal: delivering a message from outside the transitional set, and delivering in the
    // TRANS a seq not above the REG deliveries, are flagged.
    // Method: node 1 delivers m2 (origin 3) in TRANS {1,2}; node 2 delivers a seq-4
    // message in REG, then m3 (seq 3) in the TRANS.
    #[test]
    fn flags_foreign_origin_and_reordering() {
        let (mut b, r, [_, m2, m3]) = prefix();
        let r2 = Ring::new(1, 8);
        b.trans(1, r2, &[1, 2]);
        let foreign = b.deliver(1, m2, Slot::new(r, 2));
        b.deliver(1, m3, Slot::new(r, 3));
        b.reg(1, r2, &[1, 2]);
        // Node 2: a fresh message from node 1 at seq 4 is delivered in REG, then m3 (seq 3)
        // in the TRANS.
        let m4 = b.send(1);
        b.broadcast(1, Slot::new(r, 4), &[1, 2]);
        b.deliver(2, m4, Slot::new(r, 4));
        b.trans(2, r2, &[1, 2]);
        let behind = b.deliver(2, m3, Slot::new(r, 3));
        b.reg(2, r2, &[1, 2]);
        let v = check(&b.build());
        assert!(
            v.iter().any(|v| v.events.contains(&foreign) && v.message.contains("exclude its origin")),
            "{v:#?}"
        );
        assert!(
            v.iter().any(|v| v.events.contains(&behind) && v.message.contains("after delivering seq 4")),
            "{v:#?}"
        );
    }

    // Goal: skipping a member's message in the TRANS is flagged.
    // Method: node 2 sends seq 4 too; node 1 delivers seq 4 but not seq 3 in the TRANS.
    #[test]
    fn flags_gap_from_member() {
        let (mut b, r, [_, _, m3]) = prefix();
        let m4 = b.send(2);
        b.broadcast(2, Slot::new(r, 4), &[1, 2]);
        let r2 = Ring::new(1, 8);
        b.trans(2, r2, &[1, 2]);
        b.deliver(2, m3, Slot::new(r, 3));
        b.deliver(2, m4, Slot::new(r, 4));
        b.reg(2, r2, &[1, 2]);
        b.trans(1, r2, &[1, 2]);
        let bad = b.deliver(1, m4, Slot::new(r, 4));
        b.reg(1, r2, &[1, 2]);
        let v = check(&b.build());
        assert_eq!(v.len(), 1, "{v:#?}");
        assert_eq!(v[0].events[0], bad);
    }
}
