//! CPG-2: join.
//!
//! **Property.** For every connection c (sessions as in [`crate::cpg_index`]):
//! - a `CpgJoin` on c returns `Ok` only if c has no open session (of any group: a
//!   connection is in at most one group; Corosync answers EXIST or BUSY), and no other
//!   connection of the same node incarnation has an open session with the same pid and
//!   group (EXIST);
//! - in every session of group G, the first confchg or delivery of G is its join confchg:
//!   a confchg that lists the session's own process (node, pid) in `joined` with reason
//!   `Join`, and in `members`. So nothing of G reaches c between the `Ok` and that
//!   confchg;
//! - c receives no confchg or delivery of a group G outside a session of G, unless its
//!   last session of G ended with its leave confchg (CPG-3 judges that) or a session of
//!   another group is open (CPG-15 judges that).
//!
//! That the join confchg eventually arrives is liveness (CPG-11 reports joins still
//! pending at the end of a healed run).
//!
//! Source: study §9.2 CPG-2, §4.3 (JOIN handling, PROCJOIN delivery).

use crate::cpg_index::{StrayKind, conn_of, describe, fmt_conn};
use crate::index::Index;
use crate::trace::{CpgReason, CpgResult, EventKind, Trace, fmt_group};
use crate::{Violation, finish};

pub const ID: &str = "CPG-2";
pub const STATEMENT: &str = "Join: CpgJoin is Ok only on a connection in no group (and no other connection of the \
     incarnation holds the same pid and group); a session's first event of its group is a confchg with itself \
     joined (JOIN) and a member; nothing of a group reaches a connection that never joined it.";

/// Check CPG-2 over `trace`.
pub fn check(trace: &Trace) -> Vec<Violation> {
    check_indexed(&Index::new(trace))
}

/// Check CPG-2 using a shared index.
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
            let EventKind::CpgJoin { group, pid, result: CpgResult::Ok, .. } = &trace.events[i].kind else {
                continue;
            };
            if h.end.is_some_and(|e| i > e) {
                continue;
            }
            if let Some(s) = cpg.open_session_at(*c, i) {
                let s = &cpg.sessions[s];
                out.push(Violation::new(
                    ID,
                    format!(
                        "{} joins {} with Ok while already in {}",
                        fmt_conn(*c),
                        fmt_group(group),
                        fmt_group(s.group)
                    ),
                    vec![s.join, i],
                ));
            } else if conflicts.contains(&i) {
                out.push(Violation::new(
                    ID,
                    format!(
                        "{} joins {} as pid {pid} with Ok while another connection of the node holds that pid \
                         in the group",
                        fmt_conn(*c),
                        fmt_group(group)
                    ),
                    vec![i],
                ));
            }
        }
    }
    for s in &cpg.sessions {
        let Some(&first) = s.events.first() else { continue };
        let me = s.process();
        let ok = match &trace.events[first].kind {
            EventKind::CpgConfchg { members, joined, .. } => {
                joined.iter().any(|&(p, r)| p == me && r == CpgReason::Join) && members.contains(&me)
            }
            _ => false,
        };
        if !ok {
            out.push(Violation::new(
                ID,
                format!(
                    "{} joined {} as {me:?}, but its first event there is a {}, not a confchg with itself joined \
                     (JOIN) and a member",
                    fmt_conn(s.conn),
                    fmt_group(s.group),
                    describe(trace, first)
                ),
                vec![s.join, first],
            ));
        }
    }
    for stray in &cpg.strays {
        if stray.kind != StrayKind::NoSession {
            continue;
        }
        let e = &trace.events[stray.event];
        let (Some(c), Some(group)) = (conn_of(e), e.kind.cpg_group()) else { continue };
        out.push(Violation::new(
            ID,
            format!(
                "{} receives a {} of {}, which it has not joined",
                fmt_conn(c),
                e.kind.name(),
                fmt_group(group)
            ),
            vec![stray.event],
        ));
    }
    finish(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::TraceBuilder;
    use crate::trace::{Process, Ring};

    fn setup() -> TraceBuilder {
        TraceBuilder::with_ring(Ring::new(1, 4), &[1, 2])
    }

    // Goal: correct joins (including a re-join after a leave and the same pid in two
    // groups) pass.
    // Method: two processes join g, exchange a message; one leaves and joins h with the
    // same pid on another connection, then re-joins g on the first one.
    #[test]
    fn accepts_correct_joins() {
        let mut b = setup();
        b.cpg_join_group(1, 1, b"g", 10);
        b.cpg_join_group(2, 1, b"g", 20);
        b.cpg_send(1, 1);
        b.cpg_join_group(1, 2, b"h", 10);
        b.cpg_leave_group(1, 1);
        b.cpg_join_group(1, 1, b"g", 10);
        b.cpg_send(2, 1);
        assert_eq!(check(&b.build()), vec![]);
    }

    // Goal: every kind of bad join is flagged.
    // Method: a second Ok join on a joined connection; an Ok join with a pid and group
    // another connection holds; a delivery before the join confchg; a join confchg with
    // the wrong reason; a confchg at a connection that never joined.
    #[test]
    fn flags_bad_joins() {
        let g = b"g";
        let mut b = setup();
        let p1 = b.cpg_join_group(1, 1, g, 10);
        let again = b.cpg_join(1, 1, b"h", 10);
        let twin = b.cpg_join(1, 2, g, 10);
        // Node 2 conn 1: a delivery before its join confchg.
        b.cpg_join(2, 1, g, 20);
        let m = b.cpg_mcast(1, 1, g);
        let early = b.cpg_deliver(2, 1, g, p1, m);
        // Node 2 conn 2: its join confchg says NodeUp.
        let p = Process::new(2, 30);
        b.cpg_join(2, 2, b"k", 30);
        let wrong = b.cpg_confchg(2, 2, b"k", &[p], &[], &[(p, CpgReason::NodeUp)]);
        // Node 2 conn 3 never joined.
        let stray = b.cpg_confchg(2, 3, g, &[p1], &[], &[]);
        let v = check(&b.build());
        let summary: Vec<(&[usize], &str)> =
            v.iter().map(|v| (v.events.as_slice(), v.message.as_str())).collect();
        assert_eq!(v.len(), 5, "{summary:#?}");
        assert!(v[0].events.contains(&again) && v[0].message.contains("already in"));
        assert!(v[1].events == vec![twin] && v[1].message.contains("another connection"));
        assert!(v[2].events.contains(&early) && v[2].message.contains("delivery"));
        assert!(v[3].events.contains(&wrong));
        assert_eq!(v[4].events, vec![stray]);
    }
}
