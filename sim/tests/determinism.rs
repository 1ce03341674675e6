//! Goal: a seed replays exactly. Method: run the same seeds twice and compare trace
//! hashes; different seeds must differ.

use sim::{Limits, Options};

#[test]
fn same_seed_same_trace_hash() {
    let limits = Limits { safety_secs: 3, ..Limits::default() };
    let mut hashes = Vec::new();
    for seed in [1u64, 7, 1234] {
        let a = sim::run(Options::draw(seed, &limits)).expect("run");
        let b = sim::run(Options::draw(seed, &limits)).expect("run");
        assert_eq!(a.trace_hash, b.trace_hash, "seed {seed} replays byte for byte");
        assert_eq!(a.stats, b.stats);
        assert!(a.trace_events > 100, "the run did something");
        hashes.push(a.trace_hash);
    }
    hashes.dedup();
    assert_eq!(hashes.len(), 3, "different seeds give different traces");
}
