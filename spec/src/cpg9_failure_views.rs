//! CPG-9: failure view placement.
//!
//! **Property.** Call *sync confchg* a confchg with a `NodeDown` entry in `left` or a
//! `NodeUp` entry in `joined` (the view changes a synchronization applies). For every
//! session (see [`crate::cpg_index`]) at node incarnation p:
//! - a sync confchg is delivered while p's current configuration is a regular one r (the
//!   synchronization of r runs in r; a configuration change aborts it);
//! - between the regular configuration r and p's next configuration (one *sync round*),
//!   the session receives at most one sync confchg with `NodeDown` entries and at most one
//!   with `NodeUp` entries (all processes of the failed, resp. merged, nodes in one view
//!   change);
//! - before a sync confchg of round r, the session delivers no message of the new ring r.
//!   A message is of ring r when p's own Totem-level `Deliver` of the same id has its slot
//!   in ring r; when p recorded no such delivery, when its `CpgMcast` came after p's
//!   regular configuration r.
//!
//! The other half of the study's statement (the NODEDOWN confchg comes after every message
//! of the failed node's processes that the survivor delivers) is CPG-5: once removed, a
//! process's messages are not delivered while it is out of the view. Old-ring messages are
//! delivered before the regular configuration r (EVS), hence before any sync confchg of r
//! by the first rule.
//!
//! Source: study §9.2 CPG-9, §4.4 (order of events across a node failure).

use crate::cpg_index::{epoch_at, fmt_conn};
use crate::index::Index;
use crate::trace::{CpgReason, EventKind, Trace, fmt_group};
use crate::{Violation, finish};

pub const ID: &str = "CPG-9";
pub const STATEMENT: &str = "Failure view placement: NODEDOWN/NODEUP confchgs come in a regular configuration, at \
     most one of each per group and sync round, and before any message of the new ring.";

/// Check CPG-9 over `trace`.
pub fn check(trace: &Trace) -> Vec<Violation> {
    check_indexed(&Index::new(trace))
}

/// Check CPG-9 using a shared index.
pub fn check_indexed(ix: &Index<'_>) -> Vec<Violation> {
    let trace = ix.trace();
    let cpg = ix.cpg();
    let history = ix.history();
    let mut out = Vec::new();
    if cpg.sessions.is_empty() {
        return out;
    }
    let evs = ix.messages();
    for s in &cpg.sessions {
        let inc = (s.conn.0, s.conn.1);
        let Some(ih) = history.incarnations.get(&inc) else { continue };
        let mut epoch: Option<usize> = None;
        let (mut down, mut up, mut first_new): (Option<usize>, Option<usize>, Option<usize>) =
            (None, None, None);
        let name = || format!("{} in {}", fmt_conn(s.conn), fmt_group(s.group));
        for &i in &s.events {
            let k = epoch_at(ih, i);
            if k != epoch {
                epoch = k;
                (down, up, first_new) = (None, None, None);
            }
            let cfg = k.map(|k| &ih.epochs[k].config);
            match &trace.events[i].kind {
                EventKind::CpgDeliver { msg, .. } => {
                    let Some(cfg) = cfg.filter(|c| c.is_regular()) else { continue };
                    let evs_ring = evs
                        .deliveries
                        .get(msg)
                        .and_then(|ds| ds.iter().find(|d| d.inc == inc))
                        .map(|d| d.slot.ring);
                    let new = match evs_ring {
                        Some(r) => r == cfg.ring,
                        None => cpg.mcasts.get(msg).is_some_and(|m| m.event > cfg.event),
                    };
                    if new && first_new.is_none() {
                        first_new = Some(i);
                    }
                }
                EventKind::CpgConfchg { left, joined, .. } => {
                    let has_down = left.iter().any(|(_, r)| *r == CpgReason::NodeDown);
                    let has_up = joined.iter().any(|(_, r)| *r == CpgReason::NodeUp);
                    if !has_down && !has_up {
                        continue;
                    }
                    let Some(cfg) = cfg.filter(|c| c.is_regular()) else {
                        let events: Vec<usize> = cfg.map(|c| c.event).into_iter().chain([i]).collect();
                        out.push(Violation::new(
                            ID,
                            format!("{}: NODEDOWN/NODEUP confchg outside a regular configuration", name()),
                            events,
                        ));
                        continue;
                    };
                    for (has, seen, what) in [(has_down, &mut down, "NODEDOWN"), (has_up, &mut up, "NODEUP")]
                    {
                        if !has {
                            continue;
                        }
                        match *seen {
                            Some(j) => out.push(Violation::new(
                                ID,
                                format!(
                                    "{}: a second {what} confchg in the sync round of {:?}",
                                    name(),
                                    cfg.ring
                                ),
                                vec![j, i],
                            )),
                            None => *seen = Some(i),
                        }
                    }
                    if let Some(d) = first_new {
                        out.push(Violation::new(
                            ID,
                            format!(
                                "{}: NODEDOWN/NODEUP confchg of the sync round of {:?} after a message of that ring",
                                name(),
                                cfg.ring
                            ),
                            vec![d, i],
                        ));
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
    use crate::trace::{Process, Ring, Slot};

    // Goal: a failure handled as upstream does passes: old messages, the new ring, one
    // NODEDOWN confchg, new messages.
    // Method: {1,2,3} with traffic; node 3 crashes; {1,2} form; NODEDOWN; traffic.
    #[test]
    fn accepts_failure_at_sync() {
        let r1 = Ring::new(1, 4);
        let mut b = TraceBuilder::with_ring(r1, &[1, 2, 3]);
        b.cpg_join_group(1, 1, b"g", 10);
        b.cpg_join_group(2, 1, b"g", 20);
        b.cpg_join_group(3, 1, b"g", 30);
        b.cpg_send(3, 1);
        b.crash(3);
        let r2 = Ring::new(1, 8);
        b.form(r2, &[1, 2]);
        b.cpg_node_down(&[3]);
        b.cpg_totem(r2, &[1, 2]);
        b.cpg_send(1, 1);
        assert_eq!(check(&b.build()), vec![]);
    }

    // Goal: a NODEDOWN confchg after a new-ring message (by slot and by send time), two
    // NODEDOWN confchgs in one round, and one in a transitional configuration are flagged.
    // Method: after node 3 fails, node 1 delivers a new-ring message (with an EVS delivery
    // in r2) before its NODEDOWN; node 2 delivers one sent after its REG (no EVS record),
    // then gets two NODEDOWN confchgs; later node 1 gets one during a TRANS.
    #[test]
    fn flags_misplaced_failure_views() {
        let g = b"g";
        let r1 = Ring::new(1, 4);
        let mut b = TraceBuilder::with_ring(r1, &[1, 2, 3]);
        let p = b.cpg_join_group(1, 1, g, 10);
        let q = b.cpg_join_group(2, 1, g, 20);
        let x = b.cpg_join_group(3, 1, g, 30);
        let y = Process::new(3, 31);
        b.crash(3);
        let r2 = Ring::new(1, 8);
        b.form(r2, &[1, 2]);
        let m = b.cpg_mcast(2, 1, g);
        b.deliver(1, m, Slot::new(r2, 1));
        let early1 = b.cpg_deliver(1, 1, g, q, m);
        let down1 = b.cpg_confchg(1, 1, g, &[p, q], &[(x, CpgReason::NodeDown)], &[]);
        let early2 = b.cpg_deliver(2, 1, g, q, m);
        let down2 = b.cpg_confchg(2, 1, g, &[p, q], &[(x, CpgReason::NodeDown)], &[]);
        let again = b.cpg_confchg(2, 1, g, &[p, q], &[(y, CpgReason::NodeDown)], &[]);
        let t = b.trans(1, Ring::new(1, 12), &[1]);
        let in_trans = b.cpg_confchg(1, 1, g, &[p], &[(q, CpgReason::NodeDown)], &[]);
        let v = check(&b.build());
        let summary: Vec<(&[usize], &str)> =
            v.iter().map(|v| (v.events.as_slice(), v.message.as_str())).collect();
        assert_eq!(v.len(), 5, "{summary:#?}");
        assert_eq!(v[0].events, vec![early1, down1]);
        assert_eq!(v[1].events, vec![early2, down2]);
        assert!(v[2].events == vec![early2, again] && v[2].message.contains("after a message"));
        assert!(v[3].events == vec![down2, again] && v[3].message.contains("second NODEDOWN"));
        assert_eq!(v[4].events, vec![t, in_trans]);
    }
}
