//! The stateright model: N real `totem-core` nodes, a bounded faulty network, timers that
//! fire nondeterministically, crashes, restarts and application sends (raw Totem messages,
//! or CPG client requests on top of `CpgNode`s, see [`crate::cpg`]).
//!
//! # State
//!
//! A [`ModelState`] holds, per machine, the real core ([`Core`]: a [`Node`] or a `CpgNode`,
//! behind an `Arc`, so that a step clones only the core it touches), its incarnation, its
//! application's message counter, its persisted ring sequence and its CPG clients; the
//! multiset of messages in flight (wire-encoded, so they are
//! ordered and hashed by their bytes); the fault budgets used so far; and the spec trace of
//! the path that reached the state.
//!
//! # What makes two states the same
//!
//! Stateright merges states by their hash. Ours covers the cores, the network, the budgets
//! and, per machine, a digest of that machine's own history (see [`Identity`]). It leaves
//! out the global trace: two paths that differ only in how independent steps of different
//! machines interleave reach one state, and the safety properties are judged on the trace of
//! the first such path found. Per-machine histories are kept apart by the digest, so that
//! every property about what one node did (and about how two nodes' deliveries compare) is
//! judged exactly; a property that depends on the real-time order of events at two
//! different nodes is judged on one representative interleaving.
//!
//! # Time
//!
//! The core uses `now` only to compute timer deadlines, and the model fires any armed timer
//! at any step, ignoring deadlines. Every input is therefore given the same `now`
//! ([`NOW`]): deadlines come out identical on every path, which lets commuting steps merge.
//! Trace events carry the step number as their time.

use crate::core::{Core, Input};
use crate::cpg::{Client, CpgBudgets, Ledger};
use crate::describe;
use crate::history::History;
use crate::mapping;
use bytes::Bytes;
use spec::trace::{ConfKind, Event, EventKind, MsgId, Ring};
use stateright::{Model, Property};
use std::collections::BTreeMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use totem_core::cpg::ConnId;
use totem_core::{
    Config, ConfigError, Dest, Guarantee, Message, Node, NodeId, Output, RingId, Time, TimerKind,
};

/// The `now` every input is given (see the module documentation).
pub const NOW: Time = Time::ZERO;

/// The ring sequence of the ring a `--formed` model starts on (the simulator's value).
pub const FORMED_RING_SEQ: u64 = 4;

/// How the nodes start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Start {
    /// Every node is a member of one operational ring (`Node::new_on_ring`); node 1 holds
    /// the token.
    Formed,
    /// Each listed set of nodes (together: every node, once) is one operational ring, its
    /// lowest node the representative holding the token: a partitioned cluster whose
    /// rings then find each other (merge detection) and merge.
    Partitioned(Vec<Vec<NodeId>>),
    /// Every node starts alone and gathers (`Node::new`): the ring must form first.
    Cold,
}

/// Which delivery guarantees the application may ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Guarantees {
    Agreed,
    Safe,
    /// Either: each send is two actions.
    Both,
}

impl Guarantees {
    pub fn list(self) -> &'static [Guarantee] {
        match self {
            Guarantees::Agreed => &[Guarantee::Agreed],
            Guarantees::Safe => &[Guarantee::Safe],
            Guarantees::Both => &[Guarantee::Agreed, Guarantee::Safe],
        }
    }
}

/// Which part of each machine's own history belongs to a state's identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Identity {
    /// The cores alone: histories that end in equal cores merge (smallest, least exact).
    Core,
    /// The application-visible history (starts, crashes, sends, configurations,
    /// deliveries) of every incarnation. The default.
    App,
    /// Every event, internal probes included (largest, most exact).
    Full,
}

/// When an armed timer may fire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timers {
    /// At any step: the core's contract (time is fully abstracted). Every race between a
    /// timeout and a packet in flight is explored, including spurious token losses.
    Any,
    /// Only when no packet is in flight to the timer's node: packets are faster than
    /// timeouts, but other nodes may still be busy.
    Idle,
    /// Only when no packet is in flight at all: timeouts happen in quiet moments only.
    Quiet,
}

/// The model's parameters: sizes, fault budgets and core tuning.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Number of machines (node ids 1..=nodes).
    pub nodes: usize,
    /// Application messages the whole model may send.
    pub msgs: u32,
    /// Messages the network may lose.
    pub drops: u32,
    /// Extra copies the network may make.
    pub dups: u32,
    /// Crashes (a crashed machine may restart at any later step, without budget).
    pub crashes: u32,
    /// Accepted token visits, summed over all nodes (`None`: unbounded). A state past the
    /// budget is outside the model. With `rings`, this makes the state space finite: the
    /// token's circulation is the one thing that never stops by itself.
    pub visits: Option<u32>,
    /// Distinct new rings that nodes may enter COMMIT for (`None`: unbounded).
    pub rings: Option<u32>,
    pub start: Start,
    pub guarantees: Guarantees,
    pub identity: Identity,
    pub timers: Timers,
    /// Sending a packet that is already in flight (same sender, receiver and bytes) adds no
    /// second copy: the receiver cannot tell one from two except by a duplicate delivery,
    /// which the `dups` budget covers. Keeps retransmission storms finite.
    pub coalesce: bool,
    /// Packets to a crashed machine stay in flight and may reach its next incarnation.
    /// Off: they are lost when it crashes, and nothing is sent to it while it is down.
    pub stale: bool,
    /// `seqno_unchanged_const`: idle token visits before the representative holds the token.
    pub idle_visits: u32,
    /// `miss_count_const`: token visits that must see a hole before it is requested.
    pub miss_count: u32,
    /// `max_messages` and `window_size` (`None`: Corosync's 17 and 50). Small values bring
    /// flow control within reach of a few messages.
    pub max_messages: Option<u32>,
    pub window_size: Option<u32>,
    /// Run the CPG service on every node, with client connections that join, leave,
    /// multicast (the `msgs` budget) and exit within these budgets (`None`: Totem only,
    /// the application submits raw messages). See [`crate::cpg`].
    pub cpg: Option<CpgBudgets>,
    /// A deliberately broken variant of the core.
    #[cfg(feature = "broken")]
    pub bug: Option<totem_core::broken::Bug>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            nodes: 2,
            msgs: 1,
            drops: 0,
            dups: 0,
            crashes: 0,
            visits: None,
            rings: None,
            start: Start::Formed,
            guarantees: Guarantees::Both,
            identity: Identity::App,
            timers: Timers::Any,
            coalesce: true,
            stale: false,
            idle_visits: 1,
            miss_count: 1,
            max_messages: None,
            window_size: None,
            cpg: None,
            #[cfg(feature = "broken")]
            bug: None,
        }
    }
}

impl Settings {
    /// The core configuration every node runs: Corosync's defaults for `nodes` nodes, probes
    /// on (the TOT checkers need them), and the model's tuning.
    pub fn core_config(&self) -> Result<Config, ConfigError> {
        let mut c = Config::for_cluster(totem_core::TimingBase { nodes: self.nodes, ..Default::default() });
        c.probes = true;
        c.seqno_unchanged_const = self.idle_visits;
        c.miss_count_const = self.miss_count;
        if let Some(w) = self.window_size {
            c.window_size = w;
        }
        if let Some(m) = self.max_messages {
            c.max_messages = m;
        }
        #[cfg(feature = "broken")]
        {
            c.bug = self.bug;
        }
        c.validate()?;
        Ok(c)
    }
}

/// A packet in flight.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Envelope {
    pub to: NodeId,
    pub from: NodeId,
    /// The wire encoding (`totem_core::wire`); every delivery goes through the decoder.
    pub bytes: Bytes,
}

impl Envelope {
    pub fn message(&self) -> Option<Message> {
        totem_core::wire::decode_bytes(&self.bytes).ok().map(|(_, m)| m)
    }
}

impl fmt::Debug for Envelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.message() {
            Some(m) => write!(f, "n{} -> n{}: {}", self.from.0, self.to.0, describe::message(&m)),
            None => write!(f, "n{} -> n{}: <{} undecodable bytes>", self.from.0, self.to.0, self.bytes.len()),
        }
    }
}

/// One machine: the core while it runs, and what survives a crash.
#[derive(Clone, Debug)]
pub struct Machine {
    pub id: NodeId,
    /// `None` while crashed.
    pub core: Option<Arc<Core>>,
    /// Hash of `core` without its counters ([`crate::fingerprint`]), kept up to date so
    /// that hashing a state does not rehash every core.
    core_hash: u64,
    /// 0 for the first start, +1 at every restart.
    pub incarnation: u32,
    /// The counter of this incarnation's next application message.
    pub next_counter: u64,
    /// The last `Output::PersistRingSeq` value (what a restart is given).
    pub persisted: Option<u64>,
    /// Digest of this machine's own history (see [`Identity`]).
    digest: u64,
    /// CPG: this incarnation's client connections, in connection order.
    pub clients: Vec<Client>,
    /// CPG: the next fresh pid (pids are unique per machine across incarnations).
    pub next_pid: u32,
}

impl Machine {
    fn rehash(&mut self) {
        self.core_hash = match &self.core {
            Some(core) => crate::fingerprint::hash_without_counters(&**core),
            None => 0,
        };
    }

    pub fn is_up(&self) -> bool {
        self.core.is_some()
    }

    /// The Totem node, while the machine runs.
    pub fn node(&self) -> Option<&Node> {
        self.core.as_deref().map(Core::node)
    }
}

/// Fault and workload budgets used so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Used {
    pub msgs: u32,
    pub drops: u32,
    pub dups: u32,
    pub crashes: u32,
    /// Token visits accepted so far (all nodes).
    pub visits: u32,
    /// CPG joins, leaves and exits.
    pub joins: u32,
    pub leaves: u32,
    pub exits: u32,
}

/// What the `sometimes` properties look for, kept up to date as events are recorded.
#[derive(Clone, Debug, Default)]
pub struct Witnesses {
    /// Some node installed a regular configuration of every node, formed by the membership
    /// protocol (not the ring a `--formed` model starts on).
    pub full_ring: bool,
    /// Some message was delivered at every node.
    pub everywhere: bool,
    /// Two transitional configurations of one new ring name different previous rings: the
    /// new ring merged members of two earlier rings.
    pub merge: bool,
    /// Some node delivered a Safe message.
    pub safe: bool,
    /// Some CPG connection received a view change with a NODEDOWN entry.
    pub nodedown: bool,
    /// Some CPG connection received a multicast of another node's process.
    pub cpg_remote_delivery: bool,
    delivered: BTreeMap<MsgId, u64>,
    trans_prev: BTreeMap<Ring, Ring>,
}

/// A state of the model. See the module documentation for what its identity covers.
#[derive(Clone)]
pub struct ModelState {
    pub machines: Vec<Machine>,
    /// Packets in flight with their number of copies.
    pub net: BTreeMap<Envelope, u8>,
    pub used: Used,
    /// Rings some node entered COMMIT for, sorted.
    pub rings: Vec<Ring>,
    /// The spec trace of the path that first reached this state.
    pub history: History,
    /// Steps taken on that path.
    pub step: u32,
    pub witnesses: Arc<Witnesses>,
    /// CPG: the message ids of the join and leave requests clients made.
    pub ledger: Arc<Ledger>,
    /// Ids of the safety properties the trace violates, computed on first use; shared
    /// with the parent when the step added no event (same trace, same verdict).
    verdict: Arc<OnceLock<Vec<&'static str>>>,
}

impl Hash for ModelState {
    fn hash<H: Hasher>(&self, h: &mut H) {
        for m in &self.machines {
            m.core.is_some().hash(h);
            m.core_hash.hash(h);
            m.incarnation.hash(h);
            m.next_counter.hash(h);
            m.persisted.hash(h);
            m.digest.hash(h);
            m.clients.hash(h);
            m.next_pid.hash(h);
        }
        self.net.hash(h);
        self.used.hash(h);
        self.rings.hash(h);
    }
}

impl PartialEq for ModelState {
    fn eq(&self, other: &Self) -> bool {
        self.machines.len() == other.machines.len()
            && self.machines.iter().zip(&other.machines).all(|(a, b)| {
                a.core.is_some() == b.core.is_some()
                    && a.core_hash == b.core_hash
                    && a.incarnation == b.incarnation
                    && a.next_counter == b.next_counter
                    && a.persisted == b.persisted
                    && a.digest == b.digest
                    && a.clients == b.clients
                    && a.next_pid == b.next_pid
            })
            && self.net == other.net
            && self.used == other.used
            && self.rings == other.rings
    }
}

impl Eq for ModelState {}

impl ModelState {
    /// The ids of the safety properties (`spec::check_safety`) that this state's trace
    /// violates. Computed once per state.
    pub fn violations(&self, model: &TotemModel) -> &[&'static str] {
        self.verdict.get_or_init(|| {
            let trace = self.history.to_trace();
            let mut ids: Vec<&'static str> =
                spec::check_safety(&trace, &model.params).into_iter().map(|v| v.property).collect();
            ids.sort_unstable();
            ids.dedup();
            ids
        })
    }

    pub fn machine(&self, id: NodeId) -> Option<&Machine> {
        self.machines.get(index(id))
    }
}

impl fmt::Debug for ModelState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "step {}; used {:?}; new rings {:?}", self.step, self.used, self.rings)?;
        for m in &self.machines {
            match m.core.as_deref() {
                Some(core) => {
                    let node = core.node();
                    let s = node.status();
                    let timers: Vec<String> = node.armed_timers().map(|(k, _)| format!("{k:?}")).collect();
                    writeln!(
                        f,
                        "n{} inc {}: {:?} ring {} members {:?} pending {} persisted {:?} timers [{}]",
                        m.id.0,
                        m.incarnation,
                        s.state,
                        s.ring_id,
                        s.members,
                        s.pending_frames,
                        m.persisted,
                        timers.join(",")
                    )?;
                    if let Some(cpg) = core.cpg() {
                        let groups: Vec<String> =
                            cpg.groups().iter().map(|(g, members)| format!("{g:?} {members:?}")).collect();
                        writeln!(
                            f,
                            "    cpg: {}groups [{}] clients {:?}",
                            if cpg.is_syncing() { "SYNCING, " } else { "" },
                            groups.join(", "),
                            m.clients
                        )?;
                    }
                }
                None => writeln!(f, "n{} inc {}: DOWN persisted {:?}", m.id.0, m.incarnation, m.persisted)?,
            }
        }
        writeln!(f, "in flight:")?;
        for (env, count) in &self.net {
            writeln!(f, "  {env:?}{}", if *count > 1 { format!(" (x{count})") } else { String::new() })?;
        }
        writeln!(f, "trace ({} events, newest first):", self.history.len())?;
        for e in self.history.iter_rev().take(30) {
            writeln!(f, "  t{} n{}/{} {:?}", e.time, e.node, e.incarnation, e.kind)?;
        }
        Ok(())
    }
}

/// One step of the model.
#[derive(Clone, PartialEq, Eq)]
pub enum Action {
    /// The network hands one copy of a packet to its receiver.
    Deliver(Envelope),
    /// The network loses one copy (within the `drops` budget).
    Drop(Envelope),
    /// The network makes one more copy (within the `dups` budget).
    Duplicate(Envelope),
    /// An armed timer of a running node fires.
    Fire(NodeId, TimerKind),
    /// The node's application sends a message (within the `msgs` budget; Totem-only mode).
    Submit(NodeId, Guarantee),
    /// CPG: a new connection (`None`) or one whose leave completed joins group
    /// `cpg::GROUPS[i]` with a fresh pid (within the `joins` budget).
    CpgJoin(NodeId, Option<ConnId>, usize),
    /// CPG: a joined connection leaves its group (within the `leaves` budget).
    CpgLeave(NodeId, ConnId),
    /// CPG: a joined or joining connection multicasts (within the `msgs` budget).
    CpgMcast(NodeId, ConnId, Guarantee),
    /// CPG: a connection in a group closes without leaving (within the `exits` budget).
    CpgExit(NodeId, ConnId),
    /// The machine stops abruptly (within the `crashes` budget).
    Crash(NodeId),
    /// A crashed machine starts a new incarnation from its persisted ring sequence.
    Restart(NodeId),
}

impl fmt::Debug for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Deliver(e) => write!(f, "deliver {e:?}"),
            Action::Drop(e) => write!(f, "DROP {e:?}"),
            Action::Duplicate(e) => write!(f, "DUPLICATE {e:?}"),
            Action::Fire(n, k) => write!(f, "n{}: timer {k:?} fires", n.0),
            Action::Submit(n, g) => write!(f, "n{}: application submits a {g:?} message", n.0),
            Action::CpgJoin(n, conn, g) => {
                let group = describe::group(crate::cpg::GROUPS.get(*g).copied().unwrap_or_default());
                match conn {
                    Some(c) => write!(f, "n{}: conn {} joins {group} again", n.0, c.0),
                    None => write!(f, "n{}: a new connection joins {group}", n.0),
                }
            }
            Action::CpgLeave(n, c) => write!(f, "n{}: conn {} leaves", n.0, c.0),
            Action::CpgMcast(n, c, g) => write!(f, "n{}: conn {} multicasts a {g:?} message", n.0, c.0),
            Action::CpgExit(n, c) => write!(f, "n{}: conn {} EXITS (process ends)", n.0, c.0),
            Action::Crash(n) => write!(f, "n{}: CRASH", n.0),
            Action::Restart(n) => write!(f, "n{}: restarts", n.0),
        }
    }
}

pub(crate) fn index(id: NodeId) -> usize {
    (id.0 as usize).saturating_sub(1)
}

/// The model: settings plus what is derived from them once.
#[derive(Clone, Debug)]
pub struct TotemModel {
    pub settings: Settings,
    pub config: Config,
    pub params: spec::Params,
    /// The spec's safety property ids, one `always` property each.
    pub safety: Vec<&'static str>,
    ids: Vec<NodeId>,
    /// When set, each property reports only its first discovery (see
    /// [`TotemModel::first_discoveries_only`]).
    latch: Option<Arc<Vec<AtomicBool>>>,
}

/// Names of the `sometimes` properties.
pub const FULL_RING: &str = "sometimes: a regular configuration of all nodes forms";
pub const EVERYWHERE: &str = "sometimes: a message is delivered at every node";
pub const MERGE: &str = "sometimes: two rings merge";
pub const SAFE: &str = "sometimes: a Safe message is delivered";
pub const NODEDOWN: &str = "sometimes: a CPG view change with NODEDOWN";
pub const CPG_DELIVERY: &str = "sometimes: a CPG multicast reaches another node's connection";

/// The spec properties the model judges one by one: every property `spec::check_safety`
/// covers, the CPG ones only with `cpg` (they hold vacuously on a trace without CPG
/// events). Timing (TOT-10) and liveness (LIVE-n, CPG-7 self-delivery, CPG-11 no ghosts)
/// need timed, fault-free runs that end settled: they are the simulator's.
pub fn safety_ids(cpg: bool) -> Vec<&'static str> {
    let liveness = [spec::tot10_timing::ID, spec::cpg7_self_delivery::ID, spec::cpg11_no_ghosts::ID];
    spec::PROPERTIES
        .iter()
        .map(|(id, _)| *id)
        .filter(|id| !liveness.contains(id) && !id.starts_with("LIVE") && (cpg || !id.starts_with("CPG")))
        .collect()
}

/// Name of the `always` property that catches a violation of any spec safety property not
/// listed one by one (a property added to the spec after this list was written).
pub const OTHER: &str = "any other spec safety property";

/// The statement of a spec property, for reports.
pub fn statement(id: &str) -> Option<&'static str> {
    spec::PROPERTIES.iter().find(|(i, _)| *i == id).map(|(_, s)| *s)
}

impl TotemModel {
    pub fn new(settings: Settings) -> Result<TotemModel, ConfigError> {
        if settings.nodes == 0 || settings.nodes > 63 {
            return Err(ConfigError {
                key: "nodes",
                value: settings.nodes.to_string(),
                rule: "the model supports 1 to 63 nodes",
            });
        }
        if let Start::Partitioned(parts) = &settings.start {
            let mut listed: Vec<u32> = parts.iter().flatten().map(|n| n.0).collect();
            listed.sort_unstable();
            if listed != (1..=settings.nodes as u32).collect::<Vec<_>>() || parts.iter().any(Vec::is_empty) {
                return Err(ConfigError {
                    key: "partitions",
                    value: format!("{parts:?}"),
                    rule: "every node 1..=nodes in exactly one non-empty partition",
                });
            }
        }
        if let Some(b) = &settings.cpg
            && !(1..=crate::cpg::GROUPS.len()).contains(&b.groups)
        {
            return Err(ConfigError {
                key: "cpg groups",
                value: b.groups.to_string(),
                rule: "the model's clients use 1 to 3 groups",
            });
        }
        let config = settings.core_config()?;
        let params = spec::Params { max_messages: config.max_messages, window_size: config.window_size };
        let ids = (1..=settings.nodes as u32).map(NodeId).collect();
        let safety = safety_ids(settings.cpg.is_some());
        assert!(safety.len() <= SAFETY_CONDITIONS.len(), "more spec properties than condition slots");
        Ok(TotemModel { settings, config, params, safety, ids, latch: None })
    }

    /// Report each property's first discovery only. Stateright records a discovery every
    /// time a state matches, so without this a breadth-first run reports the *last* (the
    /// longest) example or counterexample it met; with it, the first, which BFS finds at
    /// the smallest depth (with one thread; with several, nearly so). Leave it off for the
    /// Explorer, which evaluates properties state by state.
    pub fn first_discoveries_only(mut self) -> Self {
        let slots = SAFETY_CONDITIONS.len() + SOMETIMES + 1;
        self.latch = Some(Arc::new((0..slots).map(|_| AtomicBool::new(false)).collect()));
        self
    }

    /// Whether a match of property `slot` is reported (see `first_discoveries_only`).
    fn report(&self, slot: usize, matched: bool) -> bool {
        matched
            && self
                .latch
                .as_ref()
                .is_none_or(|l| l.get(slot).is_none_or(|b| !b.swap(true, Ordering::Relaxed)))
    }

    /// Node `id`'s configuration: the model's, with a random seed of its own (the node id;
    /// every incarnation draws the same numbers, which keeps the model deterministic).
    pub fn node_config(&self, id: NodeId) -> Config {
        Config { rng_seed: u64::from(id.0), ..self.config.clone() }
    }

    /// Whether `a` and `b` start on the same ring (`Start::Cold`: every node alone).
    pub(crate) fn same_start_ring(&self, a: NodeId, b: NodeId) -> bool {
        a == b || self.start_ring(a).is_some_and(|r| r.contains(&b))
    }

    /// The members of the ring node `id` starts on (`None`: it starts alone in GATHER).
    fn start_ring(&self, id: NodeId) -> Option<Vec<NodeId>> {
        match &self.settings.start {
            Start::Formed => Some(self.ids.clone()),
            Start::Partitioned(parts) => parts.iter().find(|p| p.contains(&id)).cloned(),
            Start::Cold => None,
        }
    }

    /// The state after `action`, and (when `log` is given) what happened, line by line.
    pub fn step(
        &self,
        last: &ModelState,
        action: &Action,
        mut log: Option<&mut Vec<String>>,
    ) -> Option<ModelState> {
        let mut s = self.step_inner(last, action, &mut log)?;
        if s.history.len() != last.history.len() {
            s.verdict = Arc::new(OnceLock::new());
        }
        Some(s)
    }

    fn step_inner(
        &self,
        last: &ModelState,
        action: &Action,
        log: &mut Option<&mut Vec<String>>,
    ) -> Option<ModelState> {
        let mut s = last.clone();
        s.step += 1;
        let mut out = Vec::new();
        match action {
            Action::Deliver(env) => {
                take_copy(&mut s.net, env)?;
                let i = index(env.to);
                let Some(core) = s.machines.get_mut(i)?.core.as_mut() else {
                    note(log, format!("n{} is down: the packet is lost", env.to.0));
                    return Some(s);
                };
                let Ok((_, msg)) = totem_core::wire::decode_bytes(&env.bytes) else {
                    note(log, "the packet does not decode: dropped by the receiver".into());
                    return Some(s);
                };
                Arc::make_mut(core).handle(Input::Message(env.from, msg), &mut out);
                self.apply(&mut s, i, out, log);
            }
            Action::Drop(env) => {
                if s.used.drops >= self.settings.drops {
                    return None;
                }
                take_copy(&mut s.net, env)?;
                s.used.drops += 1;
            }
            Action::Duplicate(env) => {
                if s.used.dups >= self.settings.dups {
                    return None;
                }
                let count = s.net.get_mut(env)?;
                *count = count.saturating_add(1);
                s.used.dups += 1;
            }
            Action::Fire(id, kind) => {
                let i = index(*id);
                let core = s.machines.get_mut(i)?.core.as_mut()?;
                Arc::make_mut(core).handle(Input::Timeout(*kind), &mut out);
                self.apply(&mut s, i, out, log);
            }
            Action::Submit(id, guarantee) => {
                if s.used.msgs >= self.settings.msgs {
                    return None;
                }
                let i = index(*id);
                let m = s.machines.get_mut(i)?;
                let msg = MsgId::new(id.0, m.incarnation, m.next_counter);
                let Core::Plain(node) = Arc::make_mut(m.core.as_mut()?) else { return None };
                if node.submit(NOW, &mapping::payload(msg), *guarantee, &mut out).is_err() {
                    return None;
                }
                m.next_counter += 1;
                s.used.msgs += 1;
                self.record(
                    &mut s,
                    i,
                    EventKind::Send { msg, guarantee: mapping::guarantee(*guarantee) },
                    log,
                );
                self.apply(&mut s, i, out, log);
            }
            Action::Crash(id) => {
                if s.used.crashes >= self.settings.crashes {
                    return None;
                }
                let i = index(*id);
                s.machines.get(i)?.core.as_ref()?;
                s.used.crashes += 1;
                self.record(&mut s, i, EventKind::Crash, log);
                s.machines[i].core = None;
                s.machines[i].clients.clear();
                s.machines[i].rehash();
                if !self.settings.stale {
                    s.net.retain(|e, _| e.to != *id);
                }
            }
            Action::Restart(id) => {
                let i = index(*id);
                let m = s.machines.get_mut(i)?;
                if m.core.is_some() {
                    return None;
                }
                let node = Node::new(self.node_config(*id), *id, m.persisted).ok()?;
                m.core = Some(Arc::new(Core::new(node, self.settings.cpg.is_some())));
                m.incarnation += 1;
                m.next_counter = 0;
                self.record(&mut s, i, EventKind::Start, log);
                if let Some(core) = s.machines[i].core.as_mut() {
                    Arc::make_mut(core).handle(Input::Start, &mut out);
                }
                self.apply(&mut s, i, out, log);
            }
            Action::CpgJoin(id, conn, group) => self.cpg_join(&mut s, *id, (*conn, *group), true, log)?,
            Action::CpgLeave(id, conn) => self.cpg_depart(&mut s, *id, *conn, false, log)?,
            Action::CpgMcast(id, conn, guarantee) => self.cpg_mcast(&mut s, *id, *conn, *guarantee, log)?,
            Action::CpgExit(id, conn) => self.cpg_depart(&mut s, *id, *conn, true, log)?,
        }
        Some(s)
    }

    /// Carry out a core's outputs in order. A ring sequence to persist is stored at once
    /// (the model's disk never fails) and confirmed to the core after the batch.
    /// With CPG, Totem deliveries are mapped back to the requests that caused them, the
    /// service's callbacks are recorded, and a batch that ends with a view change is
    /// followed by a membership snapshot (see [`crate::cpg`]).
    pub(crate) fn apply(
        &self,
        s: &mut ModelState,
        i: usize,
        mut out: Vec<Output>,
        log: &mut Option<&mut Vec<String>>,
    ) {
        let me = s.machines[i].id;
        let cpg = self.settings.cpg.is_some();
        // The last CPG callback of the batch, when it is a view change: (conn, group).
        let mut last_view = None;
        loop {
            let mut confirmed = Vec::new();
            for o in out.drain(..) {
                match o {
                    Output::Send { dest, msg } => self.send(s, me, dest, &msg, log),
                    Output::Deliver(d) if cpg => self.deliver_cpg(s, i, &d, log),
                    Output::Deliver(d) => {
                        let msg = mapping::msg_id(&d.payload).unwrap_or(mapping::CORRUPT);
                        let slot = spec::trace::Slot { ring: mapping::ring(d.ring_id), seq: d.seq.0 };
                        let guarantee = mapping::guarantee(d.guarantee);
                        self.record(s, i, EventKind::Deliver { msg, slot, guarantee }, log);
                    }
                    Output::Config(c) => self.record(s, i, mapping::config_event(&c), log),
                    Output::PersistRingSeq(seq) => {
                        s.machines[i].persisted = Some(seq);
                        note(log, format!("n{}: persists ring seq {seq}", me.0));
                        confirmed.push(seq);
                    }
                    Output::Probe(p) => self.record(s, i, mapping::probe_event(&p), log),
                    Output::Cpg(e) => last_view = self.cpg_event(s, i, e, log),
                }
            }
            if confirmed.is_empty() {
                break;
            }
            if let Some(core) = s.machines[i].core.as_mut() {
                let core = Arc::make_mut(core);
                for seq in confirmed {
                    core.handle(Input::Persisted(seq), &mut out);
                }
            }
        }
        if let Some((conn, group)) = last_view {
            self.snapshot(s, i, conn, group, log);
        }
        s.machines[i].rehash();
    }

    fn send(
        &self,
        s: &mut ModelState,
        me: NodeId,
        dest: Dest,
        msg: &Message,
        log: &mut Option<&mut Vec<String>>,
    ) {
        let mut buf = Vec::with_capacity(totem_core::wire::encoded_len(msg));
        totem_core::wire::encode(me, msg, &mut buf);
        let bytes = Bytes::from(buf);
        let targets: Vec<NodeId> = match dest {
            Dest::Node(to) => vec![to],
            Dest::All => self.ids.iter().copied().filter(|&n| n != me).collect(),
        };
        let mut reached = Vec::new();
        for to in targets {
            let up = s.machine(to).is_some_and(Machine::is_up);
            if !up && !self.settings.stale {
                continue;
            }
            reached.push(to.0);
            let count = s.net.entry(Envelope { to, from: me, bytes: bytes.clone() }).or_insert(0);
            if *count == 0 || !self.settings.coalesce {
                *count = count.saturating_add(1);
            }
        }
        if log.is_some() {
            let to = match dest {
                Dest::Node(to) => format!("n{}", to.0),
                Dest::All => format!("all {reached:?}"),
            };
            note(log, format!("n{} sends to {to}: {}", me.0, describe::message(msg)));
        }
    }

    /// Append an event of machine `i` to the trace, its digest and the witnesses.
    pub(crate) fn record(
        &self,
        s: &mut ModelState,
        i: usize,
        kind: EventKind,
        log: &mut Option<&mut Vec<String>>,
    ) {
        let m = &mut s.machines[i];
        let node = m.id.0;
        if log.is_some()
            && let Some(line) = describe::event(&kind, false)
        {
            note(log, format!("n{node}: {line}"));
        }
        let in_identity = match self.settings.identity {
            Identity::Core => false,
            Identity::App => {
                matches!(
                    kind,
                    EventKind::Start
                        | EventKind::Crash
                        | EventKind::Send { .. }
                        | EventKind::Config { .. }
                        | EventKind::Deliver { .. }
                ) || kind.cpg_conn().is_some()
            }
            Identity::Full => true,
        };
        if in_identity {
            let mut h = std::hash::DefaultHasher::new();
            m.digest.hash(&mut h);
            m.incarnation.hash(&mut h);
            hash_debug(&kind, &mut h);
            m.digest = h.finish();
        }
        let incarnation = m.incarnation;
        match &kind {
            EventKind::Token { .. } => s.used.visits += 1,
            EventKind::Commit { ring, .. } => {
                if let Err(at) = s.rings.binary_search(ring) {
                    s.rings.insert(at, *ring);
                }
            }
            _ => {}
        }
        self.witness(s, node, &kind);
        s.history.push(Event { time: u64::from(s.step), node, incarnation, kind });
    }

    fn witness(&self, s: &mut ModelState, node: u32, kind: &EventKind) {
        match kind {
            EventKind::Config { kind: ConfKind::Regular, ring, members, .. } => {
                let all = members.len() == self.ids.len() && self.ids.iter().all(|n| members.contains(&n.0));
                let initial = self.settings.start == Start::Formed
                    && *ring == mapping::ring(RingId::new(NodeId(1), FORMED_RING_SEQ));
                if all && !initial && !s.witnesses.full_ring {
                    Arc::make_mut(&mut s.witnesses).full_ring = true;
                }
            }
            EventKind::Config { kind: ConfKind::Transitional, ring, prev_ring: Some(prev), .. } => {
                let w = Arc::make_mut(&mut s.witnesses);
                match w.trans_prev.get(ring) {
                    Some(p) if p != prev => w.merge = true,
                    Some(_) => {}
                    None => {
                        w.trans_prev.insert(*ring, *prev);
                    }
                }
            }
            EventKind::Deliver { msg, guarantee, .. } => {
                let all = if self.ids.len() >= 64 { u64::MAX } else { (1u64 << self.ids.len()) - 1 };
                let w = Arc::make_mut(&mut s.witnesses);
                let mask = w.delivered.entry(*msg).or_insert(0);
                *mask |= 1u64 << (node.saturating_sub(1) % 64);
                if *mask == all {
                    w.everywhere = true;
                }
                if *guarantee == spec::trace::Guarantee::Safe {
                    w.safe = true;
                }
            }
            EventKind::CpgConfchg { left, .. }
                if !s.witnesses.nodedown
                    && left.iter().any(|(_, r)| *r == spec::trace::CpgReason::NodeDown) =>
            {
                Arc::make_mut(&mut s.witnesses).nodedown = true;
            }
            EventKind::CpgDeliver { sender, .. }
                if !s.witnesses.cpg_remote_delivery && sender.node != node =>
            {
                Arc::make_mut(&mut s.witnesses).cpg_remote_delivery = true;
            }
            _ => {}
        }
    }
}

/// Hash a value's `Debug` form without allocating (spec events implement no `Hash`).
fn hash_debug<T: fmt::Debug, H: Hasher>(value: &T, h: &mut H) {
    struct W<'a, H: Hasher>(&'a mut H);
    impl<H: Hasher> fmt::Write for W<'_, H> {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            self.0.write(s.as_bytes());
            Ok(())
        }
    }
    let _ = fmt::write(&mut W(h), format_args!("{value:?}"));
}

pub(crate) fn note(log: &mut Option<&mut Vec<String>>, line: String) {
    if let Some(log) = log {
        log.push(line);
    }
}

/// Remove one copy of `env`; `None` if it is not in flight.
fn take_copy(net: &mut BTreeMap<Envelope, u8>, env: &Envelope) -> Option<()> {
    let count = net.get_mut(env)?;
    if *count > 1 {
        *count -= 1;
    } else {
        net.remove(env);
    }
    Some(())
}

impl Model for TotemModel {
    type State = ModelState;
    type Action = Action;

    fn init_states(&self) -> Vec<ModelState> {
        let mut s = ModelState {
            machines: Vec::new(),
            net: BTreeMap::new(),
            used: Used::default(),
            rings: Vec::new(),
            history: History::new(),
            step: 0,
            witnesses: Arc::new(Witnesses::default()),
            ledger: Arc::new(Ledger::new()),
            verdict: Arc::new(OnceLock::new()),
        };
        for &id in &self.ids {
            let (node, persisted) = match self.start_ring(id) {
                Some(mut members) => {
                    members.sort_unstable();
                    let ring = RingId::new(members.first().copied().unwrap_or(id), FORMED_RING_SEQ);
                    (Node::new_on_ring(self.node_config(id), id, ring, &members), Some(FORMED_RING_SEQ))
                }
                None => (Node::new(self.node_config(id), id, None), None),
            };
            // The configuration was validated in `TotemModel::new`; the ids are 1..=nodes.
            let Ok(node) = node else { return Vec::new() };
            s.machines.push(Machine {
                id,
                core: Some(Arc::new(Core::new(node, self.settings.cpg.is_some()))),
                core_hash: 0,
                incarnation: 0,
                next_counter: 0,
                persisted,
                digest: 0,
                clients: Vec::new(),
                next_pid: 1,
            });
        }
        for i in 0..s.machines.len() {
            self.record(&mut s, i, EventKind::Start, &mut None);
            let mut out = Vec::new();
            if let Some(core) = s.machines[i].core.as_mut() {
                Arc::make_mut(core).handle(Input::Start, &mut out);
            }
            self.apply(&mut s, i, out, &mut None);
        }
        self.settle_members(&mut s);
        vec![s]
    }

    fn actions(&self, s: &ModelState, actions: &mut Vec<Action>) {
        for env in s.net.keys() {
            actions.push(Action::Deliver(env.clone()));
        }
        for m in &s.machines {
            let may_fire = match self.settings.timers {
                Timers::Any => true,
                Timers::Idle => !s.net.keys().any(|e| e.to == m.id),
                Timers::Quiet => s.net.is_empty(),
            };
            if let Some(node) = m.node().filter(|_| may_fire) {
                actions.extend(node.armed_timers().map(|(kind, _)| Action::Fire(m.id, kind)));
            }
        }
        match &self.settings.cpg {
            Some(budgets) => self.cpg_actions(s, budgets, actions),
            None if s.used.msgs < self.settings.msgs => {
                for m in s.machines.iter().filter(|m| m.is_up()) {
                    for &g in self.settings.guarantees.list() {
                        actions.push(Action::Submit(m.id, g));
                    }
                }
            }
            None => {}
        }
        if s.used.crashes < self.settings.crashes {
            actions.extend(s.machines.iter().filter(|m| m.is_up()).map(|m| Action::Crash(m.id)));
        }
        actions.extend(s.machines.iter().filter(|m| !m.is_up()).map(|m| Action::Restart(m.id)));
        if s.used.drops < self.settings.drops {
            actions.extend(s.net.keys().filter(|e| e.to != e.from).map(|e| Action::Drop(e.clone())));
        }
        if s.used.dups < self.settings.dups {
            actions.extend(s.net.keys().filter(|e| e.to != e.from).map(|e| Action::Duplicate(e.clone())));
        }
    }

    fn next_state(&self, last: &ModelState, action: Action) -> Option<ModelState> {
        self.step(last, &action, None)
    }

    fn within_boundary(&self, s: &ModelState) -> bool {
        self.settings.visits.is_none_or(|v| s.used.visits <= v)
            && self.settings.rings.is_none_or(|r| s.rings.len() <= r as usize)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        let mut props: Vec<Property<Self>> =
            self.safety.iter().zip(SAFETY_CONDITIONS).map(|(id, cond)| Property::always(id, cond)).collect();
        props.push(Property::always(OTHER, |m, s: &ModelState| {
            let other = s.violations(m).iter().any(|id| !m.safety.contains(id));
            !m.report(SAFETY_CONDITIONS.len() + SOMETIMES, other)
        }));
        const B: usize = SAFETY_CONDITIONS.len();
        props.push(Property::sometimes(FULL_RING, |m, s: &ModelState| m.report(B, s.witnesses.full_ring)));
        props.push(Property::sometimes(EVERYWHERE, |m, s: &ModelState| {
            m.report(B + 1, s.witnesses.everywhere)
        }));
        props.push(Property::sometimes(MERGE, |m, s: &ModelState| m.report(B + 2, s.witnesses.merge)));
        props.push(Property::sometimes(SAFE, |m, s: &ModelState| m.report(B + 3, s.witnesses.safe)));
        if self.settings.cpg.is_some() {
            props.push(Property::sometimes(NODEDOWN, |m, s: &ModelState| {
                m.report(B + 4, s.witnesses.nodedown)
            }));
            props.push(Property::sometimes(CPG_DELIVERY, |m, s: &ModelState| {
                m.report(B + 5, s.witnesses.cpg_remote_delivery)
            }));
        }
        props
    }
}

/// `always` condition for the `I`-th safety property of [`TotemModel::safety`].
fn holds<const I: usize>(m: &TotemModel, s: &ModelState) -> bool {
    let Some(id) = m.safety.get(I) else { return true };
    !m.report(I, s.violations(m).contains(id))
}

/// Number of `sometimes` properties.
const SOMETIMES: usize = 6;

type Condition = fn(&TotemModel, &ModelState) -> bool;

/// Properties are plain `fn` pointers (no captures), so each safety property gets its own
/// instance of [`holds`]. There are more slots than the spec has properties.
macro_rules! conditions {
    ($($i:literal)*) => { [$(holds::<$i>),*] };
}
const SAFETY_CONDITIONS: [Condition; 48] = conditions!(
    0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23
    24 25 26 27 28 29 30 31 32 33 34 35 36 37 38 39 40 41 42 43 44 45 46 47
);
