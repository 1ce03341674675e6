//! The CPG service's messages inside Totem application messages, and their codec.
//!
//! Every CPG message is one Totem message (so it is ordered, and delivered whole or not at
//! all). Layout, little-endian, our own (not Corosync's exec layout):
//!
//! | Field   | Size | Meaning                                           |
//! |---------|-----:|---------------------------------------------------|
//! | `kind`  | 1    | 1 join, 2 leave, 3 mcast, 4 joinlist              |
//! | body    | ...  | per kind, below                                   |
//!
//! A group name is `len: u8` (at most [`GROUP_NAME_MAX`]) then `len` bytes.
//! - join / leave: group, `pid: u32`, `reason: u8`.
//! - mcast: group, `pid: u32`, then the payload to the end (its guarantee is the Totem
//!   message's).
//! - joinlist: `ring rep: u32`, `ring seq: u64`, `count: u16`, then `count` times
//!   (`pid: u32`, group).
//!
//! Decoding checks every length before reading and never panics; a payload is a zero-copy
//! slice of the delivered message.

use super::{GROUP_NAME_MAX, GroupName, Reason};
use crate::ids::{NodeId, RingId};
use bytes::Bytes;
use thiserror::Error;

const KIND_JOIN: u8 = 1;
const KIND_LEAVE: u8 = 2;
const KIND_MCAST: u8 = 3;
const KIND_JOINLIST: u8 = 4;

/// The bytes a mcast adds in front of its payload, at most.
pub const MCAST_HEADER_MAX: usize = 1 + 1 + GROUP_NAME_MAX + 4;

#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) enum CpgMsg {
    /// A process joined (reason [`Reason::Join`]).
    Join {
        group: GroupName,
        pid: u32,
        reason: Reason,
    },
    /// A process left (reason [`Reason::Leave`] or [`Reason::ProcDown`]).
    Leave {
        group: GroupName,
        pid: u32,
        reason: Reason,
    },
    Mcast {
        group: GroupName,
        pid: u32,
        payload: Bytes,
    },
    /// The sender's local processes, for the synchronization round of `ring_id`.
    Joinlist {
        ring_id: RingId,
        entries: Vec<(u32, GroupName)>,
    },
}

/// Why a delivered message is not a CPG message (a bug or a forged packet: counted).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Error)]
pub enum MsgError {
    #[error("message truncated")]
    Truncated,
    #[error("unknown message kind {0}")]
    UnknownKind(u8),
    #[error("group name of {0} bytes exceeds the limit")]
    NameTooLong(usize),
    #[error("unknown reason {0}")]
    UnknownReason(u8),
    #[error("{0} trailing bytes")]
    Trailing(usize),
}

fn put_group(buf: &mut Vec<u8>, group: &GroupName) {
    buf.push(group.len() as u8);
    buf.extend_from_slice(group.as_bytes());
}

fn reason_code(reason: Reason) -> u8 {
    match reason {
        Reason::Join => 1,
        Reason::Leave => 2,
        Reason::NodeDown => 3,
        Reason::NodeUp => 4,
        Reason::ProcDown => 5,
    }
}

fn reason_from(code: u8) -> Result<Reason, MsgError> {
    Ok(match code {
        1 => Reason::Join,
        2 => Reason::Leave,
        3 => Reason::NodeDown,
        4 => Reason::NodeUp,
        5 => Reason::ProcDown,
        other => return Err(MsgError::UnknownReason(other)),
    })
}

impl CpgMsg {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut buf = Vec::new();
        match self {
            CpgMsg::Join { group, pid, reason } | CpgMsg::Leave { group, pid, reason } => {
                buf.push(if matches!(self, CpgMsg::Join { .. }) { KIND_JOIN } else { KIND_LEAVE });
                put_group(&mut buf, group);
                buf.extend_from_slice(&pid.to_le_bytes());
                buf.push(reason_code(*reason));
            }
            CpgMsg::Mcast { group, pid, payload } => {
                buf.reserve(MCAST_HEADER_MAX + payload.len());
                buf.push(KIND_MCAST);
                put_group(&mut buf, group);
                buf.extend_from_slice(&pid.to_le_bytes());
                buf.extend_from_slice(payload);
            }
            CpgMsg::Joinlist { ring_id, entries } => {
                buf.push(KIND_JOINLIST);
                buf.extend_from_slice(&ring_id.rep.0.to_le_bytes());
                buf.extend_from_slice(&ring_id.seq.to_le_bytes());
                buf.extend_from_slice(&(entries.len() as u16).to_le_bytes());
                for (pid, group) in entries {
                    buf.extend_from_slice(&pid.to_le_bytes());
                    put_group(&mut buf, group);
                }
            }
        }
        buf
    }

    /// Encode a mcast without building the message first (the hot path).
    /// The length [`CpgMsg::encode_mcast`] gives (checked by a test).
    pub(crate) fn mcast_len(group: &GroupName, payload_len: usize) -> usize {
        1 + 1 + group.len() + 4 + payload_len
    }

    pub(crate) fn encode_mcast(group: &GroupName, pid: u32, payload: &[u8]) -> Vec<u8> {
        let mut buf = Vec::with_capacity(MCAST_HEADER_MAX + payload.len());
        buf.push(KIND_MCAST);
        put_group(&mut buf, group);
        buf.extend_from_slice(&pid.to_le_bytes());
        buf.extend_from_slice(payload);
        buf
    }

    pub(crate) fn decode(bytes: &Bytes) -> Result<CpgMsg, MsgError> {
        let mut r = Reader { bytes, at: 0 };
        let kind = r.u8()?;
        let msg = match kind {
            KIND_JOIN | KIND_LEAVE => {
                let group = r.group()?;
                let pid = r.u32()?;
                let reason = reason_from(r.u8()?)?;
                if kind == KIND_JOIN {
                    CpgMsg::Join { group, pid, reason }
                } else {
                    CpgMsg::Leave { group, pid, reason }
                }
            }
            KIND_MCAST => {
                let group = r.group()?;
                let pid = r.u32()?;
                let payload = bytes.slice(r.at..);
                r.at = bytes.len();
                CpgMsg::Mcast { group, pid, payload }
            }
            KIND_JOINLIST => {
                let rep = r.u32()?;
                let seq = r.u64()?;
                let count = r.u16()?;
                // Each entry takes at least 5 bytes: never reserve more than the message holds.
                let mut entries = Vec::with_capacity(usize::from(count).min(r.remaining() / 5));
                for _ in 0..count {
                    let pid = r.u32()?;
                    entries.push((pid, r.group()?));
                }
                CpgMsg::Joinlist { ring_id: RingId { rep: NodeId(rep), seq }, entries }
            }
            other => return Err(MsgError::UnknownKind(other)),
        };
        match r.remaining() {
            0 => Ok(msg),
            n => Err(MsgError::Trailing(n)),
        }
    }
}

struct Reader<'a> {
    bytes: &'a Bytes,
    at: usize,
}

impl Reader<'_> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }

    fn take(&mut self, n: usize) -> Result<&[u8], MsgError> {
        if self.remaining() < n {
            return Err(MsgError::Truncated);
        }
        let s = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, MsgError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, MsgError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, MsgError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, MsgError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn group(&mut self) -> Result<GroupName, MsgError> {
        let len = usize::from(self.u8()?);
        if len > GROUP_NAME_MAX {
            return Err(MsgError::NameTooLong(len));
        }
        let bytes = self.take(len)?;
        GroupName::new(bytes).map_err(|_| MsgError::NameTooLong(len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(s: &str) -> GroupName {
        GroupName::new(s.as_bytes()).unwrap()
    }

    #[test]
    fn every_kind_round_trips() {
        let msgs = [
            CpgMsg::Join { group: g("a"), pid: 7, reason: Reason::Join },
            CpgMsg::Leave { group: g(""), pid: u32::MAX, reason: Reason::ProcDown },
            CpgMsg::Mcast { group: GroupName::new(&[0xff; 128]).unwrap(), pid: 1, payload: Bytes::new() },
            CpgMsg::Mcast { group: g("grp"), pid: 2, payload: Bytes::from_static(b"hello") },
            CpgMsg::Joinlist {
                ring_id: RingId { rep: NodeId(3), seq: 1 << 40 },
                entries: vec![(1, g("x")), (2, g("yy"))],
            },
            CpgMsg::Joinlist { ring_id: RingId { rep: NodeId(1), seq: 4 }, entries: vec![] },
        ];
        for m in msgs {
            let bytes = Bytes::from(m.encode());
            assert_eq!(CpgMsg::decode(&bytes).unwrap(), m);
            // Every strict prefix is rejected, none panics.
            for cut in 0..bytes.len() {
                let prefix = bytes.slice(..cut);
                if let CpgMsg::Mcast { .. } = m {
                    // A mcast's payload runs to the end: prefixes past the header decode
                    // as shorter payloads, which is fine.
                    let _ = CpgMsg::decode(&prefix);
                } else {
                    assert!(CpgMsg::decode(&prefix).is_err(), "prefix {cut} of {m:?}");
                }
            }
        }
    }

    #[test]
    fn encode_mcast_matches_encode() {
        let m = CpgMsg::Mcast { group: g("q"), pid: 9, payload: Bytes::from_static(b"xyz") };
        assert_eq!(CpgMsg::encode_mcast(&g("q"), 9, b"xyz"), m.encode());
        for (name, len) in [("", 0), ("q", 3), ("a longer group", 1000)] {
            let payload = vec![7u8; len];
            assert_eq!(CpgMsg::encode_mcast(&g(name), 1, &payload).len(), CpgMsg::mcast_len(&g(name), len));
        }
    }

    #[test]
    fn bad_input_is_an_error() {
        for bad in [
            &[][..],
            &[9],
            &[KIND_JOIN, 200],
            &[KIND_JOIN, 0, 1, 0, 0, 0, 9],
            &[KIND_JOIN, 0, 1, 0, 0, 0, 1, 0],
        ] {
            assert!(CpgMsg::decode(&Bytes::copy_from_slice(bad)).is_err(), "{bad:?}");
        }
        // A joinlist claiming 65535 entries in a few bytes fails without a huge allocation.
        let mut m = vec![KIND_JOINLIST];
        m.extend_from_slice(&[1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]);
        assert_eq!(CpgMsg::decode(&Bytes::from(m)), Err(MsgError::Truncated));
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut x: u64 = 0x1234_5678;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 40) as usize;
            let mut v = Vec::with_capacity(len);
            let mut y = x;
            for _ in 0..len {
                y = y.wrapping_mul(6364136223846793005).wrapping_add(1);
                v.push((y >> 56) as u8 % 6);
            }
            let _ = CpgMsg::decode(&Bytes::from(v));
        }
    }
}
