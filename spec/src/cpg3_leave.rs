//! CPG-3: leave.
//!
//! **Property.** For every connection c (sessions as in [`crate::cpg_index`]):
//! - a `CpgLeave` of group G on c returns `Ok` only if c has an open session of G that
//!   already received its join confchg and has not asked to leave yet (Corosync answers
//!   BUSY while the join is pending and NOT_EXIST otherwise);
//! - after the confchg that lists c's own process in `left` (its leave confchg), c
//!   receives no further confchg or delivery of G, unless it joins G again (a new session);
//! - after that leave confchg, a `CpgJoin` on c (with no session open) succeeds: its result
//!   is `Ok`, `TryAgain` (flow control during a synchronization), `NameTooLong`, or
//!   `Exist` when another connection of the incarnation holds the same pid and group.
//!
//! The last two rules are the intended behaviour; upstream Corosync (since 2019, up to
//! v3.1.10 at least) never resets the leaving connection, so it keeps receiving the group's
//! events and a re-join answers BUSY forever (study §4.3, observed defect). That the leave
//! confchg eventually arrives is liveness (CPG-11 reports leaves still pending at the end
//! of a healed run). Which reason the leave confchg gives is CPG-8's business.
//!
//! Source: study §9.2 CPG-3, §4.3 (LEAVE handling, PROCLEAVE delivery).

use crate::cpg_index::{StrayKind, conn_of, fmt_conn};
use crate::index::Index;
use crate::trace::{CpgResult, EventKind, Trace, fmt_group};
use crate::{Violation, finish};

pub const ID: &str = "CPG-3";
pub const STATEMENT: &str = "Leave: CpgLeave is Ok only for the connection's joined group; after its leave confchg \
     the connection gets nothing more of the group, and a later CpgJoin on it succeeds (Ok, TryAgain, or Exist \
     when another connection holds the same pid and group; never Busy).";

/// Check CPG-3 over `trace`.
pub fn check(trace: &Trace) -> Vec<Violation> {
    check_indexed(&Index::new(trace))
}

/// Check CPG-3 using a shared index.
pub fn check_indexed(ix: &Index<'_>) -> Vec<Violation> {
    let trace = ix.trace();
    let cpg = ix.cpg();
    let mut out = Vec::new();
    if !cpg.any {
        return out;
    }
    let conflicts = cpg.join_conflicts(trace);
    for (c, h) in &cpg.conns {
        for &i in &h.events {
            if h.end.is_some_and(|e| i > e) {
                break;
            }
            match &trace.events[i].kind {
                EventKind::CpgLeave { group, result: CpgResult::Ok, .. } => {
                    let open = cpg.open_session_at(*c, i).map(|s| &cpg.sessions[s]);
                    let why = match open {
                        None => Some("while in no group".to_string()),
                        Some(s) if s.group != group.as_slice() => {
                            Some(format!("while in {}", fmt_group(s.group)))
                        }
                        Some(s) if s.join_confchg.is_none_or(|j| j > i) => {
                            Some("before its join confchg".to_string())
                        }
                        Some(s) if s.leave_request != Some(i) => Some("a second time".to_string()),
                        Some(_) => None,
                    };
                    if let Some(why) = why {
                        let mut events: Vec<usize> = open.map(|s| s.join).into_iter().collect();
                        events.push(i);
                        out.push(Violation::new(
                            ID,
                            format!("{} leaves {} with Ok {why}", fmt_conn(*c), fmt_group(group)),
                            events,
                        ));
                    }
                }
                EventKind::CpgJoin { group, pid, result, .. } => {
                    let Some(s) = cpg.closed_session_before(*c, i) else { continue };
                    let s = &cpg.sessions[s];
                    let Some(left) = s.leave_confchg else { continue };
                    let fine = match result {
                        CpgResult::Ok | CpgResult::TryAgain | CpgResult::NameTooLong => true,
                        CpgResult::Exist => conflicts.contains(&i),
                        _ => false,
                    };
                    if !fine {
                        out.push(Violation::new(
                            ID,
                            format!(
                                "{} left {} and then joins {} as pid {pid}, but gets {result:?}",
                                fmt_conn(*c),
                                fmt_group(s.group),
                                fmt_group(group)
                            ),
                            vec![left, i],
                        ));
                    }
                }
                _ => {}
            }
        }
    }
    for stray in &cpg.strays {
        if stray.kind != StrayKind::AfterLeave {
            continue;
        }
        let e = &trace.events[stray.event];
        let (Some(c), Some(group)) = (conn_of(e), e.kind.cpg_group()) else { continue };
        let left = stray.session.and_then(|s| cpg.sessions[s].leave_confchg);
        out.push(Violation::new(
            ID,
            format!(
                "{} receives a {} of {} after its leave confchg",
                fmt_conn(c),
                e.kind.name(),
                fmt_group(group)
            ),
            left.into_iter().chain([stray.event]).collect(),
        ));
    }
    finish(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::TraceBuilder;
    use crate::trace::{CpgReason, Process, Ring};

    // Goal: leave, then re-join on the same connection, passes; so does a TryAgain re-join.
    // Method: two members; one leaves, re-joins (TryAgain once, then Ok), and talks.
    #[test]
    fn accepts_leave_and_rejoin() {
        let mut b = TraceBuilder::with_ring(Ring::new(1, 4), &[1, 2]);
        b.cpg_join_group(1, 1, b"g", 10);
        b.cpg_join_group(2, 1, b"g", 20);
        b.cpg_send(2, 1);
        b.cpg_leave_group(1, 1);
        b.cpg_send(2, 1);
        b.cpg_join_with(1, 1, b"g", 10, CpgResult::TryAgain);
        b.cpg_join_group(1, 1, b"g", 10);
        b.cpg_send(1, 1);
        assert_eq!(check(&b.build()), vec![]);
    }

    // Goal: the upstream defect (events after the leave confchg, Busy on re-join) and bad
    // leave results are flagged.
    // Method: a leave before the join confchg (which counts as the session's leave
    // request, so the later one is a second leave), a leave of another group, a delivery
    // after the leave confchg, and a Busy re-join.
    #[test]
    fn flags_upstream_defect_and_bad_leaves() {
        let g = b"g";
        let mut b = TraceBuilder::with_ring(Ring::new(1, 4), &[1, 2]);
        let p1 = Process::new(1, 10);
        let p2 = b.cpg_join_group(2, 1, g, 20);
        b.cpg_join(1, 1, g, 10);
        let early = b.cpg_leave(1, 1, g);
        b.cpg_confchg(1, 1, g, &[p1, p2], &[], &[(p1, CpgReason::Join)]);
        let other = b.cpg_leave(1, 1, b"h");
        let second = b.cpg_leave(1, 1, g);
        let left = b.cpg_confchg(1, 1, g, &[p2], &[(p1, CpgReason::Leave)], &[]);
        let m = b.cpg_mcast(2, 1, g);
        let after = b.cpg_deliver(1, 1, g, p2, m);
        let busy = b.cpg_join_with(1, 1, g, 10, CpgResult::Busy);
        let v = check(&b.build());
        let summary: Vec<(&[usize], &str)> =
            v.iter().map(|v| (v.events.as_slice(), v.message.as_str())).collect();
        assert_eq!(v.len(), 5, "{summary:#?}");
        assert!(v[0].events.contains(&early) && v[0].message.contains("before its join confchg"));
        assert!(v[1].events.contains(&other) && v[1].message.contains("while in"));
        assert!(v[2].events.contains(&second) && v[2].message.contains("a second time"));
        assert_eq!(v[3].events, vec![left, after]);
        assert!(v[4].events == vec![left, busy] && v[4].message.contains("Busy"));
    }
}
