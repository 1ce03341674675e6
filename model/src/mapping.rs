//! The core's outputs in the spec's vocabulary, and the application payloads of the model.
//!
//! The spec shares no types with `totem-core` on purpose; this module is the one place in
//! `model` that translates. It follows the simulator's mapping (`sim/src/world.rs`) but is
//! kept here so that `model` depends on the core and the spec only.

use spec::trace::{ConfKind, EventKind, MsgId, Slot};
use totem_core::node::ConfigChange;
use totem_core::srp::State;
use totem_core::{ConfigKind, Guarantee, NodeId, Probe, RingId};

/// An application payload is exactly the 16 bytes of its spec message id:
/// origin (u32 LE), incarnation (u32 LE), counter (u64 LE).
pub const PAYLOAD_LEN: usize = 16;

/// The payload the model's application sends for `msg`.
pub fn payload(msg: MsgId) -> [u8; PAYLOAD_LEN] {
    let mut p = [0u8; PAYLOAD_LEN];
    p[0..4].copy_from_slice(&msg.origin.to_le_bytes());
    p[4..8].copy_from_slice(&msg.incarnation.to_le_bytes());
    p[8..16].copy_from_slice(&msg.counter.to_le_bytes());
    p
}

/// The message id of a delivered payload, or `None` if the bytes are not a payload the model
/// sent (wrong length): the core corrupted or invented it.
pub fn msg_id(bytes: &[u8]) -> Option<MsgId> {
    if bytes.len() != PAYLOAD_LEN {
        return None;
    }
    let origin = u32::from_le_bytes(bytes.get(0..4)?.try_into().ok()?);
    let incarnation = u32::from_le_bytes(bytes.get(4..8)?.try_into().ok()?);
    let counter = u64::from_le_bytes(bytes.get(8..16)?.try_into().ok()?);
    Some(MsgId { origin, incarnation, counter })
}

/// The id recorded for a delivery whose payload is not one the model sent. No node sends it,
/// so EVS-1a (no creation) reports the delivery.
pub const CORRUPT: MsgId = MsgId { origin: 0, incarnation: u32::MAX, counter: u64::MAX };

pub fn ring(r: RingId) -> spec::trace::Ring {
    spec::trace::Ring { rep: r.rep.0, seq: r.seq }
}

pub fn guarantee(g: Guarantee) -> spec::trace::Guarantee {
    match g {
        Guarantee::Agreed => spec::trace::Guarantee::Agreed,
        Guarantee::Safe => spec::trace::Guarantee::Safe,
    }
}

pub fn ids(v: &[NodeId]) -> Vec<u32> {
    v.iter().map(|n| n.0).collect()
}

pub fn proto_state(s: State) -> spec::trace::ProtoState {
    match s {
        State::Operational => spec::trace::ProtoState::Operational,
        State::Gather => spec::trace::ProtoState::Gather,
        State::Commit => spec::trace::ProtoState::Commit,
        State::Recovery => spec::trace::ProtoState::Recovery,
    }
}

pub fn config_event(c: &ConfigChange) -> EventKind {
    EventKind::Config {
        kind: match c.kind {
            ConfigKind::Transitional => ConfKind::Transitional,
            ConfigKind::Regular => ConfKind::Regular,
        },
        ring: ring(c.ring_id),
        prev_ring: c.prev_ring_id.map(ring),
        members: ids(&c.members),
        left: ids(&c.left),
        joined: ids(&c.joined),
    }
}

pub fn probe_event(p: &Probe) -> EventKind {
    match p {
        Probe::Assign { ring_id, seq } => {
            EventKind::Assign { slot: Slot { ring: ring(*ring_id), seq: seq.0 } }
        }
        Probe::Receive { ring_id, seq } => {
            EventKind::Receive { slot: Slot { ring: ring(*ring_id), seq: seq.0 } }
        }
        Probe::Release { ring_id, up_to } => EventKind::Release { ring: ring(*ring_id), up_to: up_to.0 },
        Probe::Token { ring_id, token_seq, seq, aru, aru_addr, rtr, sent_new, retransmitted } => {
            EventKind::Token {
                ring: ring(*ring_id),
                token_seq: *token_seq,
                seq: seq.0,
                aru: aru.0,
                aru_addr: aru_addr.map_or(0, |n| n.0),
                rtr: rtr.iter().map(|e| Slot { ring: ring(e.ring_id), seq: e.seq.0 }).collect(),
                sent_new: *sent_new,
                retransmitted: *retransmitted,
            }
        }
        Probe::State { from, to } => EventKind::State { from: proto_state(*from), to: proto_state(*to) },
        Probe::Commit { ring_id, members, proc_minus_failed, via_consensus, agreed } => EventKind::Commit {
            ring: ring(*ring_id),
            members: ids(members),
            proc_minus_failed: ids(proc_minus_failed),
            via_consensus: *via_consensus,
            agreed: ids(agreed),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: a payload maps back to the id it was built from; other bytes do not.
    #[test]
    fn payload_round_trip() {
        let m = MsgId::new(3, 2, 7);
        assert_eq!(msg_id(&payload(m)), Some(m));
        assert_eq!(msg_id(&payload(m)[..15]), None);
        assert_eq!(msg_id(&[0u8; 17]), None);
    }
}
