//! Faults: the actions a run takes on the world (scripted by a [`crate::scenario`] or
//! drawn from the seed), the connectivity matrix, and the swarm drawing of a fault
//! schedule.
//!
//! # Actions as text
//!
//! Every [`Action`] prints as one line of a small scenario language (its `Display`), so that
//! a drawn schedule can be read, and later pasted into a scenario file. Node ids are
//! 1-based; durations are milliseconds:
//!
//! ```text
//! at 2000ms start 4                 late joiner: node 4 cold-starts now
//! at 2000ms crash 2                 node 2 stops dead (no packets, no timers)
//! at 2000ms restart 2               new incarnation of node 2, with its persisted ring seq
//! at 2000ms restart 2 wipe          new incarnation that lost its persisted state
//! at 2000ms pause 3 for 6000ms      node 3 is frozen for 6 s, then resumes (stale state)
//! at 2000ms resume 3
//! at 2000ms leave 1                 clean shutdown (LEAVE), then dead
//! at 2000ms partition 1,2 | 3       links only within groups (unlisted nodes: one more group)
//! at 2000ms heal                    every link up
//! at 2000ms oneway 1 -> 2           packets from 1 to 2 are lost, 2 to 1 still work
//! at 2000ms cut 1 2                 link 1-2 down both ways
//! at 2000ms mend 1 2                link 1-2 up both ways
//! at 2000ms loss 0.2                per-packet loss probability
//! at 2000ms dup 0.05                per-packet duplication probability
//! at 2000ms latency 100us 3000us    delay uniform in [min, max]
//! at 2000ms slow-large 1000B +4000ms  packets of at least 1000 bytes get 4 s extra delay
//! at 2000ms send 2 x10              node 2's application submits 10 small messages
//! at 2000ms send-large 2 x3 200000B node 2's application submits 3 large messages
//! at 2000ms traffic off             background workload off (on: back on)
//! at 2000ms cpg-join 3 "g"          CPG nodes: a new connection on node 3 joins group g
//! at 2000ms cpg-churn off           CPG clients stop connecting, joining, leaving, exiting
//! at 0ms when reg at 4 = 1,2,3,4: pause 4 for 9000ms
//!                                   armed now; fires (once) when node 4 installs a regular
//!                                   configuration with exactly these members
//! at 0ms when joinlist at 1 from 3: crash 3
//!                                   fires when node 1 delivers a CPG joinlist of node 3
//! ```
//!
//! A `when` action is carried out right after the output batch in which its trigger
//! happened, before anything else runs: it can hit a node at an exact protocol step (inside
//! a synchronization round, say), which a time cannot do reliably.

use crate::rng::Rng;
use serde::{Deserialize, Serialize};
use std::fmt;

/// One thing that happens to the world at a scheduled time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Action {
    /// A node that has not run yet cold-starts (`Node::new` with no persisted state). A node
    /// with a `Start` action anywhere in the schedule is not started at time zero.
    Start(u32),
    /// The node stops dead: no packets, no timers. Recorded as `Crash`.
    Crash(u32),
    /// A new incarnation of the node. `keep_state`: `Node::new` gets the ring sequence it
    /// persisted; otherwise the disk is wiped (recorded as `StateLost` before `Start`). A
    /// running node is crashed first.
    Restart { node: u32, keep_state: bool },
    /// The node is frozen for this many milliseconds (SIGSTOP): no timers, packets to it
    /// queue up to a bound (the rest are dropped) and are handed over when it resumes.
    Pause(u32, u64),
    /// A paused node resumes now.
    Resume(u32),
    /// Clean shutdown: the core sends its LEAVE, then the node is dead. Recorded as `Leave`.
    Leave(u32),
    /// Only links within a group work. Nodes listed in no group form one more group.
    Partition(Vec<Vec<u32>>),
    /// Every link works again.
    Heal,
    /// Packets from `from` to `to` are lost; the other direction is unchanged.
    OneWay { from: u32, to: u32 },
    /// The link between two nodes goes down in both directions.
    Cut(u32, u32),
    /// The link between two nodes comes back up in both directions.
    Mend(u32, u32),
    /// Per-packet loss probability between distinct nodes.
    Loss(f64),
    /// Per-packet duplication probability.
    Dup(f64),
    /// Packet delay is uniform in [min_us, max_us] microseconds.
    Latency { min_us: u64, max_us: u64 },
    /// Packets of at least `min_bytes` (encoded) get `extra_ms` more delay (a middlebox
    /// holding large datagrams); `extra_ms` 0 turns it off.
    SlowLarge { min_bytes: usize, extra_ms: u64 },
    /// The node's application submits `count` small messages now (queued if the core says
    /// "try again").
    Send { node: u32, count: u64 },
    /// The node's application submits `count` messages of `bytes` bytes.
    SendLarge { node: u32, count: u64, bytes: usize },
    /// Background (random) application traffic on or off.
    Traffic(bool),
    /// CPG nodes: a new client connection on `node` joins `group` (with a fresh pid).
    CpgJoin { node: u32, group: Vec<u8> },
    /// CPG clients' churn (connect, join, leave, exit, refused requests) on or off;
    /// multicasts follow [`Action::Traffic`].
    CpgChurn(bool),
    /// Arm `then`: it is carried out once, right after the output batch in which `trigger`
    /// happens.
    When { trigger: Trigger, then: Box<Action> },
}

/// A protocol step that fires a [`Action::When`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Trigger {
    /// `node` delivers a regular configuration with exactly `members` (sorted).
    Regular { node: u32, members: Vec<u32> },
    /// Node `at` delivers a CPG joinlist (synchronization message) sent by node `from`.
    Joinlist { at: u32, from: u32 },
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trigger::Regular { node, members } => write!(f, "reg at {node} = {}", list(members)),
            Trigger::Joinlist { at, from } => write!(f, "joinlist at {at} from {from}"),
        }
    }
}

/// An action and when it happens (nanoseconds of simulated time).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Timed {
    pub at_ns: u64,
    pub action: Action,
}

impl Timed {
    pub fn at_ms(ms: u64, action: Action) -> Timed {
        Timed { at_ns: ms.saturating_mul(1_000_000), action }
    }
}

fn list(nodes: &[u32]) -> String {
    nodes.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Start(n) => write!(f, "start {n}"),
            Action::Crash(n) => write!(f, "crash {n}"),
            Action::Restart { node, keep_state: true } => write!(f, "restart {node}"),
            Action::Restart { node, keep_state: false } => write!(f, "restart {node} wipe"),
            Action::Pause(n, ms) => write!(f, "pause {n} for {ms}ms"),
            Action::Resume(n) => write!(f, "resume {n}"),
            Action::Leave(n) => write!(f, "leave {n}"),
            Action::Partition(groups) => {
                let groups: Vec<String> = groups.iter().map(|g| list(g)).collect();
                write!(f, "partition {}", groups.join(" | "))
            }
            Action::Heal => write!(f, "heal"),
            Action::OneWay { from, to } => write!(f, "oneway {from} -> {to}"),
            Action::Cut(a, b) => write!(f, "cut {a} {b}"),
            Action::Mend(a, b) => write!(f, "mend {a} {b}"),
            Action::Loss(p) => write!(f, "loss {p}"),
            Action::Dup(p) => write!(f, "dup {p}"),
            Action::Latency { min_us, max_us } => write!(f, "latency {min_us}us {max_us}us"),
            Action::SlowLarge { min_bytes, extra_ms } => write!(f, "slow-large {min_bytes}B +{extra_ms}ms"),
            Action::Send { node, count } => write!(f, "send {node} x{count}"),
            Action::SendLarge { node, count, bytes } => write!(f, "send-large {node} x{count} {bytes}B"),
            Action::Traffic(on) => write!(f, "traffic {}", if *on { "on" } else { "off" }),
            Action::CpgJoin { node, group } => write!(f, "cpg-join {node} {}", spec::trace::fmt_group(group)),
            Action::CpgChurn(on) => write!(f, "cpg-churn {}", if *on { "on" } else { "off" }),
            Action::When { trigger, then } => write!(f, "when {trigger}: {then}"),
        }
    }
}

impl fmt::Display for Timed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.at_ns.is_multiple_of(1_000_000) {
            write!(f, "at {}ms {}", self.at_ns / 1_000_000, self.action)
        } else {
            write!(f, "at {}us {}", self.at_ns / 1000, self.action)
        }
    }
}

/// Which directed links work: a packet from a to b is delivered only if `connected(a, b)`.
/// Node ids are 1-based; a node is always connected to itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Links {
    n: usize,
    /// `cut[(a - 1) * n + (b - 1)]`: packets from a to b are lost.
    cut: Vec<bool>,
    cut_count: usize,
}

impl Links {
    pub fn connected_all(n: usize) -> Links {
        Links { n, cut: vec![false; n * n], cut_count: 0 }
    }

    fn slot(&self, a: u32, b: u32) -> Option<usize> {
        let (a, b) = ((a as usize).checked_sub(1)?, (b as usize).checked_sub(1)?);
        (a < self.n && b < self.n).then_some(a * self.n + b)
    }

    pub fn connected(&self, a: u32, b: u32) -> bool {
        a == b || self.cut_count == 0 || self.slot(a, b).is_none_or(|i| !self.cut[i])
    }

    /// Set the directed link a -> b up or down.
    pub fn set(&mut self, a: u32, b: u32, up: bool) {
        if a == b {
            return;
        }
        if let Some(i) = self.slot(a, b)
            && self.cut[i] == up
        {
            self.cut[i] = !up;
            if up {
                self.cut_count -= 1;
            } else {
                self.cut_count += 1;
            }
        }
    }

    pub fn heal(&mut self) {
        self.cut.iter_mut().for_each(|c| *c = false);
        self.cut_count = 0;
    }

    /// Only links inside one group work; unlisted nodes form one more group.
    pub fn partition(&mut self, groups: &[Vec<u32>]) {
        let mut group_of = vec![usize::MAX; self.n];
        for (g, members) in groups.iter().enumerate() {
            for &m in members {
                if let Some(slot) = (m as usize).checked_sub(1).and_then(|i| group_of.get_mut(i)) {
                    *slot = g;
                }
            }
        }
        self.heal();
        for a in 1..=self.n as u32 {
            for b in 1..=self.n as u32 {
                if group_of[a as usize - 1] != group_of[b as usize - 1] {
                    self.set(a, b, false);
                }
            }
        }
    }

    /// Number of directed links down.
    pub fn cut_count(&self) -> usize {
        self.cut_count
    }
}

/// Which kinds of faults a run may draw (the user's limits; each allowed kind is then
/// switched on or off per seed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultKinds {
    pub crash: bool,
    /// Crashed and departed nodes come back (with or without their persisted state).
    pub restart: bool,
    pub pause: bool,
    pub leave: bool,
    pub partition: bool,
    pub one_way: bool,
    pub swizzle: bool,
    pub slow_large: bool,
    pub late_join: bool,
}

impl FaultKinds {
    pub const fn all() -> FaultKinds {
        FaultKinds {
            crash: true,
            restart: true,
            pause: true,
            leave: true,
            partition: true,
            one_way: true,
            swizzle: true,
            slow_large: true,
            late_join: true,
        }
    }

    pub const fn none() -> FaultKinds {
        FaultKinds {
            crash: false,
            restart: false,
            pause: false,
            leave: false,
            partition: false,
            one_way: false,
            swizzle: false,
            slow_large: false,
            late_join: false,
        }
    }

    pub fn any(&self) -> bool {
        *self != FaultKinds::none()
    }
}

/// The faults one seed drew: which kinds are on and at what rates. The schedule itself is
/// [`draw_schedule`]'s output, stored in [`crate::Options::schedule`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FaultMix {
    /// Mean gap between process faults (crash, leave, pause); None: no process faults.
    pub process_gap_ms: Option<u64>,
    pub crash: bool,
    pub leave: bool,
    pub pause: bool,
    /// Probability that a crashed or departed node restarts (after a drawn delay) during
    /// the safety phase.
    pub restart_p: f64,
    /// Probability that a restart keeps the persisted ring sequence.
    pub keep_state_p: f64,
    /// Mean gap between link episodes (partition, one-way cut, swizzle, slow large
    /// packets); None: no link faults.
    pub link_gap_ms: Option<u64>,
    pub partition: bool,
    pub one_way: bool,
    pub swizzle: bool,
    pub slow_large: bool,
    /// Nodes started late, with their start times (ms).
    pub late: Vec<(u32, u64)>,
}

impl FaultMix {
    pub fn none() -> FaultMix {
        FaultMix {
            process_gap_ms: None,
            crash: false,
            leave: false,
            pause: false,
            restart_p: 0.0,
            keep_state_p: 1.0,
            link_gap_ms: None,
            partition: false,
            one_way: false,
            swizzle: false,
            slow_large: false,
            late: Vec::new(),
        }
    }

    /// Draw which allowed kinds are on, and their rates. `token_ms` and `consensus_ms` are
    /// the run's timeouts: fault gaps and durations are drawn relative to them.
    pub fn draw(
        rng: &mut Rng,
        allowed: &FaultKinds,
        nodes: usize,
        safety_ms: u64,
        token_ms: u64,
        consensus_ms: u64,
    ) -> FaultMix {
        let epoch = token_ms + consensus_ms;
        let mut on = |allowed: bool, p: f64| allowed && rng.chance(p);
        let crash = on(allowed.crash, 0.5);
        let leave = on(allowed.leave, 0.3);
        let pause = on(allowed.pause, 0.5);
        let partition = on(allowed.partition, 0.5);
        let one_way = on(allowed.one_way, 0.3);
        let swizzle = on(allowed.swizzle, 0.3);
        let slow_large = on(allowed.slow_large, 0.2);
        let late_join = on(allowed.late_join && nodes > 1, 0.3);
        let process_gap_ms = (crash || leave || pause).then(|| rng.range(epoch / 2, 3 * epoch));
        let link_gap_ms =
            (partition || one_way || swizzle || slow_large).then(|| rng.range(epoch / 2, 3 * epoch));
        let restart_p = if allowed.restart { *rng.pick(&[0.5, 0.9, 1.0]).unwrap_or(&1.0) } else { 0.0 };
        let keep_state_p = *rng.pick(&[0.0, 0.5, 1.0]).unwrap_or(&1.0);
        let mut late = Vec::new();
        if late_join {
            let count = rng.range(1, nodes as u64 - 1);
            let mut ids: Vec<u32> = (1..=nodes as u32).collect();
            shuffle(rng, &mut ids);
            for &id in ids.iter().take(count as usize) {
                late.push((id, rng.range(0, safety_ms / 2)));
            }
            late.sort_unstable();
        }
        FaultMix {
            process_gap_ms,
            crash,
            leave,
            pause,
            restart_p,
            keep_state_p,
            link_gap_ms,
            partition,
            one_way,
            swizzle,
            slow_large,
            late,
        }
    }
}

pub fn shuffle<T>(rng: &mut Rng, v: &mut [T]) {
    for i in (1..v.len()).rev() {
        let j = rng.range(0, i as u64) as usize;
        v.swap(i, j);
    }
}

/// A gap drawn around `mean` (uniform in [0, 2 * mean]).
fn gap(rng: &mut Rng, mean: u64) -> u64 {
    rng.range(1, 2 * mean.max(1))
}

/// Draw the fault schedule of one run: every action happens before `safety_ms` (the
/// liveness phase heals whatever is still broken). Process faults never take the last
/// running node down. Times are milliseconds; the result is sorted by time (stable).
pub fn draw_schedule(
    rng: &mut Rng,
    mix: &FaultMix,
    nodes: usize,
    safety_ms: u64,
    token_ms: u64,
    consensus_ms: u64,
) -> Vec<Timed> {
    let epoch = token_ms + consensus_ms;
    let mut out: Vec<(u64, u64, Action)> = Vec::new();
    let mut order = 0u64;
    let mut push = |out: &mut Vec<(u64, u64, Action)>, at: u64, a: Action| {
        order += 1;
        out.push((at, order, a));
    };
    // When each node is running: it started (late joiners later) and is not crashed, left
    // or paused until `busy_until`.
    let mut started_at = vec![0u64; nodes];
    for &(id, at) in &mix.late {
        if let Some(s) = started_at.get_mut(id as usize - 1) {
            *s = at;
        }
        push(&mut out, at, Action::Start(id));
    }
    let mut busy_until = vec![0u64; nodes];

    if let Some(mean) = mix.process_gap_ms {
        let mut kinds = Vec::new();
        if mix.crash {
            kinds.push(0);
        }
        if mix.leave {
            kinds.push(1);
        }
        if mix.pause {
            kinds.push(2);
        }
        let mut t = gap(rng, mean);
        while t < safety_ms {
            let up: Vec<usize> = (0..nodes).filter(|&i| started_at[i] <= t && busy_until[i] <= t).collect();
            let kind = *rng.pick(&kinds).unwrap_or(&0);
            let enough = if kind == 2 { !up.is_empty() } else { up.len() >= 2 };
            if enough && let Some(&i) = rng.pick(&up) {
                let id = i as u32 + 1;
                match kind {
                    0 | 1 => {
                        push(&mut out, t, if kind == 0 { Action::Crash(id) } else { Action::Leave(id) });
                        let delay = rng.range(0, 2 * epoch);
                        if rng.chance(mix.restart_p) && t + delay < safety_ms {
                            let keep_state = rng.chance(mix.keep_state_p);
                            push(&mut out, t + delay, Action::Restart { node: id, keep_state });
                            busy_until[i] = t + delay + 1;
                        } else {
                            busy_until[i] = u64::MAX;
                        }
                    }
                    _ => {
                        let d = rng.range(token_ms + 1, 2 * token_ms + consensus_ms);
                        push(&mut out, t, Action::Pause(id, d));
                        busy_until[i] = t + d + 1;
                    }
                }
            }
            t += gap(rng, mean);
        }
    }

    if let Some(mean) = mix.link_gap_ms {
        let mut kinds = Vec::new();
        if mix.partition {
            kinds.push(0);
        }
        if mix.one_way {
            kinds.push(1);
        }
        if mix.swizzle {
            kinds.push(2);
        }
        if mix.slow_large {
            kinds.push(3);
        }
        let ids: Vec<u32> = (1..=nodes as u32).collect();
        let mut t = gap(rng, mean);
        while t < safety_ms && nodes > 1 {
            let kind = *rng.pick(&kinds).unwrap_or(&0);
            let end = match kind {
                0 => {
                    let k = rng.range(2, 3);
                    let mut groups = vec![Vec::new(); k as usize];
                    for &id in &ids {
                        groups[rng.range(0, k - 1) as usize].push(id);
                    }
                    groups.retain(|g| !g.is_empty());
                    push(&mut out, t, Action::Partition(groups));
                    let end = t + rng.range(token_ms / 2, 2 * epoch);
                    push(&mut out, end, Action::Heal);
                    end
                }
                1 => {
                    for _ in 0..rng.range(1, 2) {
                        let from = *rng.pick(&ids).unwrap_or(&1);
                        let to = *rng.pick(&ids).unwrap_or(&1);
                        if from != to {
                            push(&mut out, t, Action::OneWay { from, to });
                        }
                    }
                    let end = t + rng.range(token_ms / 2, 2 * epoch);
                    push(&mut out, end, Action::Heal);
                    end
                }
                2 => {
                    // FoundationDB's swizzle: cut the links between a random half and the
                    // rest one at a time, then mend them one at a time in another order.
                    let mut side: Vec<u32> = ids.iter().copied().filter(|_| rng.chance(0.5)).collect();
                    if side.is_empty() || side.len() == nodes {
                        side = vec![*rng.pick(&ids).unwrap_or(&1)];
                    }
                    let mut links: Vec<(u32, u32)> = side
                        .iter()
                        .flat_map(|&a| ids.iter().filter(|b| !side.contains(b)).map(move |&b| (a, b)))
                        .collect();
                    let step = rng.range(50, (token_ms / 2).max(51));
                    shuffle(rng, &mut links);
                    let mut at = t;
                    for &(a, b) in &links {
                        push(&mut out, at, Action::Cut(a, b));
                        at += step;
                    }
                    at += rng.range(0, epoch);
                    shuffle(rng, &mut links);
                    for &(a, b) in &links {
                        push(&mut out, at, Action::Mend(a, b));
                        at += step;
                    }
                    at
                }
                _ => {
                    let min_bytes = rng.range(500, 1400) as usize;
                    let extra_ms = rng.range(token_ms / 2, 2 * token_ms);
                    push(&mut out, t, Action::SlowLarge { min_bytes, extra_ms });
                    let end = t + rng.range(token_ms, 2 * epoch);
                    push(&mut out, end, Action::SlowLarge { min_bytes, extra_ms: 0 });
                    end
                }
            };
            t = end + gap(rng, mean);
        }
    }

    out.retain(|(at, _, _)| *at < safety_ms);
    // Sort by time, ties in generation order.
    out.sort_by_key(|(at, order, _)| (*at, *order));
    out.into_iter().map(|(at, _, action)| Timed::at_ms(at, action)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_partition_and_heal() {
        let mut l = Links::connected_all(4);
        l.partition(&[vec![1, 2], vec![3]]);
        assert!(l.connected(1, 2) && l.connected(2, 1));
        assert!(!l.connected(1, 3) && !l.connected(3, 4) && !l.connected(4, 1));
        assert!(l.connected(3, 3));
        l.heal();
        assert_eq!(l.cut_count(), 0);
        l.set(1, 2, false);
        assert!(!l.connected(1, 2) && l.connected(2, 1));
        l.set(1, 2, false);
        assert_eq!(l.cut_count(), 1);
    }

    #[test]
    fn display_is_one_line_per_action() {
        let t = Timed::at_ms(2000, Action::Partition(vec![vec![1, 2], vec![3]]));
        assert_eq!(t.to_string(), "at 2000ms partition 1,2 | 3");
        assert_eq!(Action::Restart { node: 2, keep_state: false }.to_string(), "restart 2 wipe");
        assert_eq!(Action::Pause(3, 6000).to_string(), "pause 3 for 6000ms");
    }

    #[test]
    fn schedules_are_sorted_and_bounded() {
        for seed in 0..200 {
            let mut rng = Rng::new(seed);
            let mix = FaultMix::draw(&mut rng, &FaultKinds::all(), 5, 60_000, 1000, 1200);
            let s = draw_schedule(&mut rng, &mix, 5, 60_000, 1000, 1200);
            assert!(s.windows(2).all(|w| w[0].at_ns <= w[1].at_ns), "seed {seed}");
            assert!(s.iter().all(|t| t.at_ns < 60_000 * 1_000_000));
        }
    }
}
