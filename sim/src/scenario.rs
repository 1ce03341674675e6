//! Scripted runs: a small builder of timed [`Action`]s over the same [`World`] the swarm
//! runs use, judged by the same spec.
//!
//! ```no_run
//! use sim::scenario::{Action, Scenario};
//! let report = Scenario::new(5)
//!     .named("crash one of five")
//!     .cold_start()
//!     .at(20_000, Action::Crash(2))
//!     .at(25_000, Action::Partition(vec![vec![1, 3], vec![4, 5]]))
//!     .at(40_000, Action::Heal)
//!     .expect_converged() // within the convergence bound after the last action
//!     .run(1);
//! report.assert_ok();
//! ```
//!
//! Times are milliseconds of simulated time from the start. Each action is one line of
//! the scenario language ([`Scenario::script`] prints it; see [`crate::faults`] for every
//! line), so a text parser can later build the same scenarios without recompiling.
//!
//! A run: the nodes start (on one formed ring, or cold: every node runs `Node::new` at time
//! zero, except nodes that have a `start` action, which wait for it); the actions happen;
//! background traffic (on unless [`Scenario::quiet`]) and scripted sends go on until the
//! convergence deadline (or until `token + consensus` before the end when no convergence
//! is expected); the run ends one `token + consensus` after the deadline (or after the last
//! action), or at [`Scenario::run_for`] if later. Then every safety property is checked,
//! and, when convergence is expected, LIVE-1 and LIVE-2 over the window from the last
//! action (a pause counts until its resume) to the deadline, with the nodes running at the
//! end as the live set.

use crate::cpg::CpgWorkload;
pub use crate::faults::{Action, Timed, Trigger};
use crate::options::{NetParams, Options, StartMode, Workload};
use crate::rng::Rng;
use crate::run::{convergence_bound, epoch, sim_violations, spec_params, trace_hash};
use crate::world::{Life, World, WorldStats, node_id};
use core::time::Duration;
use spec::Violation;
use spec::trace::{ConfKind, EventKind, Ring};
use std::fmt::Write as _;
use totem_core::Time;
use totem_core::broken::Bug;

/// A scripted run. Build with [`Scenario::new`] and the builder methods.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub name: String,
    pub nodes: usize,
    pub start: StartMode,
    /// Base token timeout (ms); the other timeouts follow Corosync's derivations.
    pub token_ms: u64,
    /// Network conditions at time zero. `None` latency: drawn from the seed (so seeds
    /// differ in packet interleavings).
    pub loss: f64,
    pub duplication: f64,
    pub latency_us: Option<(u64, u64)>,
    pub workload: Workload,
    pub actions: Vec<Timed>,
    /// Convergence expected within this many ms after the last action.
    pub converge_within_ms: Option<u64>,
    pub run_for_ms: Option<u64>,
    pub window_size: u32,
    pub max_messages: u32,
    pub wire: bool,
    pub bug: Option<Bug>,
    /// CPG nodes with simulated clients; None: plain nodes.
    pub cpg: Option<CpgWorkload>,
}

impl Scenario {
    /// `nodes` nodes (ids 1..=nodes) on one formed ring, Corosync's default 3 s token, a
    /// loss-free network, light background traffic, no expectation but safety.
    pub fn new(nodes: usize) -> Scenario {
        Scenario {
            name: format!("{nodes} nodes"),
            nodes: nodes.max(1),
            start: StartMode::Formed,
            token_ms: 3000,
            loss: 0.0,
            duplication: 0.0,
            latency_us: None,
            workload: Workload {
                enabled: true,
                interval_mean_ns: 20_000_000,
                burst_max: 3,
                safe_fraction: 0.2,
                small_max: 256,
                medium_max: 4096,
                large_max: 64 * 1024,
                large_fraction: 0.01,
            },
            actions: Vec::new(),
            converge_within_ms: None,
            run_for_ms: None,
            window_size: 50,
            max_messages: 17,
            wire: true,
            bug: None,
            cpg: None,
        }
    }

    pub fn named(mut self, name: &str) -> Self {
        self.name = name.to_string();
        self
    }

    /// Every node starts from nothing (`Node::new`) at time zero (nodes with a `start`
    /// action: at that action).
    pub fn cold_start(mut self) -> Self {
        self.start = StartMode::Cold;
        self
    }

    /// Every node starting at time zero is a member of one formed ring (the default).
    pub fn formed(mut self) -> Self {
        self.start = StartMode::Formed;
        self
    }

    pub fn token_ms(mut self, ms: u64) -> Self {
        self.token_ms = ms;
        self
    }

    pub fn loss(mut self, p: f64) -> Self {
        self.loss = p;
        self
    }

    pub fn duplication(mut self, p: f64) -> Self {
        self.duplication = p;
        self
    }

    pub fn latency_us(mut self, min: u64, max: u64) -> Self {
        self.latency_us = Some((min, max.max(min)));
        self
    }

    /// No background traffic (scripted `send` actions only).
    pub fn quiet(mut self) -> Self {
        self.workload.enabled = false;
        self
    }

    /// Background traffic: a burst of up to `burst` messages every `mean_ms` on average per
    /// node.
    pub fn traffic(mut self, mean_ms: u64, burst: u64) -> Self {
        self.workload.enabled = true;
        self.workload.interval_mean_ns = mean_ms.max(1) * 1_000_000;
        self.workload.burst_max = burst.max(1);
        self
    }

    pub fn workload(mut self, workload: Workload) -> Self {
        self.workload = workload;
        self
    }

    /// Run the CPG service on every node with [`CpgWorkload::standard`] clients. Their
    /// churn (connect, join, leave, exit) stops at the last action, so that the groups
    /// settle before the liveness checks (CPG-7, CPG-11); multicasts go on like background
    /// traffic.
    pub fn cpg(self) -> Self {
        self.cpg_workload(CpgWorkload::standard())
    }

    /// Run the CPG service with these clients.
    pub fn cpg_workload(mut self, w: CpgWorkload) -> Self {
        self.cpg = Some(w);
        self
    }

    pub fn with_bug(mut self, bug: Bug) -> Self {
        self.bug = Some(bug);
        self
    }

    /// `action` at `ms` milliseconds (actions at the same time happen in the order given).
    pub fn at(mut self, ms: u64, action: Action) -> Self {
        self.actions.push(Timed::at_ms(ms, action));
        self
    }

    /// Expect every running node to be in the same regular configuration, with exactly the
    /// running nodes as members, within `ms` after the last action (for a pause: after the
    /// resume), and the survivors' messages delivered (LIVE-1 and LIVE-2).
    pub fn expect_converged_within(mut self, ms: u64) -> Self {
        self.converge_within_ms = Some(ms);
        self
    }

    /// [`Scenario::expect_converged_within`] the convergence bound of [`crate::run`].
    pub fn expect_converged(self) -> Self {
        let ms = self.bound_ms();
        self.expect_converged_within(ms)
    }

    /// Run at least until `ms`.
    pub fn run_for(mut self, ms: u64) -> Self {
        self.run_for_ms = Some(ms);
        self
    }

    /// The convergence bound B (ms) for this scenario's timing and size.
    pub fn bound_ms(&self) -> u64 {
        convergence_bound(&self.options(0)).as_millis() as u64
    }

    /// token + consensus (ms) for this scenario's timing and size.
    pub fn epoch_ms(&self) -> u64 {
        epoch(&self.options(0)).as_millis() as u64
    }

    /// The run's core configuration (effective timeouts).
    pub fn config(&self) -> totem_core::Config {
        self.options(0).core_config()
    }

    /// When the last action takes effect, in ns: its time, or for a pause, the resume.
    pub fn last_fault_end_ns(&self) -> u64 {
        self.actions
            .iter()
            .map(|t| match t.action {
                Action::Pause(_, ms) => t.at_ns.saturating_add(ms.saturating_mul(1_000_000)),
                _ => t.at_ns,
            })
            .max()
            .unwrap_or(0)
    }

    /// The actions in time order (stable for equal times).
    fn sorted_actions(&self) -> Vec<Timed> {
        let mut actions = self.actions.clone();
        actions.sort_by_key(|t| t.at_ns);
        actions
    }

    /// The scenario in its text form: a header, then one line per action.
    pub fn script(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# {}", self.name);
        let _ = writeln!(s, "nodes {}", self.nodes);
        let _ = writeln!(s, "start {}", if self.start == StartMode::Cold { "cold" } else { "formed" });
        let _ = writeln!(s, "token {}ms", self.token_ms);
        if self.loss > 0.0 {
            let _ = writeln!(s, "loss {}", self.loss);
        }
        if !self.workload.enabled {
            let _ = writeln!(s, "traffic off");
        }
        if self.cpg.is_some() {
            let _ = writeln!(s, "cpg on");
        }
        for t in self.sorted_actions() {
            let _ = writeln!(s, "{t}");
        }
        if let Some(ms) = self.converge_within_ms {
            let _ = writeln!(s, "expect converged within {ms}ms");
        }
        s
    }

    /// The run's options for `seed` (latency jitter comes from the seed unless fixed).
    pub fn options(&self, seed: u64) -> Options {
        let mut rng = Rng::new(seed).fork(5);
        let (min_us, max_us) = self.latency_us.unwrap_or_else(|| {
            let min = rng.range(50, 500);
            (min, min + rng.range(0, 1000))
        });
        Options {
            seed,
            nodes: self.nodes,
            net: NetParams {
                loss: self.loss,
                duplication: self.duplication,
                latency_min_ns: min_us * 1000,
                latency_max_ns: max_us * 1000,
                slow_large_min_bytes: 0,
                slow_large_extra_ns: 0,
            },
            workload: self.workload.clone(),
            window_size: self.window_size,
            max_messages: self.max_messages,
            safety_ns: 0,
            liveness_ns: 0,
            max_events: 50_000_000,
            max_events_per_sec: crate::options::DEFAULT_MAX_EVENTS_PER_SEC,
            wire: self.wire,
            bug: self.bug,
            start: self.start,
            token_ms: self.token_ms,
            mix: crate::faults::FaultMix::none(),
            schedule: self.sorted_actions(),
            liveness_restart: false,
            liveness_keep_state: true,
            liveness_send_ns: 0,
            pause_queue_max: 128,
            fsync_max_ns: 1_000_000,
            send_join_ms: 0,
            cpg: self.cpg.clone(),
        }
    }

    /// Run the scenario with `seed` and judge it. Never panics on a failed check: see
    /// [`ScenarioReport::assert_ok`].
    pub fn run(&self, seed: u64) -> ScenarioReport {
        let opts = self.options(seed);
        let last = Time(self.last_fault_end_ns());
        let epoch = epoch(&opts);
        let deadline = self.converge_within_ms.map(|ms| last + Duration::from_millis(ms));
        let mut end = deadline.unwrap_or(last) + epoch;
        if let Some(ms) = self.run_for_ms {
            end = end.max(Time::from_millis(ms));
        }
        let send_stop = deadline.unwrap_or(Time(end.0.saturating_sub(epoch.as_nanos() as u64)));
        let mut violations = Vec::new();
        let mut world = match World::new(opts.clone()) {
            Ok(w) => w,
            Err(e) => {
                return ScenarioReport::failed_to_start(self, seed, e.to_string());
            }
        };
        #[cfg(not(feature = "broken"))]
        if self.bug.is_some() {
            return ScenarioReport::failed_to_start(
                self,
                seed,
                "broken variants need --features broken".into(),
            );
        }
        let mut exhausted = false;
        if self.cpg.is_some() && last < send_stop {
            exhausted = !world.run_until(last);
            world.churn = false;
        }
        if !exhausted {
            exhausted = !world.run_until(send_stop);
        }
        world.submitting = false;
        if !exhausted {
            exhausted = !world.run_until(end);
        }
        let params = spec_params(&opts);
        violations.extend(spec::check_safety(&world.trace, &params));
        let live = world.live_set();
        if let Some(deadline) = deadline {
            let window = spec::LivenessWindow { healed_at: last.0, deadline: deadline.0, live: live.clone() };
            violations.extend(spec::check_liveness(&world.trace, &params, &window));
        }
        violations.extend(sim_violations(&world, exhausted));
        let converged = world.converged().map(|ring| {
            let at =
                live.iter().map(|&n| world.nodes[n as usize - 1].last_config_at).max().unwrap_or(Time::ZERO);
            (ring, at)
        });
        ScenarioReport {
            name: self.name.clone(),
            seed,
            script: self.script(),
            violations,
            live,
            converged,
            last_action: last,
            deadline,
            trace_hash: trace_hash(&world.trace),
            stats: world.stats.clone(),
            world: Some(world),
        }
    }

    /// Run and assert: panics with a readable report if anything failed.
    pub fn check(&self, seed: u64) -> ScenarioReport {
        let report = self.run(seed);
        report.assert_ok();
        report
    }

    /// [`Scenario::check`] for each seed.
    pub fn check_seeds(&self, seeds: impl IntoIterator<Item = u64>) -> Vec<ScenarioReport> {
        seeds.into_iter().map(|s| self.check(s)).collect()
    }
}

/// The outcome of a scenario run.
#[derive(Debug)]
pub struct ScenarioReport {
    pub name: String,
    pub seed: u64,
    pub script: String,
    pub violations: Vec<Violation>,
    /// Nodes running (or paused) at the end.
    pub live: Vec<u32>,
    /// The ring the live nodes ended in together, and when the last of them installed it
    /// (None: they did not end converged).
    pub converged: Option<(Ring, Time)>,
    pub last_action: Time,
    /// The convergence deadline, when convergence was expected.
    pub deadline: Option<Time>,
    pub trace_hash: String,
    pub stats: WorldStats,
    /// The world at the end (None if it could not be built).
    pub world: Option<World>,
}

impl ScenarioReport {
    fn failed_to_start(s: &Scenario, seed: u64, message: String) -> ScenarioReport {
        ScenarioReport {
            name: s.name.clone(),
            seed,
            script: s.script(),
            violations: vec![Violation { property: "SIM-start", message, events: Vec::new() }],
            live: Vec::new(),
            converged: None,
            last_action: Time::ZERO,
            deadline: None,
            trace_hash: String::new(),
            stats: WorldStats::default(),
            world: None,
        }
    }

    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }

    /// Panic with the scenario, the seed, the violations and the nodes' final states if
    /// anything failed.
    pub fn assert_ok(&self) {
        if self.passed() {
            return;
        }
        panic!("{}", self.describe());
    }

    /// A readable account of the run.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "scenario '{}' seed {}: {} violation(s)",
            self.name,
            self.seed,
            self.violations.len()
        );
        let mut props: Vec<&str> = self.violations.iter().map(|v| v.property).collect();
        props.dedup();
        let _ = writeln!(s, "properties: {props:?}");
        for v in self.violations.iter().take(12) {
            let _ = writeln!(s, "  {v}");
        }
        if self.violations.len() > 12 {
            let _ = writeln!(s, "  ... and {} more", self.violations.len() - 12);
        }
        let _ = writeln!(s, "script:\n{}", self.script.trim_end());
        let _ = writeln!(
            s,
            "last action at {}, deadline {:?}, live {:?}, converged {:?}",
            self.last_action, self.deadline, self.live, self.converged
        );
        if let Some(w) = &self.world {
            for (i, n) in w.nodes.iter().enumerate() {
                let st = n.node.status();
                let _ = writeln!(
                    s,
                    "  node {} #{} {:?}: {:?} ring {} members {:?}, last config {:?} at {}",
                    node_id(i),
                    n.incarnation,
                    n.life,
                    st.state,
                    st.ring_id,
                    st.members,
                    n.last_config,
                    n.last_config_at
                );
            }
        }
        let _ = writeln!(s, "stats: {:?}", self.stats);
        if std::env::var_os("SIM_SCENARIO_LOG").is_some() {
            let _ = writeln!(s, "membership log:\n{}", self.membership_log());
        } else {
            let _ = writeln!(s, "(set SIM_SCENARIO_LOG=1 to print the membership log)");
        }
        s
    }

    /// Every lifecycle and membership event of the trace (start, state lost, crash, leave,
    /// protocol state changes, commits, configurations, CPG joins, leaves, exits and view
    /// changes), one per line.
    pub fn membership_log(&self) -> String {
        let mut s = String::new();
        let Some(trace) = self.trace() else { return s };
        for (i, e) in trace.events.iter().enumerate() {
            let shown = matches!(
                e.kind,
                EventKind::Start
                    | EventKind::StateLost
                    | EventKind::Crash
                    | EventKind::Leave
                    | EventKind::State { .. }
                    | EventKind::Commit { .. }
                    | EventKind::Config { .. }
                    | EventKind::CpgJoin { .. }
                    | EventKind::CpgLeave { .. }
                    | EventKind::CpgExit { .. }
                    | EventKind::CpgConfchg { .. }
                    | EventKind::CpgTotemConfchg { .. }
            );
            if shown {
                let _ = writeln!(
                    s,
                    "{i:>8} {:>14} n{}#{} {:?}",
                    Time(e.time).to_string(),
                    e.node,
                    e.incarnation,
                    e.kind
                );
            }
        }
        s
    }

    /// The recorded trace (None if the world could not be built).
    pub fn trace(&self) -> Option<&spec::trace::Trace> {
        self.world.as_ref().map(|w| &w.trace)
    }

    /// Every configuration `node` delivered (all incarnations): (time, incarnation, kind,
    /// ring, members).
    pub fn configs(&self, node: u32) -> Vec<(Time, u32, ConfKind, Ring, Vec<u32>)> {
        let Some(trace) = self.trace() else { return Vec::new() };
        trace
            .events
            .iter()
            .filter(|e| e.node == node)
            .filter_map(|e| match &e.kind {
                EventKind::Config { kind, ring, members, .. } => {
                    Some((Time(e.time), e.incarnation, *kind, *ring, members.clone()))
                }
                _ => None,
            })
            .collect()
    }

    /// When `node` first installed a regular configuration with exactly `members` at or
    /// after `after_ms`.
    pub fn first_reg(&self, node: u32, members: &[u32], after_ms: u64) -> Option<Time> {
        let mut members = members.to_vec();
        members.sort_unstable();
        self.configs(node)
            .into_iter()
            .find(|(t, _, k, _, m)| {
                *k == ConfKind::Regular && *m == members && *t >= Time::from_millis(after_ms)
            })
            .map(|(t, ..)| t)
    }

    /// Regular configurations `node` installed (all incarnations).
    pub fn reg_count(&self, node: u32) -> usize {
        self.configs(node).iter().filter(|c| c.2 == ConfKind::Regular).count()
    }

    /// The node's final life state.
    pub fn life(&self, node: u32) -> Option<Life> {
        self.world.as_ref().and_then(|w| w.nodes.get(node as usize - 1)).map(|n| n.life)
    }

    /// Messages delivered at `node` (all incarnations).
    pub fn deliveries(&self, node: u32) -> usize {
        self.trace().map_or(0, |t| {
            t.events.iter().filter(|e| e.node == node && matches!(e.kind, EventKind::Deliver { .. })).count()
        })
    }
}
