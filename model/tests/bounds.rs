//! The correct core at CI-sized bounds: no spec property is violated, the `sometimes`
//! properties that the bounds allow are reached, and the number of unique states is pinned
//! (as stateright's own examples do), so that a change that silently shrinks or grows the
//! explored space shows up in review.
//!
//! A pinned count changes whenever the core's behaviour changes (a new message, a timer
//! armed in a new place) or the model's does. When that is intended, run
//! `cargo test -p model --test bounds -- --nocapture`, check that the new count is
//! plausible, and update the constant.

mod common;

use common::{assert_safe, examples, explore, small};
use model::model::{CPG_DELIVERY, EVERYWHERE, FULL_RING, MERGE, NODEDOWN, SAFE};
use model::run::{self, Options, Search};
use model::{CpgBudgets, Guarantees, Identity, Settings, Start, Timers, TotemModel};
use stateright::Model;
use totem_core::NodeId;

fn report(label: &str, outcome: &model::run::Outcome) {
    println!(
        "{label}: {} states, {} unique, depth {}, {:.2} s, {:.0} states/s",
        outcome.states,
        outcome.unique,
        outcome.max_depth,
        outcome.elapsed.as_secs_f64(),
        outcome.states_per_second()
    );
}

// Goal: two nodes on a formed ring, one message, one loss, one crash: exhaustive, safe,
// and every sometimes-property but the merge (which needs two rings to form apart first)
// is reached.
#[test]
fn two_nodes_quiet_exhaustive() {
    let settings = Settings { drops: 1, crashes: 1, visits: Some(8), rings: Some(1), ..small(2) };
    let (model, outcome) = explore(settings, Search::Bfs, 1);
    report("2 nodes quiet", &outcome);
    assert!(outcome.exhaustive);
    assert_safe(&model, &outcome);
    let found = examples(&model, &outcome);
    for p in [FULL_RING, EVERYWHERE, SAFE] {
        assert!(found.contains(&p), "{p} not reached; found {found:?}");
    }
    assert!(!found.contains(&MERGE));
    assert_eq!(outcome.unique, PIN_TWO_NODES_QUIET);
}
const PIN_TWO_NODES_QUIET: usize = 191_699;

// Goal: three nodes, one message (Agreed or Safe): exhaustive and safe; the message can
// reach everyone, as Agreed and as Safe.
#[test]
fn three_nodes_quiet_exhaustive() {
    let (model, outcome) = explore(small(3), Search::Bfs, 1);
    report("3 nodes quiet", &outcome);
    assert!(outcome.exhaustive);
    assert_safe(&model, &outcome);
    let found = examples(&model, &outcome);
    assert!(found.contains(&EVERYWHERE) && found.contains(&SAFE), "found {found:?}");
    assert_eq!(outcome.unique, PIN_THREE_NODES_QUIET);
}
const PIN_THREE_NODES_QUIET: usize = 109_963;

// Goal: with timers firing at any step (every race between a timeout and a packet in
// flight), two nodes stay safe up to a depth bound.
#[test]
fn two_nodes_any_timers_depth_bounded() {
    let model =
        TotemModel::new(Settings { drops: 1, timers: Timers::Any, ..Settings::default() }).expect("model");
    let opts = Options { depth: Some(9), ..Options::default() };
    let outcome = run::check(model.clone(), &opts);
    report("2 nodes any timers depth 9", &outcome);
    assert!(outcome.depth_bounded);
    assert_safe(&model, &outcome);
    assert_eq!(outcome.unique, PIN_TWO_NODES_ANY);
}
const PIN_TWO_NODES_ANY: usize = 163_886;

// Goal: from a cold start the nodes form a ring of both, and a merge of two rings that
// formed apart is reachable.
#[test]
fn cold_start_forms_and_merges() {
    let settings = Settings {
        start: Start::Cold,
        msgs: 0,
        timers: Timers::Quiet,
        visits: Some(16),
        rings: Some(3),
        ..Settings::default()
    };
    let (model, outcome) = explore(settings, Search::Bfs, 1);
    report("2 nodes cold", &outcome);
    assert_safe(&model, &outcome);
    let found = examples(&model, &outcome);
    assert!(found.contains(&FULL_RING), "found {found:?}");
    assert!(found.contains(&MERGE), "found {found:?}");
    assert_eq!(outcome.unique, PIN_COLD);
}
const PIN_COLD: usize = 18_345;

// Goal: BFS, DFS and multi-threaded DFS visit the same set of states when the search is
// exhaustive (the state space does not depend on the search order).
#[test]
fn searches_agree_on_exhaustive_spaces() {
    let settings = Settings { drops: 1, ..small(2) };
    let (_, bfs) = explore(settings.clone(), Search::Bfs, 1);
    let (_, dfs) = explore(settings.clone(), Search::Dfs, 1);
    let (_, dfs2) = explore(settings, Search::Dfs, 2);
    report("bfs", &bfs);
    report("dfs", &dfs);
    report("dfs x2", &dfs2);
    assert!(bfs.exhaustive && dfs.exhaustive && dfs2.exhaustive);
    assert_eq!(bfs.unique, dfs.unique);
    assert_eq!(bfs.unique, dfs2.unique);
}

// Goal: the identity modes nest: cores only <= application history <= full history.
#[test]
fn identity_modes_nest() {
    let count = |identity| {
        let (model, outcome) = explore(Settings { identity, drops: 1, ..small(2) }, Search::Bfs, 1);
        assert_safe(&model, &outcome);
        outcome.unique
    };
    let (core, app, full) = (count(Identity::Core), count(Identity::App), count(Identity::Full));
    println!("identity core {core}, app {app}, full {full}");
    assert!(core <= app && app <= full, "core {core}, app {app}, full {full}");
}

// Goal: the timer policies nest: quiet <= idle <= any.
#[test]
fn timer_policies_nest() {
    let count = |timers| {
        let settings =
            Settings { timers, guarantees: Guarantees::Agreed, visits: Some(3), rings: Some(0), ..small(2) };
        let (model, outcome) = explore(settings, Search::Bfs, 1);
        assert_safe(&model, &outcome);
        outcome.unique
    };
    let (quiet, idle, any) = (count(Timers::Quiet), count(Timers::Idle), count(Timers::Any));
    println!("timers quiet {quiet}, idle {idle}, any {any}");
    assert!(quiet <= idle && idle <= any, "quiet {quiet}, idle {idle}, any {any}");
}

/// CPG on, with one process of "g" on each of `members` joined in the initial prefix.
fn cpg(members: &[u32], budgets: CpgBudgets) -> Option<CpgBudgets> {
    Some(CpgBudgets { members: members.iter().copied().map(NodeId).collect(), ..budgets })
}

/// No CPG action but those the test names.
const NO_CPG: CpgBudgets = CpgBudgets { members: Vec::new(), joins: 0, leaves: 0, exits: 0, groups: 1 };

// Goal: with CPG, two nodes whose processes share a group, one multicast and one crash:
// exhaustive and safe (every CPG safety property included); the prefix that joins the
// processes settles; a NODEDOWN view change and a delivery to another node's connection
// are reached.
#[test]
fn cpg_two_nodes_crash_exhaustive() {
    let settings = Settings {
        msgs: 1,
        crashes: 1,
        visits: Some(10),
        rings: Some(1),
        cpg: cpg(&[1, 2], NO_CPG),
        ..small(2)
    };
    let (model, outcome) = explore(settings, Search::Bfs, 1);
    report("cpg 2 nodes crash", &outcome);
    let init = model.init_states();
    assert!(init.first().is_some_and(|s| model.settled(s)), "the members' prefix did not settle");
    assert!(outcome.exhaustive);
    assert_safe(&model, &outcome);
    assert!(model.safety.contains(&"CPG-1") && model.safety.contains(&"CPG-15"));
    let found = examples(&model, &outcome);
    for p in [NODEDOWN, CPG_DELIVERY, EVERYWHERE, SAFE] {
        assert!(found.contains(&p), "{p} not reached; found {found:?}");
    }
    assert_eq!(outcome.unique, PIN_CPG_CRASH);
}
const PIN_CPG_CRASH: usize = 63_255;

// Goal: CPG churn without faults: a member's connection leaves or exits, a new connection
// joins one of two groups (or the one that left joins again): exhaustive and safe.
#[test]
fn cpg_churn_exhaustive() {
    let budgets = CpgBudgets { joins: 1, leaves: 1, exits: 1, groups: 2, ..NO_CPG };
    let settings = Settings { msgs: 0, visits: Some(6), rings: Some(0), cpg: cpg(&[1], budgets), ..small(2) };
    let (model, outcome) = explore(settings, Search::Bfs, 1);
    report("cpg churn", &outcome);
    assert!(outcome.exhaustive);
    assert_safe(&model, &outcome);
    assert_eq!(outcome.unique, PIN_CPG_CHURN);
}
const PIN_CPG_CHURN: usize = 38_116;

// Goal: CPG from nothing: two joins during the initial synchronization, at either node,
// at any moment: exhaustive and safe, and BFS and 2-thread DFS agree.
#[test]
fn cpg_joins_from_scratch_exhaustive() {
    let budgets = CpgBudgets { joins: 2, ..NO_CPG };
    let settings = Settings { msgs: 0, visits: Some(6), rings: Some(0), cpg: cpg(&[], budgets), ..small(2) };
    let (model, outcome) = explore(settings, Search::Bfs, 1);
    report("cpg joins", &outcome);
    assert!(outcome.exhaustive);
    assert_safe(&model, &outcome);
    assert_eq!(outcome.unique, PIN_CPG_JOINS);
    let (_, dfs) = explore(model.settings.clone(), Search::Dfs, 2);
    assert_eq!(dfs.unique, outcome.unique, "DFS with 2 threads visits the same states");
}
const PIN_CPG_JOINS: usize = 6_049;

// Goal: a partitioned start ({1}, {2}) merges into a ring of both nodes.
#[test]
fn partitioned_start_merges() {
    let settings = Settings {
        start: Start::Partitioned(vec![vec![NodeId(1)], vec![NodeId(2)]]),
        msgs: 0,
        visits: Some(12),
        rings: Some(1),
        ..small(2)
    };
    let (model, outcome) = explore(settings, Search::Bfs, 1);
    report("2 nodes partitioned", &outcome);
    assert!(outcome.exhaustive);
    assert_safe(&model, &outcome);
    let found = examples(&model, &outcome);
    assert!(found.contains(&FULL_RING) && found.contains(&MERGE), "found {found:?}");
    assert_eq!(outcome.unique, PIN_PARTITIONED);
}
const PIN_PARTITIONED: usize = 5_327;

// Goal: the Totem-only mode judges no CPG property and offers no CPG action.
#[test]
fn totem_only_mode_has_no_cpg() {
    let model = TotemModel::new(small(2)).expect("model");
    assert!(model.safety.iter().all(|id| !id.starts_with("CPG")));
    let names: Vec<&str> = model.properties().iter().map(|p| p.name).collect();
    assert!(!names.contains(&NODEDOWN) && !names.contains(&CPG_DELIVERY));
    let init = model.init_states();
    let mut actions = Vec::new();
    model.actions(&init[0], &mut actions);
    assert!(actions.iter().all(|a| !format!("{a:?}").contains("conn")), "{actions:?}");
}
