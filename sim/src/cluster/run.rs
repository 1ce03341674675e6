//! The driver: builds the turmoil simulation, carries out the actions between steps, runs
//! the phases and judges the trace.

use super::host::{Life, NodeCtl, PORT, Shared, host_main};
use super::net::{NetCounts, NetShared, Rates};
use super::plan::{Act, ClusterOptions, Timed};
use super::record::{RecordCounts, Recorder, undelivered};
use crate::run::trace_hash;
use spec::Violation;
use spec::trace::{ConfKind, EventKind, Ring, Trace};
use std::cell::Cell;
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use totem_core::NodeId;

/// A running cluster: the turmoil simulation, the hosts' shared state, the pending actions.
pub struct Cluster {
    pub sim: turmoil::Sim<'static>,
    pub shared: Rc<Shared>,
    names: Vec<String>,
    /// Pending actions, absolute times (ns of simulated time).
    queue: VecDeque<Timed>,
    /// A host's software returned an error or panicked (turmoil stops there).
    pub host_error: Option<String>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").field("now", &self.now_ns()).field("names", &self.names).finish()
    }
}

fn host_name(node: u32) -> String {
    format!("n{node}")
}

impl Cluster {
    /// Build the simulation and register one host per node. Every node starts at the first
    /// step, except those with a `start` action in `opts.schedule` (late joiners).
    pub fn new(opts: ClusterOptions) -> Cluster {
        let mut builder = turmoil::Builder::new();
        builder
            .simulation_duration(Duration::from_secs(100 * 365 * 24 * 3600))
            .tick_duration(Duration::from_nanos(opts.tick_ns.max(1)))
            .min_message_latency(Duration::from_nanos(opts.net.latency_min_ns))
            .max_message_latency(Duration::from_nanos(opts.net.latency_max_ns.max(opts.net.latency_min_ns)))
            .udp_capacity(opts.net.udp_capacity.max(1))
            .epoch(std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000))
            .rng_seed(opts.seed);
        let mut sim = builder.build();
        let ids: Vec<u32> = (1..=opts.nodes as u32).collect();
        let names: Vec<String> = ids.iter().map(|&n| host_name(n)).collect();
        let nodelist: BTreeMap<NodeId, SocketAddr> =
            ids.iter().map(|&n| (NodeId(n), SocketAddr::new(sim.lookup(host_name(n)), PORT))).collect();
        let net = Rc::new(NetShared::default());
        net.rates.set(Rates { loss: opts.net.loss, dup: opts.net.dup, corrupt: opts.net.corrupt });
        let late: Vec<u32> = opts
            .schedule
            .iter()
            .filter_map(|t| match t.act {
                Act::Start(n) => Some(n),
                _ => None,
            })
            .collect();
        let shared = Rc::new(Shared {
            traffic: Cell::new(opts.apps.traffic),
            churn: Cell::new(opts.apps.churn),
            opts,
            nodes: ids.iter().map(|&n| Rc::new(NodeCtl::new(n))).collect(),
            nodelist,
            net,
            recorder: Arc::new(Mutex::new(Recorder::default())),
            submitting: Cell::new(true),
        });
        for (i, name) in names.iter().enumerate() {
            let s = shared.clone();
            sim.host(name.as_str(), move || host_main(s.clone(), i));
        }
        for n in late {
            if let Some(name) = names.get(n as usize - 1) {
                // Registered (its address is in everyone's nodelist) but not running.
                sim.crash(name.as_str());
            }
        }
        Cluster { sim, shared, names, queue: VecDeque::new(), host_error: None }
    }

    pub fn now_ns(&self) -> u64 {
        self.sim.elapsed().as_nanos() as u64
    }

    /// Queue `schedule`, its times offset by `zero_ns`.
    pub fn schedule(&mut self, schedule: &[Timed], zero_ns: u64) {
        let mut all: Vec<Timed> = self.queue.drain(..).collect();
        all.extend(schedule.iter().map(|t| Timed { at_ns: t.at_ns + zero_ns, act: t.act.clone() }));
        all.sort_by_key(|t| t.at_ns);
        self.queue = all.into();
    }

    fn ctl(&self, node: u32) -> Option<&Rc<NodeCtl>> {
        self.shared.nodes.get((node as usize).checked_sub(1)?)
    }

    fn name(&self, node: u32) -> Option<&str> {
        self.names.get((node as usize).checked_sub(1)?).map(String::as_str)
    }

    /// Step until simulated time `t` (actions due are carried out before each step).
    /// Returns false if a host failed (the simulation cannot go on).
    pub fn run_until(&mut self, t: u64) -> bool {
        while self.now_ns() < t {
            if self.host_error.is_some() {
                return false;
            }
            while self.queue.front().is_some_and(|a| a.at_ns <= self.now_ns()) {
                if let Some(a) = self.queue.pop_front() {
                    self.apply(&a.act);
                }
            }
            if let Err(e) = self.sim.step() {
                self.host_error = Some(e.to_string());
                return false;
            }
        }
        self.host_error.is_none()
    }

    fn record_at_now(&self, node: u32, inc: u32, kind: EventKind) {
        let now = self.now_ns();
        if let Ok(mut r) = self.shared.recorder.lock() {
            r.push_at(now, node, inc, kind);
        }
    }

    fn crash(&mut self, node: u32) {
        let (Some(ctl), Some(name)) = (self.ctl(node).cloned(), self.name(node).map(str::to_string)) else {
            return;
        };
        if !ctl.alive() {
            return;
        }
        self.sim.crash(name.as_str());
        ctl.frozen_until.set(None);
        ctl.life.set(Life::Crashed);
        if !ctl.pending_start.replace(false)
            && let Some(inc) = ctl.incarnation.get()
        {
            self.record_at_now(node, inc, EventKind::Crash);
        }
    }

    fn all_pairs(&self) -> Vec<(String, String)> {
        let mut v = Vec::new();
        for (i, a) in self.names.iter().enumerate() {
            for b in self.names.iter().skip(i + 1) {
                v.push((a.clone(), b.clone()));
            }
        }
        v
    }

    fn heal_links(&mut self) {
        for (a, b) in self.all_pairs() {
            // Healthy both ways, and whatever was held is delivered.
            self.sim.release(a.as_str(), b.as_str());
        }
    }

    /// Carry out `act` now.
    pub fn apply(&mut self, act: &Act) {
        match act {
            Act::Start(n) => {
                if let (Some(ctl), Some(name)) = (self.ctl(*n).cloned(), self.name(*n).map(str::to_string))
                    && ctl.life.get() == Life::NotStarted
                {
                    self.sim.bounce(name.as_str());
                    // Running from now on (its software starts at the next step).
                    ctl.life.set(Life::Up);
                    ctl.pending_start.set(true);
                }
            }
            Act::Crash(n) => self.crash(*n),
            Act::Restart { node, keep_state } => {
                self.crash(*node);
                let (Some(ctl), Some(name)) =
                    (self.ctl(*node).cloned(), self.name(*node).map(str::to_string))
                else {
                    return;
                };
                if !keep_state && ctl.incarnation.get().is_some() {
                    *ctl.store.borrow_mut() = totem_node::store::MemStore::default();
                    ctl.wiped.set(true);
                }
                self.sim.bounce(name.as_str());
                ctl.life.set(Life::Up);
                ctl.pending_start.set(true);
            }
            Act::Pause { node, ns } => {
                let now = self.now_ns();
                if let Some(ctl) = self.ctl(*node)
                    && ctl.life.get() == Life::Up
                {
                    ctl.freeze(now + ns);
                }
            }
            Act::Resume(n) => {
                if let Some(ctl) = self.ctl(*n) {
                    ctl.thaw();
                }
            }
            Act::Leave(n) => {
                if let Some(ctl) = self.ctl(*n)
                    && ctl.alive()
                {
                    ctl.thaw();
                    ctl.request_leave();
                }
            }
            Act::Partition(groups) => {
                self.heal_links();
                let group_of = |n: u32| groups.iter().position(|g| g.contains(&n)).unwrap_or(usize::MAX);
                let n = self.names.len() as u32;
                for a in 1..=n {
                    for b in a + 1..=n {
                        if group_of(a) != group_of(b)
                            && let (Some(x), Some(y)) = (self.name(a), self.name(b))
                        {
                            self.sim.partition(x, y);
                        }
                    }
                }
            }
            Act::Heal => self.heal_links(),
            Act::OneWay { from, to } => {
                if let (Some(a), Some(b)) = (self.name(*from), self.name(*to))
                    && from != to
                {
                    self.sim.partition_oneway(a, b);
                }
            }
            Act::Cut(a, b) => {
                if let (Some(x), Some(y)) = (self.name(*a), self.name(*b))
                    && a != b
                {
                    self.sim.partition(x, y);
                }
            }
            Act::Mend(a, b) | Act::Release(a, b) => {
                if let (Some(x), Some(y)) = (self.name(*a), self.name(*b))
                    && a != b
                {
                    self.sim.release(x, y);
                }
            }
            Act::Hold(a, b) => {
                if let (Some(x), Some(y)) = (self.name(*a), self.name(*b))
                    && a != b
                {
                    self.sim.hold(x, y);
                }
            }
            Act::Loss(p) => self.set_rates(|r| r.loss = *p),
            Act::Dup(p) => self.set_rates(|r| r.dup = *p),
            Act::Corrupt(p) => self.set_rates(|r| r.corrupt = *p),
            Act::Latency { min_ns, max_ns } => self.set_latency(*min_ns, *max_ns),
            Act::Send { node, count, bytes } => {
                if let Some(ctl) = self.ctl(*node)
                    && ctl.alive()
                {
                    let size = (*bytes).max(crate::payload::HEADER_LEN);
                    ctl.backlog.borrow_mut().extend(std::iter::repeat_n(size, *count as usize));
                }
            }
            Act::Traffic(on) => self.shared.traffic.set(*on),
            Act::Churn(on) => self.shared.churn.set(*on),
        }
    }

    fn set_rates(&self, f: impl FnOnce(&mut Rates)) {
        let mut r = self.shared.net.rates.get();
        f(&mut r);
        self.shared.net.rates.set(r);
    }

    fn set_latency(&self, min_ns: u64, max_ns: u64) {
        for (a, b) in self.all_pairs() {
            self.sim.set_link_latency(a.as_str(), b.as_str(), Duration::from_nanos(min_ns));
            self.sim.set_link_max_message_latency(
                a.as_str(),
                b.as_str(),
                Duration::from_nanos(max_ns.max(min_ns)),
            );
        }
    }

    /// Heal everything (the start of a liveness phase): links up and held packets
    /// delivered, no loss, duplication or corruption, the initial latency, paused nodes
    /// resumed, late joiners started, no application churn, pending actions dropped; with
    /// `restart_dead`, crashed and departed nodes restarted (keeping their disks when
    /// `keep_state`).
    pub fn heal_all(&mut self, restart_dead: bool, keep_state: bool) {
        self.queue.clear();
        self.heal_links();
        self.shared.net.rates.set(Rates::default());
        let (min, max) = (self.shared.opts.net.latency_min_ns, self.shared.opts.net.latency_max_ns);
        self.set_latency(min, max);
        self.shared.churn.set(false);
        for node in 1..=self.names.len() as u32 {
            let Some(ctl) = self.ctl(node).cloned() else { continue };
            match ctl.life.get() {
                Life::Paused => ctl.thaw(),
                Life::NotStarted => self.apply(&Act::Start(node)),
                Life::Crashed | Life::Left if restart_dead => self.apply(&Act::Restart { node, keep_state }),
                _ => {}
            }
        }
    }

    /// The nodes running or paused.
    pub fn live_set(&self) -> Vec<u32> {
        self.shared.nodes.iter().filter(|c| c.alive()).map(|c| c.id).collect()
    }

    fn survivors(&self) -> Vec<(u32, u32)> {
        self.shared
            .nodes
            .iter()
            .filter(|c| c.alive())
            .filter_map(|c| Some((c.id, c.incarnation.get()?)))
            .collect()
    }

    /// LIVE-1's predicate now: every live node runs and its current incarnation's last
    /// configuration is one and the same regular configuration with exactly the live nodes.
    pub fn converged(&self) -> Option<Ring> {
        let live = self.live_set();
        let r = self.shared.recorder.lock().ok()?;
        let mut ring = None;
        for ctl in self.shared.nodes.iter().filter(|c| c.alive()) {
            if ctl.life.get() != Life::Up {
                return None;
            }
            let c = r.last_config.get(&ctl.id)?;
            if Some(c.incarnation) != ctl.incarnation.get()
                || c.kind != ConfKind::Regular
                || c.members != live
            {
                return None;
            }
            if ring.is_some_and(|x| x != c.ring) {
                return None;
            }
            ring = Some(c.ring);
        }
        ring
    }

    /// When the live nodes last installed the ring they share (None: not converged).
    pub fn converged_at(&self) -> Option<u64> {
        self.converged()?;
        let r = self.shared.recorder.lock().ok()?;
        self.live_set().iter().filter_map(|n| r.last_config.get(n).map(|c| c.at)).max()
    }

    /// Messages LIVE-2 still requires (see [`undelivered`]).
    pub fn undelivered(&self) -> usize {
        let survivors = self.survivors();
        self.shared.recorder.lock().map_or(usize::MAX, |r| undelivered(&r.trace, &survivors))
    }

    /// Step until converged with nothing undelivered (checked every 100 ms, the delivery
    /// count with a growing interval), or until `give_up`. Returns when it quiesced.
    pub fn run_until_quiet(&mut self, give_up: u64) -> Option<u64> {
        let step = 100_000_000;
        let mut next_full = self.now_ns();
        let mut interval = step;
        while self.now_ns() < give_up {
            let next = (self.now_ns() + step).min(give_up);
            if !self.run_until(next) {
                return None;
            }
            if self.converged().is_some() && self.now_ns() >= next_full {
                if self.undelivered() == 0 {
                    return Some(self.now_ns());
                }
                next_full = self.now_ns() + interval;
                interval *= 2;
            }
        }
        None
    }

    /// The recorded trace so far (a copy).
    pub fn trace(&self) -> Trace {
        self.shared.recorder.lock().map(|r| r.trace.clone()).unwrap_or_default()
    }

    /// Violations the simulation itself detects: corrupted deliveries, failed hosts or
    /// runtimes.
    pub fn sim_violations(&self) -> Vec<Violation> {
        let mut v = Vec::new();
        if let Ok(r) = self.shared.recorder.lock() {
            if r.counts.corrupt_payloads > 0 {
                v.push(Violation::new(
                    "SIM-payload",
                    format!("{} deliveries differ from what was sent", r.counts.corrupt_payloads),
                    Vec::new(),
                ));
            }
            for e in &r.errors {
                v.push(Violation::new("SIM-runtime", e.clone(), Vec::new()));
            }
        }
        if let Some(e) = &self.host_error {
            v.push(Violation::new("SIM-host", e.clone(), Vec::new()));
        }
        v
    }

    /// The spec's parameters for this run.
    pub fn params(&self) -> spec::Params {
        let c = self.shared.opts.core_config();
        spec::Params { max_messages: c.max_messages, window_size: c.window_size }
    }

    /// Build the report at the end of a run, judging the trace.
    fn report(
        &self,
        began: Instant,
        window: Option<spec::LivenessWindow>,
        quiesced_at: Option<u64>,
    ) -> ClusterReport {
        let trace = self.trace();
        let params = self.params();
        let mut violations = spec::check_safety(&trace, &params);
        if let Some(w) = &window {
            violations.extend(spec::check_liveness(&trace, &params, w));
        }
        violations.extend(self.sim_violations());
        let counts = self.shared.recorder.lock().map(|r| r.counts.clone()).unwrap_or_default();
        ClusterReport {
            seed: self.shared.opts.seed,
            violations,
            trace_hash: trace_hash(&trace),
            trace_events: trace.events.len(),
            sim_ns: self.now_ns(),
            real: began.elapsed(),
            healed_at: window.as_ref().map(|w| w.healed_at),
            deadline: window.as_ref().map(|w| w.deadline),
            live: self.live_set(),
            quiesced_at,
            converged: self.converged(),
            counts,
            net: self.shared.net.counts.get(),
            trace,
        }
    }
}

impl NodeCtl {
    /// Ask the running incarnation to leave cleanly.
    pub fn request_leave(&self) {
        self.leave_requested.set(true);
        self.leave.notify_one();
    }
}

/// The outcome of one cluster run.
#[derive(Debug)]
pub struct ClusterReport {
    pub seed: u64,
    pub violations: Vec<Violation>,
    /// SHA-256 of the trace: the same seed must give the same hash.
    pub trace_hash: String,
    pub trace_events: usize,
    /// Simulated time at the end.
    pub sim_ns: u64,
    /// Real time the run took.
    pub real: Duration,
    /// The liveness window, when liveness was judged.
    pub healed_at: Option<u64>,
    pub deadline: Option<u64>,
    /// Nodes running (or paused) at the end.
    pub live: Vec<u32>,
    /// When the live nodes had converged with everything delivered (None: never).
    pub quiesced_at: Option<u64>,
    /// The ring the live nodes share at the end.
    pub converged: Option<Ring>,
    pub counts: RecordCounts,
    pub net: NetCounts,
    pub trace: Trace,
}

impl ClusterReport {
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }

    /// The distinct properties violated, in order of first appearance.
    pub fn properties(&self) -> Vec<&'static str> {
        let mut props: Vec<&'static str> = Vec::new();
        for v in &self.violations {
            if !props.contains(&v.property) {
                props.push(v.property);
            }
        }
        props
    }
}

/// A swarm run: the safety phase with the drawn faults, then everything heals and the
/// liveness phase runs (see [`crate::cluster`] for the phases and the bound).
pub fn run_swarm(opts: ClusterOptions) -> ClusterReport {
    let began = Instant::now();
    let schedule = opts.schedule.clone();
    let (safety, restart, keep) = (opts.safety_ns, opts.liveness_restart, opts.liveness_keep_state);
    let (bound, epoch, send) = (opts.bound_ns(), opts.epoch_ns(), opts.liveness_send_ns);
    let mut c = Cluster::new(opts);
    c.schedule(&schedule, 0);
    let mut ok = c.run_until(safety);
    c.heal_all(restart, keep);
    let healed_at = c.now_ns();
    let live = c.live_set();
    let deadline = healed_at + bound;
    if ok {
        ok = c.run_until(healed_at + send.min(bound));
    }
    c.shared.submitting.set(false);
    let mut quiesced = if ok { c.run_until_quiet(healed_at + bound + epoch) } else { None };
    // A backlog of accepted messages drains at the ring's throughput, which no timeout
    // bounds: go on while the count of undelivered messages keeps falling (up to a cap).
    let cap = healed_at + 10 * (bound + epoch);
    let mut left = c.undelivered();
    while ok && quiesced.is_none() && c.now_ns() < cap && c.converged().is_some() {
        quiesced = c.run_until_quiet((c.now_ns() + epoch).min(cap));
        let now_left = c.undelivered();
        if quiesced.is_none() && now_left >= left {
            break;
        }
        left = now_left;
    }
    // Watch the converged ring until the deadline (a change before it breaks LIVE-1), and
    // give the CPG synchronization of the last ring time to complete.
    let settle = quiesced.map_or(0, |q| q + epoch);
    if ok {
        c.run_until(deadline.max(settle));
    }
    let window = spec::LivenessWindow { healed_at, deadline, live };
    c.report(began, Some(window), quiesced)
}

/// A scripted run (see [`crate::cluster::script`]).
pub fn run_script(s: &super::script::Script, seed: u64) -> ClusterReport {
    let began = Instant::now();
    let opts = s.options(seed);
    let (bound, epoch) = (opts.bound_ns(), opts.epoch_ns());
    let mut c = Cluster::new(opts);
    let mut start_violation = None;
    let zero = if s.formed {
        let everyone: Vec<u32> = (1..=s.nodes as u32).collect();
        let mut formed = None;
        while c.now_ns() < bound && c.host_error.is_none() {
            let next = c.now_ns() + 10_000_000;
            c.run_until(next);
            if c.converged().is_some() && c.live_set() == everyone {
                formed = Some(c.now_ns());
                break;
            }
        }
        if formed.is_none() {
            start_violation = Some(Violation::new(
                "SIM-start",
                format!(
                    "the {} nodes did not form one ring within the bound of {}",
                    s.nodes,
                    super::plan::fmt_ns(bound)
                ),
                Vec::new(),
            ));
        }
        c.now_ns()
    } else {
        0
    };
    c.schedule(&s.actions, zero);
    let last = zero + s.last_fault_end_ns();
    let deadline = s.converge_within_ns.map(|w| last + w);
    let mut end = deadline.unwrap_or(last) + epoch;
    if let Some(t) = s.run_for_ns {
        end = end.max(zero + t);
    }
    let send_stop = deadline.unwrap_or(end.saturating_sub(epoch));
    c.run_until(send_stop);
    c.shared.submitting.set(false);
    c.run_until(end);
    let window = deadline.map(|d| spec::LivenessWindow { healed_at: last, deadline: d, live: c.live_set() });
    let quiesced = (c.converged().is_some() && c.undelivered() == 0).then(|| c.now_ns());
    let mut report = c.report(began, window, quiesced);
    report.violations.extend(start_violation);
    if let Some(want) = &s.expect_live
        && *want != report.live
    {
        report.violations.push(Violation::new(
            "SIM-expect",
            format!("expected live nodes {want:?} at the end, found {:?}", report.live),
            Vec::new(),
        ));
    }
    report
}

/// Every `Config` of `node` in `trace`: (time, incarnation, kind, ring, members).
pub fn configs(trace: &Trace, node: u32) -> Vec<(u64, u32, ConfKind, Ring, Vec<u32>)> {
    trace
        .events
        .iter()
        .filter(|e| e.node == node)
        .filter_map(|e| match &e.kind {
            EventKind::Config { kind, ring, members, .. } => {
                Some((e.time, e.incarnation, *kind, *ring, members.clone()))
            }
            _ => None,
        })
        .collect()
}
