//! Goal: a seed replays exactly. Method: run the same seeds twice and compare trace
//! hashes; different seeds must differ.

use sim::{Action, Limits, Options, Scenario};

fn replays(limits: &Limits, seeds: &[u64]) {
    let mut hashes = Vec::new();
    for &seed in seeds {
        let a = sim::run(Options::draw(seed, limits)).expect("run");
        let b = sim::run(Options::draw(seed, limits)).expect("run");
        assert_eq!(a.trace_hash, b.trace_hash, "seed {seed} replays byte for byte");
        assert_eq!(a.stats, b.stats);
        assert!(a.trace_events > 100, "the run did something");
        hashes.push(a.trace_hash);
    }
    hashes.sort();
    hashes.dedup();
    assert_eq!(hashes.len(), seeds.len(), "different seeds give different traces");
}

#[test]
fn same_seed_same_trace_hash() {
    replays(&Limits { safety_secs: 3, ..Limits::formed_no_faults() }, &[1, 7, 1234]);
}

// Goal: the fault machinery (drawn schedules, crashes, restarts, pauses, partitions, cold
// and late starts) is deterministic too.
// Method: as above, with every fault kind allowed and a fault-dense phase.
#[test]
fn same_seed_same_trace_hash_with_faults() {
    let limits = Limits { safety_secs: 20, token_ms: Some(300), ..Limits::default() };
    replays(&limits, &[1, 2, 3, 4, 5, 6]);
}

// Goal: a scripted scenario replays exactly, and its seed changes the interleaving.
#[test]
fn scenario_same_seed_same_trace_hash() {
    let s = Scenario::new(4)
        .at(1000, Action::Pause(2, 4000))
        .at(2000, Action::Partition(vec![vec![1, 2], vec![3, 4]]))
        .at(3000, Action::Crash(4))
        .at(4000, Action::Heal)
        .at(5000, Action::Restart { node: 4, keep_state: false });
    let a = s.run(9);
    let b = s.run(9);
    let c = s.run(10);
    assert_eq!(a.trace_hash, b.trace_hash);
    assert_eq!(a.stats, b.stats);
    assert_ne!(a.trace_hash, c.trace_hash);
}

// Goal: CPG runs (clients connecting, joining, leaving, exiting and multicasting at random)
// replay exactly too.
// Method: as above, with CPG nodes and every fault kind.
#[test]
fn same_seed_same_trace_hash_cpg() {
    let limits = Limits { cpg: true, safety_secs: 5, token_ms: Some(300), ..Limits::default() };
    replays(&limits, &[3, 4, 5]);
}
