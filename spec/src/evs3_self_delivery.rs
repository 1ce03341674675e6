//! EVS-3: self-delivery.
//!
//! **Property.** Let m be a message sent by node incarnation p, and let r be the ring of the
//! slot at which m is delivered (by anyone; EVS-1c makes all deliveries agree). If p
//! delivered the regular configuration r and later delivers another regular configuration
//! (the one that follows r at p), then p delivered m before that later regular
//! configuration, that is, in r or in the transitional configuration between.
//!
//! Messages that nobody delivered, and senders that never delivered r (or crashed before
//! leaving it), are not judged here; the liveness side (a sender that survives eventually
//! delivers everything it sent, COR-3) is LIVE-2.
//!
//! Source: EVS (Moser et al. 1994), self-delivery; study §9.1 EVS-3.

use crate::index::{FastMap, Inc, Index, fmt_inc};
use crate::trace::{ConfKind, Ring, Trace};
use crate::{Violation, finish};

pub const ID: &str = "EVS-3";
pub const STATEMENT: &str = "Self-delivery: if p's message m was ordered in ring r and p delivers the REG that \
     follows REG r, p delivered m in r or in the TRANS between.";

/// Check EVS-3 over `trace`.
pub fn check(trace: &Trace) -> Vec<Violation> {
    check_indexed(&Index::new(trace))
}

/// Check EVS-3 using a shared index.
pub fn check_indexed(ix: &Index<'_>) -> Vec<Violation> {
    let history = ix.history();
    let messages = ix.messages();
    // For each incarnation and regular ring it delivered: the event index of the next
    // regular configuration it delivered, if any.
    let mut next_reg: FastMap<(Inc, Ring), Option<usize>> = FastMap::default();
    for h in history.incarnations.values() {
        let regs: Vec<_> =
            h.epochs.iter().map(|e| &e.config).filter(|c| c.kind == ConfKind::Regular).collect();
        for (k, c) in regs.iter().enumerate() {
            next_reg.entry((h.key(), c.ring)).or_insert(regs.get(k + 1).map(|n| n.event));
        }
    }
    let mut out = Vec::new();
    for (msg, send) in &messages.sends {
        let Some(first) = messages.first_delivery(msg) else { continue };
        let sender = msg.sender();
        let ring = first.slot.ring;
        let Some(&Some(next)) = next_reg.get(&(sender, ring)) else { continue };
        let own = messages.deliveries.get(msg).and_then(|ds| ds.iter().find(|d| d.inc == sender));
        match own {
            Some(d) if d.event < next => {}
            _ => out.push(Violation::new(
                ID,
                format!(
                    "{} sent {msg:?} (ordered in {ring:?}) but left {ring:?} without delivering it",
                    fmt_inc(sender)
                ),
                vec![send.event, next],
            )),
        }
    }
    finish(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::TraceBuilder;
    use crate::trace::Slot;

    // Goal: a sender delivering its message in the transitional configuration passes.
    // Method: node 2's message is delivered in the TRANS towards r2.
    #[test]
    fn accepts_delivery_in_trans() {
        let r1 = Ring::new(1, 4);
        let mut b = TraceBuilder::with_ring(r1, &[1, 2]);
        let m = b.send(2);
        b.broadcast(2, Slot::new(r1, 1), &[1, 2]);
        let r2 = Ring::new(1, 8);
        for n in [1, 2] {
            b.trans(n, r2, &[1, 2]);
            b.deliver(n, m, Slot::new(r1, 1));
            b.reg(n, r2, &[1, 2]);
        }
        assert_eq!(check(&b.build()), vec![]);
    }

    // Goal: a sender moving on without delivering its own message is flagged.
    // Method: node 1 delivers node 2's message; node 2 forms the next ring without it.
    #[test]
    fn flags_missing_self_delivery() {
        let r1 = Ring::new(1, 4);
        let mut b = TraceBuilder::with_ring(r1, &[1, 2]);
        let m = b.send(2);
        let send = b.trace().events.len() - 1;
        b.broadcast(2, Slot::new(r1, 1), &[1, 2]);
        b.deliver(1, m, Slot::new(r1, 1));
        b.form(Ring::new(1, 8), &[1, 2]);
        let v = check(&b.build());
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].events[0], send);
    }
}
