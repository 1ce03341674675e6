//! Goal: CPG nodes with churning clients (joins, leaves, exits, Agreed and Safe multicasts
//! up to 200 KiB, rarely 1 MiB, retries after TryAgain) under every fault kind keep every
//! EVS, Totem and CPG safety property, and once healed converge, deliver (LIVE-1, LIVE-2,
//! CPG-7) and end without ghosts (CPG-11).
//! Method: seeded swarm sweeps (`sim run --cpg` draws the same runs), each run judged by
//! the spec.
//!
//! One spec report is set aside, after checking it against the trace: CPG-8's NODEDOWN
//! rule requires the node to be outside the *latest* transitional configuration, but the
//! service (correctly, see `totem_core::cpg`) also reports NODEDOWN for a node that left in
//! an earlier transition whose round was aborted and is back in the latest one: its
//! messages of the other side were never delivered here, so its processes must leave the
//! views, or CPG-12's gap rule breaks. The spec is left as it is (see the report of issue 4);
//! [`known_nodedown_conflict`] accepts exactly those reports whose node was missing from a
//! transitional configuration delivered since the receiver's last completed round, and the
//! sweep prints them.

use sim::{Limits, Options};
use spec::Violation;
use spec::trace::{ConfKind, EventKind, Trace};

/// A CPG-8 "NodeDown: node N is in the latest transitional configuration" report whose
/// node N was missing from some transitional configuration the receiving incarnation
/// delivered after its last completed synchronization (its last `CpgTotemConfchg`) and
/// before the confchg.
fn known_nodedown_conflict(trace: &Trace, v: &Violation) -> bool {
    let Some(rest) = v.message.split("NodeDown: node ").nth(1) else { return false };
    if v.property != "CPG-8" || !rest.contains(" is in the latest transitional configuration") {
        return false;
    }
    let Some(node) = rest.split(' ').next().and_then(|n| n.parse::<u32>().ok()) else { return false };
    let Some(&confchg) = v.events.iter().max() else { return false };
    let Some(at) = trace.events.get(confchg) else { return false };
    if !matches!(at.kind, EventKind::CpgConfchg { .. }) {
        return false;
    }
    for e in trace.events[..confchg].iter().rev() {
        if e.node != at.node || e.incarnation != at.incarnation {
            continue;
        }
        match &e.kind {
            EventKind::CpgTotemConfchg { .. } => return false,
            EventKind::Config { kind: ConfKind::Transitional, members, .. } if !members.contains(&node) => {
                return true;
            }
            _ => {}
        }
    }
    false
}

fn sweep(limits: &Limits, seeds: std::ops::Range<u64>) {
    let mut failures = Vec::new();
    let mut conflicts = Vec::new();
    let mut totals = sim::world::CpgCounts::default();
    for seed in seeds.clone() {
        let (report, world) = sim::run_world(Options::draw(seed, limits)).expect("run");
        totals.add(&report.stats.cpg);
        let (known, other): (Vec<&Violation>, Vec<&Violation>) =
            report.violations.iter().partition(|v| known_nodedown_conflict(&world.trace, v));
        if !known.is_empty() {
            conflicts.push(format!("seed {seed}: {}", known[0]));
        }
        if report.quiesced_at.is_none() || !other.is_empty() {
            let mut props: Vec<&str> = other.iter().map(|v| v.property).collect();
            props.sort_unstable();
            props.dedup();
            failures.push(format!(
                "seed {seed} ({} nodes, token {} ms): {props:?} {}",
                report.opts.nodes,
                report.opts.token_ms,
                other.first().map(|v| v.to_string()).unwrap_or_default()
            ));
        }
    }
    println!("CPG-8 NODEDOWN after an aborted round (spec conflict, see the module docs): {conflicts:#?}");
    println!("clients: {totals:?}");
    assert!(
        failures.is_empty(),
        "{} of {} seeds failed (replay: cargo run --release -p sim -- replay --cpg --seed S with the test's limits):\n{}",
        failures.len(),
        seeds.count(),
        failures.join("\n")
    );
    // The clients did everything they can do.
    let t = &totals;
    assert!(t.joins > 0 && t.leaves > 0 && t.exits > 0 && t.refused > 0 && t.try_again > 0, "{t:?}");
    assert!(t.mcasts > 0 && t.large > 0 && t.delivered > 0 && t.confchgs > 0 && t.snapshots > 0, "{t:?}");
    assert_eq!(t.unexplained, 0);
}

// Every fault kind, a 300 ms token: many membership changes and aborted rounds per run.
#[test]
fn cpg_all_faults_short_token() {
    sweep(&Limits { cpg: true, safety_secs: 10, token_ms: Some(300), ..Limits::default() }, 200..300);
}

// Every fault kind, timing drawn per seed (300, 1000 or 3000 ms tokens).
#[test]
fn cpg_all_faults_drawn_timing() {
    sweep(&Limits { cpg: true, safety_secs: 10, ..Limits::default() }, 1026..1059);
}

// The spec conflict of the module documentation, pinned: in seed 230 node 6 leaves node 3's
// configuration in a transition whose round is aborted and is back in the transitional
// configuration of the next, completed round; node 3 reports its process NODEDOWN (then
// NODEUP), which CPG-8 rejects. Fails until CPG-8's NODEDOWN rule counts every transitional
// configuration since the receiver's last completed round (as its NODEUP rule already
// accounts for aborted rounds). Run with `cargo test -p sim --test cpg_sweep -- --ignored`.
#[test]
fn cpg8_nodedown_after_an_aborted_round() {
    let limits = Limits { cpg: true, safety_secs: 10, token_ms: Some(300), ..Limits::default() };
    let report = sim::run(Options::draw(230, &limits)).expect("run");
    let v: Vec<String> = report.violations.iter().map(|v| v.to_string()).collect();
    assert!(report.passed(), "{v:#?}");
}
