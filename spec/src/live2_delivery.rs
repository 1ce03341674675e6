//! LIVE-2: delivery of the survivors' messages.
//!
//! **Property.** Given a [`LivenessWindow`] with live set S and deadline D, call survivor
//! the last incarnation of each node of S if it has not crashed nor left, and the survivor's final
//! ring the ring of the last regular configuration it delivered. For every message m sent
//! by a survivor o at a time at most D:
//! - (self-delivery) o delivers m by the end of the trace;
//! - (everyone) if m was sent after o delivered its final regular configuration, or some
//!   survivor delivered m with slot ring equal to o's final ring, then every survivor
//!   delivers m by the end of the trace.
//!
//! Messages of crashed (or cleanly departed) incarnations are excluded, and so are messages a survivor sent and
//! delivered in an earlier ring: EVS lets such a message stay confined to the members of
//! that ring (a partition that later merged), so "delivered everywhere" is only required
//! of messages of the final ring. The first rule is Corosync's COR-3: a sender never drops
//! a message it accepted; if a ring change intervenes, the message is sent in a later ring.
//!
//! The caller must stop sending early enough (or set D early enough) for the messages to
//! be delivered before the trace ends.
//!
//! Source: study §9.1 LIVE-2 and COR-3.

use crate::index::{FastSet, Inc, Index, fmt_inc, node_set};
use crate::trace::{ConfKind, MsgId, Node, Ring, Trace};
use crate::{LivenessWindow, Violation, finish};
use std::collections::BTreeMap;

pub const ID: &str = "LIVE-2";
pub const STATEMENT: &str = "Delivery: every message a surviving incarnation of S sent by the deadline is delivered by \
     its sender, and, if it belongs to the final ring, by every survivor.";

/// Check LIVE-2 over `trace`.
pub fn check(trace: &Trace, window: &LivenessWindow) -> Vec<Violation> {
    check_indexed(&Index::new(trace), window)
}

struct Survivor {
    node: Node,
    final_reg: Option<(Ring, usize)>,
    delivered: FastSet<MsgId>,
}

/// Check LIVE-2 using a shared index.
pub fn check_indexed(ix: &Index<'_>, window: &LivenessWindow) -> Vec<Violation> {
    let history = ix.history();
    let messages = ix.messages();
    let mut survivors: BTreeMap<Inc, Survivor> = BTreeMap::new();
    for n in node_set(&window.live) {
        let Some(h) = history.last_incarnation(n) else { continue };
        if h.end().is_some() {
            continue;
        }
        let final_reg = h
            .epochs
            .iter()
            .rev()
            .map(|e| &e.config)
            .find(|c| c.kind == ConfKind::Regular)
            .map(|c| (c.ring, c.event));
        let delivered = h.deliveries().map(|d| d.msg).collect();
        survivors.insert(h.key(), Survivor { node: n, final_reg, delivered });
    }
    let mut out = Vec::new();
    for (msg, send) in &messages.sends {
        let Some(o) = survivors.get(&msg.sender()) else { continue };
        if send.time > window.deadline {
            continue;
        }
        if !o.delivered.contains(msg) {
            out.push(Violation::new(
                ID,
                format!("{} never delivers its own {msg:?}", fmt_inc(msg.sender())),
                vec![send.event],
            ));
        }
        let Some((final_ring, final_event)) = o.final_reg else { continue };
        let in_final_ring = send.event > final_event
            || messages.deliveries.get(msg).is_some_and(|ds| {
                ds.iter().any(|d| d.slot.ring == final_ring && survivors.contains_key(&d.inc))
            });
        if !in_final_ring {
            continue;
        }
        let missing: Vec<Node> = survivors
            .iter()
            .filter(|(inc, s)| **inc != msg.sender() && !s.delivered.contains(msg))
            .map(|(_, s)| s.node)
            .collect();
        if !missing.is_empty() {
            out.push(Violation::new(
                ID,
                format!("{msg:?} of the final ring {final_ring:?} is never delivered at nodes {missing:?}"),
                vec![send.event],
            ));
        }
    }
    finish(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::TraceBuilder;
    use crate::trace::Slot;

    // Goal: a message confined to an old partition, and messages of the final ring
    // delivered everywhere, pass; a crashed sender's undelivered message is ignored.
    // Method: {1,2} | {3}; node 1's message is delivered in {1,2}; node 3#0 crashes with
    // a message pending; after the merge node 2's message reaches all.
    #[test]
    fn accepts_confined_and_final_messages() {
        let r12 = Ring::new(1, 4);
        let mut b = TraceBuilder::with_ring(r12, &[1, 2]);
        b.start(3);
        b.send(3);
        b.crash(3);
        b.start(3);
        b.form(Ring::new(3, 8), &[3]);
        b.multicast(1, Slot::new(r12, 1), &[1, 2]);
        let r = Ring::new(1, 12);
        b.form(r, &[1, 2, 3]);
        b.multicast(2, Slot::new(r, 1), &[1, 2, 3]);
        let w = LivenessWindow { healed_at: 0, deadline: u64::MAX, live: vec![1, 2, 3] };
        assert_eq!(check(&b.build(), &w), vec![]);
    }

    // Goal: a survivor's message lost by its sender, and a final-ring message missing at
    // a survivor, are flagged.
    // Method: node 1 sends and never delivers; node 2's final-ring message misses node 3.
    #[test]
    fn flags_lost_messages() {
        let r = Ring::new(1, 4);
        let mut b = TraceBuilder::with_ring(r, &[1, 2, 3]);
        b.send(1);
        let lost_send = b.trace().events.len() - 1;
        b.multicast(2, Slot::new(r, 1), &[1, 2]);
        let w = LivenessWindow { healed_at: 0, deadline: u64::MAX, live: vec![1, 2, 3] };
        let v = check(&b.build(), &w);
        assert_eq!(v.len(), 3, "{v:#?}");
        assert!(v.iter().any(|v| v.events == vec![lost_send] && v.message.contains("own")));
        assert!(v.iter().any(|v| v.events == vec![lost_send] && v.message.contains("nodes [2, 3]")));
        assert!(v.iter().any(|v| v.message.contains("nodes [3]")));
    }

    // Goal: a node that left cleanly is not a survivor: its undelivered message is not
    // judged, and nobody has to deliver the others' messages to it.
    // Method: node 3 sends, leaves; node 1 multicasts to {1,2} only.
    #[test]
    fn left_node_is_not_a_survivor() {
        let r = Ring::new(1, 4);
        let mut b = TraceBuilder::with_ring(r, &[1, 2, 3]);
        b.send(3);
        b.leave(3);
        let r2 = Ring::new(1, 8);
        b.form(r2, &[1, 2]);
        b.multicast(1, Slot::new(r2, 1), &[1, 2]);
        let w = LivenessWindow { healed_at: 0, deadline: u64::MAX, live: vec![1, 2, 3] };
        assert_eq!(check(&b.build(), &w), vec![]);
    }
}
