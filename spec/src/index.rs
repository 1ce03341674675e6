//! Derived indexes over a trace, shared by the checkers.
//!
//! A trace is one flat list of events. Most properties are stated per node incarnation
//! ("the configurations p delivered, and the messages it delivered in each") or per message
//! ("where was m sent, where was it delivered"). This module computes those views once, in
//! O(n log n), and lazily: [`Index`] builds a view the first time a checker asks for it, so
//! `check_safety` pays for each view once however many checkers use it.
//!
//! The views never reject a trace: odd events (a delivery before any configuration, a
//! message delivered twice) are kept as they are, and judging them is the checkers' job.

use crate::cpg_index::{CpgIndex, Segment, segments};
use crate::trace::{ConfKind, Event, EventKind, Guarantee, MsgId, Node, ProtoState, Ring, Slot, Trace};
use std::cell::OnceCell;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// A fast, deterministic hasher for the checkers' maps (keys are small integers, and the
/// input is not adversarial): FxHash's mixing step with a final avalanche so that the low
/// bits a hash table uses depend on every input bit.
#[derive(Clone, Copy, Debug, Default)]
pub struct FastHasher {
    hash: u64,
}

impl FastHasher {
    const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(Self::SEED);
    }
}

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_u16(&mut self, i: u16) {
        self.add(u64::from(i));
    }

    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    fn finish(&self) -> u64 {
        let mut h = self.hash;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h
    }
}

/// A hash map with [`FastHasher`].
pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;
/// A hash set with [`FastHasher`].
pub type FastSet<K> = HashSet<K, BuildHasherDefault<FastHasher>>;

/// A node incarnation: (node, incarnation).
pub type Inc = (Node, u32);

/// A configuration event, as one incarnation delivered it.
#[derive(Clone, Copy, Debug)]
pub struct ConfigView<'t> {
    /// Index of the `Config` event in the trace.
    pub event: usize,
    pub kind: ConfKind,
    pub ring: Ring,
    /// The `prev_ring` field as recorded.
    pub prev_ring: Option<Ring>,
    /// Derived: the ring of the last regular configuration this incarnation delivered before
    /// this one (None if none). EVS-2b checks that it equals `prev_ring`; the other checkers
    /// use this derived value.
    pub prev_reg: Option<Ring>,
    pub members: &'t [Node],
    pub left: &'t [Node],
    pub joined: &'t [Node],
}

impl ConfigView<'_> {
    /// True for a regular configuration.
    pub fn is_regular(&self) -> bool {
        self.kind == ConfKind::Regular
    }

    /// True when `node` is listed in `members`.
    pub fn has_member(&self, node: Node) -> bool {
        self.members.contains(&node)
    }
}

/// One `Deliver` event, seen from the delivering incarnation.
#[derive(Clone, Copy, Debug)]
pub struct DeliveryView {
    /// Index of the `Deliver` event in the trace.
    pub event: usize,
    pub msg: MsgId,
    pub slot: Slot,
    pub guarantee: Guarantee,
    /// True when this incarnation delivered the same message earlier (an EVS-1b
    /// violation); most checkers skip such repeats so that one bug is reported once.
    pub repeat: bool,
}

/// A configuration delivered by an incarnation, with the messages it delivered while that
/// configuration was its current one.
#[derive(Clone, Debug)]
pub struct Epoch<'t> {
    pub config: ConfigView<'t>,
    pub deliveries: Vec<DeliveryView>,
}

/// Everything one incarnation delivered, in its local order.
#[derive(Clone, Debug)]
pub struct IncarnationHistory<'t> {
    pub node: Node,
    pub incarnation: u32,
    /// Index of the incarnation's first and last events.
    pub first_event: usize,
    pub last_event: usize,
    /// Index of its first `Start`, first `Crash` and first `Leave` events, if any.
    pub start: Option<usize>,
    pub crash: Option<usize>,
    pub leave: Option<usize>,
    /// Deliveries that happened before the incarnation delivered any configuration.
    pub unconfigured: Vec<DeliveryView>,
    /// Its configurations in order, each with the deliveries made in it.
    pub epochs: Vec<Epoch<'t>>,
    last_reg: Option<Ring>,
    delivered: FastSet<MsgId>,
}

impl IncarnationHistory<'_> {
    /// The (node, incarnation) key.
    pub fn key(&self) -> Inc {
        (self.node, self.incarnation)
    }

    /// Index of the event that ended the incarnation (its first `Crash` or `Leave`), if it
    /// ended within the trace.
    pub fn end(&self) -> Option<usize> {
        match (self.crash, self.leave) {
            (Some(c), Some(l)) => Some(c.min(l)),
            (c, l) => c.or(l),
        }
    }

    /// Every delivery of the incarnation, in its order (duplicates included).
    pub fn deliveries(&self) -> impl Iterator<Item = &DeliveryView> {
        self.unconfigured.iter().chain(self.epochs.iter().flat_map(|e| e.deliveries.iter()))
    }

    /// The first delivery of each message, in order (later duplicates dropped, so that one
    /// EVS-1b violation does not cascade into other properties).
    pub fn distinct_deliveries(&self) -> impl Iterator<Item = &DeliveryView> {
        self.deliveries().filter(|d| !d.repeat)
    }
}

/// Per-incarnation histories, ordered by (node, incarnation).
#[derive(Clone, Debug, Default)]
pub struct History<'t> {
    pub incarnations: BTreeMap<Inc, IncarnationHistory<'t>>,
}

impl<'t> History<'t> {
    /// Build the histories of every incarnation of `trace`.
    pub fn new(trace: &'t Trace) -> Self {
        let mut incarnations: FastMap<Inc, IncarnationHistory<'t>> = FastMap::default();
        for (i, e) in trace.events.iter().enumerate() {
            let h = incarnations.entry(e.incarnation_key()).or_insert_with(|| IncarnationHistory {
                node: e.node,
                incarnation: e.incarnation,
                first_event: i,
                last_event: i,
                start: None,
                crash: None,
                leave: None,
                unconfigured: Vec::new(),
                epochs: Vec::new(),
                last_reg: None,
                delivered: FastSet::default(),
            });
            h.last_event = i;
            match &e.kind {
                EventKind::Start => {
                    h.start.get_or_insert(i);
                }
                EventKind::Crash => {
                    h.crash.get_or_insert(i);
                }
                EventKind::Leave => {
                    h.leave.get_or_insert(i);
                }
                EventKind::Config { kind, ring, prev_ring, members, left, joined } => {
                    let config = ConfigView {
                        event: i,
                        kind: *kind,
                        ring: *ring,
                        prev_ring: *prev_ring,
                        prev_reg: h.last_reg,
                        members,
                        left,
                        joined,
                    };
                    if *kind == ConfKind::Regular {
                        h.last_reg = Some(*ring);
                    }
                    h.epochs.push(Epoch { config, deliveries: Vec::new() });
                }
                EventKind::Deliver { msg, slot, guarantee } => {
                    let repeat = !h.delivered.insert(*msg);
                    let d = DeliveryView { event: i, msg: *msg, slot: *slot, guarantee: *guarantee, repeat };
                    match h.epochs.last_mut() {
                        Some(epoch) => epoch.deliveries.push(d),
                        None => h.unconfigured.push(d),
                    }
                }
                _ => {}
            }
        }
        History {
            incarnations: incarnations
                .into_iter()
                .map(|(k, mut h)| {
                    h.delivered = FastSet::default();
                    (k, h)
                })
                .collect(),
        }
    }

    /// The last incarnation of `node` present in the trace.
    pub fn last_incarnation(&self, node: Node) -> Option<&IncarnationHistory<'t>> {
        self.incarnations.range((node, 0)..=(node, u32::MAX)).next_back().map(|(_, h)| h)
    }
}

/// The first valid `Send` of a message.
#[derive(Clone, Copy, Debug)]
pub struct SendAt {
    pub event: usize,
    pub time: u64,
    pub guarantee: Guarantee,
}

/// One `Deliver` event, seen from the message.
#[derive(Clone, Copy, Debug)]
pub struct DeliveryAt {
    pub event: usize,
    pub inc: Inc,
    pub slot: Slot,
    pub guarantee: Guarantee,
}

/// Per-message view of sends and deliveries.
#[derive(Clone, Debug, Default)]
pub struct Messages {
    /// The first `Send` of each message by its own origin incarnation (a `Send` whose id
    /// names another sender is ignored here and reported by TRACE-WF).
    pub sends: FastMap<MsgId, SendAt>,
    /// Every `Deliver` of each message, in trace order.
    pub deliveries: FastMap<MsgId, Vec<DeliveryAt>>,
}

impl Messages {
    /// Build the per-message view of `trace`.
    pub fn new(trace: &Trace) -> Self {
        let mut m = Messages::default();
        for (i, e) in trace.events.iter().enumerate() {
            match &e.kind {
                EventKind::Send { msg, guarantee } if msg.sender() == e.incarnation_key() => {
                    m.sends.entry(*msg).or_insert(SendAt { event: i, time: e.time, guarantee: *guarantee });
                }
                EventKind::Deliver { msg, slot, guarantee } => {
                    m.deliveries.entry(*msg).or_default().push(DeliveryAt {
                        event: i,
                        inc: e.incarnation_key(),
                        slot: *slot,
                        guarantee: *guarantee,
                    });
                }
                _ => {}
            }
        }
        m
    }

    /// The first delivery of `msg` anywhere, if any.
    pub fn first_delivery(&self, msg: &MsgId) -> Option<&DeliveryAt> {
        self.deliveries.get(msg).and_then(|d| d.first())
    }
}

/// Lazily computed views of one trace.
#[derive(Debug)]
pub struct Index<'t> {
    trace: &'t Trace,
    history: OnceCell<History<'t>>,
    messages: OnceCell<Messages>,
    ring_messages: OnceCell<FastMap<Ring, Vec<(u32, MsgId)>>>,
    slot_predecessors: OnceCell<FastMap<Slot, FastMap<MsgId, Vec<MsgId>>>>,
    cpg: OnceCell<CpgIndex<'t>>,
    cpg_segments: OnceCell<Vec<Segment<'t>>>,
}

impl<'t> Index<'t> {
    /// An index over `trace`; nothing is computed yet.
    pub fn new(trace: &'t Trace) -> Self {
        Index {
            trace,
            history: OnceCell::new(),
            messages: OnceCell::new(),
            ring_messages: OnceCell::new(),
            slot_predecessors: OnceCell::new(),
            cpg: OnceCell::new(),
            cpg_segments: OnceCell::new(),
        }
    }

    /// The CPG views: connections, sessions, multicasts (see [`crate::cpg_index`]).
    pub fn cpg(&self) -> &CpgIndex<'t> {
        self.cpg.get_or_init(|| CpgIndex::new(self))
    }

    /// The sessions cut along rings and activations (see [`crate::cpg_index::segments`]).
    pub fn cpg_segments(&self) -> &[Segment<'t>] {
        self.cpg_segments.get_or_init(|| segments(self, self.cpg()))
    }

    /// The indexed trace.
    pub fn trace(&self) -> &'t Trace {
        self.trace
    }

    /// Per-incarnation histories.
    pub fn history(&self) -> &History<'t> {
        self.history.get_or_init(|| History::new(self.trace))
    }

    /// Per-message sends and deliveries.
    pub fn messages(&self) -> &Messages {
        self.messages.get_or_init(|| Messages::new(self.trace))
    }

    /// For every ring r, the distinct (seq, message) pairs that some node delivered with
    /// slot ring r, sorted by (seq, message). This is "the messages of r" as far as the
    /// trace can tell.
    pub fn ring_messages(&self) -> &FastMap<Ring, Vec<(u32, MsgId)>> {
        self.ring_messages.get_or_init(|| {
            let mut rings: FastMap<Ring, Vec<(u32, MsgId)>> = FastMap::default();
            for (msg, deliveries) in &self.messages().deliveries {
                let slots: BTreeSet<Slot> = deliveries.iter().map(|d| d.slot).collect();
                for slot in slots {
                    rings.entry(slot.ring).or_default().push((slot.seq, *msg));
                }
            }
            for list in rings.values_mut() {
                list.sort_unstable();
                list.dedup();
            }
            rings
        })
    }

    /// For slots that carry several messages (packing): for each message m of the slot,
    /// the messages of the same slot that some incarnation delivered before m. Sorted.
    pub fn slot_predecessors(&self) -> &FastMap<Slot, FastMap<MsgId, Vec<MsgId>>> {
        self.slot_predecessors.get_or_init(|| {
            let mut packed: FastSet<Slot> = FastSet::default();
            for (ring, list) in self.ring_messages() {
                for pair in list.windows(2) {
                    if pair[0].0 == pair[1].0 {
                        packed.insert(Slot::new(*ring, pair[0].0));
                    }
                }
            }
            let mut preds: FastMap<Slot, FastMap<MsgId, Vec<MsgId>>> = FastMap::default();
            if packed.is_empty() {
                return FastMap::default();
            }
            for h in self.history().incarnations.values() {
                let mut local: FastMap<Slot, Vec<MsgId>> = FastMap::default();
                for d in h.distinct_deliveries() {
                    if packed.contains(&d.slot) {
                        local.entry(d.slot).or_default().push(d.msg);
                    }
                }
                for (slot, order) in local {
                    let per_slot = preds.entry(slot).or_default();
                    for (k, msg) in order.iter().enumerate() {
                        per_slot.entry(*msg).or_default().extend(order[..k].iter().copied());
                    }
                }
            }
            preds
                .into_iter()
                .map(|(slot, per_slot)| {
                    let per_slot =
                        per_slot.into_iter().map(|(m, set)| (m, set.into_iter().collect())).collect();
                    (slot, per_slot)
                })
                .collect()
        })
    }

    /// The messages sharing `slot` with `msg` that some incarnation delivered before `msg`.
    pub fn same_slot_predecessors(&self, slot: Slot, msg: MsgId) -> &[MsgId] {
        self.slot_predecessors().get(&slot).and_then(|m| m.get(&msg)).map_or(&[], |v| v.as_slice())
    }
}

/// The protocol state of every incarnation as the trace unfolds, from its `State` events.
///
/// Walk the trace in order, ask [`ProtoStates::state`] about an event, then
/// [`ProtoStates::observe`] it. Before an incarnation's first `State` event its state is that
/// event's `from` (the state the node was in when the change happened); an incarnation with
/// no `State` event at all has an unknown state (None), and the checkers that need it skip.
#[derive(Clone, Debug, Default)]
pub struct ProtoStates {
    first_from: FastMap<Inc, ProtoState>,
    current: FastMap<Inc, (ProtoState, usize)>,
}

impl ProtoStates {
    /// A tracker positioned before the first event of `trace`.
    pub fn new(trace: &Trace) -> Self {
        let mut first_from: FastMap<Inc, ProtoState> = FastMap::default();
        for e in &trace.events {
            if let EventKind::State { from, .. } = &e.kind {
                first_from.entry(e.incarnation_key()).or_insert(*from);
            }
        }
        ProtoStates { first_from, current: FastMap::default() }
    }

    /// True when the trace has no `State` event at all (nothing to judge).
    pub fn is_empty(&self) -> bool {
        self.first_from.is_empty()
    }

    /// The state of `inc` at the current point, and the index of the `State` event that set
    /// it (None before its first `State` event).
    pub fn state(&self, inc: Inc) -> Option<(ProtoState, Option<usize>)> {
        match self.current.get(&inc) {
            Some(&(s, i)) => Some((s, Some(i))),
            None => self.first_from.get(&inc).map(|&s| (s, None)),
        }
    }

    /// Move past event `i`, `e`.
    pub fn observe(&mut self, i: usize, e: &Event) {
        if let EventKind::State { to, .. } = &e.kind {
            self.current.insert(e.incarnation_key(), (*to, i));
        }
    }
}

/// `members` as a set.
pub fn node_set(members: &[Node]) -> BTreeSet<Node> {
    members.iter().copied().collect()
}

/// "node 3#1": node 3, incarnation 1.
pub fn fmt_inc(inc: Inc) -> String {
    format!("node {}#{}", inc.0, inc.1)
}
