//! The simulated world: N real `totem-core` nodes, a seeded lossy network with a
//! connectivity matrix, simulated applications, process faults (crash, restart, pause,
//! clean leave), and the trace recorder.
//!
//! Everything happens in one thread in simulated time: the next event is the earliest of
//! the pending packet deliveries, application ticks, scheduled actions and the running
//! nodes' armed timers. Ties are broken by insertion order, so a seed replays exactly.

use crate::faults::{Action, Links};
use crate::options::{NetParams, Options, StartMode};
use crate::payload;
use crate::rng::Rng;
use bytes::Bytes;
use spec::trace::{ConfKind, EventKind, MsgId, ProtoState, Ring, Slot, Trace};
use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, HashSet, VecDeque};
use totem_core::node::{ConfigChange, Delivery};
use totem_core::srp::State;
use totem_core::{
    ConfigKind, Dest, Guarantee, Message, Node, NodeId, Output, Probe, RingId, SubmitError, Time,
};

/// Size of the small messages scripted `send` actions submit.
pub const SCRIPTED_SMALL: usize = 64;

/// Where a simulated machine is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Life {
    /// Not started yet (a late joiner).
    NotStarted,
    Up,
    /// Frozen (SIGSTOP): no timers; packets to it queue up to a bound.
    Paused,
    Crashed,
    /// Left cleanly (shutdown); dead like a crashed node.
    Left,
}

/// One simulated machine: a core, its disk, and the application using it.
#[derive(Debug)]
pub struct SimNode {
    pub node: Node,
    /// 0 for the first start, +1 at every restart.
    pub incarnation: u32,
    pub life: Life,
    /// The ring sequence the core last asked to persist (survives crashes, not wipes).
    pub disk: Option<u64>,
    /// Next message counter of this incarnation's application.
    pub counter: u64,
    /// A message the application wants to send but was told to retry.
    pub retry: Option<(Vec<u8>, Guarantee)>,
    /// Sizes of scripted messages not submitted yet.
    pub backlog: VecDeque<usize>,
    /// Packets that arrived while paused, handed over at resume.
    paused_queue: VecDeque<(NodeId, Packet)>,
    /// Persist confirmations that completed while paused, handed over at resume.
    paused_persists: Vec<u64>,
    pause_id: u64,
    /// The last configuration this incarnation delivered.
    pub last_config: Option<(ConfKind, Ring, Vec<u32>)>,
    /// When this incarnation delivered it.
    pub last_config_at: Time,
}

impl SimNode {
    fn new(node: Node, life: Life) -> SimNode {
        SimNode {
            node,
            incarnation: 0,
            life,
            disk: None,
            counter: 0,
            retry: None,
            backlog: VecDeque::new(),
            paused_queue: VecDeque::new(),
            paused_persists: Vec::new(),
            pause_id: 0,
            last_config: None,
            last_config_at: Time::ZERO,
        }
    }

    /// Running or paused (a paused node is alive, only slow).
    pub fn alive(&self) -> bool {
        matches!(self.life, Life::Up | Life::Paused)
    }
}

#[derive(Debug)]
enum Event {
    Packet {
        to: NodeId,
        from: NodeId,
        packet: Packet,
    },
    AppTick {
        node: NodeId,
        incarnation: u32,
    },
    /// The disk confirms that `seq` is durable.
    Persisted {
        node: NodeId,
        incarnation: u32,
        seq: u64,
    },
    Action(Action),
    Resume {
        node: NodeId,
        pause_id: u64,
    },
}

/// A packet in flight: encoded bytes (the default, exercising the codec) or the value.
#[derive(Debug, Clone)]
enum Packet {
    Wire(Bytes),
    Value(Message),
}

impl Packet {
    fn len(&self) -> usize {
        match self {
            Packet::Wire(b) => b.len(),
            Packet::Value(m) => totem_core::wire::encoded_len(m),
        }
    }
}

#[derive(Debug)]
struct Scheduled {
    at: Time,
    order: u64,
    event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.order) == (other.at, other.order)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.order).cmp(&(other.at, other.order))
    }
}

/// Counters of one run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorldStats {
    pub events: u64,
    pub packets_sent: u64,
    pub packets_dropped: u64,
    pub packets_duplicated: u64,
    pub packets_undecodable: u64,
    /// Lost to a cut link (partition, one-way cut, swizzle).
    pub packets_cut: u64,
    /// Queued for a paused node, and dropped because its queue was full.
    pub packets_queued: u64,
    pub packets_overflowed: u64,
    /// Addressed to a node that is not running (not started, crashed, left).
    pub packets_to_dead: u64,
    pub messages_sent: u64,
    pub messages_delivered: u64,
    pub try_again: u64,
    /// Deliveries whose payload did not match what was sent (must stay 0).
    pub corrupt_payloads: u64,
    pub crashes: u64,
    pub restarts: u64,
    pub state_wipes: u64,
    pub pauses: u64,
    pub leaves: u64,
    pub late_starts: u64,
    pub link_changes: u64,
    pub configs: u64,
    pub persists: u64,
    /// Most events processed within one second of simulated time.
    pub peak_events_per_sec: u64,
}

pub struct World {
    pub opts: Options,
    pub now: Time,
    pub nodes: Vec<SimNode>,
    pub trace: Trace,
    pub stats: WorldStats,
    /// Network conditions in force (faults on in the safety phase, off in liveness).
    pub net: NetParams,
    /// Which links work.
    pub links: Links,
    /// Applications submit messages (random and scripted) only while this is set.
    pub submitting: bool,
    /// Random background traffic on.
    pub traffic: bool,
    /// Problems of the simulator itself (a core refusing a valid configuration).
    pub errors: Vec<String>,
    /// Set when more than `opts.max_events_per_sec` events happened within one simulated
    /// second (a message storm): the run stops there.
    pub storm: Option<Time>,
    second: u64,
    second_events: u64,
    net_rng: Rng,
    app_rng: Rng,
    disk_rng: Rng,
    heap: BinaryHeap<Reverse<Scheduled>>,
    order: u64,
    scratch: Vec<Output>,
}

impl std::fmt::Debug for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("World").field("now", &self.now).field("stats", &self.stats).finish()
    }
}

pub fn node_id(index: usize) -> NodeId {
    NodeId(index as u32 + 1)
}

fn index_of(id: NodeId) -> usize {
    (id.0 as usize).saturating_sub(1)
}

impl World {
    /// Build the world and start the nodes that run from time zero: in
    /// [`StartMode::Formed`] on one formed ring, in [`StartMode::Cold`] from nothing. A node
    /// with a `Start` action in the schedule waits for it (a late joiner). Every action of
    /// `opts.schedule` is queued.
    pub fn new(opts: Options) -> anyhow::Result<World> {
        let mut rng = Rng::new(opts.seed);
        let net_rng = rng.fork(1);
        let app_rng = rng.fork(2);
        let disk_rng = rng.fork(3);
        let late: BTreeSet<u32> = opts
            .schedule
            .iter()
            .filter_map(|t| match t.action {
                Action::Start(n) => Some(n),
                _ => None,
            })
            .collect();
        let ids: Vec<NodeId> = (0..opts.nodes).map(node_id).collect();
        let first: Vec<NodeId> = ids.iter().copied().filter(|id| !late.contains(&id.0)).collect();
        let ring_id = RingId::new(first.first().copied().unwrap_or(NodeId(1)), 4);
        let mut nodes = Vec::with_capacity(opts.nodes);
        for &id in &ids {
            let early = first.contains(&id);
            let mut sim = if early && opts.start == StartMode::Formed {
                let mut n = SimNode::new(
                    Node::new_on_ring(opts.node_config(id.0, 0), id, ring_id, &first)?,
                    Life::NotStarted,
                );
                // A formed ring stands for one these nodes formed and persisted.
                n.disk = Some(ring_id.seq);
                n
            } else {
                SimNode::new(Node::new(opts.node_config(id.0, 0), id, None)?, Life::NotStarted)
            };
            sim.life = Life::NotStarted;
            nodes.push(sim);
        }
        let mut world = World {
            net: opts.net.clone(),
            links: Links::connected_all(opts.nodes),
            traffic: opts.workload.enabled,
            opts,
            now: Time::ZERO,
            nodes,
            trace: Trace::default(),
            stats: WorldStats::default(),
            submitting: true,
            errors: Vec::new(),
            storm: None,
            second: 0,
            second_events: 0,
            net_rng,
            app_rng,
            disk_rng,
            heap: BinaryHeap::new(),
            order: 0,
            scratch: Vec::new(),
        };
        let schedule = world.opts.schedule.clone();
        for t in schedule {
            world.schedule_at(Time(t.at_ns), Event::Action(t.action));
        }
        for id in first {
            // The core is already built; only announce and start it.
            world.boot(index_of(id));
        }
        Ok(world)
    }

    fn schedule(&mut self, after: u64, event: Event) {
        self.schedule_at(Time(self.now.0.saturating_add(after)), event);
    }

    fn schedule_at(&mut self, at: Time, event: Event) {
        self.order += 1;
        self.heap.push(Reverse(Scheduled { at, order: self.order, event }));
    }

    fn record(&mut self, id: NodeId, kind: EventKind) {
        let incarnation = self.nodes.get(index_of(id)).map(|n| n.incarnation).unwrap_or(0);
        self.trace.push(self.now.0, id.0, incarnation, kind);
    }

    /// Run until simulated time `until` (or the event budget runs out, or a storm is
    /// detected). Returns false if it stopped early.
    pub fn run_until(&mut self, until: Time) -> bool {
        let budget = self.opts.max_events;
        while self.stats.events < budget && self.storm.is_none() {
            let next_timer = self
                .nodes
                .iter()
                .enumerate()
                .filter(|(_, n)| n.life == Life::Up)
                .filter_map(|(i, n)| n.node.poll_timeout().map(|(t, k)| (t, i, k)))
                .min_by_key(|&(t, i, _)| (t, i));
            let next_event = self.heap.peek().map(|Reverse(s)| s.at);
            let timer_first = match (next_timer, next_event) {
                (Some((t, _, _)), Some(e)) => t <= e,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => {
                    self.now = self.now.max(until);
                    return true;
                }
            };
            let at = if timer_first { next_timer.map(|x| x.0) } else { next_event }.unwrap_or(until);
            if at > until {
                self.now = self.now.max(until);
                return true;
            }
            self.now = self.now.max(at);
            self.stats.events += 1;
            self.count_event();
            if timer_first {
                if let Some((_, i, kind)) = next_timer {
                    let id = node_id(i);
                    let mut out = std::mem::take(&mut self.scratch);
                    self.nodes[i].node.handle_timeout(self.now, kind, &mut out);
                    self.apply_outputs(id, &mut out);
                    self.scratch = out;
                }
            } else if let Some(Reverse(s)) = self.heap.pop() {
                self.dispatch(s.event);
            }
        }
        false
    }

    fn count_event(&mut self) {
        let second = self.now.0 / 1_000_000_000;
        if second != self.second {
            self.second = second;
            self.second_events = 0;
        }
        self.second_events += 1;
        if self.second_events > self.stats.peak_events_per_sec {
            self.stats.peak_events_per_sec = self.second_events;
            if self.second_events > self.opts.max_events_per_sec {
                self.storm = Some(self.now);
            }
        }
    }

    fn dispatch(&mut self, event: Event) {
        match event {
            Event::Packet { to, from, packet } => self.receive(to, from, packet),
            Event::AppTick { node, incarnation } => self.app_tick(node, incarnation),
            Event::Persisted { node, incarnation, seq } => self.persisted(node, incarnation, seq),
            Event::Action(action) => self.apply(&action),
            Event::Resume { node, pause_id } => {
                if self.nodes.get(index_of(node)).is_some_and(|n| n.pause_id == pause_id) {
                    self.resume(node);
                }
            }
        }
    }

    fn receive(&mut self, to: NodeId, from: NodeId, packet: Packet) {
        let i = index_of(to);
        let Some(n) = self.nodes.get_mut(i) else { return };
        match n.life {
            Life::Up => {}
            Life::Paused => {
                if n.paused_queue.len() < self.opts.pause_queue_max {
                    n.paused_queue.push_back((from, packet));
                    self.stats.packets_queued += 1;
                } else {
                    self.stats.packets_overflowed += 1;
                }
                return;
            }
            Life::NotStarted | Life::Crashed | Life::Left => {
                self.stats.packets_to_dead += 1;
                return;
            }
        }
        let msg = match packet {
            Packet::Value(msg) => msg,
            Packet::Wire(bytes) => match totem_core::wire::decode_bytes(&bytes) {
                Ok((_, msg)) => msg,
                Err(_) => {
                    self.stats.packets_undecodable += 1;
                    return;
                }
            },
        };
        let mut out = std::mem::take(&mut self.scratch);
        self.nodes[i].node.handle_message(self.now, from, msg, &mut out);
        self.apply_outputs(to, &mut out);
        self.scratch = out;
    }

    // ---------------------------------------------------------------- actions

    /// Carry out `action` now.
    pub fn apply(&mut self, action: &Action) {
        match *action {
            Action::Start(n) => {
                if self.life(n) == Some(Life::NotStarted) {
                    self.stats.late_starts += 1;
                    self.start_incarnation(n, true);
                }
            }
            Action::Crash(n) => self.crash(n),
            Action::Restart { node, keep_state } => {
                self.crash(node);
                if self.life(node).is_some() {
                    self.stats.restarts += 1;
                    self.start_incarnation(node, keep_state);
                }
            }
            Action::Pause(n, ms) => {
                let i = index_of(NodeId(n));
                if let Some(sim) = self.nodes.get_mut(i)
                    && sim.life == Life::Up
                {
                    sim.life = Life::Paused;
                    sim.pause_id += 1;
                    let pause_id = sim.pause_id;
                    self.stats.pauses += 1;
                    self.schedule(ms.saturating_mul(1_000_000), Event::Resume { node: NodeId(n), pause_id });
                }
            }
            Action::Resume(n) => self.resume(NodeId(n)),
            Action::Leave(n) => self.leave(n),
            Action::Partition(ref groups) => {
                self.stats.link_changes += 1;
                self.links.partition(groups);
            }
            Action::Heal => {
                self.stats.link_changes += 1;
                self.links.heal();
            }
            Action::OneWay { from, to } => {
                self.stats.link_changes += 1;
                self.links.set(from, to, false);
            }
            Action::Cut(a, b) => {
                self.stats.link_changes += 1;
                self.links.set(a, b, false);
                self.links.set(b, a, false);
            }
            Action::Mend(a, b) => {
                self.stats.link_changes += 1;
                self.links.set(a, b, true);
                self.links.set(b, a, true);
            }
            Action::Loss(p) => self.net.loss = p.clamp(0.0, 1.0),
            Action::Dup(p) => self.net.duplication = p.clamp(0.0, 1.0),
            Action::Latency { min_us, max_us } => {
                self.net.latency_min_ns = min_us.saturating_mul(1000);
                self.net.latency_max_ns = max_us.max(min_us).saturating_mul(1000);
            }
            Action::SlowLarge { min_bytes, extra_ms } => {
                self.net.slow_large_min_bytes = min_bytes;
                self.net.slow_large_extra_ns = extra_ms.saturating_mul(1_000_000);
            }
            Action::Send { node, count } => self.queue_sends(node, count, SCRIPTED_SMALL),
            Action::SendLarge { node, count, bytes } => self.queue_sends(node, count, bytes),
            Action::Traffic(on) => self.traffic = on,
        }
    }

    fn life(&self, n: u32) -> Option<Life> {
        self.nodes.get(index_of(NodeId(n))).map(|s| s.life)
    }

    /// Start a new incarnation of node `n` (its first if it never ran): `Node::new` with
    /// the persisted ring sequence (`keep_state`) or with none (the disk is wiped; recorded
    /// as `StateLost` when an earlier incarnation existed).
    fn start_incarnation(&mut self, n: u32, keep_state: bool) {
        let i = index_of(NodeId(n));
        let Some(sim) = self.nodes.get_mut(i) else { return };
        let first = sim.life == Life::NotStarted;
        if !first {
            sim.incarnation += 1;
        }
        if !keep_state {
            sim.disk = None;
        }
        let disk = sim.disk;
        let config = self.opts.node_config(n, sim.incarnation);
        match Node::new(config, NodeId(n), disk) {
            Ok(node) => sim.node = node,
            Err(e) => {
                self.errors.push(format!("node {n}: Node::new refused the configuration: {e}"));
                return;
            }
        }
        if !first && !keep_state {
            self.stats.state_wipes += 1;
            self.record(NodeId(n), EventKind::StateLost);
        }
        self.boot(i);
    }

    /// Record `Start`, start the (already built) core, and begin the application.
    fn boot(&mut self, i: usize) {
        let id = node_id(i);
        let sim = &mut self.nodes[i];
        sim.life = Life::Up;
        sim.counter = 0;
        sim.retry = None;
        sim.backlog.clear();
        sim.paused_queue.clear();
        sim.paused_persists.clear();
        sim.last_config = None;
        let incarnation = sim.incarnation;
        self.record(id, EventKind::Start);
        let mut out = std::mem::take(&mut self.scratch);
        self.nodes[i].node.start(self.now, &mut out);
        self.apply_outputs(id, &mut out);
        self.scratch = out;
        let first_tick = self.app_interval();
        self.schedule(first_tick, Event::AppTick { node: id, incarnation });
    }

    fn crash(&mut self, n: u32) {
        let i = index_of(NodeId(n));
        if let Some(sim) = self.nodes.get_mut(i)
            && sim.alive()
        {
            sim.life = Life::Crashed;
            sim.paused_queue.clear();
            sim.paused_persists.clear();
            self.stats.crashes += 1;
            self.record(NodeId(n), EventKind::Crash);
        }
    }

    fn leave(&mut self, n: u32) {
        let i = index_of(NodeId(n));
        if self.nodes.get(i).is_some_and(|s| s.life == Life::Up) {
            let id = NodeId(n);
            let mut out = std::mem::take(&mut self.scratch);
            self.nodes[i].node.shutdown(self.now, &mut out);
            self.apply_outputs(id, &mut out);
            self.scratch = out;
            self.nodes[i].life = Life::Left;
            self.stats.leaves += 1;
            self.record(id, EventKind::Leave);
        }
    }

    fn resume(&mut self, id: NodeId) {
        let i = index_of(id);
        let Some(sim) = self.nodes.get_mut(i) else { return };
        if sim.life != Life::Paused {
            return;
        }
        sim.life = Life::Up;
        // Invalidate the pending automatic resume, if any.
        sim.pause_id += 1;
        let queued: Vec<(NodeId, Packet)> = sim.paused_queue.drain(..).collect();
        let persisted: Vec<u64> = std::mem::take(&mut sim.paused_persists);
        let incarnation = sim.incarnation;
        for seq in persisted {
            self.schedule(0, Event::Persisted { node: id, incarnation, seq });
        }
        for (from, packet) in queued {
            self.schedule(0, Event::Packet { to: id, from, packet });
        }
    }

    /// End every fault for the liveness phase: all links up, loss, duplication and slow
    /// large packets off (latency kept at its minimum), paused nodes resumed, nodes not
    /// started yet started, and, if `restart_dead`, crashed and departed nodes restarted
    /// (keeping their state if `keep_state`). Actions still queued are dropped.
    pub fn heal_all(&mut self, restart_dead: bool, keep_state: bool) {
        self.links.heal();
        self.net = NetParams::perfect(self.net.latency_min_ns);
        let pending: Vec<Reverse<Scheduled>> = std::mem::take(&mut self.heap).into_vec();
        self.heap = pending.into_iter().filter(|Reverse(s)| !matches!(s.event, Event::Action(_))).collect();
        for i in 0..self.nodes.len() {
            let n = node_id(i).0;
            match self.nodes[i].life {
                Life::Paused => self.resume(NodeId(n)),
                Life::NotStarted => self.apply(&Action::Start(n)),
                Life::Crashed | Life::Left if restart_dead => {
                    self.apply(&Action::Restart { node: n, keep_state });
                }
                _ => {}
            }
        }
    }

    fn persisted(&mut self, id: NodeId, incarnation: u32, seq: u64) {
        let i = index_of(id);
        let Some(sim) = self.nodes.get_mut(i) else { return };
        if sim.incarnation != incarnation {
            return;
        }
        match sim.life {
            Life::Up => {
                let mut out = std::mem::take(&mut self.scratch);
                self.nodes[i].node.ring_seq_persisted(self.now, seq, &mut out);
                self.apply_outputs(id, &mut out);
                self.scratch = out;
            }
            Life::Paused => sim.paused_persists.push(seq),
            Life::NotStarted | Life::Crashed | Life::Left => {}
        }
    }

    // ---------------------------------------------------------------- applications

    fn app_interval(&mut self) -> u64 {
        let mean = self.opts.workload.interval_mean_ns.max(1);
        // Exponential-ish: uniform in [0, 2*mean].
        self.app_rng.range(0, 2 * mean)
    }

    fn queue_sends(&mut self, n: u32, count: u64, bytes: usize) {
        let i = index_of(NodeId(n));
        if let Some(sim) = self.nodes.get_mut(i)
            && sim.life == Life::Up
        {
            sim.backlog.extend(std::iter::repeat_n(bytes.max(payload::HEADER_LEN), count as usize));
            self.pump(NodeId(n), 0);
        }
    }

    fn app_tick(&mut self, id: NodeId, incarnation: u32) {
        let i = index_of(id);
        let Some(sim) = self.nodes.get(i) else { return };
        if sim.incarnation != incarnation || !sim.alive() {
            // This incarnation ended: its application stops.
            return;
        }
        if sim.life == Life::Up && self.submitting {
            let burst =
                if self.traffic { self.app_rng.range(1, self.opts.workload.burst_max.max(1)) } else { 0 };
            self.pump(id, burst);
        }
        let next = self.app_interval();
        self.schedule(next, Event::AppTick { node: id, incarnation });
    }

    /// Submit the retried message, then scripted ones, then up to `random` new random
    /// ones, until the core says "try again".
    fn pump(&mut self, id: NodeId, mut random: u64) {
        let i = index_of(id);
        if !self.submitting {
            return;
        }
        loop {
            let next = match self.nodes[i].retry.take() {
                Some(retry) => Some(retry),
                None => match self.nodes[i].backlog.pop_front() {
                    Some(size) => Some(self.new_message(i, Some(size))),
                    None if random > 0 => {
                        random -= 1;
                        Some(self.new_message(i, None))
                    }
                    None => None,
                },
            };
            let Some((bytes, guarantee)) = next else { return };
            let mut out = std::mem::take(&mut self.scratch);
            let result = self.nodes[i].node.submit(self.now, &bytes, guarantee, &mut out);
            match result {
                Ok(()) => {
                    self.stats.messages_sent += 1;
                    if let Some(msg) = payload::id_of(&bytes) {
                        self.record(id, EventKind::Send { msg, guarantee: spec_guarantee(guarantee) });
                    }
                }
                Err(SubmitError::TryAgain) => {
                    self.stats.try_again += 1;
                    self.nodes[i].retry = Some((bytes, guarantee));
                }
                Err(e) => panic!("the simulator built an invalid message: {e}"),
            }
            self.apply_outputs(id, &mut out);
            self.scratch = out;
            if result.is_err() || self.nodes[i].life != Life::Up {
                return;
            }
        }
    }

    fn new_message(&mut self, i: usize, size: Option<usize>) -> (Vec<u8>, Guarantee) {
        let id = node_id(i);
        let node = &mut self.nodes[i];
        let msg = MsgId { origin: id.0, incarnation: node.incarnation, counter: node.counter };
        node.counter += 1;
        let size = match size {
            Some(s) => s,
            None => self.opts.workload.draw_size(&mut self.app_rng),
        };
        let safe = self.app_rng.chance(self.opts.workload.safe_fraction);
        (payload::build(msg, size), if safe { Guarantee::Safe } else { Guarantee::Agreed })
    }

    // ---------------------------------------------------------------- outputs

    fn apply_outputs(&mut self, id: NodeId, out: &mut Vec<Output>) {
        for output in out.drain(..) {
            match output {
                Output::Send { dest, msg } => self.send(id, dest, msg),
                Output::Deliver(d) => self.deliver(id, d),
                Output::Config(c) => {
                    let event = config_event(c);
                    if let EventKind::Config { kind, ring, members, .. } = &event
                        && let Some(sim) = self.nodes.get_mut(index_of(id))
                    {
                        sim.last_config = Some((*kind, *ring, members.clone()));
                        sim.last_config_at = self.now;
                    }
                    self.stats.configs += 1;
                    self.record(id, event);
                }
                Output::PersistRingSeq(seq) => {
                    // Written before any later output of the batch (a crash from now on
                    // finds it on disk); the fsync completes after a drawn delay.
                    if let Some(sim) = self.nodes.get_mut(index_of(id)) {
                        sim.disk = Some(seq);
                        let incarnation = sim.incarnation;
                        let delay = self.disk_rng.range(0, self.opts.fsync_max_ns);
                        self.schedule(delay, Event::Persisted { node: id, incarnation, seq });
                    }
                    self.stats.persists += 1;
                }
                Output::Probe(p) => self.record(id, probe_event(p)),
                // Plain nodes emit no CPG events.
                Output::Cpg(_) => {}
            }
        }
    }

    fn send(&mut self, from: NodeId, dest: Dest, msg: Message) {
        let packet = if self.opts.wire {
            let mut buf = Vec::with_capacity(totem_core::wire::encoded_len(&msg));
            totem_core::wire::encode(from, &msg, &mut buf);
            Packet::Wire(Bytes::from(buf))
        } else {
            Packet::Value(msg)
        };
        match dest {
            Dest::Node(to) => self.transmit(from, to, packet),
            Dest::All => {
                for i in 0..self.nodes.len() {
                    let to = node_id(i);
                    if to != from {
                        self.transmit(from, to, packet.clone());
                    }
                }
            }
        }
    }

    fn transmit(&mut self, from: NodeId, to: NodeId, packet: Packet) {
        self.stats.packets_sent += 1;
        if from == to {
            // Loopback never loses.
            self.schedule(self.net.latency_min_ns, Event::Packet { to, from, packet });
            return;
        }
        if !self.links.connected(from.0, to.0) {
            self.stats.packets_cut += 1;
            return;
        }
        if self.net_rng.chance(self.net.loss) {
            self.stats.packets_dropped += 1;
            return;
        }
        let copies = if self.net_rng.chance(self.net.duplication) { 2 } else { 1 };
        self.stats.packets_duplicated += copies - 1;
        let extra = if self.net.slow_large_extra_ns > 0 && packet.len() >= self.net.slow_large_min_bytes {
            self.net.slow_large_extra_ns
        } else {
            0
        };
        for _ in 0..copies {
            let delay = self.net_rng.range(self.net.latency_min_ns, self.net.latency_max_ns) + extra;
            self.schedule(delay, Event::Packet { to, from, packet: packet.clone() });
        }
    }

    fn deliver(&mut self, id: NodeId, d: Delivery) {
        self.stats.messages_delivered += 1;
        match payload::verify(&d.payload) {
            Some(msg) => {
                let slot = Slot { ring: spec_ring(d.ring_id), seq: d.seq.0 };
                self.record(id, EventKind::Deliver { msg, slot, guarantee: spec_guarantee(d.guarantee) });
            }
            None => self.stats.corrupt_payloads += 1,
        }
    }

    // ---------------------------------------------------------------- judging helpers

    /// The ids of the nodes running or paused.
    pub fn live_set(&self) -> Vec<u32> {
        (0..self.nodes.len()).filter(|&i| self.nodes[i].alive()).map(|i| node_id(i).0).collect()
    }

    /// LIVE-1's predicate, now: every live node runs, and its last configuration is the same
    /// regular configuration, whose members are exactly the live nodes. Returns that ring.
    pub fn converged(&self) -> Option<Ring> {
        let live = self.live_set();
        let mut ring = None;
        for &n in &live {
            let sim = &self.nodes[index_of(NodeId(n))];
            if sim.life != Life::Up {
                return None;
            }
            match &sim.last_config {
                Some((ConfKind::Regular, r, members)) if *members == live => {
                    if ring.is_some_and(|x| x != *r) {
                        return None;
                    }
                    ring = Some(*r);
                }
                _ => return None,
            }
        }
        ring
    }

    /// Messages that LIVE-2 still requires to be delivered somewhere, counted now (the
    /// same rule as the spec's `live2_delivery`): for every survivor o (the current
    /// incarnation of a live node) and every message m it sent, o must deliver m; and if m
    /// was sent after o's last regular configuration, or some survivor delivered m in o's
    /// last regular ring, every survivor must deliver m. A message delivered only in a
    /// partition that later merged need not reach everyone.
    pub fn undelivered(&self) -> usize {
        let survivors: HashMap<(u32, u32), usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].alive())
            .map(|i| ((node_id(i).0, self.nodes[i].incarnation), i))
            .collect();
        let mut final_reg: Vec<Option<(Ring, usize)>> = vec![None; self.nodes.len()];
        let mut delivered: Vec<HashSet<MsgId>> = vec![HashSet::new(); self.nodes.len()];
        let mut rings: HashMap<MsgId, Vec<Ring>> = HashMap::new();
        let mut sends: Vec<(MsgId, usize)> = Vec::new();
        for (k, e) in self.trace.events.iter().enumerate() {
            let Some(&i) = survivors.get(&(e.node, e.incarnation)) else { continue };
            match &e.kind {
                EventKind::Send { msg, .. } => sends.push((*msg, k)),
                EventKind::Config { kind: ConfKind::Regular, ring, .. } => final_reg[i] = Some((*ring, k)),
                EventKind::Deliver { msg, slot, .. } => {
                    delivered[i].insert(*msg);
                    if survivors.contains_key(&msg.sender()) {
                        rings.entry(*msg).or_default().push(slot.ring);
                    }
                }
                _ => {}
            }
        }
        let live: Vec<usize> = survivors.values().copied().collect();
        sends
            .iter()
            .filter(|(msg, k)| {
                let Some(&o) = survivors.get(&msg.sender()) else { return false };
                if !delivered[o].contains(msg) {
                    return true;
                }
                let Some((ring, reg_event)) = final_reg[o] else { return false };
                let in_final = *k > reg_event || rings.get(msg).is_some_and(|rs| rs.contains(&ring));
                in_final && live.iter().any(|&i| !delivered[i].contains(msg))
            })
            .count()
    }
}

pub fn spec_ring(r: RingId) -> spec::trace::Ring {
    spec::trace::Ring { rep: r.rep.0, seq: r.seq }
}

pub fn spec_guarantee(g: Guarantee) -> spec::trace::Guarantee {
    match g {
        Guarantee::Agreed => spec::trace::Guarantee::Agreed,
        Guarantee::Safe => spec::trace::Guarantee::Safe,
    }
}

pub fn spec_state(s: State) -> ProtoState {
    match s {
        State::Operational => ProtoState::Operational,
        State::Gather => ProtoState::Gather,
        State::Commit => ProtoState::Commit,
        State::Recovery => ProtoState::Recovery,
    }
}

fn ids(v: &[NodeId]) -> Vec<u32> {
    v.iter().map(|n| n.0).collect()
}

pub fn config_event(c: ConfigChange) -> EventKind {
    EventKind::Config {
        kind: match c.kind {
            ConfigKind::Transitional => ConfKind::Transitional,
            ConfigKind::Regular => ConfKind::Regular,
        },
        ring: spec_ring(c.ring_id),
        prev_ring: c.prev_ring_id.map(spec_ring),
        members: ids(&c.members),
        left: ids(&c.left),
        joined: ids(&c.joined),
    }
}

pub fn probe_event(p: Probe) -> EventKind {
    match p {
        Probe::Assign { ring_id, seq } => {
            EventKind::Assign { slot: Slot { ring: spec_ring(ring_id), seq: seq.0 } }
        }
        Probe::Receive { ring_id, seq } => {
            EventKind::Receive { slot: Slot { ring: spec_ring(ring_id), seq: seq.0 } }
        }
        Probe::Release { ring_id, up_to } => EventKind::Release { ring: spec_ring(ring_id), up_to: up_to.0 },
        Probe::Token { ring_id, token_seq, seq, aru, aru_addr, rtr, sent_new, retransmitted } => {
            EventKind::Token {
                ring: spec_ring(ring_id),
                token_seq,
                seq: seq.0,
                aru: aru.0,
                aru_addr: aru_addr.map_or(0, |n| n.0),
                rtr: rtr.iter().map(|e| Slot { ring: spec_ring(e.ring_id), seq: e.seq.0 }).collect(),
                sent_new,
                retransmitted,
            }
        }
        Probe::State { from, to } => EventKind::State { from: spec_state(from), to: spec_state(to) },
        Probe::Commit { ring_id, members, proc_minus_failed, via_consensus, agreed } => EventKind::Commit {
            ring: spec_ring(ring_id),
            members: ids(&members),
            proc_minus_failed: ids(&proc_minus_failed),
            via_consensus,
            agreed: ids(&agreed),
        },
    }
}
