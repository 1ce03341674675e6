//! The recorder: turns what each node runtime reports ([`Observed`]) into the spec's trace.
//!
//! # Mapping
//!
//! - Totem level, from the core's outputs: configuration changes (`Config`), the internal
//!   probes (`State`, `Commit`, `Assign`, `Receive`, `Release`, `Token`), and deliveries
//!   (`Deliver`) of the Totem messages that carry CPG multicasts of the simulated
//!   applications: their payload starts with a [`MsgId`] ([`crate::payload`]), found
//!   behind the CPG mcast header (kind 3, group length and name, pid: the layout documented
//!   in `totem-core`'s `cpg::msg`). The CPG service's own messages (join, leave, joinlist)
//!   carry no id and are not recorded; the spec treats sequence numbers without an
//!   application message as consumed (EVS-6b).
//! - A multicast answered Ok is recorded as `CpgMcast` and then the Totem-level `Send` of
//!   the same id (the spec allows sharing, see its `trace` module); a refused one as
//!   `CpgMcast` with its result only. The application gives every attempt a fresh id.
//! - Requests are recorded when answered, before their outputs (the runtime reports them
//!   in that order); callbacks (`CpgDeliver`, `CpgConfchg`, `CpgTotemConfchg`) when they
//!   are in the connection's queue; a closed connection as `CpgExit`. The initial totem
//!   confchg of a `deliver_initial_totem_conf` connection is not recorded (the spec's
//!   obligation). `CpgMembership` snapshots are not taken.
//! - Lifecycle (`Start`, `StateLost`, `Crash`, `Leave`) is recorded by the host and the
//!   driver.
//!
//! # Time
//!
//! turmoil runs the hosts one after another, each for a whole tick, so host B may report
//! something at 3.2 ms after host A reported at 3.7 ms. The trace's time is turmoil's
//! simulated time clamped to be non-decreasing: the list order is the real order, and
//! times are exact to within one tick.

use crate::payload;
use crate::world::{config_event, probe_event, spec_guarantee, spec_ring};
use spec::trace::{ConfKind, CpgReason, CpgResult, EventKind, MsgId, Process, Ring, Slot, Trace};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use totem_core::Output;
use totem_core::cpg::{CpgError, EventKind as CpgEvent, Reason};
use totem_node::runtime::{Observed, Observer};

/// The last configuration one node incarnation delivered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LastConfig {
    pub incarnation: u32,
    pub kind: ConfKind,
    pub ring: Ring,
    pub members: Vec<u32>,
    pub at: u64,
}

/// Counters of one run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecordCounts {
    pub cpg_mcasts_ok: u64,
    pub cpg_try_again: u64,
    pub cpg_deliveries: u64,
    pub cpg_confchgs: u64,
    pub totem_deliveries: u64,
    pub configs: u64,
    pub joins: u64,
    pub leaves: u64,
    pub exits: u64,
    /// Deliveries whose payload differs from what was sent (must stay 0).
    pub corrupt_payloads: u64,
}

/// The trace of a run and what the driver needs to know about it while it runs.
#[derive(Debug, Default)]
pub struct Recorder {
    pub trace: Trace,
    last_time: u64,
    pub last_config: BTreeMap<u32, LastConfig>,
    pub counts: RecordCounts,
    /// Problems of the simulation itself (a runtime that failed, a host that could not
    /// start).
    pub errors: Vec<String>,
}

/// The recorder, shared by the hosts' observers and the driver.
pub type SharedRecorder = Arc<Mutex<Recorder>>;

/// The simulated time of the host running now, in ns (None outside a host).
pub fn host_now() -> Option<u64> {
    turmoil::sim_elapsed().map(|d| d.as_nanos() as u64)
}

impl Recorder {
    /// Record `kind` at `node`'s incarnation, at `time` (clamped, see the module docs).
    pub fn push_at(&mut self, time: u64, node: u32, incarnation: u32, kind: EventKind) {
        let time = time.max(self.last_time);
        self.last_time = time;
        if let EventKind::Config { kind: k, ring, members, .. } = &kind {
            self.counts.configs += 1;
            self.last_config.insert(
                node,
                LastConfig { incarnation, kind: *k, ring: *ring, members: members.clone(), at: time },
            );
        }
        self.trace.push(time, node, incarnation, kind);
    }

    /// Record at the current host's time.
    pub fn push(&mut self, node: u32, incarnation: u32, kind: EventKind) {
        let t = host_now().unwrap_or(self.last_time);
        self.push_at(t, node, incarnation, kind);
    }

    /// The time of the last event.
    pub fn last_time(&self) -> u64 {
        self.last_time
    }

    fn observe(&mut self, node: u32, inc: u32, what: Observed<'_>) {
        let time = host_now().unwrap_or(self.last_time);
        self.observe_at(time, node, inc, what);
    }

    /// Record what `node`'s incarnation `inc` reported at `time` (a live runtime's
    /// observation, or a record of a `totemd --trace-file` journal).
    pub fn observe_at(&mut self, time: u64, node: u32, inc: u32, what: Observed<'_>) {
        match what {
            Observed::Output(Output::Config(c)) => self.push_at(time, node, inc, config_event(c.clone())),
            Observed::Output(Output::Probe(p)) => self.push_at(time, node, inc, probe_event(p.clone())),
            Observed::Output(Output::Deliver(d)) => {
                let Some(app) = mcast_payload(&d.payload) else { return };
                match payload::verify(app) {
                    Some(msg) => {
                        self.counts.totem_deliveries += 1;
                        let slot = Slot { ring: spec_ring(d.ring_id), seq: d.seq.0 };
                        let guarantee = spec_guarantee(d.guarantee);
                        self.push_at(time, node, inc, EventKind::Deliver { msg, slot, guarantee });
                    }
                    None => self.counts.corrupt_payloads += 1,
                }
            }
            Observed::Output(Output::Cpg(e)) => self.cpg_event(time, node, inc, e.conn.0, &e.kind),
            Observed::Output(Output::Send { .. } | Output::PersistRingSeq(_)) => {}
            Observed::Join { conn, group, pid, result } => {
                self.counts.joins += u64::from(result.is_ok());
                let kind = EventKind::CpgJoin {
                    conn: conn.0,
                    group: group.to_vec(),
                    pid,
                    result: cpg_result(result),
                };
                self.push_at(time, node, inc, kind);
            }
            Observed::Leave { conn, group, result } => {
                self.counts.leaves += u64::from(result.is_ok());
                let kind =
                    EventKind::CpgLeave { conn: conn.0, group: group.to_vec(), result: cpg_result(result) };
                self.push_at(time, node, inc, kind);
            }
            Observed::Mcast { conn, group, guarantee, payload: bytes, result } => {
                let Some(msg) = payload::id_of(bytes) else { return };
                let guarantee = spec_guarantee(guarantee);
                let group = group.map(<[u8]>::to_vec).unwrap_or_default();
                let kind =
                    EventKind::CpgMcast { conn: conn.0, group, msg, guarantee, result: cpg_result(result) };
                self.push_at(time, node, inc, kind);
                match result {
                    Ok(()) => {
                        self.counts.cpg_mcasts_ok += 1;
                        self.push_at(time, node, inc, EventKind::Send { msg, guarantee });
                    }
                    Err(CpgError::TryAgain) => self.counts.cpg_try_again += 1,
                    Err(_) => {}
                }
            }
            Observed::Disconnect { conn } => {
                self.counts.exits += 1;
                self.push_at(time, node, inc, EventKind::CpgExit { conn: conn.0 });
            }
        }
    }

    fn cpg_event(&mut self, time: u64, node: u32, inc: u32, conn: u32, e: &CpgEvent) {
        let kind = match e {
            CpgEvent::Deliver { group, sender, payload: bytes, .. } => {
                let Some(msg) = payload::verify(bytes) else {
                    self.counts.corrupt_payloads += 1;
                    return;
                };
                self.counts.cpg_deliveries += 1;
                EventKind::CpgDeliver { conn, group: group.as_bytes().to_vec(), sender: process(sender), msg }
            }
            CpgEvent::Confchg { group, members, left, joined } => {
                self.counts.cpg_confchgs += 1;
                EventKind::CpgConfchg {
                    conn,
                    group: group.as_bytes().to_vec(),
                    members: members.iter().map(process).collect(),
                    left: left.iter().map(|(p, r)| (process(p), reason(*r))).collect(),
                    joined: joined.iter().map(|(p, r)| (process(p), reason(*r))).collect(),
                }
            }
            CpgEvent::TotemConfchg { initial: true, .. } => return,
            CpgEvent::TotemConfchg { ring_id, members, initial: false } => EventKind::CpgTotemConfchg {
                conn,
                ring: spec_ring(*ring_id),
                members: members.iter().map(|n| n.0).collect(),
            },
        };
        self.push_at(time, node, inc, kind);
    }
}

/// An observer for `node`'s incarnation `inc` that records into `rec`.
pub fn observer(rec: SharedRecorder, node: u32, inc: u32) -> Observer {
    Box::new(move |what| {
        if let Ok(mut r) = rec.lock() {
            r.observe(node, inc, what);
        }
    })
}

/// The application payload of a Totem message that carries a CPG mcast (None for the
/// service's other messages, or a malformed one).
pub fn mcast_payload(totem: &[u8]) -> Option<&[u8]> {
    const KIND_MCAST: u8 = 3;
    match totem {
        [KIND_MCAST, len, rest @ ..] => rest.get(usize::from(*len) + 4..),
        _ => None,
    }
}

fn process(p: &totem_core::cpg::Process) -> Process {
    Process { node: p.node.0, pid: p.pid }
}

fn reason(r: Reason) -> CpgReason {
    match r {
        Reason::Join => CpgReason::Join,
        Reason::Leave => CpgReason::Leave,
        Reason::NodeDown => CpgReason::NodeDown,
        Reason::NodeUp => CpgReason::NodeUp,
        Reason::ProcDown => CpgReason::ProcDown,
    }
}

/// Corosync's result codes; a message over the size limit (`CS_ERR_TOO_BIG`, which the
/// spec's vocabulary lacks) counts as an invalid parameter.
pub fn cpg_result(r: Result<(), CpgError>) -> CpgResult {
    match r {
        Ok(()) => CpgResult::Ok,
        Err(CpgError::TryAgain) => CpgResult::TryAgain,
        Err(CpgError::NameTooLong { .. }) => CpgResult::NameTooLong,
        Err(CpgError::Exist) => CpgResult::Exist,
        Err(CpgError::Busy) => CpgResult::Busy,
        Err(CpgError::NotExist) => CpgResult::NotExist,
        Err(CpgError::TooBig { .. }) => CpgResult::InvalidParam,
        Err(CpgError::BadHandle) => CpgResult::BadHandle,
        Err(CpgError::Interrupt) => CpgResult::Interrupt,
    }
}

/// Messages that LIVE-2 still requires to be delivered somewhere, counted over `trace`
/// (the rule of the spec's `live2_delivery`, as in [`crate::world::World::undelivered`]):
/// for every survivor o (a (node, incarnation) in `survivors`) and every message m it
/// sent, o must deliver m; and if m was sent after o's last regular configuration, or some
/// survivor delivered m in o's last regular ring, every survivor must deliver m.
pub fn undelivered(trace: &Trace, survivors: &[(u32, u32)]) -> usize {
    let index: BTreeMap<(u32, u32), usize> = survivors.iter().enumerate().map(|(i, s)| (*s, i)).collect();
    let n = survivors.len();
    let mut final_reg: Vec<Option<(Ring, usize)>> = vec![None; n];
    let mut delivered: Vec<std::collections::HashSet<MsgId>> = vec![Default::default(); n];
    let mut rings: std::collections::HashMap<MsgId, Vec<Ring>> = Default::default();
    let mut sends: Vec<(MsgId, usize)> = Vec::new();
    for (k, e) in trace.events.iter().enumerate() {
        let Some(&i) = index.get(&(e.node, e.incarnation)) else { continue };
        match &e.kind {
            EventKind::Send { msg, .. } => sends.push((*msg, k)),
            EventKind::Config { kind: ConfKind::Regular, ring, .. } => final_reg[i] = Some((*ring, k)),
            EventKind::Deliver { msg, slot, .. } => {
                delivered[i].insert(*msg);
                if index.contains_key(&msg.sender()) {
                    rings.entry(*msg).or_default().push(slot.ring);
                }
            }
            _ => {}
        }
    }
    sends
        .iter()
        .filter(|(msg, k)| {
            let Some(&o) = index.get(&msg.sender()) else { return false };
            if !delivered[o].contains(msg) {
                return true;
            }
            let Some((ring, reg_event)) = final_reg[o] else { return false };
            let in_final = *k > reg_event || rings.get(msg).is_some_and(|rs| rs.contains(&ring));
            in_final && delivered.iter().any(|d| !d.contains(msg))
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mcast_payload_skips_the_cpg_header() {
        let msg = MsgId::new(2, 0, 7);
        let app = payload::build(msg, 40);
        let mut totem = vec![3u8, 2, b'g', b'0'];
        totem.extend_from_slice(&42u32.to_le_bytes());
        totem.extend_from_slice(&app);
        assert_eq!(mcast_payload(&totem).and_then(payload::verify), Some(msg));
        assert_eq!(mcast_payload(&[1, 2, b'g', b'0', 0, 0, 0, 0, 1]), None);
        assert_eq!(mcast_payload(&[3, 200, 1]), None);
        assert_eq!(mcast_payload(&[]), None);
    }
}
