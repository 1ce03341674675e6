//! EVS-1c: delivery configuration.
//!
//! **Property.** Let p deliver m with slot (r, s), and let c be p's current configuration
//! (the last `Config` p delivered before the `Deliver`). Then either c is regular with
//! `c.ring == r`, or c is transitional and the last regular configuration p delivered
//! before c has ring r (c's `prev_reg`, derived from p's history; EVS-2b checks that the
//! recorded `prev_ring` agrees). A delivery before any configuration is a violation.
//! Moreover, all deliveries of one message, at every node, carry the same slot.
//!
//! In words: a message is delivered only in the regular configuration in which it was
//! ordered, or in the transitional configuration that immediately follows it.
//!
//! Source: EVS (Moser et al. 1994), delivery configuration; study §9.1 EVS-1c. `ring(m)` of
//! the study is the slot's ring.

use crate::index::{Index, fmt_inc};
use crate::trace::{ConfKind, Trace};
use crate::{Violation, finish};

pub const ID: &str = "EVS-1c";
pub const STATEMENT: &str = "Delivery configuration: m with slot ring r is delivered only in REG r or in the TRANS \
     whose previous REG is r; all deliveries of m carry the same slot.";

/// Check EVS-1c over `trace`.
pub fn check(trace: &Trace) -> Vec<Violation> {
    check_indexed(&Index::new(trace))
}

/// Check EVS-1c using a shared index.
pub fn check_indexed(ix: &Index<'_>) -> Vec<Violation> {
    let mut out = Vec::new();
    for h in ix.history().incarnations.values() {
        for d in &h.unconfigured {
            out.push(Violation::new(
                ID,
                format!("{} delivers {:?} before any configuration", fmt_inc(h.key()), d.msg),
                vec![d.event],
            ));
        }
        for epoch in &h.epochs {
            let c = &epoch.config;
            for d in &epoch.deliveries {
                let ok = match c.kind {
                    ConfKind::Regular => c.ring == d.slot.ring,
                    ConfKind::Transitional => c.prev_reg == Some(d.slot.ring),
                };
                if !ok {
                    out.push(Violation::new(
                        ID,
                        format!(
                            "{} delivers {:?} of ring {:?} in {:?} configuration {:?} (previous regular {:?})",
                            fmt_inc(h.key()),
                            d.msg,
                            d.slot.ring,
                            c.kind,
                            c.ring,
                            c.prev_reg
                        ),
                        vec![c.event, d.event],
                    ));
                }
            }
        }
    }
    for (msg, deliveries) in &ix.messages().deliveries {
        let Some((first, rest)) = deliveries.split_first() else { continue };
        for d in rest.iter().filter(|d| d.slot != first.slot) {
            out.push(Violation::new(
                ID,
                format!("{msg:?} delivered at slot {:?} and at slot {:?}", first.slot, d.slot),
                vec![first.event, d.event],
            ));
        }
    }
    finish(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::TraceBuilder;
    use crate::trace::{Ring, Slot};

    // Goal: deliveries in REG r and in the TRANS after r pass.
    // Method: deliver one message in REG r1, one in the TRANS towards r2.
    #[test]
    fn accepts_reg_and_following_trans() {
        let r1 = Ring::new(1, 4);
        let mut b = TraceBuilder::with_ring(r1, &[1, 2]);
        b.multicast(1, Slot::new(r1, 1), &[1, 2]);
        let m = b.send(2);
        b.broadcast(2, Slot::new(r1, 2), &[1, 2]);
        let r2 = Ring::new(1, 8);
        for n in [1, 2] {
            b.trans(n, r2, &[1, 2]);
            b.deliver(n, m, Slot::new(r1, 2));
            b.reg(n, r2, &[1, 2]);
        }
        assert_eq!(check(&b.build()), vec![]);
    }

    // Goal: a message delivered in the wrong configuration, before any configuration, or
    // at two different slots, is flagged.
    // Method: deliver an r1 message after REG r2; deliver before configs; disagree on slot.
    #[test]
    fn flags_wrong_configuration() {
        let mut b = TraceBuilder::new();
        b.start(1);
        b.start(2);
        let r1 = Ring::new(1, 4);
        let m0 = b.send(1);
        let early = b.deliver(1, m0, Slot::new(r1, 1));
        b.form(r1, &[1, 2]);
        let m = b.send(1);
        b.broadcast(1, Slot::new(r1, 2), &[1, 2]);
        b.deliver(1, m, Slot::new(r1, 2));
        let r2 = Ring::new(1, 8);
        b.form(r2, &[1, 2]);
        let late = b.deliver(2, m, Slot::new(r1, 2));
        let other = b.deliver(2, m0, Slot::new(r2, 7));
        let v = check(&b.build());
        assert_eq!(v.len(), 3, "{v:#?}");
        assert_eq!(v[0].events, vec![early]);
        assert!(v.iter().any(|v| v.events.last() == Some(&late)));
        assert!(v.iter().any(|v| v.events == vec![early, other] && v.message.contains("at slot")));
    }
}
