//! Every deliberately broken core variant that a safety property can expose is found by
//! the model checker at small bounds (run with `--features broken`).
//!
//! Each scenario names the smallest bounds we found that reach the bug, and the property
//! expected among those the counterexample violates. The test prints how many states the
//! search took. A variant the model cannot expose says why.

#![cfg(feature = "broken")]

use model::run::{self, Options, Search};
use model::{CpgBudgets, Guarantees, Settings, Start, Timers, TotemModel};
use totem_core::NodeId;
use totem_core::broken::Bug;

struct Scenario {
    settings: Settings,
    /// A property the counterexample must violate.
    expect: &'static str,
    /// Breadth-first (shortest counterexample) unless the space up to the bug's depth is
    /// too large for CI; depth-first then reaches it sooner.
    search: Search,
}

fn base(nodes: usize) -> Settings {
    Settings { nodes, timers: Timers::Quiet, ..Settings::default() }
}

/// The bounds that expose `bug`, or why none do.
fn scenario(bug: Bug) -> Result<Scenario, &'static str> {
    let two_msgs = Settings { msgs: 2, drops: 1, visits: Some(8), rings: Some(1), ..base(2) };
    let s = |settings: Settings, expect| Ok(Scenario { settings, expect, search: Search::Bfs });
    // CPG with one process of group "g" on each listed node, joined in the initial state's
    // fault-free prefix.
    let cpg = |members: &[u32]| {
        Some(CpgBudgets {
            members: members.iter().copied().map(NodeId).collect(),
            joins: 0,
            ..Default::default()
        })
    };
    match bug {
        // A lost message, then the next one delivered past the hole.
        Bug::DeliverPastGap => s(two_msgs, "EVS-6b"),
        // The sender delivers its Safe message before the other node holds it.
        Bug::SafeOnFirstReceipt => s(two_msgs, "EVS-7"),
        // A message freed on one reading of the aru while a member still lacks it.
        Bug::EarlyRelease => s(two_msgs, "TOT-6"),
        // Two frames pending (an Agreed one, then a Safe one) with max_messages 1.
        Bug::SendPastWindow => s(
            Settings {
                msgs: 2,
                visits: Some(6),
                rings: Some(0),
                max_messages: Some(1),
                window_size: Some(1),
                ..base(2)
            },
            "TOT-5",
        ),
        // The message to n2 and then the token are lost; the new ring never re-sends it.
        Bug::SkipRecoveryRetransmissions => s(
            Settings {
                msgs: 1,
                drops: 2,
                guarantees: Guarantees::Agreed,
                visits: Some(10),
                rings: Some(1),
                ..base(2)
            },
            "TOT-8",
        ),
        // As above, with the recovered message then delivered after the transitional
        // configuration at one node and before it at the other.
        Bug::TransBeforeOldMessages => s(
            Settings {
                msgs: 1,
                drops: 2,
                guarantees: Guarantees::Agreed,
                visits: Some(10),
                rings: Some(1),
                ..base(2)
            },
            "EVS-4",
        ),
        // A lone node that crashes and restarts forgets its ring sequence and installs a
        // ring id it already had.
        Bug::ReuseRingSeq => s(
            Settings { start: Start::Cold, msgs: 0, crashes: 1, visits: Some(8), rings: Some(2), ..base(1) },
            "EVS-2c",
        ),
        // A retransmitted token of the old ring reaches a node already in recovery of a
        // new one: it is accepted a second time.
        Bug::AcceptOldRingToken => {
            s(Settings { msgs: 0, timers: Timers::Any, visits: Some(8), rings: Some(1), ..base(2) }, "TOT-4")
        }
        // A crashed node stays in the commit token's member list.
        Bug::KeepFailedInCommit => {
            s(Settings { msgs: 0, crashes: 1, visits: Some(4), rings: Some(1), ..base(2) }, "TOT-7")
        }
        // Unanswered retransmit requests only stall delivery: a liveness failure (the
        // simulator's LIVE-2 catches it). No safety property is violated, so the model's
        // `always` properties cannot expose it; recovery still re-sends old messages.
        Bug::NeverRetransmit => Err("liveness only (LIVE-2, checked by the simulator)"),
        // Both processes joined; the ring re-forms with the same members. The node applies
        // the round at once from its own view, with no joinlist yet: the other node's
        // process is dropped as a zombie (PROCDOWN for a process that did not go away).
        Bug::CpgSkipBarrier => {
            s(Settings { msgs: 0, visits: Some(16), rings: Some(1), cpg: cpg(&[1, 2]), ..base(2) }, "CPG-8")
        }
        // The joins of the prefix are released during the initial synchronization: node
        // 1 applies node 2's join before the round and then drops it as a zombie (no
        // joinlist announced it), so the two nodes' views of "g" differ when a message is
        // delivered.
        Bug::CpgNoTrafficHold => {
            s(Settings { msgs: 1, visits: Some(16), rings: Some(1), cpg: cpg(&[1, 2]), ..base(2) }, "CPG-1")
        }
        // Corosync #828. Two partitions, each with a process in "g", merge; node 2 delivers
        // node 1's joinlist (announcing a process it did not know) but not yet its own;
        // the token is lost and node 1 crashes, so node 2 goes on alone. The void round's
        // joinlist survives into the next round: NODEUP for a process of a node outside
        // the ring. Depth-first: breadth-first needs about a million states to get there.
        Bug::CpgKeepJoinlistsOnAbort => Ok(Scenario {
            settings: Settings {
                start: Start::Partitioned(vec![vec![NodeId(1)], vec![NodeId(2)]]),
                msgs: 0,
                drops: 1,
                crashes: 1,
                visits: Some(14),
                rings: Some(2),
                cpg: cpg(&[1, 2]),
                ..base(2)
            },
            expect: "CPG-8",
            search: Search::Dfs,
        }),
        // Two of three nodes, each with a process in "g", crash at once: the survivor's
        // round removes both nodes' processes in two view changes instead of one.
        Bug::CpgNodedownPerNode => s(
            Settings {
                msgs: 0,
                crashes: 2,
                visits: Some(12),
                rings: Some(1),
                cpg: cpg(&[1, 2, 3]),
                ..base(3)
            },
            "CPG-9",
        ),
        #[allow(unreachable_patterns)]
        _ => Err("no scenario yet: add one to model/tests/broken.rs"),
    }
}

// Goal: every Totem variant a safety property can expose is found, by that property.
#[test]
fn totem_variants_are_found() {
    check_variants(|bug| !is_cpg(bug));
}

// Goal: every CPG variant is found, by the property the simulator's test expects it to
// break (or one the counterexample shows it breaks first).
#[test]
fn cpg_variants_are_found() {
    check_variants(is_cpg);
}

fn is_cpg(bug: Bug) -> bool {
    format!("{bug:?}").starts_with("Cpg")
}

/// Run the scenario of every variant `pick` selects; fail on a miss or a variant without a
/// scenario.
fn check_variants(pick: fn(Bug) -> bool) {
    let mut missed = Vec::new();
    for bug in Bug::ALL.into_iter().filter(|&b| pick(b)) {
        let scenario = match scenario(bug) {
            Ok(s) => s,
            Err(why) => {
                println!("{bug:?}: not checked: {why}");
                if why.starts_with("no scenario") {
                    missed.push(format!("{bug:?}: {why}"));
                }
                continue;
            }
        };
        let settings = Settings { bug: Some(bug), ..scenario.settings };
        let model = TotemModel::new(settings).expect("valid settings");
        let opts = Options { search: scenario.search, stop_on_violation: true, ..Options::default() };
        let outcome = run::check(model.clone(), &opts);
        let violated = outcome.violated(&model);
        let steps = violated
            .first()
            .and_then(|p| outcome.discoveries.get(p))
            .map_or(0, |path| path.clone().into_actions().len());
        println!(
            "{bug:?}: {} states ({} unique, {:?}) in {:.2} s; violated {violated:?} in {steps} steps",
            outcome.states,
            outcome.unique,
            scenario.search,
            outcome.elapsed.as_secs_f64()
        );
        if !violated.contains(&scenario.expect) {
            missed.push(format!("{bug:?}: expected {}, got {violated:?}", scenario.expect));
        }
    }
    assert!(missed.is_empty(), "broken variants not caught as expected:\n{}", missed.join("\n"));
}

// Goal: a counterexample reads as a story: it names the timer, the sends and the
// configurations, and ends with the spec's verdict.
#[test]
fn counterexample_is_readable() {
    let settings =
        Settings { bug: Some(Bug::SafeOnFirstReceipt), msgs: 1, guarantees: Guarantees::Safe, ..base(2) };
    let model = TotemModel::new(settings).expect("valid settings");
    let opts = Options { stop_on_violation: true, ..Options::default() };
    let outcome = run::check(model.clone(), &opts);
    let path = outcome.discoveries.get("EVS-7").expect("EVS-7 violated");
    let text = run::counterexample(&model, path);
    println!("{text}");
    assert!(text.contains("application submits a Safe message"), "{text}");
    assert!(text.contains("delivers m"), "{text}");
    assert!(text.contains("spec violations on the final trace"), "{text}");
    assert!(text.contains("EVS-7"), "{text}");
}
