//! CPG-13: large messages and integrity.
//!
//! **Property.** Every `CpgDeliver` of message m, at any connection:
//! - follows a `CpgMcast` of m by m's origin incarnation (the first one, see
//!   [`crate::cpg_index::CpgIndex::mcasts`]);
//! - whose result was `Ok`: a multicast answered `Interrupt` (a large message cut by a
//!   view change) or with any other error is never delivered, in whole or in part. (A
//!   multicast refused with `TryAgain` that is delivered anyway is CPG-12's violation.);
//! - made while the sending connection had an open session, and names as `sender` that
//!   session's process (origin node, session pid).
//!
//! The study's "large messages arrive whole, byte-identical; fragments of different
//! senders never mix" is about payload bytes, which this vocabulary does not carry: a
//! message is its [`crate::trace::MsgId`], and the simulator checks every delivered
//! payload against what was sent. What remains here is the all-or-nothing half: a message
//! is delivered only if the sender was told it went out. That it was sent to the group it
//! is delivered in is CPG-15.
//!
//! Source: study §9.2 CPG-13, §4.2 (large messages).

use crate::cpg_index::{conn_of, fmt_conn};
use crate::index::Index;
use crate::trace::{CpgResult, EventKind, Process, Trace};
use crate::{Violation, finish};

pub const ID: &str = "CPG-13";
pub const STATEMENT: &str = "Integrity (large messages): a delivered message was multicast before by its origin \
     with result Ok (never Interrupt) from a joined connection, and names that connection's process as sender \
     (payload wholeness is checked by the simulator).";

/// Check CPG-13 over `trace`.
pub fn check(trace: &Trace) -> Vec<Violation> {
    check_indexed(&Index::new(trace))
}

/// Check CPG-13 using a shared index.
pub fn check_indexed(ix: &Index<'_>) -> Vec<Violation> {
    let trace = ix.trace();
    let cpg = ix.cpg();
    let mut out = Vec::new();
    for (i, e) in trace.events.iter().enumerate() {
        let EventKind::CpgDeliver { sender, msg, .. } = &e.kind else { continue };
        let Some(c) = conn_of(e) else { continue };
        let Some(mcast) = cpg.mcasts.get(msg) else {
            out.push(Violation::new(
                ID,
                format!("{} delivers {msg:?}, which its origin never multicast", fmt_conn(c)),
                vec![i],
            ));
            continue;
        };
        if mcast.event > i {
            out.push(Violation::new(
                ID,
                format!("{} delivers {msg:?} before it is multicast", fmt_conn(c)),
                vec![i, mcast.event],
            ));
            continue;
        }
        match mcast.result {
            CpgResult::Ok => {}
            CpgResult::TryAgain => continue,
            r => {
                out.push(Violation::new(
                    ID,
                    format!("{} delivers {msg:?}, whose multicast failed with {r:?}", fmt_conn(c)),
                    vec![mcast.event, i],
                ));
                continue;
            }
        }
        match mcast.session.map(|s| &cpg.sessions[s]) {
            None => out.push(Violation::new(
                ID,
                format!(
                    "{} delivers {msg:?}, multicast by {} while in no group",
                    fmt_conn(c),
                    fmt_conn(mcast.conn)
                ),
                vec![mcast.event, i],
            )),
            Some(s) => {
                let expect = Process::new(mcast.conn.0, s.pid);
                if *sender != expect {
                    out.push(Violation::new(
                        ID,
                        format!(
                            "{} delivers {msg:?} as sent by {sender:?}, but {expect:?} sent it",
                            fmt_conn(c)
                        ),
                        vec![mcast.event, i],
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
    use crate::trace::{MsgId, Ring};

    // Goal: ordinary traffic passes, and an interrupted message that is not delivered is
    // fine.
    // Method: two members; one message Ok, one Interrupt (never delivered).
    #[test]
    fn accepts_sent_messages() {
        let mut b = TraceBuilder::with_ring(Ring::new(1, 4), &[1, 2]);
        b.cpg_join_group(1, 1, b"g", 10);
        b.cpg_join_group(2, 1, b"g", 20);
        b.cpg_send(1, 1);
        b.cpg_mcast_with(2, 1, b"g", CpgResult::Interrupt);
        b.cpg_send(2, 1);
        assert_eq!(check(&b.build()), vec![]);
    }

    // Goal: a made-up message, an interrupted message delivered, a wrong sender, and a
    // message multicast outside any group then delivered are flagged.
    // Method: build each by hand.
    #[test]
    fn flags_bad_deliveries() {
        let g = b"g";
        let mut b = TraceBuilder::with_ring(Ring::new(1, 4), &[1, 2]);
        let p = b.cpg_join_group(1, 1, g, 10);
        let q = b.cpg_join_group(2, 1, g, 20);
        let ghost = b.cpg_deliver(1, 1, g, q, MsgId::new(2, 0, 99));
        let m = b.cpg_mcast_with(2, 1, g, CpgResult::Interrupt);
        let cut = b.cpg_deliver(1, 1, g, q, m);
        let m2 = b.cpg_mcast(2, 1, g);
        let forged = b.cpg_deliver(1, 1, g, p, m2);
        let m3 = b.cpg_mcast(2, 5, g);
        let unjoined = b.cpg_deliver(1, 1, g, Process::new(2, 0), m3);
        let v = check(&b.build());
        let summary: Vec<(&[usize], &str)> =
            v.iter().map(|v| (v.events.as_slice(), v.message.as_str())).collect();
        assert_eq!(v.len(), 4, "{summary:#?}");
        assert_eq!(v[0].events, vec![ghost]);
        assert!(v[1].events.contains(&cut) && v[1].message.contains("Interrupt"));
        assert!(v[2].events.contains(&forged) && v[2].message.contains("but 2:20 sent it"));
        assert!(v[3].events.contains(&unjoined) && v[3].message.contains("no group"));
    }
}
