//! Goal: deliberately broken variants of the core are caught at the cluster level too (the
//! real runtime under turmoil, judged by the same spec). Method: for each bug, a scenario
//! that exercises it; run seeds until one fails, and check that a property that exists
//! for that bug flagged it; the same scenario passes without the bug.
//!
//! `cargo test --release -p sim --features broken --test cluster_broken`
#![cfg(feature = "broken")]

use sim::cluster::{Script, run_script};
use totem_core::broken::Bug;

fn caught(bug: Bug, scenario: &str, expected: &[&str]) {
    let script = Script::parse(scenario).expect("scenario parses");
    let control = run_script(&script, 1);
    assert!(control.passed(), "without {bug:?} the scenario passes: {:?}", control.violations);
    let broken = Script { bug: Some(bug), ..script };
    for seed in 1..=5u64 {
        let r = run_script(&broken, seed);
        if r.passed() {
            continue;
        }
        let props = r.properties();
        assert!(
            props.iter().any(|p| expected.contains(p)),
            "{bug:?} at seed {seed} was flagged only by {props:?}, expected one of {expected:?}"
        );
        println!("{bug:?}: caught at seed {seed} by {props:?}");
        return;
    }
    panic!("{bug:?} was not caught in 5 seeds");
}

const LOSSY: &str = "
nodes 3
token 1000ms
traffic 5ms x4
safe 0.5
at 0s loss 0.1
at 4s loss 0
expect converged within bound
";

#[test]
fn safe_on_first_receipt_is_caught() {
    caught(Bug::SafeOnFirstReceipt, LOSSY, &["EVS-7"]);
}

#[test]
fn deliver_past_gap_is_caught() {
    caught(Bug::DeliverPastGap, LOSSY, &["EVS-6a", "EVS-6b", "EVS-5", "TOT-2", "LIVE-2", "CPG-12"]);
}

#[test]
fn send_past_window_is_caught() {
    caught(
        Bug::SendPastWindow,
        "nodes 3\ntoken 1000ms\ntraffic 5ms x8\nat 1s send 1 x200\nat 1s send 2 x200\nrun for 4s\n",
        &["TOT-5"],
    );
}

#[test]
fn reuse_ring_seq_is_caught() {
    caught(
        Bug::ReuseRingSeq,
        "nodes 3\ntoken 1000ms\nat 1s crash 2\nat 1s + epoch restart 2\nat 2s + bound crash 2\nat 2s + bound + epoch restart 2\nexpect converged within bound\n",
        &["EVS-2c"],
    );
}

#[test]
fn cpg_no_traffic_hold_is_caught() {
    caught(
        Bug::CpgNoTrafficHold,
        "nodes 4\ntoken 1000ms\ntraffic 5ms x4\nat 1s crash 3\nat 1s + epoch restart 3\nat 2s + bound partition 1,2 | 3,4\nat 2s + bound + epoch heal\nexpect converged within bound\n",
        &["CPG-9", "CPG-1", "CPG-6", "CPG-5", "CPG-12"],
    );
}
