//! Running the checker and reporting: the part of the CLI that tests also use.

use crate::model::{self, Action, ModelState, TotemModel};
use stateright::{Checker, Expectation, HasDiscoveries, Model, Path};
use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

/// Breadth-first (shortest counterexamples) or depth-first (less memory).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Search {
    Bfs,
    Dfs,
}

/// How to run the checker.
#[derive(Clone, Debug)]
pub struct Options {
    pub search: Search,
    pub threads: usize,
    /// Expand no state at this depth or deeper (stateright's `target_max_depth`).
    pub depth: Option<usize>,
    /// Stop once this many states were generated (stateright's `target_state_count`,
    /// checked every 1,500 states).
    pub max_states: Option<usize>,
    /// Stop at the first violated `always` property instead of exploring everything.
    pub stop_on_violation: bool,
    /// Print progress to stderr every this often (`None`: silent).
    pub progress: Option<Duration>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            search: Search::Bfs,
            threads: 1,
            depth: None,
            max_states: None,
            stop_on_violation: false,
            progress: None,
        }
    }
}

/// What a run found.
pub struct Outcome {
    pub states: usize,
    pub unique: usize,
    pub max_depth: usize,
    pub elapsed: Duration,
    pub discoveries: HashMap<&'static str, Path<ModelState, Action>>,
    /// Every reachable state within the bounds was explored (no bound cut the search and it
    /// did not stop early).
    pub exhaustive: bool,
    /// The depth bound cut some paths.
    pub depth_bounded: bool,
    /// The state budget stopped the search.
    pub count_bounded: bool,
}

impl std::fmt::Debug for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outcome")
            .field("states", &self.states)
            .field("unique", &self.unique)
            .field("max_depth", &self.max_depth)
            .field("elapsed", &self.elapsed)
            .field("discoveries", &self.discoveries.keys().collect::<Vec<_>>())
            .field("exhaustive", &self.exhaustive)
            .finish()
    }
}

impl Outcome {
    pub fn states_per_second(&self) -> f64 {
        self.states as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The names of the violated `always` properties.
    pub fn violated(&self, model: &TotemModel) -> Vec<&'static str> {
        let mut v: Vec<&'static str> = model
            .properties()
            .iter()
            .filter(|p| p.expectation == Expectation::Always && self.discoveries.contains_key(p.name))
            .map(|p| p.name)
            .collect();
        v.sort_unstable();
        v
    }
}

/// Run the checker on `model`.
pub fn check(model: TotemModel, opts: &Options) -> Outcome {
    let mut builder = model.first_discoveries_only().checker().threads(opts.threads.max(1));
    if let Some(d) = opts.depth {
        builder = builder.target_max_depth(d);
    }
    if let Some(n) = opts.max_states {
        builder = builder.target_state_count(n);
    }
    if opts.stop_on_violation {
        builder = builder.finish_when(HasDiscoveries::AnyFailures);
    }
    let started = Instant::now();
    let checker = match opts.search {
        Search::Bfs => CheckerBox::Bfs(Box::new(builder.spawn_bfs())),
        Search::Dfs => CheckerBox::Dfs(Box::new(builder.spawn_dfs())),
    };
    match checker {
        CheckerBox::Bfs(c) => finish(*c, opts, started),
        CheckerBox::Dfs(c) => finish(*c, opts, started),
    }
}

enum CheckerBox<B, D> {
    Bfs(Box<B>),
    Dfs(Box<D>),
}

fn finish<C: Checker<TotemModel>>(checker: C, opts: &Options, started: Instant) -> Outcome {
    if let Some(every) = opts.progress {
        let mut last = Instant::now();
        while !checker.is_done() {
            std::thread::sleep(Duration::from_millis(50));
            if last.elapsed() >= every {
                last = Instant::now();
                let secs = started.elapsed().as_secs_f64();
                eprintln!(
                    "  ... {:.0}s: {} states, {} unique, depth {}, {:.0} states/s",
                    secs,
                    checker.state_count(),
                    checker.unique_state_count(),
                    checker.max_depth(),
                    checker.state_count() as f64 / secs.max(1e-9)
                );
            }
        }
    }
    let checker = checker.join();
    let elapsed = started.elapsed();
    let discoveries = checker.discoveries();
    let states = checker.state_count();
    let max_depth = checker.max_depth();
    let depth_bounded = opts.depth.is_some_and(|d| max_depth >= d);
    let count_bounded = opts.max_states.is_some_and(|n| states >= n);
    let model = checker.model();
    let stopped_early = opts.stop_on_violation
        && model
            .properties()
            .iter()
            .any(|p| p.expectation == Expectation::Always && discoveries.contains_key(p.name));
    Outcome {
        states,
        unique: checker.unique_state_count(),
        max_depth,
        elapsed,
        discoveries,
        exhaustive: !depth_bounded && !count_bounded && !stopped_early,
        depth_bounded,
        count_bounded,
    }
}

/// Print the statistics and every property's verdict.
pub fn report(model: &TotemModel, outcome: &Outcome, w: &mut impl Write) -> std::io::Result<()> {
    writeln!(w, "states explored:  {}", outcome.states)?;
    writeln!(w, "unique states:    {}", outcome.unique)?;
    writeln!(w, "maximum depth:    {}", outcome.max_depth)?;
    writeln!(w, "wall time:        {:.3} s", outcome.elapsed.as_secs_f64())?;
    writeln!(w, "states/second:    {:.0}", outcome.states_per_second())?;
    let scope = if outcome.exhaustive {
        "exhaustive: every reachable state within the budgets was checked".to_string()
    } else {
        let mut why = Vec::new();
        if outcome.depth_bounded {
            why.push("the depth bound");
        }
        if outcome.count_bounded {
            why.push("the state budget");
        }
        if why.is_empty() {
            why.push("the first violation");
        }
        format!("partial: stopped by {}", why.join(" and "))
    };
    writeln!(w, "search:           {scope}")?;
    writeln!(w)?;
    writeln!(w, "properties:")?;
    for p in model.properties() {
        let found = outcome.discoveries.get(p.name);
        let verdict = match (&p.expectation, found) {
            (Expectation::Always, Some(path)) => {
                format!("VIOLATED ({} steps)", path.clone().into_actions().len())
            }
            (Expectation::Always, None) if outcome.exhaustive => "holds".to_string(),
            (Expectation::Always, None) => "holds so far".to_string(),
            (_, Some(path)) => format!("example found ({} steps)", path.clone().into_actions().len()),
            (_, None) if outcome.exhaustive => "unreachable within the budgets".to_string(),
            (_, None) => "not found so far".to_string(),
        };
        let what = model::statement(p.name).map(first_clause).unwrap_or_default();
        writeln!(w, "  {:<60} {verdict}", format!("{} {}", p.name, what))?;
    }
    Ok(())
}

fn first_clause(s: &str) -> String {
    let s = s.split(['.', ':', ';']).next().unwrap_or(s);
    let short: String = s.chars().take(44).collect();
    if short.len() < s.len() { format!("({short}...)") } else { format!("({short})") }
}

/// A readable step-by-step account of `path`, ending with the spec's violations on its last
/// state.
pub fn counterexample(model: &TotemModel, path: &Path<ModelState, Action>) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let steps = path.clone().into_vec();
    let Some((first, _)) = steps.first() else { return s };
    let _ = writeln!(s, "initial state:");
    for e in first.history.since(0) {
        if let Some(line) = crate::describe::event(&e.kind, false) {
            let _ = writeln!(s, "    n{}: {line}", e.node);
        }
    }
    for (n, (state, action)) in steps.iter().enumerate() {
        let Some(action) = action else { continue };
        let _ = writeln!(s, "step {}: {action:?}", n + 1);
        let mut log = Vec::new();
        let _ = model.step(state, action, Some(&mut log));
        for line in log {
            let _ = writeln!(s, "    {line}");
        }
    }
    let last = path.last_state();
    let trace = last.history.to_trace();
    let violations = spec::check_safety(&trace, &model.params);
    if !violations.is_empty() {
        let _ = writeln!(s, "\nspec violations on the final trace:");
        for v in &violations {
            let _ = writeln!(s, "  {v}");
            for &i in &v.events {
                if let Some(e) = trace.events.get(i) {
                    let _ = writeln!(
                        s,
                        "      event {i} (step {}): n{}/{} {:?}",
                        e.time, e.node, e.incarnation, e.kind
                    );
                }
            }
        }
    }
    s
}

/// A seeded random walk of at most `steps` steps, printed like a counterexample, with the
/// spec's verdict on the final trace.
pub fn walk(model: &TotemModel, seed: u64, steps: usize, show_actions: bool) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let mut rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        // xorshift64*
        rng ^= rng >> 12;
        rng ^= rng << 25;
        rng ^= rng >> 27;
        rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    let Some(mut state) = model.init_states().into_iter().next() else { return out };
    for e in state.history.since(0) {
        if let Some(line) = crate::describe::event(&e.kind, false) {
            let _ = writeln!(out, "    n{}: {line}", e.node);
        }
    }
    for n in 0..steps {
        let mut actions = Vec::new();
        model.actions(&state, &mut actions);
        if actions.is_empty() {
            let _ = writeln!(out, "no action enabled");
            break;
        }
        if show_actions {
            let _ = writeln!(out, "  enabled:");
            for a in &actions {
                let _ = writeln!(out, "    - {a:?}");
            }
        }
        let pick = (next() % actions.len() as u64) as usize;
        let action = actions.swap_remove(pick);
        let mut log = Vec::new();
        let Some(s) = model.step(&state, &action, Some(&mut log)) else { continue };
        let _ = writeln!(out, "step {}: {action:?}", n + 1);
        for line in log {
            let _ = writeln!(out, "    {line}");
        }
        state = s;
    }
    let _ = writeln!(out, "\nfinal state:\n{state:?}");
    let violations = spec::check_safety(&state.history.to_trace(), &model.params);
    let _ = writeln!(out, "spec violations: {}", violations.len());
    for v in violations {
        let _ = writeln!(out, "  {v}");
    }
    out
}
