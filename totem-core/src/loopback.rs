//! A minimal lossless in-memory driver of N nodes on one formed ring.
//!
//! For benchmarks, examples and directed tests: messages are handed over in FIFO order
//! with no latency, and timers fire only when nothing else is in flight (an idle ring's held
//! token is released by its hold timer). The real fault-injecting simulator is the `sim`
//! crate; this one exists to measure and exercise the core alone.

use crate::node::{Delivery, Dest, Node, Output};
use crate::{Config, ConfigError, Guarantee, Message, NodeId, RingId, SubmitError, Time};
use std::collections::VecDeque;

#[derive(Debug)]
pub struct Loopback {
    pub nodes: Vec<Node>,
    pub now: Time,
    in_flight: VecDeque<(NodeId, Message)>,
    out: Vec<Output>,
    /// Deliveries per node, in order, when `record` is set; otherwise only counted.
    pub delivered: Vec<Vec<Delivery>>,
    pub delivered_count: Vec<u64>,
    /// Ring sequences waiting to be confirmed as durable (confirmed at the next step).
    persisted: Vec<(usize, u64)>,
    /// Crashed, paused or shut-down nodes receive nothing and fire no timers (a paused node
    /// is one set back to alive later, with its state and timers as they were).
    pub alive: Vec<bool>,
    /// Configuration changes per node, in order, when `record` is set.
    pub configs: Vec<Vec<crate::ConfigChange>>,
    /// Rings each node entered COMMIT for (ring id, members), when `record` is set and the
    /// configuration has `probes` on.
    pub commits: Vec<Vec<(RingId, Vec<NodeId>)>>,
    pub record: bool,
}

impl Loopback {
    /// Nodes 1..=n on ring (1, 4), started.
    pub fn new(n: usize, config: Config, record: bool) -> Result<Loopback, ConfigError> {
        let members: Vec<NodeId> = (1..=n as u32).map(NodeId).collect();
        let ring = RingId::new(NodeId(1), 4);
        let nodes = members
            .iter()
            .map(|&id| Node::new_on_ring(config.clone(), id, ring, &members))
            .collect::<Result<Vec<_>, _>>()?;
        Self::from_nodes(nodes, record)
    }

    /// Nodes 1..=n starting from nothing: they must form a ring by themselves.
    pub fn cold(n: usize, config: Config, record: bool) -> Result<Loopback, ConfigError> {
        let nodes = (1..=n as u32)
            .map(|id| Node::new(config.clone(), NodeId(id), None))
            .collect::<Result<Vec<_>, _>>()?;
        Self::from_nodes(nodes, record)
    }

    /// These nodes (built by the caller, e.g. on a ring of its choice), started.
    pub fn from_nodes(nodes: Vec<Node>, record: bool) -> Result<Loopback, ConfigError> {
        let n = nodes.len();
        let mut lb = Loopback {
            nodes,
            now: Time::ZERO,
            in_flight: VecDeque::new(),
            out: Vec::new(),
            delivered: vec![Vec::new(); n],
            delivered_count: vec![0; n],
            configs: vec![Vec::new(); n],
            commits: vec![Vec::new(); n],
            alive: vec![true; n],
            persisted: Vec::new(),
            record,
        };
        for i in 0..n {
            let mut out = std::mem::take(&mut lb.out);
            lb.nodes[i].start(lb.now, &mut out);
            lb.apply(i, &mut out);
            lb.out = out;
        }
        Ok(lb)
    }

    fn apply(&mut self, from: usize, out: &mut Vec<Output>) {
        let from_id = self.nodes[from].id();
        for o in out.drain(..) {
            match o {
                Output::Send { dest: Dest::Node(to), msg } => self.in_flight.push_back((to, msg)),
                Output::Send { dest: Dest::All, msg } => {
                    for n in &self.nodes {
                        if n.id() != from_id {
                            self.in_flight.push_back((n.id(), msg.clone()));
                        }
                    }
                }
                Output::Deliver(d) => {
                    self.delivered_count[from] += 1;
                    if self.record {
                        self.delivered[from].push(d);
                    }
                }
                Output::Config(c) => {
                    if self.record {
                        self.configs[from].push(c);
                    }
                }
                Output::PersistRingSeq(seq) => self.persisted.push((from, seq)),
                Output::Probe(crate::Probe::Commit { ring_id, members, .. }) => {
                    if self.record {
                        self.commits[from].push((ring_id, members));
                    }
                }
                Output::Probe(_) | Output::Cpg(_) => {}
            }
        }
    }

    /// Messages handed over but not yet received, in order.
    pub fn in_flight(&self) -> impl Iterator<Item = &(NodeId, Message)> {
        self.in_flight.iter()
    }

    /// Put a message in flight to `to`, as if the network carried it (tests of hostile
    /// input).
    pub fn inject(&mut self, to: NodeId, msg: Message) {
        self.in_flight.push_back((to, msg));
    }

    /// Stop node `i` abruptly.
    pub fn crash(&mut self, i: usize) {
        self.alive[i] = false;
    }

    /// Replace node `i` by a new incarnation `node` (built with or without the persisted
    /// ring sequence) and start it. Confirmations of the old incarnation's persists are
    /// dropped: its disk writes are not the new one's.
    pub fn restart(&mut self, i: usize, node: Node) {
        self.persisted.retain(|&(j, _)| j != i);
        self.nodes[i] = node;
        self.alive[i] = true;
        let mut out = std::mem::take(&mut self.out);
        self.nodes[i].start(self.now, &mut out);
        self.apply(i, &mut out);
        self.out = out;
    }

    /// Shut node `i` down cleanly (it announces its leave).
    pub fn shutdown(&mut self, i: usize) {
        let mut out = std::mem::take(&mut self.out);
        self.nodes[i].shutdown(self.now, &mut out);
        self.apply(i, &mut out);
        self.out = out;
        self.alive[i] = false;
    }

    /// Step until every live node is operational in a ring of exactly the live nodes, or
    /// `max_steps` pass. Returns whether that happened.
    pub fn run_until_converged(&mut self, max_steps: u64) -> bool {
        let live: Vec<NodeId> =
            (0..self.nodes.len()).filter(|&i| self.alive[i]).map(|i| self.nodes[i].id()).collect();
        for _ in 0..max_steps {
            let converged = (0..self.nodes.len()).filter(|&i| self.alive[i]).all(|i| {
                let s = self.nodes[i].status();
                s.state == crate::srp::State::Operational && s.members == live
            });
            if converged {
                return true;
            }
            if !self.step() {
                return false;
            }
        }
        false
    }

    pub fn submit(&mut self, node: usize, payload: &[u8], guarantee: Guarantee) -> Result<(), SubmitError> {
        let mut out = std::mem::take(&mut self.out);
        let r = self.nodes[node].submit(self.now, payload, guarantee, &mut out);
        self.apply(node, &mut out);
        self.out = out;
        r
    }

    /// Hand over one message in flight, or fire the earliest timer if none is. False if
    /// nothing at all can happen.
    pub fn step(&mut self) -> bool {
        if let Some((i, seq)) = self.persisted.pop() {
            let mut out = std::mem::take(&mut self.out);
            self.nodes[i].ring_seq_persisted(self.now, seq, &mut out);
            self.apply(i, &mut out);
            self.out = out;
            return true;
        }
        if let Some((to, msg)) = self.in_flight.pop_front() {
            let Some(i) = self.nodes.iter().position(|n| n.id() == to) else { return true };
            if !self.alive[i] {
                return true;
            }
            let from = to;
            let mut out = std::mem::take(&mut self.out);
            self.nodes[i].handle_message(self.now, from, msg, &mut out);
            self.apply(i, &mut out);
            self.out = out;
            return true;
        }
        let next = self
            .nodes
            .iter()
            .enumerate()
            .filter(|&(i, _)| self.alive[i])
            .filter_map(|(i, n)| n.poll_timeout().map(|(t, k)| (t, i, k)))
            .min_by_key(|&(t, i, _)| (t, i));
        let Some((t, i, kind)) = next else { return false };
        self.now = self.now.max(t);
        let mut out = std::mem::take(&mut self.out);
        self.nodes[i].handle_timeout(self.now, kind, &mut out);
        self.apply(i, &mut out);
        self.out = out;
        true
    }

    /// Step until every node has delivered at least `count` messages, or `max_steps` pass.
    pub fn run_until_delivered(&mut self, count: u64, max_steps: u64) -> bool {
        for _ in 0..max_steps {
            if self.delivered_count.iter().all(|&c| c >= count) {
                return true;
            }
            if !self.step() {
                return false;
            }
        }
        self.delivered_count.iter().all(|&c| c >= count)
    }
}
