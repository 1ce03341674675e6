//! Simulated CPG clients: what the applications on top of a [`CpgNode`] do, how their
//! requests and callbacks are recorded as the spec's `Cpg*` events, and how the Totem
//! messages the service sends are identified for the EVS checkers.
//!
//! # Clients
//!
//! Every node runs up to [`CpgWorkload::max_conns`] client connections. On each application
//! tick of a running node, connections come and go and a few of them take one step, drawn
//! from the run's seed: a connection that is in no group joins one of a few groups (names of
//! different lengths, one a prefix of another, one with a trailing NUL, one of the maximum
//! 128 bytes); a joined one multicasts (Agreed or Safe, mostly small payloads, some large
//! ones up to [`CpgWorkload::large_max`], rarely 1 MiB), leaves, or exits; now and then a
//! client makes a request the service must refuse (join twice, leave while joining, a
//! 129-byte name, mcast while not joined). A multicast refused with `TryAgain` is retried at
//! the client's next step, as a new message (a new [`MsgId`]). An exit is a disconnect
//! (recorded as `CpgExit`); the node's later connections are new connections. Crashes and
//! restarts kill every connection of the node with its incarnation (nothing is recorded for
//! them: the spec ends a connection with its incarnation). Clients of a paused node do
//! nothing until it resumes.
//!
//! *Churn* (connect, join, leave, exit, refused requests) can be switched off while
//! multicasts go on: the liveness phase does so, so that the groups settle and CPG-11 can
//! compare every view with the ground truth.
//!
//! Pids: a connection has a pid (a fresh one, or with some probability the pid of another
//! connection of its node: one process with two handles); a join after a leave keeps the
//! pid or takes a fresh one. Pids are unique per node across incarnations (a restarted node
//! runs new processes).
//!
//! # Message identities
//!
//! One counter per node incarnation numbers every `CpgMcast` attempt and every Totem
//! message the clients cause ([`crate::world::SimNode::counter`]), so the `Send` and
//! `CpgMcast` sequences of TRACE-WF are both increasing:
//! - a multicast's payload starts with its [`MsgId`] ([`crate::payload`]); the Totem message
//!   that carries it is recorded (`Send` at the request, `Deliver` at every node) under the
//!   same id, which CPG-9 relies on;
//! - a join, a leave and the leave a disconnect announces (PROCDOWN) get the next counter
//!   when the request is accepted. The Totem message carries no id, so the [`Ledger`] maps
//!   it back: the message is identified by its origin node and its content (kind, group,
//!   pid, reason), and repeated contents by their slot. That is unambiguous as long as, per
//!   node and (group, pid), at most one such message is not yet delivered at its origin: the
//!   service itself refuses a join while the process's previous leave is undelivered, and a
//!   client never joins with a (group, pid) the ledger still has in flight (it takes a fresh
//!   pid instead) unless the service is bound to refuse it;
//! - joinlists (the service's synchronization messages) are not recorded as Totem `Send` or
//!   `Deliver` events at all: they travel in the sync class, which deliberately overtakes the
//!   application messages held during the round, and EVS-5's sender order (and TOT-2's
//!   FIFO) are statements about the application's send order, which a message the
//!   application never sent must not be held to.

use crate::payload;
use crate::rng::Rng;
use serde::{Deserialize, Serialize};
use spec::trace::{CpgReason, CpgResult, MsgId, Slot};
use std::collections::HashMap;
use totem_core::Guarantee;
use totem_core::cpg::{ConnId, CpgError, GROUP_NAME_MAX, Reason};

/// The simulated CPG applications of one run (see the module documentation).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CpgWorkload {
    /// Connections per node, at most.
    pub max_conns: usize,
    /// The groups clients join.
    pub groups: Vec<Vec<u8>>,
    /// Per tick: chance that a new connection opens (one always does when there is none).
    pub p_connect: f64,
    /// Per step of a connection in no group: chance that it joins.
    pub p_join: f64,
    /// Per step of a joined connection: chance that it leaves.
    pub p_leave: f64,
    /// Per step: chance that the connection exits (disconnects).
    pub p_exit: f64,
    /// Per step: chance of a request the service must refuse.
    pub p_invalid: f64,
    /// Chance that a new connection shares the pid of another connection of its node, and
    /// that a re-join keeps the connection's pid.
    pub p_pid_reuse: f64,
    /// Chance that a connection asks for the initial totem confchg
    /// (`CPG_MODEL_V1_DELIVER_INITIAL_TOTEM_CONF`; those are not recorded, see the spec).
    pub p_initial_totem_conf: f64,
    /// Chance that a client takes a membership snapshot right after a confchg.
    pub p_snapshot: f64,
    pub safe_fraction: f64,
    /// Multicast sizes: mostly up to `small_max`, 20 % up to `medium_max`, a fraction
    /// `large_fraction` up to `large_max`, and a fraction `huge_fraction` of exactly 1 MiB.
    pub small_max: usize,
    pub medium_max: usize,
    pub large_max: usize,
    pub large_fraction: f64,
    pub huge_fraction: f64,
}

/// The group names of the default workload: lengths 1, 2 and 3, a prefix pair, equal bytes
/// but a trailing NUL, and a name of the maximum 128 bytes.
pub fn default_groups() -> Vec<Vec<u8>> {
    vec![b"g".to_vec(), b"gg".to_vec(), b"g\0".to_vec(), b"grp".to_vec(), vec![b'L'; GROUP_NAME_MAX]]
}

impl CpgWorkload {
    /// A moderate workload with every behaviour on, for scenarios.
    pub fn standard() -> CpgWorkload {
        CpgWorkload {
            max_conns: 3,
            groups: default_groups(),
            p_connect: 0.1,
            p_join: 0.5,
            p_leave: 0.02,
            p_exit: 0.01,
            p_invalid: 0.02,
            p_pid_reuse: 0.3,
            p_initial_totem_conf: 0.3,
            p_snapshot: 0.3,
            safe_fraction: 0.2,
            small_max: 256,
            medium_max: 8 * 1024,
            large_max: 200 * 1024,
            large_fraction: 0.005,
            huge_fraction: 0.0,
        }
    }

    /// No churn at all: scripted joins ([`crate::Action::CpgJoin`]) only, small multicasts.
    pub fn scripted() -> CpgWorkload {
        CpgWorkload {
            max_conns: 0,
            p_connect: 0.0,
            p_join: 0.0,
            p_leave: 0.0,
            p_exit: 0.0,
            p_invalid: 0.0,
            large_fraction: 0.0,
            ..CpgWorkload::standard()
        }
    }

    /// Draw a run's client behaviour (swarm style: rates vary per seed).
    pub fn draw(rng: &mut Rng, message_max: usize) -> CpgWorkload {
        let churn = *rng.pick(&[0.2, 1.0, 3.0]).unwrap_or(&1.0);
        let large_max = (200 * 1024).min(message_max.max(payload::HEADER_LEN));
        CpgWorkload {
            max_conns: rng.range(1, 4) as usize,
            groups: default_groups(),
            p_connect: 0.2 * churn,
            p_join: (0.3 * churn).min(1.0),
            p_leave: 0.02 * churn,
            p_exit: 0.01 * churn,
            p_invalid: if rng.chance(0.5) { 0.0 } else { 0.02 },
            p_pid_reuse: if rng.chance(0.5) { 0.0 } else { 0.4 },
            p_initial_totem_conf: 0.3,
            p_snapshot: *rng.pick(&[0.0, 0.3, 1.0]).unwrap_or(&0.3),
            safe_fraction: *rng.pick(&[0.0, 0.2, 0.5, 1.0]).unwrap_or(&0.0),
            small_max: 256,
            medium_max: 8 * 1024,
            large_max,
            large_fraction: if rng.chance(0.5) { 0.0 } else { 0.005 },
            huge_fraction: if message_max >= totem_core::cpg::CPG_MESSAGE_MAX && rng.chance(0.2) {
                0.0005
            } else {
                0.0
            },
        }
    }

    /// A multicast size.
    pub fn draw_size(&self, rng: &mut Rng) -> usize {
        let u = rng.unit();
        if u < self.huge_fraction {
            return totem_core::cpg::CPG_MESSAGE_MAX;
        }
        let (lo, hi) = if u < self.huge_fraction + self.large_fraction {
            (self.medium_max, self.large_max)
        } else if u < self.huge_fraction + self.large_fraction + 0.2 {
            (self.small_max, self.medium_max)
        } else {
            (payload::HEADER_LEN, self.small_max)
        };
        rng.range(lo as u64, hi.max(lo) as u64) as usize
    }
}

/// Where a client believes its connection stands (it learns from answers and callbacks).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientState {
    Unjoined,
    /// Join answered Ok, its own JOIN confchg not seen yet.
    Joining,
    Joined,
    /// Leave answered Ok, its own LEAVE confchg not seen yet.
    Leaving,
}

/// One simulated client connection.
#[derive(Clone, Debug)]
pub struct Client {
    pub conn: ConnId,
    pub pid: u32,
    pub state: ClientState,
    /// The group it is in (or joining or leaving), else the last one it was in.
    pub group: Option<Vec<u8>>,
    /// A multicast refused with TryAgain: its size and guarantee, sent again (as a new
    /// message) at the client's next step.
    pub retry: Option<(usize, Guarantee)>,
}

impl Client {
    pub fn new(conn: ConnId, pid: u32) -> Client {
        Client { conn, pid, state: ClientState::Unjoined, group: None, retry: None }
    }

    /// In a group, or on the way in (the service accepts its multicasts).
    pub fn sends(&self) -> bool {
        matches!(self.state, ClientState::Joining | ClientState::Joined)
    }
}

/// A CPG message as it travels inside a Totem message (the layout documented in
/// `totem_core::cpg`'s `msg` module, decoded here independently: the recorder does not
/// trust the core's own decoder).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wire<'a> {
    Join { group: &'a [u8], pid: u32, reason: u8 },
    Leave { group: &'a [u8], pid: u32, reason: u8 },
    Mcast { group: &'a [u8], pid: u32, payload: &'a [u8] },
    Joinlist,
}

/// Decode a delivered Totem message of the CPG service; None if it is not one.
pub fn decode(bytes: &[u8]) -> Option<Wire<'_>> {
    let (&kind, rest) = bytes.split_first()?;
    if kind == 4 {
        return Some(Wire::Joinlist);
    }
    let (&len, rest) = rest.split_first()?;
    let len = usize::from(len);
    if len > GROUP_NAME_MAX || rest.len() < len + 4 {
        return None;
    }
    let (group, rest) = rest.split_at(len);
    let pid = u32::from_le_bytes(rest[..4].try_into().ok()?);
    let rest = &rest[4..];
    match kind {
        1 | 2 if rest.len() == 1 => {
            let reason = rest[0];
            Some(if kind == 1 {
                Wire::Join { group, pid, reason }
            } else {
                Wire::Leave { group, pid, reason }
            })
        }
        3 => Some(Wire::Mcast { group, pid, payload: rest }),
        _ => None,
    }
}

/// The content that identifies a join or leave message of one origin node.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct ReqKey {
    /// true: join; false: leave.
    pub join: bool,
    pub group: Vec<u8>,
    pub pid: u32,
    /// The wire reason code (1 join, 2 leave, 5 procdown).
    pub reason: u8,
}

impl ReqKey {
    pub fn join(group: &[u8], pid: u32) -> ReqKey {
        ReqKey { join: true, group: group.to_vec(), pid, reason: 1 }
    }

    pub fn leave(group: &[u8], pid: u32, procdown: bool) -> ReqKey {
        ReqKey { join: false, group: group.to_vec(), pid, reason: if procdown { 5 } else { 2 } }
    }

    /// The key of a decoded join or leave.
    pub fn of(wire: &Wire<'_>) -> Option<ReqKey> {
        match *wire {
            Wire::Join { group, pid, reason } => {
                Some(ReqKey { join: true, group: group.to_vec(), pid, reason })
            }
            Wire::Leave { group, pid, reason } => {
                Some(ReqKey { join: false, group: group.to_vec(), pid, reason })
            }
            _ => None,
        }
    }
}

#[derive(Clone, Debug)]
struct Entry {
    id: MsgId,
    slot: Option<Slot>,
    at_origin: bool,
}

/// The ids of the join and leave messages clients caused (see the module documentation).
#[derive(Clone, Debug, Default)]
pub struct Ledger {
    entries: HashMap<(u32, ReqKey), Vec<Entry>>,
    /// Per (node, group, pid): messages not yet delivered at their origin.
    in_flight: HashMap<(u32, Vec<u8>, u32), u32>,
}

impl Ledger {
    /// `node` had a join or leave with content `key` accepted, as message `id`.
    pub fn submitted(&mut self, node: u32, key: ReqKey, id: MsgId) {
        *self.in_flight.entry((node, key.group.clone(), key.pid)).or_default() += 1;
        self.entries.entry((node, key)).or_default().push(Entry { id, slot: None, at_origin: false });
    }

    /// Whether a message of (group, pid) from `node` is not yet delivered at `node`.
    pub fn in_flight(&self, node: u32, group: &[u8], pid: u32) -> bool {
        self.in_flight.get(&(node, group.to_vec(), pid)).is_some_and(|&n| n > 0)
    }

    /// The id of the message with content `key` from `origin` that `at` delivers in `slot`:
    /// the one already seen in that slot, else the oldest not seen anywhere yet.
    pub fn resolve(&mut self, origin: u32, key: &ReqKey, slot: Slot, at: u32) -> Option<MsgId> {
        let list = self.entries.get_mut(&(origin, key.clone()))?;
        let k = match list.iter().position(|e| e.slot == Some(slot)) {
            Some(k) => k,
            None => {
                let k = list.iter().position(|e| e.slot.is_none())?;
                list[k].slot = Some(slot);
                k
            }
        };
        let e = &mut list[k];
        if at == origin && !e.at_origin {
            e.at_origin = true;
            if let Some(n) = self.in_flight.get_mut(&(origin, key.group.clone(), key.pid)) {
                *n = n.saturating_sub(1);
            }
        }
        Some(e.id)
    }
}

/// The spec's name for a service answer.
pub fn result_of(r: &Result<(), CpgError>) -> CpgResult {
    match r {
        Ok(()) => CpgResult::Ok,
        Err(CpgError::TryAgain) => CpgResult::TryAgain,
        Err(CpgError::NameTooLong { .. }) => CpgResult::NameTooLong,
        Err(CpgError::Exist) => CpgResult::Exist,
        Err(CpgError::Busy) => CpgResult::Busy,
        Err(CpgError::NotExist) => CpgResult::NotExist,
        Err(CpgError::BadHandle) => CpgResult::BadHandle,
        Err(CpgError::Interrupt) => CpgResult::Interrupt,
        // The clients never send more than CPG_MESSAGE_MAX bytes.
        Err(CpgError::TooBig { .. }) => CpgResult::InvalidParam,
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

pub fn spec_process(p: totem_core::cpg::Process) -> spec::trace::Process {
    spec::trace::Process { node: p.node.0, pid: p.pid }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spec::trace::Ring;

    #[test]
    fn decode_matches_the_documented_layout() {
        let join = [1, 2, b'a', b'b', 7, 0, 0, 0, 1];
        assert_eq!(decode(&join), Some(Wire::Join { group: b"ab", pid: 7, reason: 1 }));
        let leave = [2, 0, 9, 0, 0, 0, 5];
        assert_eq!(decode(&leave), Some(Wire::Leave { group: b"", pid: 9, reason: 5 }));
        let mcast = [3, 1, b'g', 1, 0, 0, 0, 42, 43];
        assert_eq!(decode(&mcast), Some(Wire::Mcast { group: b"g", pid: 1, payload: &[42, 43] }));
        assert_eq!(decode(&[4, 0, 0]), Some(Wire::Joinlist));
        for bad in [&[][..], &[1], &[1, 5, b'a'], &[2, 0, 9, 0, 0, 0], &[9, 0, 0, 0, 0, 0]] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn ledger_tells_repeated_contents_apart_by_slot() {
        let mut l = Ledger::default();
        let key = ReqKey::join(b"g", 5);
        let a = MsgId::new(1, 0, 3);
        let b = MsgId::new(1, 0, 9);
        let s1 = Slot::new(Ring::new(1, 4), 2);
        let s2 = Slot::new(Ring::new(1, 8), 1);
        l.submitted(1, key.clone(), a);
        assert!(l.in_flight(1, b"g", 5));
        assert_eq!(l.resolve(1, &key, s1, 2), Some(a));
        assert!(l.in_flight(1, b"g", 5), "not yet delivered at its origin");
        assert_eq!(l.resolve(1, &key, s1, 1), Some(a));
        assert!(!l.in_flight(1, b"g", 5));
        l.submitted(1, key.clone(), b);
        assert_eq!(l.resolve(1, &key, s2, 3), Some(b));
        assert_eq!(l.resolve(1, &key, s1, 3), Some(a), "an old slot keeps its id");
        assert_eq!(l.resolve(2, &key, s1, 3), None, "another origin");
    }
}
