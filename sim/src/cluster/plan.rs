//! What one cluster run does: the actions it takes on the cluster, the run's parameters,
//! and the swarm drawing of both from a seed.
//!
//! Every random choice of a run comes from its seed, so `sim cluster --seed S` (with the
//! same limits) replays it exactly. Each seed first switches every allowed fault kind on or
//! off and draws its rate (swarm testing: most seeds run a few fault kinds hard, rather
//! than all of them a little), then draws the schedule.

use crate::rng::Rng;
use serde::{Deserialize, Serialize};
use std::fmt;
use totem_core::Config;
use totem_core::broken::Bug;

/// One thing that happens to the cluster at a scheduled time. Node ids are 1-based (host
/// `n1` is node 1). Every action prints as one line of the scenario language
/// ([`crate::cluster::script`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Act {
    /// A node that has not run yet starts (a late joiner).
    Start(u32),
    /// The host's software stops dead (turmoil `crash`): its runtime, its applications and
    /// its socket are dropped, its disk (the ring-sequence store) survives.
    Crash(u32),
    /// A new incarnation of the node (a running node is crashed first: turmoil `bounce`).
    /// `keep_state` false: its disk is lost first (a fresh store; recorded `StateLost`).
    Restart { node: u32, keep_state: bool },
    /// The node's runtime is frozen for `ns` (SIGSTOP): no timers, no packet handling;
    /// datagrams wait in its socket buffer (bounded, the rest are dropped).
    Pause { node: u32, ns: u64 },
    /// A paused node resumes now.
    Resume(u32),
    /// Clean shutdown through the runtime (the core sends its LEAVE).
    Leave(u32),
    /// Only links within a group work (unlisted nodes form one more group).
    Partition(Vec<Vec<u32>>),
    /// Every link works again; held packets are delivered.
    Heal,
    /// Packets from `from` to `to` are lost; the other direction is unchanged.
    OneWay { from: u32, to: u32 },
    /// Link a-b down both ways.
    Cut(u32, u32),
    /// Link a-b up both ways (held packets delivered).
    Mend(u32, u32),
    /// Packets between a and b are held (both ways) until released.
    Hold(u32, u32),
    /// Held packets between a and b are delivered, and the link works again.
    Release(u32, u32),
    /// Per-packet loss probability (the transport's fault layer, every sender).
    Loss(f64),
    /// Per-packet duplication probability.
    Dup(f64),
    /// Per-packet corruption probability (bytes flipped; the protection must refuse them).
    Corrupt(f64),
    /// Packet latency is between min and max (turmoil's exponential curve inside).
    Latency { min_ns: u64, max_ns: u64 },
    /// The node's first joined application process multicasts `count` messages of `bytes`.
    Send { node: u32, count: u64, bytes: usize },
    /// Random background traffic on or off.
    Traffic(bool),
    /// Application churn (processes leave, exit and come back) on or off.
    Churn(bool),
}

/// An action and when it happens (ns of simulated time, from the script's zero).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Timed {
    pub at_ns: u64,
    pub act: Act,
}

/// `2s`, `1500ms`, `250us`, `17ns`: the largest unit that divides the value.
pub fn fmt_ns(ns: u64) -> String {
    if ns != 0 && ns.is_multiple_of(1_000_000_000) {
        format!("{}s", ns / 1_000_000_000)
    } else if ns.is_multiple_of(1_000_000) {
        format!("{}ms", ns / 1_000_000)
    } else if ns.is_multiple_of(1000) {
        format!("{}us", ns / 1000)
    } else {
        format!("{ns}ns")
    }
}

fn list(nodes: &[u32]) -> String {
    nodes.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

impl fmt::Display for Act {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Act::Start(n) => write!(f, "start {n}"),
            Act::Crash(n) => write!(f, "crash {n}"),
            Act::Restart { node, keep_state: true } => write!(f, "restart {node}"),
            Act::Restart { node, keep_state: false } => write!(f, "restart {node} wipe"),
            Act::Pause { node, ns } => write!(f, "pause {node} for {}", fmt_ns(*ns)),
            Act::Resume(n) => write!(f, "resume {n}"),
            Act::Leave(n) => write!(f, "leave {n}"),
            Act::Partition(groups) => {
                let groups: Vec<String> = groups.iter().map(|g| list(g)).collect();
                write!(f, "partition {}", groups.join(" | "))
            }
            Act::Heal => write!(f, "heal"),
            Act::OneWay { from, to } => write!(f, "oneway {from} -> {to}"),
            Act::Cut(a, b) => write!(f, "cut {a} {b}"),
            Act::Mend(a, b) => write!(f, "mend {a} {b}"),
            Act::Hold(a, b) => write!(f, "hold {a} {b}"),
            Act::Release(a, b) => write!(f, "release {a} {b}"),
            Act::Loss(p) => write!(f, "loss {p}"),
            Act::Dup(p) => write!(f, "dup {p}"),
            Act::Corrupt(p) => write!(f, "corrupt {p}"),
            Act::Latency { min_ns, max_ns } => write!(f, "latency {} {}", fmt_ns(*min_ns), fmt_ns(*max_ns)),
            Act::Send { node, count, bytes } => write!(f, "send {node} x{count} {bytes}B"),
            Act::Traffic(on) => write!(f, "traffic {}", if *on { "on" } else { "off" }),
            Act::Churn(on) => write!(f, "churn {}", if *on { "on" } else { "off" }),
        }
    }
}

impl fmt::Display for Timed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at {} {}", fmt_ns(self.at_ns), self.act)
    }
}

/// The CPG applications on every host.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Apps {
    /// Application processes (client connections) per host.
    pub processes: usize,
    /// Groups they join (named `g0`, `g1`, ...).
    pub groups: usize,
    /// Random background traffic on.
    pub traffic: bool,
    /// Processes leave, exit and come back.
    pub churn: bool,
    /// Mean time between an application's turns.
    pub interval_mean_ns: u64,
    /// Up to this many messages per process and turn.
    pub burst_max: u64,
    pub safe_fraction: f64,
    /// Per turn and joined process: probability to leave its group, and to exit.
    pub leave_p: f64,
    pub exit_p: f64,
    /// Message sizes: mostly up to `small_max`, 20% up to `medium_max`, `large_fraction`
    /// up to `large_max`.
    pub small_max: usize,
    pub medium_max: usize,
    pub large_max: usize,
    pub large_fraction: f64,
}

impl Apps {
    /// Light traffic: 2 processes per host in 2 groups, a burst of up to 3 messages every
    /// 20 ms on average, 20% Safe, no churn.
    pub fn light() -> Apps {
        Apps {
            processes: 2,
            groups: 2,
            traffic: true,
            churn: false,
            interval_mean_ns: 20_000_000,
            burst_max: 3,
            safe_fraction: 0.2,
            leave_p: 0.0,
            exit_p: 0.0,
            small_max: 256,
            medium_max: 4096,
            large_max: 64 * 1024,
            large_fraction: 0.01,
        }
    }

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

/// Network conditions at the start of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Net {
    pub latency_min_ns: u64,
    pub latency_max_ns: u64,
    pub loss: f64,
    pub dup: f64,
    pub corrupt: f64,
    /// Datagrams a host's socket buffers before it drops more (a paused node's backlog).
    pub udp_capacity: usize,
}

impl Net {
    /// 1 ms latency, no loss, no duplication, no corruption.
    pub fn clean() -> Net {
        Net {
            latency_min_ns: 1_000_000,
            latency_max_ns: 1_000_000,
            loss: 0.0,
            dup: 0.0,
            corrupt: 0.0,
            udp_capacity: 1024,
        }
    }
}

/// Everything one cluster run does.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClusterOptions {
    pub seed: u64,
    pub nodes: usize,
    /// Base token timeout (Corosync's `token`); the rest follow Corosync's derivations.
    pub token_ms: u64,
    /// The core's `netmtu`: 1500 (udpu) or 65536 (knet, the daemon's default), whose 64 KiB
    /// frames the runtime sends as runs of MTU-sized fragments (`totem_node::fragment`),
    /// each fragment lost, duplicated or damaged on its own.
    #[serde(default = "netmtu_udpu")]
    pub netmtu: usize,
    /// turmoil's step: every host runs this much simulated time per step.
    pub tick_ns: u64,
    pub net: Net,
    pub apps: Apps,
    /// The actions, in time order. Times count from the run's zero: the start of the
    /// simulation, or for a scenario with `start formed`, the moment the first ring of
    /// every node formed.
    pub schedule: Vec<Timed>,
    /// Swarm runs: the safety phase lasts this long; then everything heals.
    pub safety_ns: u64,
    /// Swarm runs: at the heal, restart crashed and departed nodes (keeping their disks
    /// when `liveness_keep_state`).
    pub liveness_restart: bool,
    pub liveness_keep_state: bool,
    /// Applications keep sending this long into the liveness phase.
    pub liveness_send_ns: u64,
    /// Which faults this seed switched on (for reports).
    pub mix: Vec<String>,
    pub bug: Option<Bug>,
}

impl ClusterOptions {
    /// The core configuration of `node`'s incarnation `incarnation`: the run's timing, with
    /// probes on and a seed of its own (a restart, above all a wiped one, must not draw the
    /// same residue class of ring sequences again).
    pub fn node_config(&self, node: u32, incarnation: u32) -> Config {
        let mut c = self.core_config();
        let mut rng = Rng::new(self.seed ^ (u64::from(node) << 32) ^ u64::from(incarnation));
        c.rng_seed = rng.fork(11).next_u64();
        c
    }

    /// The run's core configuration.
    pub fn core_config(&self) -> Config {
        let mut c = crate::options::timing(self.nodes, self.token_ms);
        c.probes = true;
        c.rng_seed = self.seed;
        c.set_netmtu(self.netmtu);
        #[cfg(feature = "broken")]
        {
            c.bug = self.bug;
        }
        c
    }

    /// token + consensus: one failure-detection period.
    pub fn epoch_ns(&self) -> u64 {
        let c = self.core_config();
        (c.token + c.consensus).as_nanos() as u64
    }

    /// The convergence bound B (see [`crate::cluster`]), for the run's initial latency:
    /// the network the liveness phase runs on (a swarm heal restores it; a script that
    /// raises the latency for good states its own deadline).
    pub fn bound_ns(&self) -> u64 {
        let c = self.core_config();
        let latency = self.net.latency_max_ns.max(self.net.latency_min_ns);
        let rotation = self.nodes as u64 * (latency + self.tick_ns + 1_000_000);
        let fixed = c.token + 2 * c.consensus + c.merge + c.hold + 10 * (c.join + c.send_join);
        fixed.as_nanos() as u64 + 10 * rotation
    }
}

/// Which fault kinds a swarm run may draw.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterFaults {
    pub partition: bool,
    pub one_way: bool,
    pub hold: bool,
    pub crash: bool,
    pub restart: bool,
    /// Restarts may lose the disk.
    pub wipe: bool,
    pub pause: bool,
    pub leave: bool,
    pub latency: bool,
    pub loss: bool,
    pub dup: bool,
    pub corrupt: bool,
    pub churn: bool,
    pub late_join: bool,
}

impl ClusterFaults {
    pub const fn all() -> ClusterFaults {
        ClusterFaults {
            partition: true,
            one_way: true,
            hold: true,
            crash: true,
            restart: true,
            wipe: true,
            pause: true,
            leave: true,
            latency: true,
            loss: true,
            dup: true,
            corrupt: true,
            churn: true,
            late_join: true,
        }
    }

    pub const fn none() -> ClusterFaults {
        ClusterFaults {
            partition: false,
            one_way: false,
            hold: false,
            crash: false,
            restart: false,
            wipe: false,
            pause: false,
            leave: false,
            latency: false,
            loss: false,
            dup: false,
            corrupt: false,
            churn: false,
            late_join: false,
        }
    }
}

/// The user's limits for drawing swarm runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClusterLimits {
    pub nodes: usize,
    /// Safety phase length.
    pub duration_secs: u64,
    /// Base token in ms; None: drawn per seed from 300 and 1000 ms.
    pub token_ms: Option<u64>,
    pub faults: ClusterFaults,
    pub bug: Option<Bug>,
    pub tick_us: u64,
}

impl Default for ClusterLimits {
    fn default() -> Self {
        ClusterLimits {
            nodes: 5,
            duration_secs: 20,
            token_ms: None,
            faults: ClusterFaults::all(),
            bug: None,
            tick_us: 1000,
        }
    }
}

/// The core's `netmtu` with udpu, and for runs that do not say.
pub fn netmtu_udpu() -> usize {
    1500
}

/// Corosync's derived timing for `nodes` nodes (see [`crate::options::timing`]).
pub fn timing(nodes: usize, token_ms: u64) -> Config {
    crate::options::timing(nodes, token_ms)
}

impl ClusterOptions {
    /// Draw a swarm run from `seed` within `limits`.
    pub fn draw(seed: u64, limits: &ClusterLimits) -> ClusterOptions {
        let mut rng = Rng::new(seed).fork(40);
        let nodes = limits.nodes.max(1);
        let f = &limits.faults;
        let token_ms = limits.token_ms.unwrap_or_else(|| *rng.pick(&[300, 1000]).unwrap_or(&1000));
        // From a stream of its own, so that the rest of a seed's draw stays as it was.
        let knet_frames = Rng::new(seed).fork(41).chance(0.5);
        let netmtu = if knet_frames { 65_536 } else { netmtu_udpu() };
        let c = timing(nodes, token_ms);
        let token = c.token.as_millis() as u64;
        let consensus = c.consensus.as_millis() as u64;
        let epoch = token + consensus;
        let safety_ms = limits.duration_secs.saturating_mul(1000);
        let mut mix = Vec::new();
        let mut on = |allowed: bool, p: f64, name: &str, mix: &mut Vec<String>| {
            let yes = allowed && rng.chance(p);
            if yes {
                mix.push(name.to_string());
            }
            yes
        };
        let partition = on(f.partition, 0.5, "partition", &mut mix);
        let one_way = on(f.one_way, 0.3, "oneway", &mut mix);
        let hold = on(f.hold, 0.3, "hold", &mut mix);
        let crash = on(f.crash, 0.5, "crash", &mut mix);
        let pause = on(f.pause, 0.4, "pause", &mut mix);
        let leave = on(f.leave, 0.3, "leave", &mut mix);
        let latency = on(f.latency, 0.3, "latency", &mut mix);
        let loss = on(f.loss, 0.5, "loss", &mut mix);
        let dup = on(f.dup, 0.4, "dup", &mut mix);
        let corrupt = on(f.corrupt, 0.3, "corrupt", &mut mix);
        let churn = on(f.churn, 0.5, "churn", &mut mix);
        let late_join = on(f.late_join && nodes > 1, 0.2, "late-join", &mut mix);
        if knet_frames {
            mix.push("64k-frames".to_string());
        }
        let restart_p = if f.restart { *rng.pick(&[0.5, 0.9, 1.0]).unwrap_or(&1.0) } else { 0.0 };
        let keep_state_p = if f.wipe { *rng.pick(&[0.0, 0.5, 1.0]).unwrap_or(&1.0) } else { 1.0 };

        let latency_min_ns = rng.range(0, 2) * 1_000_000;
        let jitter = if rng.chance(0.3) { 0 } else { rng.range(0, 10) * 1_000_000 };
        let net = Net {
            latency_min_ns,
            latency_max_ns: latency_min_ns + jitter,
            loss: if loss { rng.unit() * 0.2 } else { 0.0 },
            dup: if dup { rng.unit() * 0.05 } else { 0.0 },
            corrupt: if corrupt { rng.unit() * 0.02 } else { 0.0 },
            udp_capacity: rng.range(64, 1024) as usize,
        };
        let apps = Apps {
            processes: rng.range(1, 3) as usize,
            groups: rng.range(1, 3) as usize,
            traffic: true,
            churn,
            interval_mean_ns: rng.range(5, 50) * 1_000_000,
            burst_max: rng.range(1, 6),
            safe_fraction: *rng.pick(&[0.0, 0.2, 0.5, 1.0]).unwrap_or(&0.2),
            leave_p: if churn { rng.unit() * 0.02 } else { 0.0 },
            exit_p: if churn { rng.unit() * 0.01 } else { 0.0 },
            small_max: 256,
            medium_max: 4096,
            large_max: 64 * 1024,
            large_fraction: if rng.chance(0.5) { 0.0 } else { 0.01 },
        };

        // The schedule, from its own stream.
        let mut srng = Rng::new(seed).fork(41);
        let mut out: Vec<(u64, u64, Act)> = Vec::new();
        let mut order = 0u64;
        let mut push = |out: &mut Vec<(u64, u64, Act)>, at_ms: u64, a: Act| {
            order += 1;
            out.push((at_ms, order, a));
        };
        let mut started_at = vec![0u64; nodes];
        if late_join {
            let count = srng.range(1, nodes as u64 - 1);
            let mut ids: Vec<u32> = (1..=nodes as u32).collect();
            crate::faults::shuffle(&mut srng, &mut ids);
            for &id in ids.iter().take(count as usize) {
                let at = srng.range(0, safety_ms / 2);
                started_at[id as usize - 1] = at;
                push(&mut out, at, Act::Start(id));
            }
        }
        // Process faults: one at a time per node, never the last running node.
        let mut busy_until = vec![0u64; nodes];
        let mut kinds = Vec::new();
        if crash {
            kinds.push(0);
        }
        if leave {
            kinds.push(1);
        }
        if pause {
            kinds.push(2);
        }
        if !kinds.is_empty() {
            let mean = srng.range(epoch / 2, 3 * epoch);
            let mut t = srng.range(1, 2 * mean);
            while t < safety_ms {
                let up: Vec<usize> =
                    (0..nodes).filter(|&i| started_at[i] <= t && busy_until[i] <= t).collect();
                let kind = *srng.pick(&kinds).unwrap_or(&0);
                let enough = if kind == 2 { !up.is_empty() } else { up.len() >= 2 };
                if enough && let Some(&i) = srng.pick(&up) {
                    let id = i as u32 + 1;
                    match kind {
                        0 | 1 => {
                            push(&mut out, t, if kind == 0 { Act::Crash(id) } else { Act::Leave(id) });
                            let delay = srng.range(0, 2 * epoch);
                            if srng.chance(restart_p) && t + delay < safety_ms {
                                let keep_state = srng.chance(keep_state_p);
                                push(&mut out, t + delay, Act::Restart { node: id, keep_state });
                                busy_until[i] = t + delay + 1;
                            } else {
                                busy_until[i] = u64::MAX;
                            }
                        }
                        _ => {
                            // Longer than the token timeout, so that the others notice.
                            let d = srng.range(token + 1, 2 * token + consensus);
                            push(&mut out, t, Act::Pause { node: id, ns: d * 1_000_000 });
                            busy_until[i] = t + d + 1;
                        }
                    }
                }
                t += srng.range(1, 2 * mean);
            }
        }
        // Link episodes, one after another.
        let mut kinds = Vec::new();
        if partition {
            kinds.push(0);
        }
        if one_way {
            kinds.push(1);
        }
        if hold {
            kinds.push(2);
        }
        if latency {
            kinds.push(3);
        }
        if !kinds.is_empty() && nodes > 1 {
            let ids: Vec<u32> = (1..=nodes as u32).collect();
            let mean = srng.range(epoch / 2, 3 * epoch);
            let mut t = srng.range(1, 2 * mean);
            while t < safety_ms {
                let kind = *srng.pick(&kinds).unwrap_or(&0);
                let end = t + srng.range(token / 2, 2 * epoch);
                match kind {
                    0 => {
                        let k = srng.range(2, 3);
                        let mut groups = vec![Vec::new(); k as usize];
                        for &id in &ids {
                            groups[srng.range(0, k - 1) as usize].push(id);
                        }
                        groups.retain(|g| !g.is_empty());
                        push(&mut out, t, Act::Partition(groups));
                        push(&mut out, end, Act::Heal);
                    }
                    1 => {
                        for _ in 0..srng.range(1, 2) {
                            let from = *srng.pick(&ids).unwrap_or(&1);
                            let to = *srng.pick(&ids).unwrap_or(&1);
                            if from != to {
                                push(&mut out, t, Act::OneWay { from, to });
                            }
                        }
                        push(&mut out, end, Act::Heal);
                    }
                    2 => {
                        let a = *srng.pick(&ids).unwrap_or(&1);
                        let b = *srng.pick(&ids).unwrap_or(&2);
                        if a != b {
                            // Held shorter or longer than the token timeout.
                            let end = t + srng.range(token / 4, 2 * token);
                            push(&mut out, t, Act::Hold(a, b));
                            push(&mut out, end, Act::Release(a, b));
                        }
                    }
                    _ => {
                        let max_ns = srng.range(token / 4, token) * 1_000_000;
                        push(&mut out, t, Act::Latency { min_ns: net.latency_min_ns, max_ns });
                        push(
                            &mut out,
                            end,
                            Act::Latency { min_ns: net.latency_min_ns, max_ns: net.latency_max_ns },
                        );
                    }
                }
                t = end + srng.range(1, 2 * mean);
            }
        }
        out.retain(|(at, _, _)| *at < safety_ms);
        out.sort_by_key(|(at, order, _)| (*at, *order));
        let schedule = out.into_iter().map(|(at, _, act)| Timed { at_ns: at * 1_000_000, act }).collect();
        let liveness_restart = f.restart && srng.chance(0.5);
        let liveness_keep_state = !f.wipe || srng.chance(0.5);
        let liveness_send_ns = if srng.chance(0.5) { 0 } else { srng.range(0, epoch) * 1_000_000 };
        ClusterOptions {
            seed,
            nodes,
            token_ms,
            netmtu,
            tick_ns: limits.tick_us.max(1) * 1000,
            net,
            apps,
            schedule,
            safety_ns: safety_ms * 1_000_000,
            liveness_restart,
            liveness_keep_state,
            liveness_send_ns,
            mix,
            bug: limits.bug,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_are_sorted_and_within_the_safety_phase() {
        for seed in 0..100 {
            let o = ClusterOptions::draw(seed, &ClusterLimits::default());
            assert!(o.schedule.windows(2).all(|w| w[0].at_ns <= w[1].at_ns), "seed {seed}");
            assert!(o.schedule.iter().all(|t| t.at_ns < o.safety_ns), "seed {seed}");
        }
    }

    #[test]
    fn durations_print_in_the_largest_unit() {
        assert_eq!(fmt_ns(2_000_000_000), "2s");
        assert_eq!(fmt_ns(1_500_000_000), "1500ms");
        assert_eq!(fmt_ns(250_000), "250us");
        assert_eq!(fmt_ns(0), "0ms");
    }
}
