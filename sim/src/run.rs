//! One simulation run: a safety phase with faults on, then a liveness phase with faults
//! off, then the spec's verdict on the recorded trace.

use crate::options::{NetParams, Options};
use crate::world::{World, WorldStats};
use core::time::Duration;
use sha2::{Digest, Sha256};
use spec::Violation;
use totem_core::Time;

/// The outcome of one run.
#[derive(Debug)]
pub struct RunReport {
    pub opts: Options,
    pub violations: Vec<Violation>,
    /// SHA-256 of the recorded trace: equal seeds must give equal hashes.
    pub trace_hash: String,
    pub stats: WorldStats,
    /// Simulated time at the end of the run.
    pub sim_time: Time,
    /// When every message sent had been delivered everywhere (None: never).
    pub quiesced_at: Option<Time>,
    pub trace_events: usize,
}

impl RunReport {
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }
}

/// Run `opts` to the end and judge it. Also returns the world, for replay printing.
pub fn run_world(opts: Options) -> anyhow::Result<(RunReport, World)> {
    #[cfg(not(feature = "broken"))]
    if opts.bug.is_some() {
        anyhow::bail!("broken variants need the simulator built with --features broken");
    }
    let mut world = World::new(opts.clone())?;
    let safety_end = Time(opts.safety_ns);
    let mut exhausted = !world.run_until(safety_end);

    // Liveness phase: heal the network, stop new sends, and wait for everything sent to be
    // delivered everywhere.
    world.net = NetParams::perfect(opts.net.latency_min_ns);
    world.submitting = false;
    let deadline = Time(safety_end.0 + opts.liveness_ns);
    let step = Duration::from_millis(500);
    let mut quiesced_at = None;
    while !exhausted && world.now < deadline {
        let next = (world.now + step).min(deadline);
        exhausted = !world.run_until(next);
        if world.undelivered() == 0 {
            quiesced_at = Some(world.now);
            break;
        }
    }

    let params = spec_params(&opts);
    let mut violations = spec::check_safety(&world.trace, &params);
    let window = spec::LivenessWindow {
        healed_at: safety_end.0,
        deadline: world.now.0,
        live: (0..world.nodes.len())
            .filter(|&i| world.nodes[i].alive)
            .map(|i| crate::world::node_id(i).0)
            .collect(),
    };
    violations.extend(spec::check_liveness(&world.trace, &params, &window));
    if world.stats.corrupt_payloads > 0 {
        violations.push(Violation {
            property: "SIM-payload",
            message: format!("{} deliveries differ from what was sent", world.stats.corrupt_payloads),
            events: Vec::new(),
        });
    }
    if exhausted {
        violations.push(Violation {
            property: "SIM-budget",
            message: format!("event budget of {} exhausted at {}", opts.max_events, world.now),
            events: Vec::new(),
        });
    }
    let report = RunReport {
        trace_hash: trace_hash(&world.trace),
        stats: world.stats.clone(),
        sim_time: world.now,
        quiesced_at,
        trace_events: world.trace.events.len(),
        violations,
        opts,
    };
    Ok((report, world))
}

pub fn run(opts: Options) -> anyhow::Result<RunReport> {
    run_world(opts).map(|(report, _)| report)
}

pub fn spec_params(opts: &Options) -> spec::Params {
    spec::Params { max_messages: opts.max_messages, window_size: opts.window_size }
}

/// A stable hash of a trace: postcard encoding of every event, through SHA-256.
pub fn trace_hash(trace: &spec::trace::Trace) -> String {
    let mut hasher = Sha256::new();
    for event in &trace.events {
        match postcard::to_stdvec(event) {
            Ok(bytes) => hasher.update(&bytes),
            Err(_) => hasher.update(b"?"),
        }
    }
    hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
}
