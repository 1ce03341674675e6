//! EVS-1b: no duplication.
//!
//! **Property.** For each node incarnation p and message m, the trace holds at most one
//! `Deliver` of m at p. (A restarted node is a new process: it may deliver m again only if
//! m is new to it, which EVS-1c and the ring rules make impossible anyway.)
//!
//! Source: EVS (Moser et al. 1994), basic delivery; study §9.1 EVS-1b.

use crate::index::{FastMap, Inc, Index, fmt_inc};
use crate::trace::{EventKind, MsgId, Trace};
use crate::{Violation, finish};

pub const ID: &str = "EVS-1b";
pub const STATEMENT: &str = "No duplication: each node incarnation delivers each message at most once.";

/// Check EVS-1b over `trace`.
pub fn check(trace: &Trace) -> Vec<Violation> {
    check_indexed(&Index::new(trace))
}

/// Check EVS-1b using a shared index.
pub fn check_indexed(ix: &Index<'_>) -> Vec<Violation> {
    let mut first: FastMap<(Inc, MsgId), usize> = FastMap::default();
    let mut out = Vec::new();
    for (i, e) in ix.trace().events.iter().enumerate() {
        let EventKind::Deliver { msg, .. } = &e.kind else { continue };
        let inc = e.incarnation_key();
        if let Some(&j) = first.get(&(inc, *msg)) {
            out.push(Violation::new(ID, format!("{} delivers {msg:?} twice", fmt_inc(inc)), vec![j, i]));
        } else {
            first.insert((inc, *msg), i);
        }
    }
    finish(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::TraceBuilder;
    use crate::trace::{Ring, Slot};

    // Goal: one delivery per node passes, also across a restart of another node.
    // Method: multicast to two nodes.
    #[test]
    fn accepts_single_deliveries() {
        let r = Ring::new(1, 4);
        let mut b = TraceBuilder::with_ring(r, &[1, 2]);
        b.multicast(1, Slot::new(r, 1), &[1, 2]);
        assert_eq!(check(&b.build()), vec![]);
    }

    // Goal: a second delivery at the same incarnation is flagged.
    // Method: deliver the same message twice at node 2.
    #[test]
    fn flags_duplicate() {
        let r = Ring::new(1, 4);
        let mut b = TraceBuilder::with_ring(r, &[1, 2]);
        let m = b.multicast(1, Slot::new(r, 1), &[1, 2]);
        let again = b.deliver(2, m, Slot::new(r, 1));
        let v = check(&b.build());
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].events[1], again);
    }
}
