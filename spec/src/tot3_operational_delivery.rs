//! TOT-3: no delivery outside OPERATIONAL.
//!
//! **Property.** Every `Deliver` event happens while its node incarnation is in the
//! OPERATIONAL state, as recorded by the incarnation's `State` events: the state is the `to`
//! of the last `State` event of the incarnation before the delivery, or, before its first
//! `State` event, that event's `from`. Messages delivered as part of OPERATIONAL entry (the
//! old ring's messages and the transitional configuration's, study §1.8.6) are delivered
//! after the RECOVERY -> OPERATIONAL `State` event, which the recorder emits first.
//!
//! An incarnation without any `State` event (a recorder without the state probe) is not
//! judged.
//!
//! Source: Totem (Amir et al. 1995); study §1.8.6 and §9.1 TOT-3.

use crate::index::{Index, ProtoStates, fmt_inc};
use crate::trace::{EventKind, ProtoState, Trace};
use crate::{Violation, finish};

pub const ID: &str = "TOT-3";
pub const STATEMENT: &str = "No delivery outside OPERATIONAL: a node delivers messages only while its recorded protocol state is OPERATIONAL.";

/// Check TOT-3 over `trace`.
pub fn check(trace: &Trace) -> Vec<Violation> {
    check_indexed(&Index::new(trace))
}

/// Check TOT-3 using a shared index.
pub fn check_indexed(ix: &Index<'_>) -> Vec<Violation> {
    let trace = ix.trace();
    let mut states = ProtoStates::new(trace);
    if states.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for (i, e) in trace.events.iter().enumerate() {
        if let EventKind::Deliver { msg, .. } = &e.kind
            && let Some((state, set_by)) = states.state(e.incarnation_key())
            && state != ProtoState::Operational
        {
            let mut events: Vec<usize> = set_by.into_iter().collect();
            events.push(i);
            out.push(Violation::new(
                ID,
                format!("{} delivers {msg:?} in state {state:?}", fmt_inc(e.incarnation_key())),
                events,
            ));
        }
        states.observe(i, e);
    }
    finish(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::TraceBuilder;
    use crate::trace::{Ring, Slot};

    // Goal: deliveries in OPERATIONAL, including those right after OPERATIONAL entry, pass;
    // incarnations without state probes are not judged.
    // Method: install a ring with probes, multicast; node 3 (no probes) delivers too.
    #[test]
    fn accepts_operational_deliveries() {
        let r = Ring::new(1, 4);
        let mut b = TraceBuilder::new();
        b.start(1);
        b.start(2);
        b.install(r, &[1, 2]);
        b.multicast(1, Slot::new(r, 1), &[1, 2]);
        b.start(3);
        let m = b.send(3);
        b.deliver(3, m, Slot::new(r, 2));
        assert_eq!(check(&b.build()), vec![]);
    }

    // Goal: deliveries in GATHER, and before the first State event when that event says
    // the node was not OPERATIONAL, are flagged.
    // Method: node 1 enters GATHER then delivers; node 2 delivers before a State event
    // whose `from` is RECOVERY.
    #[test]
    fn flags_delivery_outside_operational() {
        let r = Ring::new(1, 4);
        let mut b = TraceBuilder::with_ring(r, &[1, 2]);
        let m = b.send(1);
        b.broadcast(1, Slot::new(r, 1), &[1, 2]);
        let gather = b.move_to(1, ProtoState::Gather).unwrap_or_default();
        let bad1 = b.deliver(1, m, Slot::new(r, 1));
        let bad2 = b.deliver(2, m, Slot::new(r, 1));
        b.state(2, ProtoState::Recovery, ProtoState::Operational);
        let v = check(&b.build());
        assert_eq!(v.len(), 2, "{v:#?}");
        assert_eq!(v[0].events, vec![gather, bad1]);
        assert!(v[0].message.contains("in state Gather"));
        assert_eq!(v[1].events, vec![bad2]);
        assert!(v[1].message.contains("in state Recovery"));
    }
}
