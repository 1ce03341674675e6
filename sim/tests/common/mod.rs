//! Scenario builders shared by the CPG scenario and broken-variant tests.

#![allow(dead_code)]

use sim::cpg::CpgWorkload;
use sim::scenario::{Action, Scenario, Trigger};

pub fn token_ms(s: &Scenario) -> u64 {
    s.config().token.as_millis() as u64
}

pub fn consensus_ms(s: &Scenario) -> u64 {
    s.config().consensus.as_millis() as u64
}

/// `nodes` CPG nodes on one formed ring, scripted clients only (no random churn), small
/// multicasts as background traffic.
pub fn cpg(nodes: usize) -> Scenario {
    Scenario::new(nodes).cpg_workload(CpgWorkload::scripted()).traffic(20, 2)
}

/// A new connection on each of `nodes` joins `group` at `ms`.
pub fn joins(mut s: Scenario, ms: u64, nodes: &[u32], group: &[u8]) -> Scenario {
    for &n in nodes {
        s = s.at(ms, Action::CpgJoin { node: n, group: group.to_vec() });
    }
    s
}

/// Item 3's run: {1, 2, 4} formed, each with a process in "g"; node 3 starts alone (cut off),
/// synchronizes, joins "g", then merges. Node 4 freezes the moment it installs the merged
/// ring (before sending its joinlist), and node 3 dies right after node 1 delivers its
/// joinlist: the round is left incomplete and aborted, with node 3's joinlist delivered.
pub fn join_then_die_in_round() -> Scenario {
    let s = cpg(4).named("s03 CPG join then die inside one sync round");
    let alone = 2 * s.epoch_ms();
    let merge = 500 + alone + 2000;
    let freeze = 2 * (token_ms(&s) + consensus_ms(&s)) + 2000;
    let s = joins(s, 100, &[1, 2, 4], b"g")
        .at(0, Action::Partition(vec![vec![1, 2, 4], vec![3]]))
        .at(
            0,
            Action::When {
                trigger: Trigger::Regular { node: 4, members: vec![1, 2, 3, 4] },
                then: Box::new(Action::Pause(4, freeze)),
            },
        )
        .at(
            0,
            Action::When { trigger: Trigger::Joinlist { at: 1, from: 3 }, then: Box::new(Action::Crash(3)) },
        )
        .at(500, Action::Start(3))
        .at(500 + alone, Action::CpgJoin { node: 3, group: b"g".to_vec() })
        .at(merge, Action::Heal);
    // Convergence is judged from the merge: the freeze ends within the bound after it.
    let bound = s.bound_ms();
    s.expect_converged_within(bound + freeze).run_for(merge + freeze + bound)
}

/// Four nodes with processes in "g" (nodes 3 and 4 with two each); nodes 3 and 4 crash at
/// the same time, so the survivors' round removes four processes of two nodes.
pub fn two_nodes_crash_at_once() -> Scenario {
    let s = joins(
        cpg(4).named("CPG two nodes with processes in one group crash at once"),
        100,
        &[1, 2, 3, 4],
        b"g",
    );
    let s = joins(s, 200, &[3, 4], b"g");
    s.at(2000, Action::Crash(3)).at(2000, Action::Crash(4)).expect_converged()
}
