//! EVS-5: causal delivery.
//!
//! **Property.** Say m1 directly precedes m2 when
//! - (sender order) m1 and m2 were sent by the same node incarnation and m1 has the lower
//!   counter (was sent first), or
//! - (delivered before sent) m2's sender incarnation delivered m1 before it sent m2.
//!
//! If m1 directly precedes m2, both are delivered at node incarnation p with the same slot
//! ring, then p delivers m1 before m2.
//!
//! Only direct precedence is checked, not its transitive closure: the closure adds nothing
//! for a protocol that satisfies EVS-6a (one total order), and it would cost more than
//! O(n log n). The restriction to one ring follows EVS: causality is only guaranteed within
//! a configuration.
//!
//! Cost: O(Σ_m deliveries(m)²), i.e. O(n · k) for k nodes.
//!
//! Source: EVS (Moser et al. 1994), causal delivery; study §9.1 EVS-5.

use crate::index::{FastMap, FastSet, Inc, Index, fmt_inc};
use crate::trace::{MsgId, Ring, Trace};
use crate::{Violation, finish};

pub const ID: &str = "EVS-5";
pub const STATEMENT: &str = "Causal order: if m1 was sent before m2 by the same incarnation, or delivered at m2's \
     sender before m2 was sent, and both have the same ring, every node delivering both delivers m1 first.";

/// Check EVS-5 over `trace`.
pub fn check(trace: &Trace) -> Vec<Violation> {
    check_indexed(&Index::new(trace))
}

enum Step {
    Deliver(MsgId),
    Send(MsgId),
}

/// Check EVS-5 using a shared index.
pub fn check_indexed(ix: &Index<'_>) -> Vec<Violation> {
    let history = ix.history();
    let messages = ix.messages();
    let mut out = Vec::new();

    // Sender order: per delivering incarnation and (sender, ring), the highest counter
    // delivered so far must never exceed a later delivery's counter.
    let mut steps: FastMap<Inc, Vec<(usize, Step)>> = FastMap::default();
    for h in history.incarnations.values() {
        let mut highest: FastMap<(Inc, Ring), (u64, MsgId, usize)> = FastMap::default();
        let own = steps.entry(h.key()).or_default();
        for d in h.distinct_deliveries() {
            own.push((d.event, Step::Deliver(d.msg)));
            let key = (d.msg.sender(), d.slot.ring);
            match highest.get(&key) {
                Some(&(counter, m1, e1)) if counter > d.msg.counter => out.push(Violation::new(
                    ID,
                    format!(
                        "{} delivers {m1:?} before {:?}, which its sender sent first",
                        fmt_inc(h.key()),
                        d.msg
                    ),
                    vec![e1, d.event],
                )),
                Some(&(counter, ..)) if counter == d.msg.counter => {}
                _ => {
                    highest.insert(key, (d.msg.counter, d.msg, d.event));
                }
            }
        }
    }

    // Delivered before sent: walk each sender's deliveries and sends in its order. For every
    // incarnation p and ring r, keep the latest position at which p delivered one of the
    // messages the sender has delivered so far; a message the sender then sends must come
    // later at p.
    for (msg, send) in &messages.sends {
        steps.entry(msg.sender()).or_default().push((send.event, Step::Send(*msg)));
    }
    for sequence in steps.values_mut() {
        sequence.sort_unstable_by_key(|(event, _)| *event);
    }
    let mut keys: Vec<&Inc> = steps.keys().collect();
    keys.sort_unstable();
    let mut seen: FastSet<Inc> = FastSet::default();
    for sender in keys {
        let Some(sequence) = steps.get(sender) else { continue };
        // (p, ring) -> (position at p, m1, event where the sender delivered m1)
        let mut latest: FastMap<(Inc, Ring), (usize, MsgId, usize)> = FastMap::default();
        for &(event, ref step) in sequence {
            match step {
                Step::Deliver(m1) => {
                    seen.clear();
                    for d in messages.deliveries.get(m1).into_iter().flatten() {
                        if !seen.insert(d.inc) {
                            continue;
                        }
                        let entry = latest.entry((d.inc, d.slot.ring)).or_insert((d.event, *m1, event));
                        if d.event > entry.0 {
                            *entry = (d.event, *m1, event);
                        }
                    }
                }
                Step::Send(m2) => {
                    seen.clear();
                    for d in messages.deliveries.get(m2).into_iter().flatten() {
                        if !seen.insert(d.inc) {
                            continue;
                        }
                        if let Some(&(position, m1, at_sender)) = latest.get(&(d.inc, d.slot.ring))
                            && position > d.event
                        {
                            out.push(Violation::new(
                                ID,
                                format!(
                                    "{} delivers {m2:?} before {m1:?}, which {} delivered before sending {m2:?}",
                                    fmt_inc(d.inc),
                                    fmt_inc(*sender)
                                ),
                                vec![at_sender, event, d.event, position],
                            ));
                        }
                    }
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
    use crate::trace::Slot;

    // Goal: a reply ordered after the message it answers passes.
    // Method: node 1 sends m1; node 2 delivers it, then sends m2; all deliver m1, m2.
    #[test]
    fn accepts_causal_order() {
        let r = Ring::new(1, 4);
        let mut b = TraceBuilder::with_ring(r, &[1, 2, 3]);
        b.multicast(1, Slot::new(r, 1), &[1, 2, 3]);
        b.multicast(2, Slot::new(r, 2), &[1, 2, 3]);
        b.multicast(2, Slot::new(r, 3), &[1, 2, 3]);
        assert_eq!(check(&b.build()), vec![]);
    }

    // Goal: a reply delivered before its cause is flagged.
    // Method: node 2 delivers m1 then sends m2; node 3 delivers m2 before m1.
    #[test]
    fn flags_reply_before_cause() {
        let r = Ring::new(1, 4);
        let mut b = TraceBuilder::with_ring(r, &[1, 2, 3]);
        let m1 = b.send(1);
        b.deliver(2, m1, Slot::new(r, 1));
        let m2 = b.send(2);
        let early = b.deliver(3, m2, Slot::new(r, 2));
        b.deliver(3, m1, Slot::new(r, 1));
        let v = check(&b.build());
        assert_eq!(v.len(), 1, "{v:#?}");
        assert!(v[0].events.contains(&early));
    }

    // Goal: two messages of one sender delivered out of sending order are flagged.
    // Method: node 2 delivers node 1's second message before its first.
    #[test]
    fn flags_sender_order() {
        let r = Ring::new(1, 4);
        let mut b = TraceBuilder::with_ring(r, &[1, 2]);
        let a = b.send(1);
        let c = b.send(1);
        b.deliver(2, c, Slot::new(r, 2));
        let late = b.deliver(2, a, Slot::new(r, 1));
        let v = check(&b.build());
        assert_eq!(v.len(), 1, "{v:#?}");
        assert_eq!(v[0].events.last(), Some(&late));
    }
}
