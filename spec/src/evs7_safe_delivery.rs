//! EVS-7: safe delivery.
//!
//! **Property.** Let node incarnation p deliver message m with slot (r, s) under
//! `Guarantee::Safe`, and let c be p's current configuration. Then every member of c (the
//! regular members if c is regular, the transitional members if c is transitional) has a
//! `Receive` of slot (r, s), at any of its incarnations, earlier in the trace than the
//! delivery.
//!
//! Only the slot that completed m is checked (a fragmented message's earlier fragments
//! have lower seqs, and the Totem safe rule, aru-based, covers them together). The second
//! half of EVS's safe delivery (every member that does not crash delivers m) is covered by
//! EVS-4 and LIVE-2, not here. A safe delivery outside any configuration is EVS-1c's
//! business.
//!
//! Source: EVS (Moser et al. 1994), safe delivery; study §9.1 EVS-7a/7b.

use crate::index::{FastMap, FastSet, Index, fmt_inc};
use crate::trace::{EventKind, Guarantee, Node, Slot, Trace};
use crate::{Violation, finish};

pub const ID: &str = "EVS-7";
pub const STATEMENT: &str = "Safe delivery: when p delivers m as SAFE in configuration c, every member of c has \
     already received m's slot.";

/// Check EVS-7 over `trace`.
pub fn check(trace: &Trace) -> Vec<Violation> {
    check_indexed(&Index::new(trace))
}

/// Check EVS-7 using a shared index.
pub fn check_indexed(ix: &Index<'_>) -> Vec<Violation> {
    let history = ix.history();
    let safe_slots: FastSet<Slot> = history
        .incarnations
        .values()
        .flat_map(|h| h.epochs.iter().flat_map(|e| e.deliveries.iter()))
        .filter(|d| d.guarantee == Guarantee::Safe)
        .map(|d| d.slot)
        .collect();
    if safe_slots.is_empty() {
        return Vec::new();
    }
    let mut received: FastMap<(Node, Slot), usize> = FastMap::default();
    for (i, e) in ix.trace().events.iter().enumerate() {
        if let EventKind::Receive { slot } = &e.kind
            && safe_slots.contains(slot)
        {
            received.entry((e.node, *slot)).or_insert(i);
        }
    }
    let mut out = Vec::new();
    for h in history.incarnations.values() {
        for epoch in &h.epochs {
            let c = &epoch.config;
            for d in epoch.deliveries.iter().filter(|d| d.guarantee == Guarantee::Safe) {
                let missing: Vec<Node> = c
                    .members
                    .iter()
                    .copied()
                    .filter(|q| received.get(&(*q, d.slot)).is_none_or(|&at| at > d.event))
                    .collect();
                if !missing.is_empty() {
                    out.push(Violation::new(
                        ID,
                        format!(
                            "{} delivers {:?} as safe in {:?} {:?} before members {missing:?} received {:?}",
                            fmt_inc(h.key()),
                            d.msg,
                            c.kind,
                            c.ring,
                            d.slot
                        ),
                        vec![c.event, d.event],
                    ));
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

    // Goal: safe delivery after everyone received passes, also in a transitional
    // configuration that excludes a node that never received.
    // Method: slot 1 reaches all before delivery; slot 2 reaches 1 and 2 only, and is
    // delivered in TRANS {1,2}.
    #[test]
    fn accepts_safe_after_receipt() {
        let r = Ring::new(1, 4);
        let mut b = TraceBuilder::with_ring(r, &[1, 2, 3]);
        let m = b.send_safe(1);
        b.broadcast(1, Slot::new(r, 1), &[1, 2, 3]);
        for n in [1, 2, 3] {
            b.deliver_safe(n, m, Slot::new(r, 1));
        }
        let m2 = b.send_safe(2);
        b.broadcast(2, Slot::new(r, 2), &[1, 2]);
        let r2 = Ring::new(1, 8);
        for n in [1, 2] {
            b.trans(n, r2, &[1, 2]);
            b.deliver_safe(n, m2, Slot::new(r, 2));
            b.reg(n, r2, &[1, 2]);
        }
        assert_eq!(check(&b.build()), vec![]);
    }

    // Goal: a safe delivery before some member received the slot is flagged.
    // Method: node 3 receives slot 1 only after node 1 delivers it.
    #[test]
    fn flags_early_safe_delivery() {
        let r = Ring::new(1, 4);
        let mut b = TraceBuilder::with_ring(r, &[1, 2, 3]);
        let m = b.send_safe(1);
        b.broadcast(1, Slot::new(r, 1), &[1, 2]);
        let bad = b.deliver_safe(1, m, Slot::new(r, 1));
        b.receive(3, Slot::new(r, 1));
        b.deliver_safe(3, m, Slot::new(r, 1));
        let v = check(&b.build());
        assert_eq!(v.len(), 1, "{v:#?}");
        assert_eq!(v[0].events[1], bad);
        assert!(v[0].message.contains("[3]"));
    }
}
