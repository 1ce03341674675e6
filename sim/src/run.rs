//! One simulation run: a safety phase with faults on, then a liveness phase with faults
//! off, then the spec's verdict on the recorded trace.
//!
//! # Phases
//!
//! 1. Safety phase, `[0, safety_ns)`: the drawn network conditions (loss, duplication,
//!    reordering) and the drawn fault schedule ([`Options::schedule`]) are in force.
//! 2. At `healed_at = safety_ns` everything heals ([`World::heal_all`]): every link up,
//!    loss and duplication off, paused nodes resumed, late joiners started, and (if the seed
//!    drew it) crashed and departed nodes restarted. The live set S is then every running
//!    node.
//! 3. Liveness phase: applications keep sending for `liveness_send_ns` (drawn; at most the
//!    convergence bound B), then stop. The run goes on until every node of S is in the same
//!    regular configuration with members exactly S and every message LIVE-2 requires is
//!    delivered (quiescence), and at least until the convergence deadline
//!    `healed_at + B`; it gives up at `healed_at + max(liveness_ns, B + token + consensus)`.
//!
//! Every safety property is checked over the whole trace; LIVE-1 and LIVE-2 (and, for CPG
//! runs, CPG-7 and CPG-11) over the window `{healed_at, deadline: healed_at + B, live: S}`.
//!
//! CPG runs ([`Options::cpg`]): at the heal the clients stop connecting, joining, leaving
//! and exiting (their multicasts go on until `liveness_send_ns`), so that every group
//! settles and CPG-11 can compare the final views with the trace's ground truth; and
//! quiescence also waits for every live node's synchronization round to complete.
//!
//! # The convergence bound
//!
//! ```text
//! B = token + 2 * consensus + merge + hold + 10 * (join + send_join) + 10 * rotation
//!     + 4 * fsync_max
//! rotation = nodes * (latency_max + 1 ms)
//! ```
//!
//! with the run's effective timeouts ([`Options::core_config`]). Why: after the heal a
//! node may still hold a ring that lost a member, which it notices by token loss (`token`);
//! it then gathers, and if some member of its old ring is gone for good the consensus
//! timeout declares it failed (`consensus`); a gather may be restarted once by JOINs from
//! nodes that arrive late (restarted nodes, a second `consensus`); rings that are each
//! healthy only find each other by merge detection (an idle representative advertises
//! after holding the token: `hold + merge`); JOIN rounds repeat every `join` (10 of them
//! allowed, each delayed by up to `send_join`); the commit token needs two rotations and
//! recovery a few more (10 rotations allowed); the commit token waits for the new ring
//! sequence to be durable (up to `fsync_max` per attempt, 4 allowed). For Corosync's
//! defaults and 5 nodes this is about 18.6 s.

use crate::options::Options;
use crate::world::{World, WorldStats, node_id};
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
    /// When the live set had converged and every message LIVE-2 requires had been
    /// delivered (None: never).
    pub quiesced_at: Option<Time>,
    /// When the liveness phase began (everything healed).
    pub healed_at: Time,
    /// The convergence deadline (healed_at + bound).
    pub deadline: Time,
    /// The live set S of the liveness phase.
    pub live: Vec<u32>,
    pub trace_events: usize,
}

impl RunReport {
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }
}

/// The convergence bound B of the module documentation, for a run's configuration.
pub fn convergence_bound(opts: &Options) -> Duration {
    let c = opts.core_config();
    let rotation = Duration::from_nanos(opts.nodes as u64 * (opts.net.latency_max_ns + 1_000_000));
    c.token
        + 2 * c.consensus
        + c.merge
        + c.hold
        + 10 * (c.join + c.send_join)
        + 10 * rotation
        + Duration::from_nanos(4 * opts.fsync_max_ns)
}

/// token + consensus: one failure-detection period.
pub fn epoch(opts: &Options) -> Duration {
    let c = opts.core_config();
    c.token + c.consensus
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

    // Liveness phase. CPG clients stop connecting, joining, leaving and exiting (their
    // multicasts go on until `send_stop`), so that the groups settle for CPG-11.
    world.heal_all(opts.liveness_restart, opts.liveness_keep_state);
    world.churn = false;
    let healed_at = world.now;
    let live = world.live_set();
    let bound = convergence_bound(&opts);
    let deadline = healed_at + bound;
    let send_stop = healed_at + Duration::from_nanos(opts.liveness_send_ns).min(bound);
    let end = healed_at + Duration::from_nanos(opts.liveness_ns).max(bound + epoch(&opts));
    if !exhausted {
        exhausted = !world.run_until(send_stop);
    }
    world.submitting = false;
    let mut quiesced_at = None;
    // Check quiescence cheaply (convergence) every 100 ms, and the full delivery count
    // with a growing interval once converged.
    let step = Duration::from_millis(100);
    let mut next_full_check = world.now;
    let mut full_interval = step;
    while !exhausted && world.now < end {
        let next = (world.now + step).min(end);
        exhausted = !world.run_until(next);
        if world.converged().is_some() && world.cpg_settled() && world.now >= next_full_check {
            if world.undelivered() == 0 {
                quiesced_at = Some(world.now);
                break;
            }
            next_full_check = world.now + full_interval;
            full_interval *= 2;
        }
    }
    // Observe the converged ring at least until the deadline: a configuration change
    // before it would break LIVE-1.
    if !exhausted && world.now < deadline {
        exhausted = !world.run_until(deadline);
    }

    let params = spec_params(&opts);
    let mut violations = spec::check_safety(&world.trace, &params);
    let window = spec::LivenessWindow { healed_at: healed_at.0, deadline: deadline.0, live: live.clone() };
    violations.extend(spec::check_liveness(&world.trace, &params, &window));
    violations.extend(sim_violations(&world, exhausted));
    let report = RunReport {
        trace_hash: trace_hash(&world.trace),
        stats: world.stats.clone(),
        sim_time: world.now,
        quiesced_at,
        healed_at,
        deadline,
        live,
        trace_events: world.trace.events.len(),
        violations,
        opts,
    };
    Ok((report, world))
}

/// Problems the simulator itself detects: corrupted payloads, an exhausted event budget,
/// a core refusing to start.
pub fn sim_violations(world: &World, exhausted: bool) -> Vec<Violation> {
    let mut violations = Vec::new();
    if world.stats.corrupt_payloads > 0 {
        violations.push(Violation {
            property: "SIM-payload",
            message: format!("{} deliveries differ from what was sent", world.stats.corrupt_payloads),
            events: Vec::new(),
        });
    }
    if world.stats.cpg.unexplained > 0 {
        violations.push(Violation {
            property: "SIM-cpg-id",
            message: format!(
                "{} delivered CPG joins or leaves match no accepted request of their origin",
                world.stats.cpg.unexplained
            ),
            events: Vec::new(),
        });
    }
    if let Some(at) = world.storm {
        violations.push(Violation {
            property: "SIM-storm",
            message: format!(
                "more than {} events within one simulated second at {at}: a message storm",
                world.opts.max_events_per_sec
            ),
            events: Vec::new(),
        });
    } else if exhausted {
        violations.push(Violation {
            property: "SIM-budget",
            message: format!("event budget of {} exhausted at {}", world.opts.max_events, world.now),
            events: Vec::new(),
        });
    }
    for e in &world.errors {
        violations.push(Violation { property: "SIM-start", message: e.clone(), events: Vec::new() });
    }
    violations
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

/// The node ids 1..=n.
pub fn all_nodes(n: usize) -> Vec<u32> {
    (0..n).map(|i| node_id(i).0).collect()
}
