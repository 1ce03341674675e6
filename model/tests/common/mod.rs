//! Helpers shared by the model's integration tests.
#![allow(dead_code)]

use model::run::{self, Options, Outcome, Search};
use model::{Settings, Timers, TotemModel};
use stateright::{Expectation, Model};

/// The small, exhaustive space most tests use: formed ring, quiet timers, a token-visit
/// and ring budget that make the space finite.
pub fn small(nodes: usize) -> Settings {
    Settings { nodes, msgs: 1, timers: Timers::Quiet, visits: Some(6), rings: Some(1), ..Settings::default() }
}

/// Check `settings` exhaustively (no depth or state bound) with `search`.
pub fn explore(settings: Settings, search: Search, threads: usize) -> (TotemModel, Outcome) {
    let model = TotemModel::new(settings).expect("valid settings");
    let opts = Options { search, threads, ..Options::default() };
    let outcome = run::check(model.clone(), &opts);
    (model, outcome)
}

/// Every `always` property holds; print the counterexample otherwise.
pub fn assert_safe(model: &TotemModel, outcome: &Outcome) {
    let violated = outcome.violated(model);
    if let Some(name) = violated.first() {
        let path = outcome.discoveries.get(name).expect("discovery");
        panic!("{name} violated:\n{}", run::counterexample(model, path));
    }
}

/// The `sometimes` properties with an example.
pub fn examples(model: &TotemModel, outcome: &Outcome) -> Vec<&'static str> {
    model
        .properties()
        .iter()
        .filter(|p| p.expectation == Expectation::Sometimes && outcome.discoveries.contains_key(p.name))
        .map(|p| p.name)
        .collect()
}
