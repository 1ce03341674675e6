//! What one simulation run does: drawn from its seed within the user's limits (swarm
//! testing: each seed turns faults on or off and picks their rates, so different seeds
//! explore different corners).

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
}

impl NetParams {
    pub fn perfect(latency_ns: u64) -> NetParams {
        NetParams { loss: 0.0, duplication: 0.0, latency_min_ns: latency_ns, latency_max_ns: latency_ns }
    }
}

/// The simulated applications' behaviour.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Workload {
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
    /// Send encoded bytes through the network (exercises the codec).
    pub wire: bool,
    pub bug: Option<Bug>,
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
            interval_mean_ns: rng.range(200_000, 20_000_000),
            burst_max: rng.range(1, 8),
            safe_fraction: *rng.pick(&[0.0, 0.2, 0.5, 1.0]).unwrap_or(&0.0),
            small_max: 256.min(limits.message_max),
            medium_max: medium_max.min(limits.message_max),
            large_max: limits.message_max,
            large_fraction: if rng.chance(0.5) { 0.0 } else { 0.01 },
        };
        Options {
            seed,
            nodes: nodes.max(1),
            net: NetParams { loss, duplication, latency_min_ns, latency_max_ns: latency_min_ns + jitter },
            workload,
            window_size,
            max_messages,
            safety_ns: Duration::from_secs(limits.safety_secs).as_nanos() as u64,
            liveness_ns: Duration::from_secs(limits.liveness_secs).as_nanos() as u64,
            max_events: 50_000_000,
            wire: limits.wire,
            bug: limits.bug,
        }
    }

    /// The core's configuration for this run.
    pub fn core_config(&self) -> Config {
        let mut c = Config::for_cluster(TimingBase { nodes: self.nodes, ..TimingBase::default() });
        c.window_size = self.window_size;
        c.max_messages = self.max_messages;
        c.probes = true;
        #[cfg(feature = "broken")]
        {
            c.bug = self.bug;
        }
        c
    }
}
