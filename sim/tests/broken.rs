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
    Limits { safety_secs: 3, fixed_loss: Some(0.2), ..Limits::formed_no_faults() }
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
    caught_by(Bug::SendPastWindow, Limits { safety_secs: 3, ..Limits::formed_no_faults() }, &["TOT-5"]);
}

#[test]
fn early_release_is_caught() {
    caught_by(Bug::EarlyRelease, lossy(), &["TOT-6"]);
}

#[test]
fn safe_on_first_receipt_is_caught() {
    caught_by(Bug::SafeOnFirstReceipt, lossy(), &["EVS-7"]);
}

/// Like [`caught_by`], but only on seeds that the correct core passes (the membership
/// variants need faulty runs, where a seed could fail for another reason): the bug must
/// make a passing seed fail, and be flagged by one of `expected`.
fn caught_against_control(bug: Bug, limits: Limits, expected: &[&str]) {
    let mut clean = 0;
    for seed in 1..=300u64 {
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
        let mut props: Vec<&str> = report.violations.iter().map(|v| v.property).collect();
        props.sort_unstable();
        props.dedup();
        assert!(
            props.iter().any(|p| expected.contains(p)),
            "{bug:?} at seed {seed} was flagged only by {props:?}, expected one of {expected:?}"
        );
        println!("{bug:?}: caught at seed {seed} (passing without the bug) by {props:?}");
        return;
    }
    panic!("{bug:?} was not caught in 300 seeds ({clean} of them pass without the bug)");
}

// The membership variants need faults: crashes, restarts, partitions, pauses.
fn with_faults() -> Limits {
    Limits { safety_secs: 15, token_ms: Some(300), ..Limits::default() }
}

#[test]
fn skip_recovery_retransmissions_is_caught() {
    caught_against_control(
        Bug::SkipRecoveryRetransmissions,
        with_faults(),
        &["TOT-8", "EVS-4", "EVS-6c", "LIVE-2"],
    );
}

#[test]
fn trans_before_old_messages_is_caught() {
    caught_against_control(
        Bug::TransBeforeOldMessages,
        with_faults(),
        &["EVS-6c", "EVS-4", "EVS-1c", "EVS-6b"],
    );
}

#[test]
fn reuse_ring_seq_is_caught() {
    caught_against_control(Bug::ReuseRingSeq, with_faults(), &["EVS-2c"]);
}

#[test]
fn accept_old_ring_token_is_caught() {
    caught_against_control(
        Bug::AcceptOldRingToken,
        with_faults(),
        &["TOT-4", "EVS-6a", "TOT-1", "EVS-1c", "TOT-9"],
    );
}

#[test]
fn keep_failed_in_commit_is_caught() {
    caught_against_control(Bug::KeepFailedInCommit, with_faults(), &["TOT-7", "LIVE-1"]);
}
