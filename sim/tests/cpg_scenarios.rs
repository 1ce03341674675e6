//! Named CPG scenarios: scripted runs of CPG nodes with simulated clients, each judged by
//! every safety property of the spec (EVS, Totem and CPG) and, where the run ends healed, by
//! the liveness checks (LIVE-1, LIVE-2, CPG-7 self-delivery, CPG-11 no ghosts), and each
//! also asserting the expectation of the historical bug it reproduces.
//!
//! The `sNN_` tests follow research/peers.md §4.3 (item NN). Clients are scripted
//! (`cpg-join` actions: a new connection joins a group) and multicast as background traffic;
//! the seed draws the packet latencies, so seeds differ in interleavings. A failure prints
//! the script, the seed and the violations; `SIM_SCENARIO_LOG=1` adds the membership and
//! CPG view log.

mod common;

use common::{consensus_ms, cpg, join_then_die_in_round, joins, token_ms, two_nodes_crash_at_once};
use sim::scenario::{Action, Scenario, ScenarioReport};
use spec::trace::{ConfKind, CpgReason, EventKind, Process, Ring};
use totem_core::Time;

const SEEDS: std::ops::RangeInclusive<u64> = 1..=3;

/// A confchg seen by a connection.
#[derive(Debug)]
struct Confchg {
    time: Time,
    node: u32,
    incarnation: u32,
    members: Vec<Process>,
    left: Vec<(Process, CpgReason)>,
    joined: Vec<(Process, CpgReason)>,
}

/// Every confchg of `group` at every connection, in trace order.
fn confchgs(r: &ScenarioReport, group: &[u8]) -> Vec<Confchg> {
    let Some(trace) = r.trace() else { return Vec::new() };
    trace
        .events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::CpgConfchg { group: g, members, left, joined, .. } if g == group => Some(Confchg {
                time: Time(e.time),
                node: e.node,
                incarnation: e.incarnation,
                members: members.clone(),
                left: left.clone(),
                joined: joined.clone(),
            }),
            _ => None,
        })
        .collect()
}

/// The processes each node's CPG service holds in `group` at the end (live nodes).
fn final_views(r: &ScenarioReport, group: &[u8]) -> Vec<(u32, Vec<Process>)> {
    let Some(w) = &r.world else { return Vec::new() };
    r.live
        .iter()
        .filter_map(|&n| {
            let node = w.nodes[n as usize - 1].node.cpg()?;
            let members = node.membership(group).ok()?;
            Some((n, members.iter().map(|p| Process::new(p.node.0, p.pid)).collect()))
        })
        .collect()
}

/// Every live node ends with the same view of `group`, and it is `expected` (by node).
fn assert_final_views(r: &ScenarioReport, group: &[u8], nodes: &[u32]) {
    let views = final_views(r, group);
    let first = views.first().map(|(_, v)| v.clone()).unwrap_or_default();
    let owners: Vec<u32> = first.iter().map(|p| p.node).collect();
    assert_eq!(owners, nodes, "final view {first:?}\n{}", r.describe());
    for (n, v) in &views {
        assert_eq!(v, &first, "node {n}'s final view differs\n{}", r.describe());
    }
}

/// No CPG service saw a message from an unknown sender or a malformed message (the
/// "Unknown node" deliveries of corosync#663), and every delivered payload was whole.
fn assert_clean_deliveries(r: &ScenarioReport) {
    let Some(w) = &r.world else { return };
    assert_eq!(w.stats.corrupt_payloads, 0, "{}", r.describe());
    for (i, n) in w.nodes.iter().enumerate() {
        if let Some(c) = n.node.cpg() {
            assert_eq!(c.stats().unknown_sender, 0, "node {} dropped mcasts of unknown senders", i + 1);
            assert_eq!(c.stats().bad_messages, 0, "node {} got malformed CPG messages", i + 1);
        }
    }
}

/// The process node `node`'s first scripted connection joined with (its first JOIN).
fn process_of(r: &ScenarioReport, node: u32, incarnation: u32, group: &[u8]) -> Process {
    confchgs(r, group)
        .into_iter()
        .find_map(|c| {
            c.joined
                .iter()
                .find(|(p, reason)| {
                    p.node == node
                        && *reason == CpgReason::Join
                        && c.node == node
                        && c.incarnation == incarnation
                })
                .map(|(p, _)| *p)
        })
        .unwrap_or_else(|| panic!("node {node}#{incarnation} never joined\n{}", r.describe()))
}

// ------------------------------------------------------------------ peers.md §4.3

// Item 1 (corosync#663, #736): a node is paused for longer than the token while the others
// reform and keep multicasting; its client multicasts while it is frozen (the requests wait
// for it); it resumes. Every message reaches members only from senders in their view (no
// "Unknown node" drops), the paused node's processes leave the others' views (NODEDOWN) and
// come back (NODEUP), and everyone ends with the same view.
#[test]
fn s01_pause_while_others_reform_then_resume() {
    let s = joins(cpg(5).named("s01 CPG pause/unpause while others reform"), 100, &[1, 2, 3, 4, 5], b"g");
    let pause = 2 * token_ms(&s) + consensus_ms(&s);
    let during = 2000 + token_ms(&s) + consensus_ms(&s) / 2;
    let s = s
        .at(1900, Action::Send { node: 3, count: 30 })
        .at(2000, Action::Pause(3, pause))
        .at(during, Action::Send { node: 3, count: 10 })
        .at(during, Action::SendLarge { node: 3, count: 2, bytes: 100_000 })
        .at(during, Action::Send { node: 1, count: 50 })
        .expect_converged();
    for r in s.check_seeds(SEEDS) {
        assert_clean_deliveries(&r);
        let p3 = process_of(&r, 3, 0, b"g");
        let resume = Time::from_millis(2000 + pause);
        let at1: Vec<Confchg> = confchgs(&r, b"g").into_iter().filter(|c| c.node == 1).collect();
        let down = at1
            .iter()
            .find(|c| c.left.contains(&(p3, CpgReason::NodeDown)))
            .unwrap_or_else(|| panic!("node 1 never saw {p3:?} go\n{}", r.describe()));
        assert!(down.time < resume, "removed while paused");
        assert!(
            at1.iter().any(|c| c.time > down.time && c.joined.contains(&(p3, CpgReason::NodeUp))),
            "{p3:?} comes back with NODEUP\n{}",
            r.describe()
        );
        assert_final_views(&r, b"g", &[1, 2, 3, 4, 5]);
        assert_eq!(r.world.as_ref().map_or(1, |w| w.cpg_backlog_left()), 0, "scripted multicasts went out");
    }
}

// Item 2 (corosync#347): a paused node is not told that the others removed it; after it
// resumes it must itself report the others' processes as gone (NODEDOWN) before they come
// back (NODEUP), rather than keep a view nobody else has.
#[test]
fn s02_paused_node_reports_the_others_as_left() {
    let s = joins(cpg(3).named("s02 CPG paused node reports the others as left"), 100, &[1, 2, 3], b"g");
    let pause = 2 * (token_ms(&s) + consensus_ms(&s)) + 2000;
    let resume = 2000 + pause;
    let s = s.at(2000, Action::Pause(3, pause)).expect_converged();
    for r in s.check_seeds(SEEDS) {
        assert_clean_deliveries(&r);
        let others = [process_of(&r, 1, 0, b"g"), process_of(&r, 2, 0, b"g")];
        let at3: Vec<Confchg> = confchgs(&r, b"g")
            .into_iter()
            .filter(|c| c.node == 3 && c.time >= Time::from_millis(resume))
            .collect();
        let down = at3
            .iter()
            .position(|c| others.iter().all(|p| c.left.contains(&(*p, CpgReason::NodeDown))))
            .unwrap_or_else(|| panic!("node 3 never reported {others:?} as left\n{}", r.describe()));
        assert!(
            at3[down..].iter().any(|c| others.iter().all(|p| c.joined.contains(&(*p, CpgReason::NodeUp)))),
            "they come back with NODEUP\n{}",
            r.describe()
        );
        assert_final_views(&r, b"g", &[1, 2, 3]);
    }
}

// Item 3 (corosync#828): a node that joins and dies inside one synchronization round must
// not leave a ghost: its joinlist was delivered, but the round never completed, so its
// process must never appear in anyone else's view, and the survivors end with exactly
// their own processes.
#[test]
fn s03_join_then_die_inside_one_sync_round_leaves_no_ghost() {
    let s = join_then_die_in_round();
    for r in s.check_seeds(SEEDS) {
        assert_clean_deliveries(&r);
        assert_eq!(r.life(3), Some(sim::world::Life::Crashed), "node 3 died\n{}", r.describe());
        // Node 3 joined "g" and its joinlist reached node 1 (the trigger fired).
        let p3 = process_of(&r, 3, 0, b"g");
        assert!(r.world.as_ref().is_some_and(|w| w.stats.crashes == 1));
        for c in confchgs(&r, b"g").iter().filter(|c| c.node != 3) {
            assert!(
                !c.members.contains(&p3) && !c.joined.iter().any(|(p, _)| *p == p3),
                "ghost {p3:?} in a view of node {}: {c:?}\n{}",
                c.node,
                r.describe()
            );
        }
        assert_final_views(&r, b"g", &[1, 2, 4]);
    }
}

// Item 8 (corosync#167, #384, #755): a node goes away and comes back quickly across a
// merge (its new incarnation joins again while the cluster is split), so that Corosync
// would list it as both left and joined. Totem must not, and the CPG views must stay
// consistent: the old incarnation's process leaves every view once, the new one joins, and
// everyone ends with the same view.
#[test]
fn s08_quick_leave_and_rejoin_across_a_merge() {
    let s = joins(cpg(4).named("s08 CPG quick leave and rejoin across a merge"), 100, &[1, 2, 3, 4], b"g");
    let split = 2000;
    let back = split + token_ms(&s) / 2;
    let heal = split + s.bound_ms();
    let s = s
        .at(split, Action::Partition(vec![vec![1, 2], vec![3, 4]]))
        .at(back, Action::Restart { node: 2, keep_state: true })
        .at(back + 100, Action::CpgJoin { node: 2, group: b"g".to_vec() })
        .at(heal, Action::Heal)
        .expect_converged();
    for r in s.check_seeds(SEEDS) {
        assert_clean_deliveries(&r);
        let Some(w) = &r.world else { continue };
        for (i, e) in w.trace.events.iter().enumerate() {
            if let EventKind::Config { joined, left, .. } = &e.kind {
                assert!(
                    !joined.iter().any(|n| left.contains(n)),
                    "event {i} at node {}: a node both joined and left\n{}",
                    e.node,
                    r.describe()
                );
            }
        }
        let old = process_of(&r, 2, 0, b"g");
        let new = process_of(&r, 2, 1, b"g");
        for n in [1, 3, 4] {
            let at: Vec<Confchg> = confchgs(&r, b"g").into_iter().filter(|c| c.node == n).collect();
            let gone = at.iter().filter(|c| c.left.iter().any(|(p, _)| *p == old)).count();
            assert_eq!(gone, 1, "node {n} saw {old:?} leave once\n{}", r.describe());
            assert!(
                at.iter().any(|c| c.joined.iter().any(|(p, _)| *p == new)),
                "node {n} saw {new:?} join\n{}",
                r.describe()
            );
        }
        assert_final_views(&r, b"g", &[1, 2, 3, 4]);
        let view = &final_views(&r, b"g")[0].1;
        assert!(view.contains(&new) && !view.contains(&old), "{view:?}");
    }
}

/// A multicast `origin` made (accepted), the ring it was in then, and every node's
/// Totem-level delivery of it with its slot's ring.
type Sent = (spec::MsgId, Ring, Vec<(u32, Ring)>);

/// Every multicast `origin` made (accepted), in order.
fn large_messages(r: &ScenarioReport, origin: u32) -> Vec<Sent> {
    let Some(w) = &r.world else { return Vec::new() };
    let mut ring_of: std::collections::HashMap<u32, Ring> = std::collections::HashMap::new();
    let mut out: Vec<Sent> = Vec::new();
    for e in &w.trace.events {
        match &e.kind {
            EventKind::Config { kind: ConfKind::Regular, ring, .. } => {
                ring_of.insert(e.node, *ring);
            }
            EventKind::CpgMcast { msg, result: spec::CpgResult::Ok, .. } if e.node == origin => {
                if let Some(&ring) = ring_of.get(&e.node) {
                    out.push((*msg, ring, Vec::new()));
                }
            }
            EventKind::Deliver { msg, slot, .. } => {
                if let Some(m) = out.iter_mut().find(|m| m.0 == *msg) {
                    m.2.push((e.node, slot.ring));
                }
            }
            _ => {}
        }
    }
    out
}

/// Item 20's runs: 1 MiB multicasts from node 1 while a membership change cuts them.
fn cut_large_message(name: &str, cut: Action, at: u64) -> Scenario {
    let s = joins(cpg(3).named(name).quiet(), 100, &[1, 2, 3], b"g");
    s.at(2000, Action::SendLarge { node: 1, count: 3, bytes: 1024 * 1024 }).at(at, cut)
}

// The CPG-9 companion of CpgNodedownPerNode: two nodes whose processes share a group crash
// at once; each survivor's connection sees exactly one NODEDOWN view change for the group,
// listing all four processes, before the totem confchg of the new ring.
#[test]
fn two_nodes_crash_at_once_give_one_nodedown() {
    for r in two_nodes_crash_at_once().check_seeds(SEEDS) {
        assert_clean_deliveries(&r);
        for n in [1, 2] {
            let downs: Vec<Confchg> = confchgs(&r, b"g")
                .into_iter()
                .filter(|c| c.node == n && c.left.iter().any(|(_, why)| *why == CpgReason::NodeDown))
                .collect();
            assert_eq!(downs.len(), 1, "node {n}: {downs:#?}\n{}", r.describe());
            let gone: Vec<u32> = downs[0].left.iter().map(|(p, _)| p.node).collect();
            assert_eq!(gone, vec![3, 3, 4, 4], "{downs:#?}");
        }
        assert_final_views(&r, b"g", &[1, 2]);
    }
}

// Item 20 (corosync#335): a fragmented message interrupted by a membership change arrives
// whole or not at all, never spliced. A 1 MiB multicast is cut by a crash of another member
// while its frames are on the wire: it is sent again whole in the new ring and every
// survivor delivers it exactly once, byte-identical (the simulator checks every payload).
#[test]
fn s20_large_message_cut_by_a_crash_arrives_whole() {
    let s =
        cut_large_message("s20 CPG 1 MiB message cut by a crash", Action::Crash(3), 2030).expect_converged();
    let mut cut_seen = false;
    for r in s.check_seeds(1..=4) {
        assert_clean_deliveries(&r);
        let msgs = large_messages(&r, 1);
        assert_eq!(msgs.len(), 3, "three 1 MiB multicasts accepted\n{}", r.describe());
        for (msg, sent_in, delivered) in &msgs {
            for n in [1, 2] {
                let at: Vec<&(u32, Ring)> = delivered.iter().filter(|(d, _)| *d == n).collect();
                assert_eq!(at.len(), 1, "node {n} delivers {msg:?} once\n{}", r.describe());
            }
            cut_seen |= delivered.iter().any(|(_, ring)| ring != sent_in);
        }
    }
    assert!(cut_seen, "some large message was cut by the ring change and sent again in the new ring");
}

// Item 20, the sender's side: the sender dies (or is cut off) while its 1 MiB messages are
// on the wire: each is delivered whole by the survivors or not at all, and never partly.
#[test]
fn s20_large_message_of_a_dying_or_cut_off_sender_is_all_or_nothing() {
    let crash =
        cut_large_message("s20 CPG sender dies mid-message", Action::Crash(1), 2030).expect_converged();
    let cut = cut_large_message(
        "s20 CPG sender cut off mid-message",
        Action::Partition(vec![vec![1], vec![2, 3]]),
        2030,
    )
    .run_for(2030 + 2 * 30_000);
    for s in [crash, cut] {
        for r in s.check_seeds(SEEDS) {
            assert_clean_deliveries(&r);
            for (msg, _, delivered) in large_messages(&r, 1) {
                for n in [2, 3] {
                    let count = delivered.iter().filter(|(d, _)| *d == n).count();
                    assert!(count <= 1, "node {n} delivered {msg:?} {count} times\n{}", r.describe());
                }
            }
        }
    }
}
