//! What one simulation run does: drawn from its seed within the user's limits (swarm
//! testing: each seed turns faults on or off and picks their rates, so different seeds
//! explore different corners).

use crate::cpg::CpgWorkload;
use crate::faults::{FaultKinds, FaultMix, Timed, draw_schedule};
use crate::rng::Rng;
use core::time::Duration;
use serde::{Deserialize, Serialize};
use totem_core::broken::Bug;
use totem_core::{Config, TimingBase};

/// Network conditions between two distinct nodes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NetParams {
    /// Probability that one copy of a packet is lost.
    pub loss: f64,
    /// Probability that a packet arrives twice.
    pub duplication: f64,
    /// Delay is uniform in [min, max]; a wide range reorders packets.
    pub latency_min_ns: u64,
    pub latency_max_ns: u64,
    /// Packets of at least this many encoded bytes get `slow_large_extra_ns` more delay
    /// (a middlebox holding large datagrams); 0 extra: off.
    #[serde(default)]
    pub slow_large_min_bytes: usize,
    #[serde(default)]
    pub slow_large_extra_ns: u64,
}

impl NetParams {
    pub fn perfect(latency_ns: u64) -> NetParams {
        NetParams {
            loss: 0.0,
            duplication: 0.0,
            latency_min_ns: latency_ns,
            latency_max_ns: latency_ns,
            slow_large_min_bytes: 0,
            slow_large_extra_ns: 0,
        }
    }
}

/// The simulated applications' behaviour.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Workload {
    /// Random background traffic on (scripted `send` actions work either way).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Mean time between an application's sends.
    pub interval_mean_ns: u64,
    /// Up to this many messages per send opportunity.
    pub burst_max: u64,
    /// Fraction of messages sent as Safe.
    pub safe_fraction: f64,
    /// Sizes: mostly small, some spanning frames, a few large.
    pub small_max: usize,
    pub medium_max: usize,
    pub large_max: usize,
    pub large_fraction: f64,
}

impl Workload {
    pub fn draw_size(&self, rng: &mut Rng) -> usize {
        let u = rng.unit();
        let (lo, hi) = if u < self.large_fraction {
            (self.medium_max, self.large_max)
        } else if u < self.large_fraction + 0.2 {
            (self.small_max, self.medium_max)
        } else {
            (crate::payload::HEADER_LEN, self.small_max)
        };
        rng.range(lo as u64, hi.max(lo) as u64) as usize
    }
}

fn yes() -> bool {
    true
}

fn default_storm() -> u64 {
    DEFAULT_MAX_EVENTS_PER_SEC
}

/// See [`Options::max_events_per_sec`].
pub const DEFAULT_MAX_EVENTS_PER_SEC: u64 = 1_000_000;

/// How the nodes begin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StartMode {
    /// Every node starts as a member of one formed ring (`Node::new_on_ring`).
    Formed,
    /// Every node starts from nothing (`Node::new`) and the ring forms by itself.
    Cold,
}

/// Which start modes a run may draw.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StartChoice {
    Formed,
    Cold,
    /// Either, drawn per seed.
    Mixed,
}

/// User limits for drawing runs (from the command line).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    pub nodes_min: usize,
    pub nodes_max: usize,
    /// Highest loss rate a run may draw; `fixed_loss` pins it instead.
    pub loss_max: f64,
    pub fixed_loss: Option<f64>,
    pub dup_max: f64,
    pub safety_secs: u64,
    pub liveness_secs: u64,
    /// Largest application message size a run may draw.
    pub message_max: usize,
    pub wire: bool,
    pub bug: Option<Bug>,
    /// Fault kinds a run may draw.
    pub faults: FaultKinds,
    pub start: StartChoice,
    /// Base token timeout in ms (Corosync's `token`); None: drawn per seed from 300, 1000
    /// and 3000 ms. The other timeouts follow Corosync's derivations.
    pub token_ms: Option<u64>,
    /// Run the CPG service on every node, used by simulated client connections
    /// ([`crate::cpg`]), instead of plain Totem nodes with raw applications.
    pub cpg: bool,
}

impl Limits {
    /// The baseline: one formed ring, no process or link faults (loss, duplication and
    /// reordering still drawn), Corosync's default 3 s token.
    pub fn formed_no_faults() -> Limits {
        Limits {
            faults: FaultKinds::none(),
            start: StartChoice::Formed,
            token_ms: Some(3000),
            ..Limits::default()
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            nodes_min: 2,
            nodes_max: 7,
            loss_max: 0.3,
            fixed_loss: None,
            dup_max: 0.1,
            safety_secs: 10,
            liveness_secs: 30,
            message_max: 256 * 1024,
            wire: true,
            bug: None,
            faults: FaultKinds::all(),
            start: StartChoice::Mixed,
            token_ms: None,
            cpg: false,
        }
    }
}

/// Everything one run does.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Options {
    pub seed: u64,
    pub nodes: usize,
    pub net: NetParams,
    pub workload: Workload,
    pub window_size: u32,
    pub max_messages: u32,
    pub safety_ns: u64,
    pub liveness_ns: u64,
    pub max_events: u64,
    /// A run that processes more events than this within one second of simulated time is
    /// stopped and reported (SIM-storm): a message storm would otherwise eat the whole
    /// event budget.
    #[serde(default = "default_storm")]
    pub max_events_per_sec: u64,
    /// Send encoded bytes through the network (exercises the codec).
    pub wire: bool,
    pub bug: Option<Bug>,
    pub start: StartMode,
    /// Base token timeout (Corosync's `token`, before the per-node coefficient).
    pub token_ms: u64,
    /// Which faults this seed drew (for reports; the schedule is what is carried out).
    pub mix: FaultMix,
    /// What happens when, during the safety phase.
    pub schedule: Vec<Timed>,
    /// At the start of the liveness phase, restart crashed and departed nodes.
    pub liveness_restart: bool,
    /// Those restarts keep the persisted ring sequence.
    pub liveness_keep_state: bool,
    /// Applications keep sending this long into the liveness phase (capped at the
    /// convergence bound).
    pub liveness_send_ns: u64,
    /// Packets queued for a paused node, at most (the rest are dropped).
    pub pause_queue_max: usize,
    /// A ring sequence the core asks to persist is confirmed durable after a delay uniform
    /// in [0, fsync_max_ns] (`Node::ring_seq_persisted`).
    #[serde(default)]
    pub fsync_max_ns: u64,
    /// Corosync's `send_join`: random delay up to this before each JOIN (0: none).
    #[serde(default)]
    pub send_join_ms: u64,
    /// CPG nodes and their clients' behaviour; None: plain Totem nodes.
    #[serde(default)]
    pub cpg: Option<CpgWorkload>,
}

impl Options {
    /// Draw a run from `seed` within `limits`.
    pub fn draw(seed: u64, limits: &Limits) -> Options {
        let mut rng = Rng::new(seed).fork(0);
        let nodes =
            rng.range(limits.nodes_min as u64, limits.nodes_max.max(limits.nodes_min) as u64) as usize;
        let loss = match limits.fixed_loss {
            Some(p) => p,
            None if rng.chance(0.25) => 0.0,
            None => rng.unit() * limits.loss_max,
        };
        let duplication = if rng.chance(0.5) { 0.0 } else { rng.unit() * limits.dup_max };
        let latency_min_ns = rng.range(20_000, 500_000);
        let jitter = if rng.chance(0.3) { 0 } else { rng.range(0, 3_000_000) };
        let (window_size, max_messages) = match rng.range(0, 3) {
            0 => (10, 3),
            1 => (20, 20),
            _ => (50, 17),
        };
        let medium_max = (8 * 1024).min(limits.message_max);
        let workload = Workload {
            enabled: true,
            interval_mean_ns: rng.range(200_000, 20_000_000),
            burst_max: rng.range(1, 8),
            safe_fraction: *rng.pick(&[0.0, 0.2, 0.5, 1.0]).unwrap_or(&0.0),
            small_max: 256.min(limits.message_max),
            medium_max: medium_max.min(limits.message_max),
            large_max: limits.message_max,
            large_fraction: if rng.chance(0.5) { 0.0 } else { 0.01 },
        };
        // Everything below comes from its own stream, so that the draws above stay what they
        // were before faults existed.
        let mut frng = Rng::new(seed).fork(3);
        let nodes = nodes.max(1);
        let start = match limits.start {
            StartChoice::Formed => StartMode::Formed,
            StartChoice::Cold => StartMode::Cold,
            StartChoice::Mixed if frng.chance(0.5) => StartMode::Cold,
            StartChoice::Mixed => StartMode::Formed,
        };
        let token_ms = limits.token_ms.unwrap_or_else(|| *frng.pick(&[300, 1000, 3000]).unwrap_or(&3000));
        let timing = timing(nodes, token_ms);
        let (eff_token_ms, consensus_ms) =
            (timing.token.as_millis() as u64, timing.consensus.as_millis() as u64);
        let safety_ms = limits.safety_secs.saturating_mul(1000);
        let mix = FaultMix::draw(&mut frng, &limits.faults, nodes, safety_ms, eff_token_ms, consensus_ms);
        let schedule = draw_schedule(&mut frng, &mix, nodes, safety_ms, eff_token_ms, consensus_ms);
        let liveness_restart = limits.faults.restart && frng.chance(0.5);
        let liveness_keep_state = frng.chance(0.5);
        let liveness_send_ns =
            if frng.chance(0.5) { 0 } else { frng.range(0, (eff_token_ms + consensus_ms) * 1_000_000) };
        let pause_queue_max = frng.range(8, 512) as usize;
        let fsync_max_ns = *frng.pick(&[0, 1_000_000, 20_000_000, 200_000_000]).unwrap_or(&0);
        let send_join_ms = *frng.pick(&[0, 0, 10, 50]).unwrap_or(&0);
        // A stream of its own: plain runs draw exactly what they drew before CPG existed.
        let cpg = limits.cpg.then(|| CpgWorkload::draw(&mut Rng::new(seed).fork(6), limits.message_max));
        Options {
            seed,
            nodes,
            net: NetParams {
                loss,
                duplication,
                latency_min_ns,
                latency_max_ns: latency_min_ns + jitter,
                slow_large_min_bytes: 0,
                slow_large_extra_ns: 0,
            },
            workload,
            window_size,
            max_messages,
            safety_ns: Duration::from_secs(limits.safety_secs).as_nanos() as u64,
            liveness_ns: Duration::from_secs(limits.liveness_secs).as_nanos() as u64,
            max_events: 50_000_000,
            max_events_per_sec: DEFAULT_MAX_EVENTS_PER_SEC,
            wire: limits.wire,
            bug: limits.bug,
            start,
            token_ms,
            mix,
            schedule,
            liveness_restart,
            liveness_keep_state,
            liveness_send_ns,
            pause_queue_max,
            fsync_max_ns,
            send_join_ms,
            cpg,
        }
    }

    /// The configuration of one incarnation of one node: the run's, with a random seed of
    /// its own (the core draws its send_join jitter and the residue class of the ring
    /// sequences it creates from it; a restart, above all a wiped one, must not draw the
    /// same class again).
    pub fn node_config(&self, node: u32, incarnation: u32) -> Config {
        let mut c = self.core_config();
        let mut rng = Rng::new(self.seed ^ (u64::from(node) << 32) ^ u64::from(incarnation));
        c.rng_seed = rng.fork(11).next_u64();
        c
    }

    /// The core's configuration for this run.
    pub fn core_config(&self) -> Config {
        let mut c = timing(self.nodes, self.token_ms);
        c.send_join = Duration::from_millis(self.send_join_ms);
        c.window_size = self.window_size;
        c.max_messages = self.max_messages;
        c.probes = true;
        c.rng_seed = self.seed;
        #[cfg(feature = "broken")]
        {
            c.bug = self.bug;
        }
        c
    }
}

/// Corosync's derived timing for `nodes` nodes and a base token of `token_ms`. The token
/// coefficient scales with the token (650 ms per extra node for the default 3000 ms), so
/// that short-token runs keep Corosync's proportions.
pub fn timing(nodes: usize, token_ms: u64) -> Config {
    let token_ms = token_ms.max(150);
    Config::for_cluster(TimingBase {
        nodes,
        token: Duration::from_millis(token_ms),
        token_coefficient: Duration::from_millis(token_ms * 650 / 3000),
        ..TimingBase::default()
    })
}
