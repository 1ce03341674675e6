//! CPG-7: self-delivery (liveness).
//!
//! **Property.** Given a [`LivenessWindow`] with live set S and deadline D: call survivor
//! the last incarnation of each node of S if it has not crashed nor left. For every
//! session (see [`crate::cpg_index`]) of a survivor's connection that is still alive at
//! the end of the trace and *joined at the end* (it received its join confchg, did not ask
//! to leave, and is still open), every `CpgMcast` of the session's group with result `Ok`
//! made by that connection during the session at a time at most D is delivered to the
//! connection itself by the end of the trace.
//!
//! Senders that leave are judged by CPG-12 (their messages come before their leave
//! confchg); senders that crash or exit are not judged. The caller must let the trace run
//! long enough after D for the messages to be delivered (as for LIVE-2).
//!
//! Source: study §9.2 CPG-7, §4.6 (self delivery).

use crate::cpg_index::{conn_of, fmt_conn};
use crate::index::{FastSet, Inc, Index, node_set};
use crate::trace::{CpgResult, EventKind, Trace};
use crate::{LivenessWindow, Violation, finish};

pub const ID: &str = "CPG-7";
pub const STATEMENT: &str = "Self-delivery: a connection of a surviving node that stays alive and joined delivers \
     every message it multicast (Ok) by the deadline.";

/// Check CPG-7 over `trace`.
pub fn check(trace: &Trace, window: &LivenessWindow) -> Vec<Violation> {
    check_indexed(&Index::new(trace), window)
}

/// The survivors of `window`: the last incarnation of each live node, unless it ended.
pub(crate) fn survivors(ix: &Index<'_>, window: &LivenessWindow) -> FastSet<Inc> {
    let history = ix.history();
    node_set(&window.live)
        .into_iter()
        .filter_map(|n| history.last_incarnation(n))
        .filter(|h| h.end().is_none())
        .map(|h| h.key())
        .collect()
}

/// Check CPG-7 using a shared index.
pub fn check_indexed(ix: &Index<'_>, window: &LivenessWindow) -> Vec<Violation> {
    let trace = ix.trace();
    let cpg = ix.cpg();
    let mut out = Vec::new();
    if cpg.sessions.is_empty() {
        return out;
    }
    let survivors = survivors(ix, window);
    for s in &cpg.sessions {
        if !survivors.contains(&(s.conn.0, s.conn.1))
            || !s.joined_at_end()
            || cpg.conns.get(&s.conn).is_none_or(|h| h.end.is_some())
        {
            continue;
        }
        for &i in &s.mcasts {
            let e = &trace.events[i];
            let EventKind::CpgMcast { group, msg, result: CpgResult::Ok, .. } = &e.kind else { continue };
            if group.as_slice() != s.group
                || e.time > window.deadline
                || cpg.mcasts.get(msg).is_none_or(|m| m.event != i)
            {
                continue;
            }
            let own = cpg
                .deliveries
                .get(msg)
                .is_some_and(|ds| ds.iter().any(|&d| d > i && conn_of(&trace.events[d]) == Some(s.conn)));
            if !own {
                out.push(Violation::new(
                    ID,
                    format!("{} never delivers its own {msg:?}", fmt_conn(s.conn)),
                    vec![i],
                ));
            }
        }
    }
    finish(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::TraceBuilder;
    use crate::trace::Ring;

    fn window(live: &[u32]) -> LivenessWindow {
        LivenessWindow { healed_at: 0, deadline: u64::MAX, live: live.to_vec() }
    }

    // Goal: delivered messages pass; undelivered messages of a crashed node, of an exited
    // connection and of a TryAgain send are not judged.
    // Method: node 1 talks; node 2 sends and crashes; node 1's second connection sends and
    // exits; node 1 gets TryAgain once.
    #[test]
    fn accepts_self_delivery() {
        let mut b = TraceBuilder::with_ring(Ring::new(1, 4), &[1, 2]);
        b.cpg_join_group(1, 1, b"g", 10);
        b.cpg_join_group(1, 2, b"g", 11);
        b.cpg_join_group(2, 1, b"g", 20);
        b.cpg_send(1, 1);
        b.cpg_mcast(2, 1, b"g");
        b.crash(2);
        b.cpg_mcast(1, 2, b"g");
        b.cpg_exit(1, 2);
        b.cpg_mcast_with(1, 1, b"g", CpgResult::TryAgain);
        assert_eq!(check(&b.build(), &window(&[1])), vec![]);
    }

    // Goal: a surviving joined sender that never gets its message is flagged, unless the
    // message was sent after the deadline.
    // Method: node 1 multicasts twice, at times before and after the deadline; neither is
    // delivered.
    #[test]
    fn flags_lost_own_message() {
        let mut b = TraceBuilder::with_ring(Ring::new(1, 4), &[1]);
        b.cpg_join_group(1, 1, b"g", 10);
        b.cpg_mcast(1, 1, b"g");
        let lost = b.trace().events.len() - 1;
        b.at(1000);
        b.cpg_mcast(1, 1, b"g");
        let w = LivenessWindow { healed_at: 0, deadline: 500, live: vec![1] };
        let v = check(&b.build(), &w);
        assert_eq!(v.len(), 1, "{v:#?}");
        assert_eq!(v[0].events, vec![lost]);
    }
}
