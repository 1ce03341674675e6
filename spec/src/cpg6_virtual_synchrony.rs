//! CPG-6: virtual synchrony.
//!
//! **Property.** With the segments and keys of CPG-1 (a ring's post-synchronization part,
//! alone or followed by the transitional part towards the same next ring):
//! - **same view**: two sessions whose segments of one key both deliver message m deliver
//!   it in views with the same members (each session's latest confchg before the
//!   delivery, which may precede the segment);
//! - **same messages per view**: cut each segment into *runs*, the maximal lists of
//!   deliveries between two confchgs. A run is *complete* when a confchg of the segment
//!   precedes it (or it opens a full segment: every full segment starts at the same point)
//!   and a confchg of the segment follows it; such a run is everything the session
//!   delivered in one view instance. Two complete runs of one key that share a message are
//!   equal (same messages, same order); a run with only its start (resp. end) bound is a
//!   prefix (resp. suffix) of the complete run that holds its first (resp. last) message.
//!
//! This is the study's "two connections that both see view V_i followed directly by
//! V_{i+1} delivered the same messages in V_i, in the same order", with view instances
//! identified soundly: by the messages they hold within one ring's synchronized history
//! rather than by member lists (partitions can show equal member lists after different
//! messages, see CPG-1). Runs without a shared message cannot be matched and are not
//! judged; CPG-1 compares the whole sequences.
//!
//! Source: study §9.2 CPG-6; Birman, "virtual synchrony".

use crate::cpg_index::{Segment, fmt_conn};
use crate::cpg1_view_agreement::{fmt_key, segments_by_key};
use crate::index::{FastMap, Index};
use crate::trace::{EventKind, MsgId, Process, Trace};
use crate::{Violation, finish};

pub const ID: &str = "CPG-6";
pub const STATEMENT: &str = "Virtual synchrony: within a ring's synchronized history, a message is delivered in \
     the same view everywhere, and sessions that see a view from its start to its end deliver the same messages \
     in it, in the same order.";

/// Check CPG-6 over `trace`.
pub fn check(trace: &Trace) -> Vec<Violation> {
    check_indexed(&Index::new(trace))
}

/// A run of deliveries: its messages and events, whether its start and end are bounded by
/// a view change, whether it touches the transitional part, and its segment.
struct Run<'s, 't> {
    seg: &'s Segment<'t>,
    msgs: Vec<MsgId>,
    events: Vec<usize>,
    start: bool,
    end: bool,
    trans: bool,
}

fn runs<'s, 't>(trace: &Trace, seg: &'s Segment<'t>) -> Vec<Run<'s, 't>> {
    let mut out = Vec::new();
    let mut cur =
        Run { seg, msgs: Vec::new(), events: Vec::new(), start: seg.full, end: false, trans: false };
    for (k, &i) in seg.events.iter().enumerate() {
        match &trace.events[i].kind {
            EventKind::CpgDeliver { msg, .. } => {
                cur.msgs.push(*msg);
                cur.events.push(i);
                cur.trans |= seg.in_trans(k);
            }
            _ => {
                cur.end = true;
                let next =
                    Run { seg, msgs: Vec::new(), events: Vec::new(), start: true, end: false, trans: false };
                let done = std::mem::replace(&mut cur, next);
                if !done.msgs.is_empty() {
                    out.push(done);
                }
            }
        }
    }
    if !cur.msgs.is_empty() {
        out.push(cur);
    }
    out
}

/// Check CPG-6 using a shared index.
pub fn check_indexed(ix: &Index<'_>) -> Vec<Violation> {
    let trace = ix.trace();
    let cpg = ix.cpg();
    let mut out = Vec::new();
    if cpg.sessions.is_empty() {
        return out;
    }
    let conn = |seg: &Segment<'_>| fmt_conn(cpg.sessions[seg.session].conn);
    // Per session: for each position of its events, the latest confchg at or before it.
    let mut last_conf: FastMap<usize, Vec<Option<usize>>> = FastMap::default();
    for (key, segs) in segments_by_key(ix) {
        let trans_key = key.next.is_some();
        // Same view.
        let mut views: FastMap<MsgId, (Vec<Process>, usize, bool, &Segment<'_>)> = FastMap::default();
        for seg in &segs {
            let s = &cpg.sessions[seg.session];
            let lc = last_conf.entry(seg.session).or_insert_with(|| {
                let mut cur = None;
                s.events
                    .iter()
                    .map(|&i| {
                        if matches!(trace.events[i].kind, EventKind::CpgConfchg { .. }) {
                            cur = Some(i);
                        }
                        cur
                    })
                    .collect()
            });
            for (k, &i) in seg.events.iter().enumerate() {
                let EventKind::CpgDeliver { msg, .. } = &trace.events[i].kind else { continue };
                let pos = s.events.partition_point(|&e| e < i);
                let Some(conf) = lc.get(pos).copied().flatten() else { continue };
                let EventKind::CpgConfchg { members, .. } = &trace.events[conf].kind else { continue };
                let mut members = members.clone();
                members.sort_unstable();
                match views.get(msg) {
                    None => {
                        views.insert(*msg, (members, i, seg.in_trans(k), seg));
                    }
                    Some((m0, j, t0, seg0)) => {
                        if *m0 != members && (!trans_key || *t0 || seg.in_trans(k)) {
                            let mut events = vec![*j, i];
                            events.sort_unstable();
                            out.push(Violation::new(
                                ID,
                                format!(
                                    "{} and {} deliver {msg:?} in {} in different views: {m0:?} vs {members:?}",
                                    conn(seg0),
                                    conn(seg),
                                    fmt_key(key)
                                ),
                                events,
                            ));
                        }
                    }
                }
            }
        }
        // Same messages per view instance.
        let all: Vec<Run<'_, '_>> = segs.iter().flat_map(|seg| runs(trace, seg)).collect();
        let mut holder: FastMap<MsgId, usize> = FastMap::default();
        for (r, run) in all.iter().enumerate() {
            if run.start && run.end {
                for m in &run.msgs {
                    holder.entry(*m).or_insert(r);
                }
            }
        }
        for (r, run) in all.iter().enumerate() {
            let anchor = match (run.start, run.end) {
                (true, true) => run.msgs.iter().find_map(|m| holder.get(m).copied().filter(|&h| h != r)),
                (true, false) => run.msgs.first().and_then(|m| holder.get(m).copied()),
                (false, true) => run.msgs.last().and_then(|m| holder.get(m).copied()),
                (false, false) => None,
            };
            let Some(h) = anchor.filter(|&h| h != r) else { continue };
            let full = &all[h];
            let fits = match (run.start, run.end) {
                (true, true) => run.msgs == full.msgs,
                (true, false) => full.msgs.starts_with(&run.msgs),
                _ => full.msgs.ends_with(&run.msgs),
            };
            if fits || (trans_key && !run.trans && !full.trans) {
                continue;
            }
            let what = match (run.start, run.end) {
                (true, true) => "in the same view",
                (true, false) => "from the start of the same view",
                _ => "up to the end of the same view",
            };
            let mut events = vec![full.events[0], run.events[0]];
            events.sort_unstable();
            out.push(Violation::new(
                ID,
                format!(
                    "{} and {} deliver different messages {what} in {}: {:?} vs {:?}",
                    conn(full.seg),
                    conn(run.seg),
                    fmt_key(key),
                    full.msgs,
                    run.msgs
                ),
                events,
            ));
        }
    }
    finish(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::TraceBuilder;
    use crate::trace::{CpgReason, Ring};

    // Goal: members that deliver the same messages per view pass, including a late joiner
    // and a member that stops early.
    // Method: three members with traffic between joins and a leave; node 3 crashes in the
    // middle of a view.
    #[test]
    fn accepts_synchronous_views() {
        let r1 = Ring::new(1, 4);
        let mut b = TraceBuilder::with_ring(r1, &[1, 2, 3]);
        b.cpg_join_group(1, 1, b"g", 10);
        b.cpg_join_group(2, 1, b"g", 20);
        b.cpg_join_group(3, 1, b"g", 30);
        b.cpg_totem(r1, &[1, 2, 3]);
        b.cpg_send(1, 1);
        b.cpg_send(2, 1);
        b.cpg_join_group(2, 2, b"g", 21);
        b.cpg_send(3, 1);
        b.cpg_send(2, 2);
        b.cpg_leave_group(1, 1);
        b.cpg_send(2, 1);
        b.crash(3);
        b.cpg_send(2, 1);
        assert_eq!(check(&b.build()), vec![]);
    }

    // Goal: a member that misses a message in a view, and one that delivers a message in a
    // different view, are flagged.
    // Method: nodes 1 and 2 deliver m1, m2 between two views, node 3 only m1; then node 3
    // delivers m3 in a view without node 2's process while the others have it.
    #[test]
    fn flags_asynchronous_views() {
        let r1 = Ring::new(1, 4);
        let mut b = TraceBuilder::with_ring(r1, &[1, 2, 3]);
        let p = b.cpg_join_group(1, 1, b"g", 10);
        let q = b.cpg_join_group(2, 1, b"g", 20);
        let x = b.cpg_join_group(3, 1, b"g", 30);
        b.cpg_totem(r1, &[1, 2, 3]);
        let m1 = b.cpg_mcast(1, 1, b"g");
        let m2 = b.cpg_mcast(1, 1, b"g");
        let d1 = b.cpg_deliver(1, 1, b"g", p, m1);
        b.cpg_deliver(1, 1, b"g", p, m2);
        b.cpg_deliver(2, 1, b"g", p, m1);
        b.cpg_deliver(2, 1, b"g", p, m2);
        let d3 = b.cpg_deliver(3, 1, b"g", p, m1);
        let y = b.cpg_join_group(1, 2, b"g", 11);
        let m3 = b.cpg_mcast(1, 1, b"g");
        let e1 = b.cpg_deliver(1, 1, b"g", p, m3);
        b.cpg_confchg(3, 1, b"g", &[p, x, y], &[(q, CpgReason::Leave)], &[]);
        let e3 = b.cpg_deliver(3, 1, b"g", p, m3);
        let v = check(&b.build());
        let summary: Vec<(&[usize], &str)> =
            v.iter().map(|v| (v.events.as_slice(), v.message.as_str())).collect();
        assert_eq!(v.len(), 2, "{summary:#?}");
        assert!(v[0].events == vec![d1, d3] && v[0].message.contains("in the same view"));
        assert!(v[1].events == vec![e1, e3] && v[1].message.contains("different views"));
    }
}
