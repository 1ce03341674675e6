//! CPG-8: reasons.
//!
//! **Property.** For every confchg of group G delivered in a session (see
//! [`crate::cpg_index`]) at connection c of node incarnation p, every `joined` entry has
//! reason `Join` or `NodeUp`, every `left` entry `Leave`, `NodeDown` or `ProcDown`, and for
//! each entry of process P = (n, pid):
//! - **Join**: counting the JOIN entries of (P, G) that c received so far, this one
//!   included, there were at least as many `CpgJoin` of G with pid `pid` and result `Ok`
//!   at node n (any incarnation) before it (each join request is announced at most once);
//! - **Leave**: likewise with the leave requests (`CpgLeave` Ok) of sessions of (P, G) at
//!   node n;
//! - **ProcDown**: some session of (P, G) at node n departed before it: it asked to leave,
//!   received its leave confchg, or its connection ended (exit, crash, restart of its
//!   node). This covers exits, crashes and the zombie cleanup of a synchronization
//!   (processes that went away while p was partitioned from them);
//! - **NodeDown**: n is not p's own node, and some transitional configuration that p
//!   delivered after its last synchronized regular configuration (one with a valid
//!   `CpgTotemConfchg`; the current one excluded) and before the confchg does not include
//!   n. The study's "not in the latest regular members" is too strong: a node that crashed
//!   and restarted within one membership change is in the new regular configuration but
//!   not in the transitional one, and its old processes are rightly reported NODEDOWN.
//!   "The latest transitional configuration" alone is too strong as well: a node that left
//!   in a change whose synchronization was aborted and came back in the next one missed
//!   messages that p delivered, and is rightly reported NODEDOWN (then NODEUP);
//! - **NodeUp**: n is not p's own node and is a member of p's latest regular configuration
//!   r; and n is not a member of the transitional configuration before r while p's regular
//!   configuration before that was synchronized at p (has a valid `CpgTotemConfchg`, see
//!   [`crate::cpg_index::Activations`]). (The study's "n newly joined in the latest REG"
//!   is too strong: when the previous synchronization was aborted, processes of nodes that
//!   came along may still be unknown to p and are rightly announced NODEUP.)
//!
//! Which events lie in a session is CPG-2/CPG-3's business; confchgs outside sessions are
//! not judged here.
//!
//! Source: study §9.2 CPG-8, §4.1 (`cpg_reason_t`), §4.4 (sync_activate).

use crate::cpg_index::{Activations, ConfigTrail, activations, config_trail, epoch_at, fmt_conn};
use crate::index::{FastMap, Inc, Index, node_set};
use crate::trace::{CpgReason, EventKind, Node, Process, Trace, fmt_group};
use crate::{Violation, finish};

pub const ID: &str = "CPG-8";
pub const STATEMENT: &str = "Reasons: JOIN only after a CpgJoin of that process to that group, LEAVE only after its \
     CpgLeave, PROCDOWN only for a process that went away, NODEDOWN only for a node missing from a \
     transitional configuration since the last synchronization, NODEUP only for a node of the current ring that was not synchronized with \
     the receiver.";

/// Check CPG-8 over `trace`.
pub fn check(trace: &Trace) -> Vec<Violation> {
    check_indexed(&Index::new(trace))
}

type Key<'t> = (Node, u32, &'t [u8]);

/// Check CPG-8 using a shared index.
pub fn check_indexed(ix: &Index<'_>) -> Vec<Violation> {
    let trace = ix.trace();
    let cpg = ix.cpg();
    let history = ix.history();
    let mut out = Vec::new();
    if cpg.sessions.is_empty() {
        return out;
    }
    let act: Activations = activations(ix, cpg);
    let mut joins: FastMap<Key<'_>, Vec<usize>> = FastMap::default();
    for (c, h) in &cpg.conns {
        for &i in &h.events {
            if let EventKind::CpgJoin { group, pid, result: crate::trace::CpgResult::Ok, .. } =
                &trace.events[i].kind
                && h.end.is_none_or(|e| i < e)
            {
                joins.entry((c.0, *pid, group)).or_default().push(i);
            }
        }
    }
    let mut leaves: FastMap<Key<'_>, Vec<usize>> = FastMap::default();
    let mut departures: FastMap<Key<'_>, usize> = FastMap::default();
    for s in &cpg.sessions {
        let key = (s.conn.0, s.pid, s.group);
        if let Some(l) = s.leave_request {
            leaves.entry(key).or_default().push(l);
        }
        if let Some(d) = s.departure() {
            let m = departures.entry(key).or_insert(d);
            *m = (*m).min(d);
        }
    }
    for list in joins.values_mut().chain(leaves.values_mut()) {
        list.sort_unstable();
    }
    let before = |list: Option<&Vec<usize>>, i: usize| list.map_or(0, |l| l.partition_point(|&x| x < i));
    let mut trails: FastMap<Inc, ConfigTrail> = FastMap::default();
    for (c, h) in &cpg.conns {
        let inc = (c.0, c.1);
        let Some(ih) = history.incarnations.get(&inc) else { continue };
        let trail = trails.entry(inc).or_insert_with(|| config_trail(ih));
        let mut seen_joins: FastMap<(Process, &[u8]), usize> = FastMap::default();
        let mut seen_leaves: FastMap<(Process, &[u8]), usize> = FastMap::default();
        for &sid in &h.sessions {
            let s = &cpg.sessions[sid];
            for &i in &s.events {
                let EventKind::CpgConfchg { left, joined, .. } = &trace.events[i].kind else { continue };
                let epoch = epoch_at(ih, i);
                let (last_reg, last_trans) = epoch.map_or((None, None), |k| trail[k]);
                let mut bad = |p: Process, r: CpgReason, what: String, mut events: Vec<usize>| {
                    events.push(i);
                    events.sort_unstable();
                    out.push(Violation::new(
                        ID,
                        format!("{} confchg of {}: {p:?} {r:?}: {what}", fmt_conn(*c), fmt_group(s.group)),
                        events,
                    ));
                };
                for &(p, r) in joined {
                    let key = (p.node, p.pid, s.group);
                    match r {
                        CpgReason::Join => {
                            let n = seen_joins.entry((p, s.group)).or_insert(0);
                            *n += 1;
                            if *n > before(joins.get(&key), i) {
                                bad(
                                    p,
                                    r,
                                    format!("JOIN #{n} but {} join requests", before(joins.get(&key), i)),
                                    vec![],
                                );
                            }
                        }
                        CpgReason::NodeUp => {
                            if p.node == c.0 {
                                bad(p, r, "a process of the receiving node".to_string(), vec![]);
                                continue;
                            }
                            let Some(kr) = last_reg else {
                                bad(p, r, "before any regular configuration".to_string(), vec![]);
                                continue;
                            };
                            let reg = &ih.epochs[kr].config;
                            if !reg.has_member(p.node) {
                                bad(
                                    p,
                                    r,
                                    format!("node {} is not in ring {:?}", p.node, reg.ring),
                                    vec![reg.event],
                                );
                                continue;
                            }
                            // The transitional configuration just before r, and the regular
                            // one before that.
                            let trans = kr.checked_sub(1).map(|k| &ih.epochs[k].config);
                            let prev = kr.checked_sub(2).filter(|&k| ih.epochs[k].config.is_regular());
                            if let (Some(t), Some(kp)) = (trans, prev)
                                && !t.is_regular()
                                && t.has_member(p.node)
                                && act.activated(inc, kp)
                            {
                                bad(
                                    p,
                                    r,
                                    format!(
                                        "node {} came along from the synchronized ring {:?}",
                                        p.node, ih.epochs[kp].config.ring
                                    ),
                                    vec![t.event],
                                );
                            }
                        }
                        _ => bad(p, r, "not a reason for joining".to_string(), vec![]),
                    }
                }
                for &(p, r) in left {
                    let key = (p.node, p.pid, s.group);
                    match r {
                        CpgReason::Leave => {
                            let n = seen_leaves.entry((p, s.group)).or_insert(0);
                            *n += 1;
                            let requests = before(leaves.get(&key), i);
                            if *n > requests {
                                bad(p, r, format!("LEAVE #{n} but {requests} leave requests"), vec![]);
                            }
                        }
                        CpgReason::ProcDown => {
                            if departures.get(&key).is_none_or(|&d| d > i) {
                                bad(p, r, "the process has not gone away".to_string(), vec![]);
                            }
                        }
                        CpgReason::NodeDown => {
                            if p.node == c.0 {
                                bad(p, r, "a process of the receiving node".to_string(), vec![]);
                                continue;
                            }
                            let Some(kt) = last_trans else {
                                bad(p, r, "before any transitional configuration".to_string(), vec![]);
                                continue;
                            };
                            // Some transitional configuration since p's last synchronized
                            // regular configuration (before the current one) lacks n.
                            let mut missing = false;
                            let mut k = kt;
                            loop {
                                let cfg = &ih.epochs[k].config;
                                if cfg.is_regular() {
                                    if Some(k) != last_reg && act.activated(inc, k) {
                                        break;
                                    }
                                } else if !cfg.has_member(p.node) {
                                    missing = true;
                                    break;
                                }
                                let Some(prev) = k.checked_sub(1) else { break };
                                k = prev;
                            }
                            if !missing {
                                let t = &ih.epochs[kt].config;
                                bad(
                                    p,
                                    r,
                                    format!(
                                        "node {} is in every transitional configuration since the last \
                                         synchronization (the latest: {:?})",
                                        p.node,
                                        node_set(t.members)
                                    ),
                                    vec![t.event],
                                );
                            }
                        }
                        _ => bad(p, r, "not a reason for leaving".to_string(), vec![]),
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
    use crate::trace::Ring;

    // Goal: the reasons of a run with joins, a leave, an exit, a crash and a merge pass.
    // Method: {1,2,3}; processes on each; one leaves, one exits; node 3 crashes (NODEDOWN);
    // node 3 restarts, its new process joins in a singleton ring, and the merge reports it
    // NODEUP at nodes 1 and 2.
    #[test]
    fn accepts_correct_reasons() {
        let g = b"g";
        let r1 = Ring::new(1, 4);
        let mut b = TraceBuilder::with_ring(r1, &[1, 2, 3]);
        let p = b.cpg_join_group(1, 1, g, 10);
        let q = b.cpg_join_group(2, 1, g, 20);
        b.cpg_totem(r1, &[1, 2, 3]);
        b.cpg_join_group(2, 2, g, 21);
        b.cpg_join_group(3, 1, g, 30);
        b.cpg_leave_group(2, 2);
        b.cpg_join_group(1, 2, g, 11);
        b.cpg_exit_group(1, 2);
        b.crash(3);
        let r2 = Ring::new(1, 8);
        b.form(r2, &[1, 2]);
        b.cpg_node_down(&[3]);
        b.cpg_totem(r2, &[1, 2]);
        b.start(3);
        let r3 = Ring::new(3, 8);
        b.form(r3, &[3]);
        let s = Process::new(3, 31);
        b.cpg_join(3, 1, g, 31);
        b.cpg_confchg(3, 1, g, &[s], &[], &[(s, CpgReason::Join)]);
        let r4 = Ring::new(1, 12);
        b.form(r4, &[1, 2, 3]);
        for (n, c) in [(1, 1), (2, 1)] {
            b.cpg_confchg(n, c, g, &[p, q, s], &[], &[(s, CpgReason::NodeUp)]);
        }
        b.cpg_confchg(3, 1, g, &[p, q, s], &[], &[(p, CpgReason::NodeUp), (q, CpgReason::NodeUp)]);
        assert_eq!(check(&b.build()), vec![]);
    }

    // Goal: each unjustified reason is flagged.
    // Method: in a synchronized ring {1,2}: a JOIN of a process that never joined, a LEAVE
    // without a leave request, a PROCDOWN of a live process, a NODEDOWN of a node still in
    // the ring (and of the receiving node), a NODEUP of a node that came along, and a
    // joined entry with reason Leave.
    #[test]
    fn flags_unjustified_reasons() {
        let g = b"g";
        let r1 = Ring::new(1, 4);
        let mut b = TraceBuilder::with_ring(r1, &[1, 2]);
        let p = b.cpg_join_group(1, 1, g, 10);
        let q = b.cpg_join_group(2, 1, g, 20);
        b.cpg_totem(r1, &[1, 2]);
        let r2 = Ring::new(1, 8);
        b.form(r2, &[1, 2]);
        let x = Process::new(2, 99);
        let ghost = b.cpg_confchg(1, 1, g, &[p, q, x], &[], &[(x, CpgReason::Join)]);
        let leave = b.cpg_confchg(1, 1, g, &[p, q], &[(x, CpgReason::Leave)], &[]);
        let procdown = b.cpg_confchg(1, 1, g, &[p], &[(q, CpgReason::ProcDown)], &[]);
        let nodeup = b.cpg_confchg(1, 1, g, &[p, q], &[], &[(q, CpgReason::NodeUp)]);
        let nodedown =
            b.cpg_confchg(1, 1, g, &[], &[(q, CpgReason::NodeDown), (p, CpgReason::NodeDown)], &[]);
        let odd = b.cpg_confchg(2, 1, g, &[p, q], &[], &[(p, CpgReason::Leave)]);
        let v = check(&b.build());
        let summary: Vec<(&[usize], &str)> =
            v.iter().map(|v| (v.events.as_slice(), v.message.as_str())).collect();
        assert_eq!(v.len(), 7, "{summary:#?}");
        let has = |e: usize, text: &str| v.iter().any(|v| v.events.contains(&e) && v.message.contains(text));
        assert!(has(ghost, "JOIN #1 but 0 join requests"));
        assert!(has(leave, "LEAVE #1 but 0"));
        assert!(has(procdown, "not gone away"));
        assert!(has(nodeup, "came along"));
        assert!(has(nodedown, "in every transitional configuration since the last synchronization"));
        assert!(has(nodedown, "receiving node"));
        assert!(has(odd, "not a reason for joining"));
    }
}
