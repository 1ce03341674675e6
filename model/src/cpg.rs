//! Closed process groups in the model: client connections on every machine, and how what
//! they do is recorded in the spec's CPG vocabulary.
//!
//! With [`Settings::cpg`](crate::Settings::cpg) set, every machine runs a
//! `totem_core::cpg::CpgNode` (the CPG service on top of the node) and its application is a
//! set of client connections. The actions, each within its budget ([`CpgBudgets`]):
//!
//! - **join**: a new connection joins a group as a fresh process, or a connection whose
//!   leave completed joins again (with a fresh pid);
//! - **leave**: a joined connection leaves its group;
//! - **multicast**: a connection that is joined or joining multicasts an Agreed or Safe
//!   message (the `msgs` budget; a raw Totem submit is not offered in CPG mode);
//! - **exit**: a connection in a group closes without leaving (its process exited): the
//!   service announces a PROCDOWN leave.
//!
//! A crash ends every connection of the machine with its incarnation (nothing is recorded
//! for them: the spec ends a connection with its incarnation). Requests the service would
//! refuse (a multicast during a synchronization, a second join on a joined connection, ...)
//! are not explored: a refused request changes nothing in the core, and the refusal rules
//! are exercised by the simulator's clients. After every output batch that ends with a
//! view change, the connection takes a membership snapshot (judged by CPG-14).
//!
//! # Message identities (as in the simulator, `sim/src/cpg.rs`)
//!
//! One counter per machine incarnation numbers every multicast and every Totem message the
//! clients cause, so the `Send` and `CpgMcast` sequences are both increasing (TRACE-WF):
//! - a multicast's payload is the 16 bytes of its [`MsgId`] (`mapping::payload`); the
//!   Totem message that carries it is recorded (`Send` at the request, `Deliver` at every
//!   node) under the same id;
//! - a join, a leave and the leave an exit announces get the next counter when the request
//!   is accepted. The Totem message carries no id, so the [`Ledger`] maps it back by its
//!   origin and content ([`ReqKey`]). Every join takes a fresh pid (pids are unique per
//!   machine across incarnations), and a process asks to leave at most once, so a content
//!   never repeats and a map is unambiguous (the simulator, whose clients reuse pids, also
//!   needs the delivery slot);
//! - joinlists (the synchronization messages) are not recorded as Totem `Send` or `Deliver`
//!   events: they travel in the sync class, which overtakes the application messages held
//!   during the round, and EVS-5 and TOT-2 are statements about the application's send
//!   order.

use crate::core::Core;
use crate::mapping;
use crate::model::{Action, Envelope, Machine, ModelState, NOW, TotemModel, index};
use spec::trace::{CpgReason, CpgResult, EventKind, MsgId, Slot};
use std::collections::BTreeMap;
use std::sync::Arc;
use totem_core::cpg::{ConnFlags, ConnId, CpgNode, Event, EventKind as CpgEventKind, Process, Reason};
use totem_core::node::Delivery;
use totem_core::{Guarantee, NodeId};

/// The groups clients join, in the order `--cpg-groups` takes them: one name, then one
/// with the same byte and a trailing NUL, then a two-byte name (distinct names must be
/// distinct groups, CPG-15).
pub const GROUPS: [&[u8]; 3] = [b"g", b"g\0", b"gg"];

/// The CPG workload's budgets (multicasts count against `Settings::msgs`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpgBudgets {
    /// Processes already in group "g" at the start: one per entry, on that node (a node
    /// listed twice runs two). They join in a fault-free prefix of the initial state (see
    /// [`TotemModel::settle_members`]), not against the `joins` budget.
    pub members: Vec<NodeId>,
    /// Joins (a new connection, or a re-join after a completed leave), all nodes together.
    pub joins: u32,
    /// Leaves of joined connections.
    pub leaves: u32,
    /// Exits (disconnects) of connections in a group.
    pub exits: u32,
    /// How many of [`GROUPS`] clients may join (1 to 3).
    pub groups: usize,
}

impl Default for CpgBudgets {
    fn default() -> Self {
        CpgBudgets { members: Vec::new(), joins: 1, leaves: 0, exits: 0, groups: 1 }
    }
}

/// Where a client believes its connection stands (it learns from answers and callbacks).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClientState {
    /// Its leave completed (its own LEAVE view change arrived).
    Unjoined,
    /// Join answered Ok, its own JOIN view change not seen yet.
    Joining,
    Joined,
    /// Leave answered Ok, its own LEAVE view change not seen yet.
    Leaving,
}

/// One client connection of a machine's current incarnation.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Client {
    pub conn: ConnId,
    pub pid: u32,
    /// Index into [`GROUPS`] of the group it is in (or joining, leaving, or last left).
    pub group: usize,
    pub state: ClientState,
}

impl Client {
    /// The service accepts its multicasts (outside synchronizations).
    pub fn sends(&self) -> bool {
        matches!(self.state, ClientState::Joining | ClientState::Joined)
    }
}

/// What identifies a join or leave message among those the model's clients caused: its
/// origin node and its content.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct ReqKey {
    pub origin: u32,
    /// true: join; false: leave.
    pub join: bool,
    pub group: Vec<u8>,
    pub pid: u32,
    /// The wire reason code (1 join, 2 leave, 5 procdown).
    pub reason: u8,
}

/// The ids of the join and leave messages clients caused (see the module documentation).
pub type Ledger = BTreeMap<ReqKey, MsgId>;

const KIND_JOIN: u8 = 1;
const KIND_LEAVE: u8 = 2;
const KIND_MCAST: u8 = 3;
const KIND_JOINLIST: u8 = 4;
const REASON_JOIN: u8 = 1;
const REASON_LEAVE: u8 = 2;
const REASON_PROCDOWN: u8 = 5;

/// A delivered Totem message of the CPG service, decoded by the model itself (the layout
/// documented in `totem_core::cpg`'s `msg` module; the recorder does not trust the core's
/// decoder).
#[derive(Debug, PartialEq, Eq)]
pub enum Wire<'a> {
    Request(ReqKey),
    Mcast { payload: &'a [u8] },
    Joinlist,
}

/// Decode the CPG message `bytes` that `origin` sent; `None` if it is not one.
pub fn decode(origin: u32, bytes: &[u8]) -> Option<Wire<'_>> {
    let (&kind, body) = bytes.split_first()?;
    if kind == KIND_JOINLIST {
        return Some(Wire::Joinlist);
    }
    let (&len, body) = body.split_first()?;
    let name_end = usize::from(len);
    let group = body.get(..name_end)?;
    let pid = u32::from_le_bytes(body.get(name_end..name_end + 4)?.try_into().ok()?);
    let tail = body.get(name_end + 4..)?;
    match (kind, tail) {
        (KIND_MCAST, payload) => Some(Wire::Mcast { payload }),
        (KIND_JOIN | KIND_LEAVE, &[reason]) => Some(Wire::Request(ReqKey {
            origin,
            join: kind == KIND_JOIN,
            group: group.to_vec(),
            pid,
            reason,
        })),
        _ => None,
    }
}

pub fn spec_reason(r: Reason) -> CpgReason {
    match r {
        Reason::Join => CpgReason::Join,
        Reason::Leave => CpgReason::Leave,
        Reason::NodeDown => CpgReason::NodeDown,
        Reason::NodeUp => CpgReason::NodeUp,
        Reason::ProcDown => CpgReason::ProcDown,
    }
}

pub fn spec_process(p: Process) -> spec::trace::Process {
    spec::trace::Process { node: p.node.0, pid: p.pid }
}

fn entries(v: &[(Process, Reason)]) -> Vec<(spec::trace::Process, CpgReason)> {
    v.iter().map(|&(p, r)| (spec_process(p), spec_reason(r))).collect()
}

/// The next message id of machine `m`'s incarnation.
fn next_id(m: &mut Machine) -> MsgId {
    let msg = MsgId::new(m.id.0, m.incarnation, m.next_counter);
    m.next_counter += 1;
    msg
}

type Log<'a, 'b> = &'a mut Option<&'b mut Vec<String>>;

/// The longest prefix [`TotemModel::settle_members`] runs.
pub const SETTLE_STEPS: usize = 2000;

/// The CPG service of a running machine's core, made unique to this state (copy on write).
fn service(core: &mut Option<Arc<Core>>) -> Option<&mut CpgNode> {
    Arc::make_mut(core.as_mut()?).cpg_mut()
}

impl TotemModel {
    /// `Some` if CPG is on and `used` is below the budget `budget` picks.
    fn within(&self, used: u32, budget: impl Fn(&CpgBudgets) -> u32) -> Option<()> {
        (used < budget(self.settings.cpg.as_ref()?)).then_some(())
    }

    /// The CPG actions enabled in `s` (a request the service then refuses, such as a
    /// multicast during a synchronization, yields no state).
    pub(crate) fn cpg_actions(&self, s: &ModelState, b: &CpgBudgets, actions: &mut Vec<Action>) {
        let groups = b.groups.clamp(1, GROUPS.len());
        for m in s.machines.iter().filter(|m| m.is_up()) {
            if s.used.joins < b.joins {
                for g in 0..groups {
                    actions.push(Action::CpgJoin(m.id, None, g));
                    for c in m.clients.iter().filter(|c| c.state == ClientState::Unjoined) {
                        actions.push(Action::CpgJoin(m.id, Some(c.conn), g));
                    }
                }
            }
            for c in &m.clients {
                if c.state == ClientState::Joined && s.used.leaves < b.leaves {
                    actions.push(Action::CpgLeave(m.id, c.conn));
                }
                if c.sends() && s.used.msgs < self.settings.msgs {
                    for &g in self.settings.guarantees.list() {
                        actions.push(Action::CpgMcast(m.id, c.conn, g));
                    }
                }
                if c.state != ClientState::Unjoined && s.used.exits < b.exits {
                    actions.push(Action::CpgExit(m.id, c.conn));
                }
            }
        }
    }

    /// A new connection (`conn` None) or one whose leave completed joins `GROUPS[group]`
    /// with a fresh pid; against the `joins` budget if `budgeted` (not in the prefix of
    /// [`TotemModel::settle_members`]).
    pub(crate) fn cpg_join(
        &self,
        s: &mut ModelState,
        id: NodeId,
        (conn, group): (Option<ConnId>, usize),
        budgeted: bool,
        log: Log<'_, '_>,
    ) -> Option<()> {
        if budgeted {
            self.within(s.used.joins, |b| b.joins)?;
            s.used.joins += 1;
        }
        let name = *GROUPS.get(group)?;
        let i = index(id);
        let m = s.machines.get_mut(i)?;
        let core = service(&mut m.core)?;
        let conn = match conn {
            Some(c) => {
                m.clients.iter().find(|x| x.conn == c && x.state == ClientState::Unjoined)?;
                c
            }
            None => core.connect(ConnFlags::default()),
        };
        let pid = m.next_pid;
        let mut out = Vec::new();
        core.join(NOW, conn, name, pid, &mut out).ok()?;
        m.next_pid += 1;
        let client = Client { conn, pid, group, state: ClientState::Joining };
        match m.clients.iter_mut().find(|x| x.conn == conn) {
            Some(x) => *x = client,
            None => m.clients.push(client),
        }
        let msg = next_id(m);
        let key = ReqKey { origin: id.0, join: true, group: name.to_vec(), pid, reason: REASON_JOIN };
        Arc::make_mut(&mut s.ledger).insert(key, msg);
        let join = EventKind::CpgJoin { conn: conn.0, group: name.to_vec(), pid, result: CpgResult::Ok };
        self.record(s, i, join, log);
        self.record(s, i, EventKind::Send { msg, guarantee: spec::trace::Guarantee::Agreed }, log);
        self.apply(s, i, out, log);
        Some(())
    }

    /// The fault-free prefix of a model with [`CpgBudgets::members`]: each listed node's
    /// new connection joins "g", then packets are delivered in a fixed order (messages
    /// before tokens, each kind smallest first) until every client has seen its own join, every node's view of
    /// "g" holds every member, and no synchronization runs (at most [`SETTLE_STEPS`]
    /// steps; it also stops when nothing is in flight, see [`TotemModel::settled`]). The prefix's events stay in the trace (the properties judge them too); the
    /// budgets and the `sometimes` witnesses start from the state it ends in. With
    /// [`Start::Partitioned`](crate::Start::Partitioned) the partitions hold during the
    /// prefix: packets between them are lost (the partition heals at the initial state).
    pub(crate) fn settle_members(&self, s: &mut ModelState) {
        let Some(b) = &self.settings.cpg else { return };
        if b.members.is_empty() {
            return;
        }
        for &id in &b.members {
            let _ = self.cpg_join(s, id, (None, 0), false, &mut None);
        }
        let mut steps = 0;
        while !self.settled(s) && steps < SETTLE_STEPS {
            // A partitioned start stays partitioned during the prefix: what crosses is lost.
            s.net.retain(|e, _| self.same_start_ring(e.from, e.to));
            // Messages before tokens, so that nothing needs retransmitting.
            let token = |e: &Envelope| matches!(e.message(), Some(totem_core::Message::Token(_)));
            let next = s.net.keys().find(|e| !token(e)).or_else(|| s.net.keys().next());
            let Some(env) = next.cloned() else { break };
            match self.step(s, &Action::Deliver(env), None) {
                Some(next) => *s = next,
                None => break,
            }
            steps += 1;
        }
        s.used = Default::default();
        s.witnesses = Default::default();
    }

    /// Every client joined, every node's view of "g" complete, no synchronization running.
    pub fn settled(&self, s: &ModelState) -> bool {
        let Some(b) = &self.settings.cpg else { return true };
        let all: Vec<Process> = s
            .machines
            .iter()
            .flat_map(|m| m.clients.iter().map(|c| Process { node: m.id, pid: c.pid }))
            .collect();
        s.machines.iter().all(|m| {
            let Some(cpg) = m.core.as_deref().and_then(Core::cpg) else { return false };
            let view = cpg.membership(GROUPS[0]).unwrap_or_default();
            !cpg.is_syncing()
                && m.clients.iter().all(|c| c.state == ClientState::Joined)
                && view.len() == all.len()
                && all.iter().all(|p| view.contains(p))
        }) && all.len() == b.members.len()
    }

    /// A joined connection leaves its group (`exit` false), or a connection in a group
    /// closes without leaving (`exit` true: its process ended); the service then announces
    /// PROCDOWN if the process is (or is becoming) a member.
    pub(crate) fn cpg_depart(
        &self,
        s: &mut ModelState,
        id: NodeId,
        conn: ConnId,
        exit: bool,
        log: Log<'_, '_>,
    ) -> Option<()> {
        if exit {
            self.within(s.used.exits, |b| b.exits)?;
        } else {
            self.within(s.used.leaves, |b| b.leaves)?;
        }
        let i = index(id);
        let m = s.machines.get_mut(i)?;
        let core = service(&mut m.core)?;
        let k = m.clients.iter().position(|c| {
            c.conn == conn
                && if exit { c.state != ClientState::Unjoined } else { c.state == ClientState::Joined }
        })?;
        let Client { pid, group, .. } = m.clients[k];
        let name = *GROUPS.get(group)?;
        let mut out = Vec::new();
        let (request, reason) = if exit {
            let before = core.stats().messages_sent;
            core.disconnect(NOW, conn, &mut out);
            m.clients.remove(k);
            s.used.exits += 1;
            let announced = core.stats().messages_sent > before;
            (EventKind::CpgExit { conn: conn.0 }, announced.then_some(REASON_PROCDOWN))
        } else {
            core.leave(NOW, conn, name, &mut out).ok()?;
            m.clients[k].state = ClientState::Leaving;
            s.used.leaves += 1;
            let request = EventKind::CpgLeave { conn: conn.0, group: name.to_vec(), result: CpgResult::Ok };
            (request, Some(REASON_LEAVE))
        };
        self.record(s, i, request, log);
        if let Some(reason) = reason {
            let msg = next_id(&mut s.machines[i]);
            let key = ReqKey { origin: id.0, join: false, group: name.to_vec(), pid, reason };
            Arc::make_mut(&mut s.ledger).insert(key, msg);
            self.record(s, i, EventKind::Send { msg, guarantee: spec::trace::Guarantee::Agreed }, log);
        }
        self.apply(s, i, out, log);
        Some(())
    }

    /// A connection that is joined or joining multicasts a new message (the `msgs` budget).
    pub(crate) fn cpg_mcast(
        &self,
        s: &mut ModelState,
        id: NodeId,
        conn: ConnId,
        guarantee: Guarantee,
        log: Log<'_, '_>,
    ) -> Option<()> {
        if s.used.msgs >= self.settings.msgs {
            return None;
        }
        let i = index(id);
        let m = s.machines.get_mut(i)?;
        let core = service(&mut m.core)?;
        let c = m.clients.iter().find(|c| c.conn == conn && c.sends())?;
        let name = *GROUPS.get(c.group)?;
        let msg = MsgId::new(id.0, m.incarnation, m.next_counter);
        let mut out = Vec::new();
        core.mcast(NOW, conn, guarantee, &mapping::payload(msg), &mut out).ok()?;
        m.next_counter += 1;
        s.used.msgs += 1;
        let g = mapping::guarantee(guarantee);
        let mcast = EventKind::CpgMcast {
            conn: conn.0,
            group: name.to_vec(),
            msg,
            guarantee: g,
            result: CpgResult::Ok,
        };
        self.record(s, i, mcast, log);
        self.record(s, i, EventKind::Send { msg, guarantee: g }, log);
        self.apply(s, i, out, log);
        Some(())
    }

    /// A Totem delivery at a CPG machine, recorded under the id of the request that caused
    /// it; joinlists are not recorded. A message the ledger cannot explain is recorded as
    /// one nobody sent (EVS-1a reports it).
    pub(crate) fn deliver_cpg(&self, s: &mut ModelState, i: usize, d: &Delivery, log: Log<'_, '_>) {
        let msg = match decode(d.origin.0, &d.payload) {
            Some(Wire::Joinlist) => return,
            Some(Wire::Mcast { payload }) => mapping::msg_id(payload),
            Some(Wire::Request(key)) => s.ledger.get(&key).copied(),
            None => None,
        };
        let slot = Slot { ring: mapping::ring(d.ring_id), seq: d.seq.0 };
        let kind = EventKind::Deliver {
            msg: msg.unwrap_or(mapping::CORRUPT),
            slot,
            guarantee: mapping::guarantee(d.guarantee),
        };
        self.record(s, i, kind, log);
    }

    /// Record a callback of machine `i`'s service and update the client's idea of its
    /// connection. Returns the connection and group of a view change.
    pub(crate) fn cpg_event(
        &self,
        s: &mut ModelState,
        i: usize,
        e: Event,
        log: Log<'_, '_>,
    ) -> Option<(ConnId, Vec<u8>)> {
        let node = s.machines.get(i)?.id;
        let conn = e.conn;
        match e.kind {
            CpgEventKind::Deliver { group, sender, payload, .. } => {
                let msg = mapping::msg_id(&payload).unwrap_or(mapping::CORRUPT);
                let group = group.as_bytes().to_vec();
                self.record(
                    s,
                    i,
                    EventKind::CpgDeliver { conn: conn.0, group, sender: spec_process(sender), msg },
                    log,
                );
                None
            }
            CpgEventKind::Confchg { group, members, left, joined } => {
                if let Some(c) = s.machines[i].clients.iter_mut().find(|c| c.conn == conn) {
                    let me = Process { node, pid: c.pid };
                    if left.iter().any(|(p, _)| *p == me) {
                        c.state = ClientState::Unjoined;
                    } else if c.state == ClientState::Joining && joined.iter().any(|(p, _)| *p == me) {
                        c.state = ClientState::Joined;
                    }
                }
                let group = group.as_bytes().to_vec();
                let kind = EventKind::CpgConfchg {
                    conn: conn.0,
                    group: group.clone(),
                    members: members.into_iter().map(spec_process).collect(),
                    left: entries(&left),
                    joined: entries(&joined),
                };
                self.record(s, i, kind, log);
                Some((conn, group))
            }
            CpgEventKind::TotemConfchg { ring_id, members, initial } => {
                // The initial one of DELIVER_INITIAL_TOTEM_CONF is not recorded (spec::trace);
                // the model's connections do not ask for it.
                if !initial {
                    let kind = EventKind::CpgTotemConfchg {
                        conn: conn.0,
                        ring: mapping::ring(ring_id),
                        members: mapping::ids(&members),
                    };
                    self.record(s, i, kind, log);
                }
                None
            }
        }
    }

    /// The client of `conn` takes a membership snapshot of `group` (after an output batch
    /// that ended with its view change, so the node's view is the one it last saw).
    pub(crate) fn snapshot(
        &self,
        s: &mut ModelState,
        i: usize,
        conn: ConnId,
        group: Vec<u8>,
        log: Log<'_, '_>,
    ) {
        let members = s
            .machines
            .get(i)
            .and_then(|m| m.core.as_deref())
            .and_then(Core::cpg)
            .map(|c| c.membership(&group));
        let Some(Ok(members)) = members else { return };
        let members = members.into_iter().map(spec_process).collect();
        self.record(s, i, EventKind::CpgMembership { conn: conn.0, group, members }, log);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: the model's decoder reads the documented layout and refuses anything else.
    #[test]
    fn decode_matches_the_documented_layout() {
        let join = [1, 2, b'a', b'b', 7, 0, 0, 0, 1];
        let key = ReqKey { origin: 3, join: true, group: b"ab".to_vec(), pid: 7, reason: 1 };
        assert_eq!(decode(3, &join), Some(Wire::Request(key)));
        let leave = [2, 0, 9, 0, 0, 0, 5];
        let key = ReqKey { origin: 1, join: false, group: Vec::new(), pid: 9, reason: 5 };
        assert_eq!(decode(1, &leave), Some(Wire::Request(key)));
        assert_eq!(decode(1, &[3, 1, b'g', 1, 0, 0, 0, 42, 43]), Some(Wire::Mcast { payload: &[42, 43] }));
        assert_eq!(decode(1, &[4, 0, 0]), Some(Wire::Joinlist));
        for bad in [
            &[][..],
            &[1],
            &[1, 5, b'a'],
            &[2, 0, 9, 0, 0, 0],
            &[9, 0, 0, 0, 0, 0],
            &[1, 0, 1, 0, 0, 0, 1, 1],
        ] {
            assert_eq!(decode(1, bad), None, "{bad:?}");
        }
    }
}
