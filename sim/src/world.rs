//! The simulated world: N real `totem-core` nodes, a seeded lossy network, simulated
//! applications, and the trace recorder.
//!
//! Everything happens in one thread in simulated time: the next event is the earliest of
//! the pending packet deliveries, application ticks and the nodes' armed timers. Ties are
//! broken by insertion order, so a seed replays exactly.

use crate::options::{NetParams, Options};
use crate::payload;
use crate::rng::Rng;
use bytes::Bytes;
use spec::trace::{ConfKind, EventKind, Slot, Trace};
use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};
use totem_core::node::{ConfigChange, Delivery};
use totem_core::{
    ConfigKind, Dest, Guarantee, Message, Node, NodeId, Output, Probe, RingId, SubmitError, Time,
};

/// One simulated machine: a core plus the application using it.
#[derive(Debug)]
pub struct SimNode {
    pub node: Node,
    pub incarnation: u32,
    pub alive: bool,
    /// Next message counter of this incarnation's application.
    pub counter: u64,
    /// Messages the application wants to send but was told to retry.
    pub retry: Option<(Vec<u8>, Guarantee)>,
    /// The last ring sequence the node persisted.
    pub disk: Option<u64>,
}

#[derive(Debug)]
enum Event {
    Packet { to: NodeId, from: NodeId, packet: Packet },
    AppTick { node: NodeId },
}

/// A packet in flight: encoded bytes (the default, exercising the codec) or the value.
#[derive(Debug, Clone)]
enum Packet {
    Wire(Bytes),
    Value(Message),
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
    pub messages_sent: u64,
    pub messages_delivered: u64,
    pub try_again: u64,
    /// Deliveries whose payload did not match what was sent (must stay 0).
    pub corrupt_payloads: u64,
}

pub struct World {
    pub opts: Options,
    pub now: Time,
    pub nodes: Vec<SimNode>,
    pub trace: Trace,
    pub stats: WorldStats,
    /// Network conditions in force (faults on in the safety phase, off in liveness).
    pub net: NetParams,
    /// Applications submit new messages only while this is set.
    pub submitting: bool,
    net_rng: Rng,
    app_rng: Rng,
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
    /// Build the world with every node on one formed ring, started at time zero.
    pub fn new(opts: Options) -> anyhow::Result<World> {
        let mut rng = Rng::new(opts.seed);
        let net_rng = rng.fork(1);
        let app_rng = rng.fork(2);
        let members: Vec<NodeId> = (0..opts.nodes).map(node_id).collect();
        let ring_id = RingId::new(members[0], 4);
        let mut nodes = Vec::with_capacity(opts.nodes);
        for &id in &members {
            let node = Node::new_on_ring(opts.core_config(), id, ring_id, &members)?;
            nodes.push(SimNode { node, incarnation: 0, alive: true, counter: 0, retry: None, disk: None });
        }
        let mut world = World {
            net: opts.net.clone(),
            opts,
            now: Time::ZERO,
            nodes,
            trace: Trace::default(),
            stats: WorldStats::default(),
            submitting: true,
            net_rng,
            app_rng,
            heap: BinaryHeap::new(),
            order: 0,
            scratch: Vec::new(),
        };
        for i in 0..world.nodes.len() {
            let id = node_id(i);
            world.record(id, EventKind::Start);
            let mut out = std::mem::take(&mut world.scratch);
            world.nodes[i].node.start(Time::ZERO, &mut out);
            world.apply_outputs(id, &mut out);
            world.scratch = out;
            let first_tick = world.app_interval();
            world.schedule(first_tick, Event::AppTick { node: id });
        }
        Ok(world)
    }

    fn schedule(&mut self, after: u64, event: Event) {
        self.order += 1;
        let at = Time(self.now.0.saturating_add(after));
        self.heap.push(Reverse(Scheduled { at, order: self.order, event }));
    }

    fn record(&mut self, id: NodeId, kind: EventKind) {
        let incarnation = self.nodes.get(index_of(id)).map(|n| n.incarnation).unwrap_or(0);
        self.trace.push(self.now.0, id.0, incarnation, kind);
    }

    /// Run until simulated time `until` (or the event budget runs out). Returns false if the
    /// budget ran out first.
    pub fn run_until(&mut self, until: Time) -> bool {
        let budget = self.opts.max_events;
        while self.stats.events < budget {
            let next_timer = self
                .nodes
                .iter()
                .enumerate()
                .filter(|(_, n)| n.alive)
                .filter_map(|(i, n)| n.node.poll_timeout().map(|(t, k)| (t, i, k)))
                .min_by_key(|&(t, i, _)| (t, i));
            let next_event = self.heap.peek().map(|Reverse(s)| s.at);
            let timer_first = match (next_timer, next_event) {
                (Some((t, _, _)), Some(e)) => t <= e,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => {
                    self.now = until;
                    return true;
                }
            };
            let at = if timer_first { next_timer.map(|x| x.0) } else { next_event }.unwrap_or(until);
            if at > until {
                self.now = until;
                return true;
            }
            self.now = self.now.max(at);
            self.stats.events += 1;
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

    fn dispatch(&mut self, event: Event) {
        match event {
            Event::Packet { to, from, packet } => self.receive(to, from, packet),
            Event::AppTick { node } => self.app_tick(node),
        }
    }

    fn receive(&mut self, to: NodeId, from: NodeId, packet: Packet) {
        let i = index_of(to);
        if !self.nodes.get(i).is_some_and(|n| n.alive) {
            return;
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

    fn app_interval(&mut self) -> u64 {
        let mean = self.opts.workload.interval_mean_ns.max(1);
        // Exponential-ish: uniform in [0, 2*mean].
        self.app_rng.range(0, 2 * mean)
    }

    fn app_tick(&mut self, id: NodeId) {
        let i = index_of(id);
        if !self.submitting || !self.nodes.get(i).is_some_and(|n| n.alive) {
            return;
        }
        let burst = self.app_rng.range(1, self.opts.workload.burst_max.max(1));
        for _ in 0..burst {
            let (bytes, guarantee) = match self.nodes[i].retry.take() {
                Some(retry) => retry,
                None => {
                    let node = &mut self.nodes[i];
                    let msg = spec::trace::MsgId {
                        origin: id.0,
                        incarnation: node.incarnation,
                        counter: node.counter,
                    };
                    let size = self.opts.workload.draw_size(&mut self.app_rng);
                    let safe = self.app_rng.chance(self.opts.workload.safe_fraction);
                    node.counter += 1;
                    (payload::build(msg, size), if safe { Guarantee::Safe } else { Guarantee::Agreed })
                }
            };
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
            if result.is_err() {
                break;
            }
        }
        let next = self.app_interval();
        self.schedule(next, Event::AppTick { node: id });
    }

    fn apply_outputs(&mut self, id: NodeId, out: &mut Vec<Output>) {
        for output in out.drain(..) {
            match output {
                Output::Send { dest, msg } => self.send(id, dest, msg),
                Output::Deliver(d) => self.deliver(id, d),
                Output::Config(c) => self.record(id, config_event(c)),
                Output::Probe(p) => self.record(id, probe_event(p)),
                Output::PersistRingSeq(seq) => self.persist(id, seq),
            }
        }
    }

    /// The simulated disk is written at once; the node is told it is durable at once.
    fn persist(&mut self, id: NodeId, seq: u64) {
        let i = index_of(id);
        self.nodes[i].disk = Some(seq);
        let mut out = Vec::new();
        self.nodes[i].node.ring_seq_persisted(self.now, seq, &mut out);
        self.apply_outputs(id, &mut out);
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
        if self.net_rng.chance(self.net.loss) {
            self.stats.packets_dropped += 1;
            return;
        }
        let copies = if self.net_rng.chance(self.net.duplication) { 2 } else { 1 };
        self.stats.packets_duplicated += copies - 1;
        for _ in 0..copies {
            let delay = self.net_rng.range(self.net.latency_min_ns, self.net.latency_max_ns);
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

    /// Messages sent by live incarnations that some live node has not delivered yet.
    pub fn undelivered(&self) -> usize {
        let mut sent = BTreeSet::new();
        let mut delivered: Vec<BTreeSet<spec::trace::MsgId>> = vec![BTreeSet::new(); self.nodes.len()];
        for e in &self.trace.events {
            match &e.kind {
                EventKind::Send { msg, .. } => {
                    sent.insert(*msg);
                }
                EventKind::Deliver { msg, .. } => {
                    if let Some(set) = delivered.get_mut(index_of(NodeId(e.node))) {
                        set.insert(*msg);
                    }
                }
                _ => {}
            }
        }
        let live: Vec<usize> = (0..self.nodes.len()).filter(|&i| self.nodes[i].alive).collect();
        sent.iter()
            .filter(|m| {
                let origin = index_of(NodeId(m.origin));
                self.nodes.get(origin).is_some_and(|n| n.alive && n.incarnation == m.incarnation)
            })
            .filter(|m| live.iter().any(|&i| !delivered[i].contains(m)))
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
        Probe::State { from, to } => EventKind::State { from: proto_state(from), to: proto_state(to) },
        Probe::Commit { ring_id, members, proc_minus_failed, via_consensus, agreed } => EventKind::Commit {
            ring: spec_ring(ring_id),
            members: ids(&members),
            proc_minus_failed: ids(&proc_minus_failed),
            via_consensus,
            agreed: ids(&agreed),
        },
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
    }
}

fn proto_state(s: totem_core::srp::State) -> spec::trace::ProtoState {
    use spec::trace::ProtoState;
    use totem_core::srp::State;
    match s {
        State::Operational => ProtoState::Operational,
        State::Gather => ProtoState::Gather,
        State::Commit => ProtoState::Commit,
        State::Recovery => ProtoState::Recovery,
    }
}
