//! The simulated world: N real `totem-core` nodes (plain Totem nodes, or nodes running the
//! CPG service with simulated client connections, see [`crate::cpg`]), a seeded lossy
//! network with a connectivity matrix, simulated applications, process faults (crash,
//! restart, pause, clean leave), and the trace recorder.
//!
//! Everything happens in one thread in simulated time: the next event is the earliest of
//! the pending packet deliveries, application ticks, scheduled actions and the running
//! nodes' armed timers. Ties are broken by insertion order, so a seed replays exactly.

use crate::cpg::{self as client, Client, ClientState, CpgWorkload, Ledger, ReqKey, Wire};
use crate::faults::{Action, Links, Trigger};
use crate::options::{NetParams, Options, StartMode};
use crate::payload;
use crate::rng::Rng;
use bytes::Bytes;
use spec::trace::{ConfKind, EventKind, MsgId, ProtoState, Ring, Slot, Trace};
use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use totem_core::cpg::{ConnFlags, CpgError, CpgNode, Event as CpgEvent, EventKind as CpgEventKind, Process};
use totem_core::node::{ConfigChange, Delivery, Status};
use totem_core::srp::State;
use totem_core::timer::TimerKind;
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

/// The protocol core of a simulated machine: a plain Totem node, whose application submits
/// raw messages, or a node with the CPG service on top, used by CPG client connections.
#[derive(Debug)]
pub enum Core {
    Plain(Box<Node>),
    Cpg(Box<CpgNode>),
}

impl Core {
    fn build(cpg: bool, node: Node) -> Core {
        if cpg { Core::Cpg(Box::new(CpgNode::new(node))) } else { Core::Plain(Box::new(node)) }
    }

    /// The Totem node (inside the CPG service, if any).
    pub fn node(&self) -> &Node {
        match self {
            Core::Plain(n) => n,
            Core::Cpg(c) => c.node(),
        }
    }

    pub fn cpg(&self) -> Option<&CpgNode> {
        match self {
            Core::Plain(_) => None,
            Core::Cpg(c) => Some(c),
        }
    }

    pub fn status(&self) -> Status {
        self.node().status()
    }

    pub fn poll_timeout(&self) -> Option<(Time, TimerKind)> {
        match self {
            Core::Plain(n) => n.poll_timeout(),
            Core::Cpg(c) => c.poll_timeout(),
        }
    }

    fn start(&mut self, now: Time, out: &mut Vec<Output>) {
        match self {
            Core::Plain(n) => n.start(now, out),
            Core::Cpg(c) => c.start(now, out),
        }
    }

    fn handle_message(&mut self, now: Time, from: NodeId, msg: Message, out: &mut Vec<Output>) {
        match self {
            Core::Plain(n) => n.handle_message(now, from, msg, out),
            Core::Cpg(c) => c.handle_message(now, from, msg, out),
        }
    }

    fn handle_timeout(&mut self, now: Time, kind: TimerKind, out: &mut Vec<Output>) {
        match self {
            Core::Plain(n) => n.handle_timeout(now, kind, out),
            Core::Cpg(c) => c.handle_timeout(now, kind, out),
        }
    }

    fn ring_seq_persisted(&mut self, now: Time, seq: u64, out: &mut Vec<Output>) {
        match self {
            Core::Plain(n) => n.ring_seq_persisted(now, seq, out),
            Core::Cpg(c) => c.ring_seq_persisted(now, seq, out),
        }
    }

    fn shutdown(&mut self, now: Time, out: &mut Vec<Output>) {
        match self {
            Core::Plain(n) => n.shutdown(now, out),
            Core::Cpg(c) => c.shutdown(now, out),
        }
    }
}

/// One simulated machine: a core, its disk, and the application using it.
#[derive(Debug)]
pub struct SimNode {
    pub node: Core,
    /// 0 for the first start, +1 at every restart.
    pub incarnation: u32,
    pub life: Life,
    /// The ring sequence the core last asked to persist (survives crashes, not wipes).
    pub disk: Option<u64>,
    /// Next message counter of this incarnation's application (for CPG nodes: of every
    /// `CpgMcast` attempt and every Totem message the clients cause, see [`crate::cpg`]).
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
    /// CPG nodes: this incarnation's client connections, in connection order.
    pub clients: Vec<Client>,
    /// The next fresh pid. Never reset: a restarted node runs new processes.
    next_pid: u32,
}

impl SimNode {
    fn new(node: Core, life: Life) -> SimNode {
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
            clients: Vec::new(),
            next_pid: 1000,
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
    pub cpg: CpgCounts,
}

/// What the CPG clients did in one run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CpgCounts {
    pub connects: u64,
    pub exits: u64,
    /// Requests answered Ok.
    pub joins: u64,
    pub leaves: u64,
    pub mcasts: u64,
    /// Multicasts refused with TryAgain (each retried as a new message).
    pub try_again: u64,
    /// Requests refused otherwise (Exist, Busy, NotExist, NameTooLong, ...).
    pub refused: u64,
    /// Callbacks: deliveries, confchgs, totem confchgs (recorded ones), snapshots.
    pub delivered: u64,
    pub confchgs: u64,
    pub totem_confchgs: u64,
    pub snapshots: u64,
    /// Multicasts of at least 64 KiB accepted.
    pub large: u64,
    /// Synchronization messages delivered (not recorded, see [`crate::cpg`]).
    pub joinlists: u64,
    /// Delivered joins and leaves that no accepted request explains (must stay 0).
    pub unexplained: u64,
}

impl CpgCounts {
    /// Add another run's counts (for sweep totals).
    pub fn add(&mut self, o: &CpgCounts) {
        self.connects += o.connects;
        self.exits += o.exits;
        self.joins += o.joins;
        self.leaves += o.leaves;
        self.mcasts += o.mcasts;
        self.try_again += o.try_again;
        self.refused += o.refused;
        self.delivered += o.delivered;
        self.confchgs += o.confchgs;
        self.totem_confchgs += o.totem_confchgs;
        self.snapshots += o.snapshots;
        self.large += o.large;
        self.joinlists += o.joinlists;
        self.unexplained += o.unexplained;
    }
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
    /// CPG clients connect, join, leave and exit (multicasts follow `traffic`).
    pub churn: bool,
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
    /// CPG clients' choices (a stream of its own: plain runs draw exactly as before).
    cpg_rng: Rng,
    /// The CPG clients' behaviour; None: plain nodes.
    cpg: Option<Arc<CpgWorkload>>,
    ledger: Ledger,
    /// Armed `when` actions.
    triggers: Vec<(Trigger, Action)>,
    /// Actions whose trigger fired during the current output batch.
    fired: Vec<Action>,
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
        let cpg_rng = rng.fork(4);
        let cpg = opts.cpg.is_some();
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
                    Core::build(cpg, Node::new_on_ring(opts.node_config(id.0, 0), id, ring_id, &first)?),
                    Life::NotStarted,
                );
                // A formed ring stands for one these nodes formed and persisted.
                n.disk = Some(ring_id.seq);
                n
            } else {
                SimNode::new(
                    Core::build(cpg, Node::new(opts.node_config(id.0, 0), id, None)?),
                    Life::NotStarted,
                )
            };
            sim.life = Life::NotStarted;
            nodes.push(sim);
        }
        let mut world = World {
            net: opts.net.clone(),
            links: Links::connected_all(opts.nodes),
            traffic: opts.workload.enabled,
            churn: true,
            cpg: opts.cpg.clone().map(Arc::new),
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
            cpg_rng,
            ledger: Ledger::default(),
            triggers: Vec::new(),
            fired: Vec::new(),
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
            Action::CpgJoin { node, ref group } => self.scripted_join(node, group),
            Action::CpgChurn(on) => self.churn = on,
            Action::When { ref trigger, ref then } => self.triggers.push((trigger.clone(), (**then).clone())),
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
            Ok(node) => sim.node = Core::build(self.cpg.is_some(), node),
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
        sim.clients.clear();
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
            // Its connections die with the incarnation.
            sim.clients.clear();
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
            self.nodes[i].clients.clear();
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
        self.triggers.clear();
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
        let cpg = self.cpg.is_some();
        if let Some(sim) = self.nodes.get_mut(i)
            && (sim.life == Life::Up || (cpg && sim.life == Life::Paused))
        {
            // CPG clients are processes of their own: one that multicasts while its node is
            // frozen waits for the node, and its message goes out at the resume.
            sim.backlog.extend(std::iter::repeat_n(bytes.max(payload::HEADER_LEN), count as usize));
            if sim.life == Life::Up {
                if cpg {
                    self.cpg_backlog(i);
                } else {
                    self.pump(NodeId(n), 0);
                }
            }
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
            if self.cpg.is_some() {
                self.cpg_tick(i);
            } else {
                let burst =
                    if self.traffic { self.app_rng.range(1, self.opts.workload.burst_max.max(1)) } else { 0 };
                self.pump(id, burst);
            }
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
        let Core::Plain(_) = self.nodes[i].node else { return };
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
            let Core::Plain(node) = &mut self.nodes[i].node else { return };
            let result = node.submit(self.now, &bytes, guarantee, &mut out);
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
        // The last CPG event of the batch, when it is a confchg: (conn, group).
        let mut last_confchg: Option<(u32, Vec<u8>)> = None;
        for output in out.drain(..) {
            match output {
                Output::Send { dest, msg } => self.send(id, dest, msg),
                Output::Deliver(d) if self.cpg.is_some() => self.deliver_cpg(id, d),
                Output::Deliver(d) => self.deliver(id, d),
                Output::Config(c) => {
                    if c.kind == ConfigKind::Regular {
                        let members = ids(&c.members);
                        self.fire(|t| matches!(t, Trigger::Regular { node, members: m } if *node == id.0 && *m == members));
                    }
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
                Output::Cpg(e) => last_confchg = self.cpg_event(id, e),
            }
        }
        if let Some((conn, group)) = last_confchg {
            self.maybe_snapshot(id, conn, group);
        }
        for action in std::mem::take(&mut self.fired) {
            self.apply(&action);
        }
    }

    /// Arm the actions of the triggers that `hit` matches (each fires once), to be carried
    /// out at the end of the current output batch.
    fn fire(&mut self, hit: impl Fn(&Trigger) -> bool) {
        if self.triggers.is_empty() {
            return;
        }
        let mut k = 0;
        while k < self.triggers.len() {
            if hit(&self.triggers[k].0) {
                let (_, action) = self.triggers.remove(k);
                self.fired.push(action);
            } else {
                k += 1;
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

    // ---------------------------------------------------------------- CPG clients

    /// The next message id of node `i`'s current incarnation.
    fn next_id(&mut self, i: usize) -> MsgId {
        let node = &mut self.nodes[i];
        let msg = MsgId { origin: node_id(i).0, incarnation: node.incarnation, counter: node.counter };
        node.counter += 1;
        msg
    }

    fn fresh_pid(&mut self, i: usize) -> u32 {
        let node = &mut self.nodes[i];
        let pid = node.next_pid;
        node.next_pid += 1;
        pid
    }

    /// Run `f` on node `i`'s CPG service with a fresh output buffer; returns its result and
    /// the outputs (to be applied after the request is recorded).
    fn with_cpg<R>(
        &mut self,
        i: usize,
        f: impl FnOnce(&mut CpgNode, Time, &mut Vec<Output>) -> R,
    ) -> Option<(R, Vec<Output>)> {
        let now = self.now;
        let mut out = std::mem::take(&mut self.scratch);
        let Core::Cpg(node) = &mut self.nodes[i].node else {
            self.scratch = out;
            return None;
        };
        let r = f(node, now, &mut out);
        Some((r, out))
    }

    /// Carry out outputs of a request, then give the buffer back.
    fn finish_request(&mut self, i: usize, mut out: Vec<Output>) {
        self.apply_outputs(node_id(i), &mut out);
        self.scratch = out;
    }

    /// One application tick of a CPG node: scripted multicasts, connections coming, and a
    /// few client steps.
    fn cpg_tick(&mut self, i: usize) {
        let Some(w) = self.cpg.clone() else { return };
        self.cpg_backlog(i);
        if self.churn {
            let n = self.nodes[i].clients.len();
            if n < w.max_conns && (n == 0 || self.cpg_rng.chance(w.p_connect)) {
                self.cpg_connect(i, &w);
            }
        }
        let steps = self.cpg_rng.range(1, self.opts.workload.burst_max.max(1));
        for _ in 0..steps {
            let n = self.nodes[i].clients.len();
            if n == 0 || self.nodes[i].life != Life::Up {
                return;
            }
            let k = self.cpg_rng.range(0, n as u64 - 1) as usize;
            // After a TryAgain the node's clients back off until the next tick (libcpg's
            // callers sleep before retrying).
            if self.client_step(i, k, &w) == Err(CpgError::TryAgain) {
                return;
            }
        }
    }

    /// Open a connection on node `i` (a new process, or another handle of an existing one).
    fn cpg_connect(&mut self, i: usize, w: &CpgWorkload) -> Option<usize> {
        let flags = ConnFlags { deliver_initial_totem_conf: self.cpg_rng.chance(w.p_initial_totem_conf) };
        let siblings = self.nodes[i].clients.len();
        let pid = if siblings > 0 && self.cpg_rng.chance(w.p_pid_reuse) {
            let k = self.cpg_rng.range(0, siblings as u64 - 1) as usize;
            self.nodes[i].clients[k].pid
        } else {
            self.fresh_pid(i)
        };
        let Core::Cpg(node) = &mut self.nodes[i].node else { return None };
        let conn = node.connect(flags);
        self.nodes[i].clients.push(Client::new(conn, pid));
        self.stats.cpg.connects += 1;
        Some(self.nodes[i].clients.len() - 1)
    }

    /// `Action::CpgJoin`: a new connection on `node` joins `group` with a fresh pid.
    fn scripted_join(&mut self, node: u32, group: &[u8]) {
        let i = index_of(NodeId(node));
        let Some(w) = self.cpg.clone() else { return };
        if self.nodes.get(i).is_none_or(|n| n.life != Life::Up) {
            return;
        }
        let pid = self.fresh_pid(i);
        let Some(k) = self.cpg_connect(i, &w) else { return };
        self.nodes[i].clients[k].pid = pid;
        self.client_join(i, k, group.to_vec(), pid);
    }

    /// One step of client `k` of node `i`, drawn by its state. Returns the answer to a
    /// multicast, if it made one.
    fn client_step(&mut self, i: usize, k: usize, w: &CpgWorkload) -> Result<(), CpgError> {
        if let Some((size, guarantee)) = self.nodes[i].clients[k].retry.take() {
            let r = self.client_mcast(i, k, size, guarantee);
            if r == Err(CpgError::TryAgain) {
                self.nodes[i].clients[k].retry = Some((size, guarantee));
            }
            return r;
        }
        let churn = self.churn;
        let u = self.cpg_rng.unit();
        let state = self.nodes[i].clients[k].state;
        let exit = churn && u < w.p_exit;
        let leave = churn && !exit && u < w.p_exit + w.p_leave;
        let invalid = churn && !exit && !leave && u < w.p_exit + w.p_leave + w.p_invalid;
        if exit {
            self.client_exit(i, k);
        } else if invalid || (leave && state != ClientState::Joined) {
            self.client_invalid(i, k, w);
        } else if leave {
            self.client_leave(i, k, None);
        } else {
            match state {
                ClientState::Unjoined => {
                    if churn && self.cpg_rng.chance(w.p_join) {
                        let group = self.pick_group(w);
                        let pid = self.rejoin_pid(i, k, w);
                        self.client_join(i, k, group, pid);
                    }
                }
                ClientState::Joining | ClientState::Joined => {
                    if self.traffic {
                        let size = w.draw_size(&mut self.cpg_rng);
                        let guarantee = if self.cpg_rng.chance(w.safe_fraction) {
                            Guarantee::Safe
                        } else {
                            Guarantee::Agreed
                        };
                        let r = self.client_mcast(i, k, size, guarantee);
                        if r == Err(CpgError::TryAgain) {
                            self.nodes[i].clients[k].retry = Some((size, guarantee));
                        }
                        return r;
                    }
                }
                ClientState::Leaving => {}
            }
        }
        Ok(())
    }

    fn pick_group(&mut self, w: &CpgWorkload) -> Vec<u8> {
        self.cpg_rng.pick(&w.groups).cloned().unwrap_or_else(|| b"g".to_vec())
    }

    /// The pid a client joins with: its own, or (after an earlier membership, sometimes) a
    /// fresh one.
    fn rejoin_pid(&mut self, i: usize, k: usize, w: &CpgWorkload) -> u32 {
        let c = &self.nodes[i].clients[k];
        if c.group.is_some() && !self.cpg_rng.chance(w.p_pid_reuse) { self.fresh_pid(i) } else { c.pid }
    }

    /// A request the service must refuse, chosen among those that fit the client's state.
    fn client_invalid(&mut self, i: usize, k: usize, w: &CpgWorkload) {
        let c = self.nodes[i].clients[k].clone();
        let choice = self.cpg_rng.range(0, 2);
        match (c.state, choice) {
            // A name one byte over the limit.
            (ClientState::Unjoined, 0) => self.client_join(i, k, vec![b'N'; 129], c.pid),
            (ClientState::Unjoined, 1) => {
                let group = self.pick_group(w);
                self.client_leave(i, k, Some(group));
            }
            (ClientState::Unjoined, _) | (ClientState::Leaving, 0) => {
                let _ = self.client_mcast(i, k, SCRIPTED_SMALL, Guarantee::Agreed);
            }
            // Join while joining, joined or leaving: Exist or Busy.
            (_, 1) => {
                let group = self.pick_group(w);
                self.client_join(i, k, group, c.pid);
            }
            // Leave while joining (Busy), leave a group it is not in, leave twice: NotExist.
            _ => {
                let group = if c.state == ClientState::Joining { c.group } else { Some(self.pick_group(w)) };
                self.client_leave(i, k, group);
            }
        }
    }

    /// Join `group` as `pid`. A pid whose previous join or leave of the group is still in
    /// flight is replaced by a fresh one when the service would accept the join (see the
    /// ledger's rule in [`crate::cpg`]).
    fn client_join(&mut self, i: usize, k: usize, group: Vec<u8>, pid: u32) {
        let me = node_id(i);
        let mut pid = pid;
        if self.ledger.in_flight(me.0, &group, pid) {
            let member = self.nodes[i]
                .node
                .cpg()
                .and_then(|n| n.membership(&group).ok())
                .is_some_and(|m| m.contains(&Process { node: me, pid }));
            if !member {
                pid = self.fresh_pid(i);
            }
        }
        let conn = self.nodes[i].clients[k].conn;
        let Some((result, out)) = self.with_cpg(i, |n, now, out| n.join(now, conn, &group, pid, out)) else {
            return;
        };
        self.record(
            me,
            EventKind::CpgJoin {
                conn: conn.0,
                group: group.clone(),
                pid,
                result: client::result_of(&result),
            },
        );
        if result.is_ok() {
            let msg = self.next_id(i);
            self.ledger.submitted(me.0, ReqKey::join(&group, pid), msg);
            self.record(me, EventKind::Send { msg, guarantee: spec::trace::Guarantee::Agreed });
            let c = &mut self.nodes[i].clients[k];
            c.state = ClientState::Joining;
            c.group = Some(group);
            c.pid = pid;
            self.stats.cpg.joins += 1;
        } else {
            self.stats.cpg.refused += 1;
        }
        self.finish_request(i, out);
    }

    /// Leave the client's group (or `group`, for a request meant to be refused).
    fn client_leave(&mut self, i: usize, k: usize, group: Option<Vec<u8>>) {
        let me = node_id(i);
        let c = &self.nodes[i].clients[k];
        let conn = c.conn;
        let Some(group) = group.or_else(|| c.group.clone()) else { return };
        // What the service will announce: its own idea of the connection's process.
        let announced =
            self.nodes[i].node.cpg().and_then(|n| n.conn_group(conn)).map(|(_, pid)| pid).unwrap_or(c.pid);
        let Some((result, out)) = self.with_cpg(i, |n, now, out| n.leave(now, conn, &group, out)) else {
            return;
        };
        self.record(
            me,
            EventKind::CpgLeave { conn: conn.0, group: group.clone(), result: client::result_of(&result) },
        );
        if result.is_ok() {
            let msg = self.next_id(i);
            self.ledger.submitted(me.0, ReqKey::leave(&group, announced, false), msg);
            self.record(me, EventKind::Send { msg, guarantee: spec::trace::Guarantee::Agreed });
            self.nodes[i].clients[k].state = ClientState::Leaving;
            self.stats.cpg.leaves += 1;
        } else {
            self.stats.cpg.refused += 1;
        }
        self.finish_request(i, out);
    }

    /// The client's process exits: its connection closes (a PROCDOWN leave if it was in a
    /// group).
    fn client_exit(&mut self, i: usize, k: usize) {
        let me = node_id(i);
        let conn = self.nodes[i].clients[k].conn;
        let Some(node) = self.nodes[i].node.cpg() else { return };
        let before = node.stats().messages_sent;
        let held = node.conn_group(conn).map(|(g, pid)| (g.as_bytes().to_vec(), pid));
        let Some(((), out)) = self.with_cpg(i, |n, now, out| n.disconnect(now, conn, out)) else { return };
        self.record(me, EventKind::CpgExit { conn: conn.0 });
        let sent = self.nodes[i].node.cpg().map_or(0, |n| n.stats().messages_sent - before);
        if sent > 0
            && let Some((group, pid)) = held
        {
            let msg = self.next_id(i);
            self.ledger.submitted(me.0, ReqKey::leave(&group, pid, true), msg);
            self.record(me, EventKind::Send { msg, guarantee: spec::trace::Guarantee::Agreed });
        }
        self.nodes[i].clients.remove(k);
        self.stats.cpg.exits += 1;
        self.finish_request(i, out);
    }

    /// Multicast a new message of `size` bytes on client `k`; a `TryAgain` is the caller's
    /// to retry (as a new message).
    fn client_mcast(
        &mut self,
        i: usize,
        k: usize,
        size: usize,
        guarantee: Guarantee,
    ) -> Result<(), CpgError> {
        let me = node_id(i);
        let c = &self.nodes[i].clients[k];
        let (conn, group) = (c.conn, c.group.clone().unwrap_or_default());
        let msg = self.next_id(i);
        let bytes = payload::build(msg, size);
        let Some((result, out)) = self.with_cpg(i, |n, now, out| n.mcast(now, conn, guarantee, &bytes, out))
        else {
            return Err(CpgError::BadHandle);
        };
        let g = spec_guarantee(guarantee);
        self.record(
            me,
            EventKind::CpgMcast {
                conn: conn.0,
                group,
                msg,
                guarantee: g,
                result: client::result_of(&result),
            },
        );
        match result {
            Ok(()) => {
                self.record(me, EventKind::Send { msg, guarantee: g });
                self.stats.messages_sent += 1;
                self.stats.cpg.mcasts += 1;
                if size >= 64 * 1024 {
                    self.stats.cpg.large += 1;
                }
            }
            Err(CpgError::TryAgain) => {
                self.stats.try_again += 1;
                self.stats.cpg.try_again += 1;
            }
            Err(_) => self.stats.cpg.refused += 1,
        }
        self.finish_request(i, out);
        result
    }

    /// Scripted multicasts of node `i` (`send` actions), on its first client that may send.
    fn cpg_backlog(&mut self, i: usize) {
        if !self.submitting {
            return;
        }
        let safe = self.cpg.as_ref().map_or(0.0, |w| w.safe_fraction);
        while let Some(&size) = self.nodes[i].backlog.front() {
            if self.nodes[i].life != Life::Up {
                return;
            }
            let Some(k) = self.nodes[i].clients.iter().position(|c| c.sends() && c.retry.is_none()) else {
                return;
            };
            let guarantee = if self.cpg_rng.chance(safe) { Guarantee::Safe } else { Guarantee::Agreed };
            if self.client_mcast(i, k, size, guarantee) == Err(CpgError::TryAgain) {
                return;
            }
            self.nodes[i].backlog.pop_front();
        }
    }

    /// Record a CPG callback and update the client's view of its connection. Returns the
    /// (conn, group) of a confchg (a snapshot may follow if it stays the batch's last CPG
    /// event).
    fn cpg_event(&mut self, id: NodeId, e: CpgEvent) -> Option<(u32, Vec<u8>)> {
        let i = index_of(id);
        let conn = e.conn.0;
        match e.kind {
            CpgEventKind::Deliver { group, sender, payload, .. } => match payload::verify(&payload) {
                Some(msg) => {
                    self.stats.cpg.delivered += 1;
                    let group = group.as_bytes().to_vec();
                    self.record(
                        id,
                        EventKind::CpgDeliver { conn, group, sender: client::spec_process(sender), msg },
                    );
                }
                None => self.stats.corrupt_payloads += 1,
            },
            CpgEventKind::Confchg { group, members, left, joined } => {
                let group = group.as_bytes().to_vec();
                if let Some(c) = self.nodes[i].clients.iter_mut().find(|c| c.conn == e.conn) {
                    let me = Process { node: id, pid: c.pid };
                    if left.iter().any(|(p, _)| *p == me) {
                        c.state = ClientState::Unjoined;
                    } else if c.state == ClientState::Joining && joined.iter().any(|(p, _)| *p == me) {
                        c.state = ClientState::Joined;
                    }
                }
                self.stats.cpg.confchgs += 1;
                let entries = |v: Vec<(Process, totem_core::cpg::Reason)>| {
                    v.into_iter().map(|(p, r)| (client::spec_process(p), client::spec_reason(r))).collect()
                };
                self.record(
                    id,
                    EventKind::CpgConfchg {
                        conn,
                        group: group.clone(),
                        members: members.into_iter().map(client::spec_process).collect(),
                        left: entries(left),
                        joined: entries(joined),
                    },
                );
                return Some((conn, group));
            }
            CpgEventKind::TotemConfchg { ring_id, members, initial } => {
                // The initial one of DELIVER_INITIAL_TOTEM_CONF is not recorded (spec::trace).
                if !initial {
                    self.stats.cpg.totem_confchgs += 1;
                    self.record(
                        id,
                        EventKind::CpgTotemConfchg { conn, ring: spec_ring(ring_id), members: ids(&members) },
                    );
                }
            }
        }
        None
    }

    /// Right after a confchg that ended an output batch (no newer event pending), the
    /// client may take a membership snapshot.
    fn maybe_snapshot(&mut self, id: NodeId, conn: u32, group: Vec<u8>) {
        let p = self.cpg.as_ref().map_or(0.0, |w| w.p_snapshot);
        if !self.cpg_rng.chance(p) {
            return;
        }
        let Some(Ok(members)) = self.nodes[index_of(id)].node.cpg().map(|n| n.membership(&group)) else {
            return;
        };
        self.stats.cpg.snapshots += 1;
        let members = members.into_iter().map(client::spec_process).collect();
        self.record(id, EventKind::CpgMembership { conn, group, members });
    }

    /// A Totem delivery at a CPG node: record it under the id of the request that caused
    /// it (joinlists are not recorded, see [`crate::cpg`]).
    fn deliver_cpg(&mut self, id: NodeId, d: Delivery) {
        self.stats.messages_delivered += 1;
        let slot = Slot { ring: spec_ring(d.ring_id), seq: d.seq.0 };
        let msg = match client::decode(&d.payload) {
            Some(Wire::Mcast { payload, .. }) => payload::verify(payload),
            Some(Wire::Joinlist) => {
                self.stats.cpg.joinlists += 1;
                let from = d.origin.0;
                self.fire(|t| matches!(t, Trigger::Joinlist { at, from: f } if *at == id.0 && *f == from));
                return;
            }
            Some(wire) => {
                match ReqKey::of(&wire).and_then(|key| self.ledger.resolve(d.origin.0, &key, slot, id.0)) {
                    Some(msg) => Some(msg),
                    None => {
                        self.stats.cpg.unexplained += 1;
                        return;
                    }
                }
            }
            None => None,
        };
        match msg {
            Some(msg) => {
                self.record(id, EventKind::Deliver { msg, slot, guarantee: spec_guarantee(d.guarantee) })
            }
            None => self.stats.corrupt_payloads += 1,
        }
    }

    /// Every live CPG node has completed the synchronization of its current ring.
    pub fn cpg_settled(&self) -> bool {
        self.nodes.iter().filter(|n| n.alive()).all(|n| n.node.cpg().is_none_or(|c| !c.is_syncing()))
    }

    /// Scripted multicasts that never found a joined client.
    pub fn cpg_backlog_left(&self) -> u64 {
        if self.cpg.is_none() {
            return 0;
        }
        self.nodes.iter().filter(|n| n.alive()).map(|n| n.backlog.len() as u64).sum()
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
