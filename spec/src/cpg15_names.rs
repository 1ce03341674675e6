//! CPG-15: name semantics.
//!
//! **Property.** Group names are byte strings compared as (length, bytes), at most
//! [`MAX_GROUP_NAME_LEN`] (128) bytes long:
//! - a `CpgJoin` of a name longer than 128 bytes returns `NameTooLong`; one of at most 128
//!   bytes never does;
//! - a `CpgLeave` or `CpgMcast` of a name longer than 128 bytes never returns `Ok`; one of
//!   at most 128 bytes never returns `NameTooLong`;
//! - no confchg, delivery or membership snapshot names a group longer than 128 bytes;
//! - distinct names are distinct groups: a connection whose open session is of group A
//!   receives no confchg or delivery of another group B (however close the names: a
//!   prefix, the same bytes with a trailing NUL, ...), and a message is delivered only in
//!   the group it was multicast to.
//!
//! That a join to A causes no view change of B is CPG-8's rule "JOIN only for a
//! `CpgJoin` of that process to that group", which compares names exactly.
//!
//! Source: study §9.2 CPG-15, §4.1 (`cpg_name`).

use crate::cpg_index::{StrayKind, conn_of, fmt_conn};
use crate::index::Index;
use crate::trace::{CpgResult, EventKind, MAX_GROUP_NAME_LEN, Trace, fmt_group};
use crate::{Violation, finish};

pub const ID: &str = "CPG-15";
pub const STATEMENT: &str = "Names: a join of a name over 128 bytes gets NameTooLong and one of at most 128 never \
     does; no group over 128 bytes exists; names are compared as (length, bytes): a connection in group A gets \
     nothing of another group, and messages are delivered in the group they were sent to.";

/// Check CPG-15 over `trace`.
pub fn check(trace: &Trace) -> Vec<Violation> {
    check_indexed(&Index::new(trace))
}

/// Check CPG-15 using a shared index.
pub fn check_indexed(ix: &Index<'_>) -> Vec<Violation> {
    let trace = ix.trace();
    let cpg = ix.cpg();
    let mut out = Vec::new();
    for (i, e) in trace.events.iter().enumerate() {
        let (Some(c), Some(group)) = (conn_of(e), e.kind.cpg_group()) else { continue };
        let long = group.len() > MAX_GROUP_NAME_LEN;
        let result = match &e.kind {
            EventKind::CpgJoin { result, .. }
            | EventKind::CpgLeave { result, .. }
            | EventKind::CpgMcast { result, .. } => Some(*result),
            _ => None,
        };
        let bad = match (&e.kind, result) {
            (EventKind::CpgJoin { .. }, Some(r)) => long != (r == CpgResult::NameTooLong),
            (_, Some(r)) => (long && r == CpgResult::Ok) || (!long && r == CpgResult::NameTooLong),
            (_, None) => long,
        };
        if bad {
            let what = match result {
                Some(r) => format!("{} of a {}-byte name returns {r:?}", e.kind.name(), group.len()),
                None => format!("{} names a {}-byte group", e.kind.name(), group.len()),
            };
            out.push(Violation::new(ID, format!("{}: {what}", fmt_conn(c)), vec![i]));
        }
        if let EventKind::CpgDeliver { msg, .. } = &e.kind
            && let Some(m) = cpg.mcasts.get(msg)
            && m.group != group
        {
            out.push(Violation::new(
                ID,
                format!(
                    "{} delivers {msg:?} in {}, but it was multicast to {}",
                    fmt_conn(c),
                    fmt_group(group),
                    fmt_group(m.group)
                ),
                vec![m.event, i],
            ));
        }
    }
    for stray in &cpg.strays {
        if stray.kind != StrayKind::OtherGroup {
            continue;
        }
        let e = &trace.events[stray.event];
        let (Some(c), Some(group), Some(s)) = (conn_of(e), e.kind.cpg_group(), stray.session) else {
            continue;
        };
        let s = &cpg.sessions[s];
        out.push(Violation::new(
            ID,
            format!(
                "{} is in {} but receives a {} of {}",
                fmt_conn(c),
                fmt_group(s.group),
                e.kind.name(),
                fmt_group(group)
            ),
            vec![s.join, stray.event],
        ));
    }
    finish(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::TraceBuilder;
    use crate::trace::{CpgReason, Process, Ring};

    // Goal: a 128-byte name works, a 129-byte one is refused, and groups whose names share
    // bytes stay apart.
    // Method: join a 128-byte group; try a 129-byte one (NameTooLong); run "a" and
    // "a\0" side by side with traffic in each.
    #[test]
    fn accepts_name_rules() {
        let mut b = TraceBuilder::with_ring(Ring::new(1, 4), &[1, 2]);
        let long = vec![b'x'; 128];
        b.cpg_join_group(1, 1, &long, 10);
        b.cpg_send(1, 1);
        b.cpg_join_with(1, 2, &[b'x'; 129], 10, CpgResult::NameTooLong);
        b.cpg_join_group(1, 3, b"a", 11);
        b.cpg_join_group(2, 1, b"a\0", 20);
        b.cpg_send(1, 3);
        b.cpg_send(2, 1);
        assert_eq!(check(&b.build()), vec![]);
    }

    // Goal: length rules and name confusion are flagged.
    // Method: a 129-byte join accepted, a 10-byte join refused as too long, a confchg of
    // "a\0" at a connection in "a", and a message sent to "a" delivered in "a\0".
    #[test]
    fn flags_name_confusion() {
        let mut b = TraceBuilder::with_ring(Ring::new(1, 4), &[1, 2]);
        let accepted = b.cpg_join_with(1, 1, &[b'y'; 129], 10, CpgResult::Ok);
        let refused = b.cpg_join_with(1, 2, b"short name", 10, CpgResult::NameTooLong);
        let p = b.cpg_join_group(1, 3, b"a", 11);
        let q = Process::new(2, 20);
        let confused = b.cpg_confchg(1, 3, b"a\0", &[p, q], &[], &[(q, CpgReason::Join)]);
        let m = b.cpg_mcast(1, 3, b"a");
        let mcast = b.trace().events.len() - 1;
        let wrong = b.cpg_deliver(2, 1, b"a\0", p, m);
        let v = check(&b.build());
        let summary: Vec<(&[usize], &str)> =
            v.iter().map(|v| (v.events.as_slice(), v.message.as_str())).collect();
        assert_eq!(v.len(), 4, "{summary:#?}");
        assert_eq!(v[0].events, vec![accepted]);
        assert_eq!(v[1].events, vec![refused]);
        assert!(v[2].events.contains(&confused));
        assert_eq!(v[3].events, vec![mcast, wrong]);
    }
}
