//! Goal: every deliberately broken variant of the core is caught by the simulator and the
//! spec. Method: for each bug, run seeds until one fails, and check that the property that
//! flagged it is one that exists for that bug.
#![cfg(feature = "broken")]

use sim::{Limits, Options};
use totem_core::broken::Bug;

fn caught_by(bug: Bug, limits: Limits, expected: &[&str]) {
    let limits = Limits { bug: Some(bug), ..limits };
    for seed in 1..=200u64 {
        let report = sim::run(Options::draw(seed, &limits)).expect("run");
        if report.passed() {
            continue;
        }
        let mut props: Vec<&str> = report.violations.iter().map(|v| v.property).collect();
        props.dedup();
        assert!(
            props.iter().any(|p| expected.contains(p)),
            "{bug:?} at seed {seed} was flagged only by {props:?}, expected one of {expected:?}"
        );
        println!("{bug:?}: caught at seed {seed} by {props:?}");
        return;
    }
    panic!("{bug:?} was not caught in 200 seeds");
}

fn lossy() -> Limits {
    Limits { safety_secs: 3, fixed_loss: Some(0.2), ..Limits::default() }
}

#[test]
fn deliver_past_gap_is_caught() {
    caught_by(Bug::DeliverPastGap, lossy(), &["EVS-6a", "EVS-6b", "EVS-5", "TOT-2", "LIVE-2"]);
}

#[test]
fn never_retransmit_is_caught() {
    caught_by(Bug::NeverRetransmit, lossy(), &["LIVE-2"]);
}

#[test]
fn send_past_window_is_caught() {
    caught_by(Bug::SendPastWindow, Limits { safety_secs: 3, ..Limits::default() }, &["TOT-5"]);
}

#[test]
fn early_release_is_caught() {
    caught_by(Bug::EarlyRelease, lossy(), &["TOT-6"]);
}

#[test]
fn safe_on_first_receipt_is_caught() {
    caught_by(Bug::SafeOnFirstReceipt, lossy(), &["EVS-7"]);
}
