//! CPG-12: lossless flow control.
//!
//! **Property.** Sessions and multicasts as in [`crate::cpg_index`]. Call a `CpgMcast` of
//! session s *counted* when its result is `Ok`, it names s's group, and it came before s
//! asked to leave; number the counted multicasts of s 0, 1, 2, ...
//! - a multicast refused with `TryAgain` is never delivered (flow control refuses, it
//!   never drops silently after accepting: what is accepted is delivered, what is refused
//!   is not);
//! - no connection delivers a message twice;
//! - every counted multicast of a session that receives its leave confchg was delivered to
//!   the session's own connection before that confchg (the message is ordered before the
//!   leave, FIFO);
//! - FIFO without gaps: in a session r receiving messages of session s, the numbers of
//!   s's counted multicasts increase; and when r delivers s's number j and later its
//!   number k > j + 1 with no confchg of r listing s's process in `left` in between, r
//!   delivered every number between.
//!
//! The gap rule relies on Totem's guarantees as this crate states them: a sender's
//! messages are ordered in sending order and never skipped within a ring (TOT-2), messages
//! delivered in a transitional configuration come from its members (COR-6c, EVS-6c), and a
//! node that leaves the receiver's membership is removed from its views (NODEDOWN) before
//! any message of the new ring is delivered (CPG-9). So a message can be missed only while
//! its sender is out of the receiver's view.
//!
//! The self-delivery of senders that stay alive and joined to the end is CPG-7 (liveness).
//! Whether TRY_AGAIN is answered when, and only when, the node is overloaded is not judged:
//! the trace does not show queue levels.
//!
//! Source: study §9.2 CPG-12, §4.5.

use crate::cpg_index::{conn_of, fmt_conn};
use crate::index::{FastMap, FastSet, Index};
use crate::trace::{CpgResult, EventKind, MsgId, Process, Trace};
use crate::{Violation, finish};

pub const ID: &str = "CPG-12";
pub const STATEMENT: &str = "Lossless flow control: a TryAgain multicast is never delivered; nothing is delivered \
     twice to a connection; a leaving sender delivered its accepted messages before its leave confchg; each \
     sender's accepted messages arrive in order and without gaps while it stays in the receiver's view (whether \
     a TryAgain was warranted is not judged: queue levels are not in the trace).";

/// Check CPG-12 over `trace`.
pub fn check(trace: &Trace) -> Vec<Violation> {
    check_indexed(&Index::new(trace))
}

/// Check CPG-12 using a shared index.
pub fn check_indexed(ix: &Index<'_>) -> Vec<Violation> {
    let trace = ix.trace();
    let cpg = ix.cpg();
    let mut out = Vec::new();
    if !cpg.any {
        return out;
    }
    // TryAgain never delivered; no repeats per connection.
    let mut seen: FastSet<(crate::cpg_index::Conn, MsgId)> = FastSet::default();
    for (msg, ds) in &cpg.deliveries {
        let refused = cpg.mcasts.get(msg).filter(|m| m.result == CpgResult::TryAgain);
        for &i in ds {
            let Some(c) = conn_of(&trace.events[i]) else { continue };
            if let Some(m) = refused {
                out.push(Violation::new(
                    ID,
                    format!("{} delivers {msg:?}, whose multicast was refused with TryAgain", fmt_conn(c)),
                    vec![m.event, i],
                ));
            }
            if !seen.insert((c, *msg)) {
                out.push(Violation::new(ID, format!("{} delivers {msg:?} again", fmt_conn(c)), vec![i]));
            }
        }
    }
    // Counted multicasts: message -> (sending session, number).
    let mut counted: FastMap<MsgId, (usize, u64)> = FastMap::default();
    for (sid, s) in cpg.sessions.iter().enumerate() {
        let mut n = 0u64;
        for &i in &s.mcasts {
            let EventKind::CpgMcast { group, msg, result: CpgResult::Ok, .. } = &trace.events[i].kind else {
                continue;
            };
            if group.as_slice() != s.group || s.leave_request.is_some_and(|l| l < i) {
                continue;
            }
            if cpg.mcasts.get(msg).is_some_and(|m| m.event == i) {
                counted.insert(*msg, (sid, n));
                n += 1;
                // Delivered to itself before its leave confchg.
                if let Some(left) = s.leave_confchg {
                    let own = cpg.deliveries.get(msg).is_some_and(|ds| {
                        ds.iter().any(|&d| d > i && d < left && conn_of(&trace.events[d]) == Some(s.conn))
                    });
                    if !own {
                        out.push(Violation::new(
                            ID,
                            format!(
                                "{} multicast {msg:?} but received its leave confchg first",
                                fmt_conn(s.conn)
                            ),
                            vec![i, left],
                        ));
                    }
                }
            }
        }
    }
    // FIFO without gaps, per receiving session.
    for r in &cpg.sessions {
        // Sending session -> (last number, continuous since then, event).
        let mut last: FastMap<usize, (u64, bool, usize)> = FastMap::default();
        let mut by_process: FastMap<Process, Vec<usize>> = FastMap::default();
        for &i in &r.events {
            match &trace.events[i].kind {
                EventKind::CpgConfchg { left, .. } => {
                    for (p, _) in left {
                        for sid in by_process.get(p).into_iter().flatten() {
                            if let Some(state) = last.get_mut(sid) {
                                state.1 = false;
                            }
                        }
                    }
                }
                EventKind::CpgDeliver { msg, .. } => {
                    let Some(&(sid, k)) = counted.get(msg) else { continue };
                    match last.get_mut(&sid) {
                        None => {
                            last.insert(sid, (k, true, i));
                            by_process.entry(cpg.sessions[sid].process()).or_default().push(sid);
                        }
                        Some(state) => {
                            let (j, continuous, at) = *state;
                            if k < j {
                                out.push(Violation::new(
                                    ID,
                                    format!(
                                        "{} delivers message #{k} of {} after its #{j}",
                                        fmt_conn(r.conn),
                                        fmt_conn(cpg.sessions[sid].conn)
                                    ),
                                    vec![at, i],
                                ));
                            } else if k > j + 1 && continuous {
                                out.push(Violation::new(
                                    ID,
                                    format!(
                                        "{} delivers messages #{j} and #{k} of {} but not the {} between",
                                        fmt_conn(r.conn),
                                        fmt_conn(cpg.sessions[sid].conn),
                                        k - j - 1
                                    ),
                                    vec![at, i],
                                ));
                            }
                            if k > j {
                                *state = (k, true, i);
                            }
                        }
                    }
                }
                _ => {}
            }
        }
    }
    finish(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::TraceBuilder;
    use crate::trace::{CpgReason, Ring};

    // Goal: retried sends, a sender leaving after its messages, and a gap across a
    // NODEDOWN removal pass.
    // Method: node 1 gets TryAgain once and retries; node 2 sends and leaves; node 3's
    // message is lost with node 3 removed and re-added.
    #[test]
    fn accepts_lossless_runs() {
        let g = b"g";
        let mut b = TraceBuilder::with_ring(Ring::new(1, 4), &[1, 2, 3]);
        let p = b.cpg_join_group(1, 1, g, 10);
        b.cpg_join_group(2, 1, g, 20);
        let r = b.cpg_join_group(3, 1, g, 30);
        b.cpg_mcast_with(1, 1, g, CpgResult::TryAgain);
        b.cpg_send(1, 1);
        b.cpg_send(2, 1);
        b.cpg_leave_group(2, 1);
        let m0 = b.cpg_mcast(3, 1, g);
        b.cpg_deliver(1, 1, g, r, m0);
        b.cpg_deliver(3, 1, g, r, m0);
        b.cpg_mcast(3, 1, g); // Lost at node 1, which removes and re-adds node 3.
        b.cpg_confchg(1, 1, g, &[p], &[(r, CpgReason::NodeDown)], &[]);
        b.cpg_confchg(1, 1, g, &[p, r], &[], &[(r, CpgReason::NodeUp)]);
        let m2 = b.cpg_mcast(3, 1, g);
        b.cpg_deliver(1, 1, g, r, m2);
        assert_eq!(check(&b.build()), vec![]);
    }

    // Goal: each loss is flagged.
    // Method: a TryAgain message delivered; a duplicate; a reordering (which first shows as
    // a gap, then as the late message); a gap; a sender whose leave confchg overtakes its
    // message.
    #[test]
    fn flags_losses() {
        let g = b"g";
        let mut b = TraceBuilder::with_ring(Ring::new(1, 4), &[1, 2]);
        let p = b.cpg_join_group(1, 1, g, 10);
        let q = b.cpg_join_group(2, 1, g, 20);
        let refused = b.cpg_mcast_with(1, 1, g, CpgResult::TryAgain);
        let mcast_refused = b.trace().events.len() - 1;
        let d_refused = b.cpg_deliver(2, 1, g, p, refused);
        let m0 = b.cpg_send(1, 1);
        let d0 = b.trace().events.len() - 1;
        let dup = b.cpg_deliver(2, 1, g, p, m0);
        let ms: Vec<MsgId> = (1..=5).map(|_| b.cpg_mcast(1, 1, g)).collect();
        for &m in &ms {
            b.cpg_deliver(1, 1, g, p, m);
        }
        let d2 = b.cpg_deliver(2, 1, g, p, ms[1]);
        let d1 = b.cpg_deliver(2, 1, g, p, ms[0]);
        let d3 = b.cpg_deliver(2, 1, g, p, ms[2]);
        let d5 = b.cpg_deliver(2, 1, g, p, ms[4]);
        // Node 2 sends, leaves, and its leave confchg comes before its message.
        let lost = b.cpg_mcast(2, 1, g);
        let mcast_lost = b.trace().events.len() - 1;
        b.cpg_leave(2, 1, g);
        let left = b.cpg_confchg(2, 1, g, &[p], &[(q, CpgReason::Leave)], &[]);
        b.cpg_deliver(1, 1, g, q, lost);
        let v = check(&b.build());
        let summary: Vec<(&[usize], &str)> =
            v.iter().map(|v| (v.events.as_slice(), v.message.as_str())).collect();
        assert_eq!(v.len(), 6, "{summary:#?}");
        let has =
            |events: &[usize], text: &str| v.iter().any(|v| v.events == events && v.message.contains(text));
        assert!(has(&[mcast_refused, d_refused], "TryAgain"));
        assert!(has(&[dup], "again"));
        assert!(has(&[d0, d2], "#0 and #2"));
        assert!(has(&[d2, d1], "#1 of node 1#0 conn 1 after its #2"));
        assert!(has(&[d3, d5], "#3 and #5"));
        assert!(has(&[mcast_lost, left], "leave confchg first"));
    }
}
