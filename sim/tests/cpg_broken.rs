//! Goal: every deliberately broken variant of the CPG service is caught by the simulator
//! and the spec, by the property that exists for it, on a run the correct service passes.
//! Method: a named scenario (or a swarm sweep with every fault kind) run with the bug and
//! without it (the control).
#![cfg(feature = "broken")]

mod common;

use sim::scenario::Scenario;
use sim::{Limits, Options};
use totem_core::broken::Bug;

/// The distinct properties of a list of violations.
fn properties(v: &[spec::Violation]) -> Vec<&'static str> {
    let mut props: Vec<&str> = v.iter().map(|v| v.property).collect();
    props.sort_unstable();
    props.dedup();
    props
}

/// Run `s` with each seed: the correct service passes, the broken one is flagged, and one
/// of `expected` is among the properties that flag it.
fn scenario_catches(s: &Scenario, bug: Bug, expected: &[&str], seeds: std::ops::RangeInclusive<u64>) {
    for seed in seeds {
        let control = s.run(seed);
        assert!(control.passed(), "the correct service fails the control run:\n{}", control.describe());
        let broken = s.clone().with_bug(bug).run(seed);
        let props = properties(&broken.violations);
        assert!(
            props.iter().any(|p| expected.contains(p)),
            "{bug:?} at seed {seed} was flagged by {props:?}, expected one of {expected:?}\n{}",
            broken.describe()
        );
        println!("{bug:?}: caught at seed {seed} by {props:?}");
    }
}

/// Like sim/tests/broken.rs: on seeds the correct service passes, the bug must make a run
/// fail, flagged by one of `expected`.
fn swarm_catches(bug: Bug, limits: Limits, expected: &[&str]) {
    let mut clean = 0;
    for seed in 1..=100u64 {
        let control = sim::run(Options::draw(seed, &limits)).expect("run");
        if !control.passed() {
            continue;
        }
        clean += 1;
        let report =
            sim::run(Options::draw(seed, &Limits { bug: Some(bug), ..limits.clone() })).expect("run");
        if report.passed() {
            continue;
        }
        let props = properties(&report.violations);
        assert!(
            props.iter().any(|p| expected.contains(p)),
            "{bug:?} at seed {seed} was flagged only by {props:?}, expected one of {expected:?}"
        );
        println!("{bug:?}: caught at seed {seed} (passing without the bug) by {props:?}");
        return;
    }
    panic!("{bug:?} was not caught in 100 seeds ({clean} of them pass without the bug)");
}

/// CPG runs with every fault kind and a short token (many synchronization rounds).
fn cpg_faults() -> Limits {
    Limits { cpg: true, safety_secs: 10, token_ms: Some(300), ..Limits::default() }
}

// Applying a membership change at once from the node's own view breaks the agreement of
// the views (members that merge from different sides see different changes).
#[test]
fn skip_barrier_is_caught() {
    swarm_catches(
        Bug::CpgSkipBarrier,
        cpg_faults(),
        &["CPG-1", "CPG-6", "CPG-9", "CPG-11", "CPG-8", "CPG-5"],
    );
}

// Letting traffic queued before a change out before the round completed puts new-ring
// messages before the round's view changes.
#[test]
fn no_traffic_hold_is_caught() {
    swarm_catches(Bug::CpgNoTrafficHold, cpg_faults(), &["CPG-9", "CPG-5", "CPG-1", "CPG-6", "CPG-11"]);
}

// Keeping an aborted round's joinlists brings back the process of a node that died inside
// the round (corosync#828): NODEUP for a node outside the ring (CPG-8), a ghost (CPG-11).
#[test]
fn keep_joinlists_on_abort_is_caught() {
    scenario_catches(
        &common::join_then_die_in_round(),
        Bug::CpgKeepJoinlistsOnAbort,
        &["CPG-8", "CPG-11"],
        1..=2,
    );
}

// One NODEDOWN view change per failed node instead of one per group: two nodes with
// processes in the same group crash at once.
#[test]
fn nodedown_per_node_is_caught() {
    scenario_catches(&common::two_nodes_crash_at_once(), Bug::CpgNodedownPerNode, &["CPG-9"], 1..=2);
}
