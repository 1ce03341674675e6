//! The wire codec: [`Message`]s to datagrams and back.
//!
//! The layout is our own, inspired by Corosync's (study §1.3) but not compatible with it.
//! Corosync writes in the sender's byte order and has receivers swap; we always write
//! little-endian, which every machine we target reads natively, so there is one encoding
//! per message and nothing to swap. The layout is hand-written rather than derived (serde,
//! postcard) so that it is stable across library upgrades, documented here byte by byte,
//! and cheap on the hot path where every token and every multicast is encoded.
//!
//! The encoding is canonical: every field is fixed-size or length-prefixed, flag bytes
//! allow only their defined bits, and trailing bytes are rejected, so a datagram that
//! [`decode`]s re-encodes to exactly the same bytes. Decoding treats input as hostile
//! (study §9.4, WIRE-1): it never panics, checks every count against both its protocol
//! limit and the bytes actually present before allocating, and rejects what the protocol
//! could never have sent (unsorted sets, node id 0 where a node is meant).
//!
//! All integers are little-endian. A ring id is always 12 bytes: `rep` (u32) then `seq`
//! (u64). Offsets below are from the start of the datagram.
//!
//! # Common header (8 bytes)
//!
//! | Offset | Size | Field |
//! |---|---|---|
//! | 0 | 2 | magic, [`MAGIC`] (`0x7074`, "tp"; Corosync's is `0xC070`, so neither mistakes the other's traffic) |
//! | 2 | 1 | version, [`VERSION`] |
//! | 3 | 1 | type: 0 token, 1 mcast, 2 merge-detect, 3 join, 4 commit token, 5 token-hold-cancel |
//! | 4 | 4 | sender: the node that sent this copy (non-zero) |
//!
//! # Token (type 0): 46 bytes + 16 per retransmit request
//!
//! | Offset | Size | Field |
//! |---|---|---|
//! | 8 | 12 | ring_id |
//! | 20 | 4 | token_seq |
//! | 24 | 4 | seq |
//! | 28 | 4 | aru |
//! | 32 | 4 | aru_addr (0 = `None`) |
//! | 36 | 4 | fcc |
//! | 40 | 4 | backlog |
//! | 44 | 1 | flags: bit 0 = retrans_flag, other bits zero |
//! | 45 | 1 | n, retransmit requests, at most [`RTR_ENTRIES_MAX`] |
//! | 46 | 16 × n | requests: ring_id (12), seq (4) |
//!
//! # Mcast (type 1): 34 bytes + body
//!
//! The header is followed by one *mcast record*. A recovery wrapper's body is the record of
//! the old-ring message it carries, which must itself carry a frame: recovery never wraps a
//! wrapper.
//!
//! | Offset | Size | Field |
//! |---|---|---|
//! | 8 | 12 | ring_id |
//! | 20 | 4 | seq |
//! | 24 | 4 | origin (non-zero) |
//! | 28 | 1 | guarantee: 0 agreed, 1 safe |
//! | 29 | 1 | body kind: 0 frame, 1 recovered |
//! | 30 | 4 | len, body length; a frame is at most [`FRAME_SIZE_MAX`] |
//! | 34 | len | body: the frame's bytes, or the inner mcast record (same layout from offset 8, 26 + its own len bytes) |
//!
//! # Merge-detect (type 2): 24 bytes
//!
//! | Offset | Size | Field |
//! |---|---|---|
//! | 8 | 4 | sender (non-zero) |
//! | 12 | 12 | ring_id |
//!
//! # Join (type 3): 25 bytes + 4 per listed node
//!
//! | Offset | Size | Field |
//! |---|---|---|
//! | 8 | 4 | sender (non-zero) |
//! | 12 | 8 | ring_seq |
//! | 20 | 1 | flags: bit 0 = leave, other bits zero |
//! | 21 | 2 | p, proc_set size, at most [`PROCESSORS_MAX`] |
//! | 23 | 2 | f, failed_set size, at most [`PROCESSORS_MAX`] |
//! | 25 | 4 × p | proc_set, strictly ascending, non-zero |
//! | 25 + 4p | 4 × f | failed_set, strictly ascending, non-zero |
//!
//! # Commit token (type 4): 30 bytes + 25 per member
//!
//! | Offset | Size | Field |
//! |---|---|---|
//! | 8 | 12 | ring_id |
//! | 20 | 4 | token_seq |
//! | 24 | 4 | memb_index, at most N |
//! | 28 | 2 | N, members, at most [`PROCESSORS_MAX`] |
//! | 30 | 25 × N | members, strictly ascending by node: node (4, non-zero), old_ring_id (12), old_aru (4), high_delivered (4), flags (1: bit 0 = received_flag, other bits zero) |
//!
//! # Token-hold-cancel (type 5): 20 bytes
//!
//! | Offset | Size | Field |
//! |---|---|---|
//! | 8 | 12 | ring_id |

use crate::config::DATAGRAM_OVERHEAD;
use crate::ids::{NodeId, RingId, Seq};
use crate::message::{
    CommitMember, CommitToken, Guarantee, Join, Mcast, McastBody, MergeDetect, Message, PROCESSORS_MAX,
    RTR_ENTRIES_MAX, RtrEntry, Token, TokenHoldCancel,
};
use bytes::Bytes;
use thiserror::Error;

/// Distinct from Corosync's `0xC070` (in either byte order), so a node of ours that hears a
/// Corosync ring, or the reverse, drops the traffic at the first check.
pub const MAGIC: u16 = 0x7074;

/// Bumped on any layout change: mixed versions must refuse each other, not misparse.
pub const VERSION: u8 = 1;

/// Bytes of the common header.
pub const HEADER_LEN: usize = 8;

/// Bytes of an mcast record before its body; a recovery wrapper pays this twice.
pub const MCAST_RECORD_LEN: usize = 26;

/// The largest frame a decoder accepts. Frames are sized to `netmtu - DATAGRAM_OVERHEAD`
/// and [`crate::Config::validate`] caps `netmtu` at 65536, so anything larger was not sent
/// by a correct node; bounding it keeps a forged length from justifying a huge copy.
pub const FRAME_SIZE_MAX: usize = NETMTU_MAX - DATAGRAM_OVERHEAD;

/// The cap on `netmtu` in [`crate::Config::validate`].
const NETMTU_MAX: usize = 65536;

// DATAGRAM_OVERHEAD promises room for two mcast headers of up to 64 bytes each plus 64
// bytes of authentication; a recovery wrapper must fit in the first part.
const _: () = assert!(HEADER_LEN + 2 * MCAST_RECORD_LEN <= DATAGRAM_OVERHEAD - 64);

const TYPE_TOKEN: u8 = 0;
const TYPE_MCAST: u8 = 1;
const TYPE_MERGE_DETECT: u8 = 2;
const TYPE_JOIN: u8 = 3;
const TYPE_COMMIT_TOKEN: u8 = 4;
const TYPE_TOKEN_HOLD_CANCEL: u8 = 5;

const RING_ID_LEN: usize = 12;
const TOKEN_FIXED: usize = HEADER_LEN + 38;
const RTR_ENTRY_LEN: usize = RING_ID_LEN + 4;
const MERGE_DETECT_LEN: usize = HEADER_LEN + 4 + RING_ID_LEN;
const JOIN_FIXED: usize = HEADER_LEN + 17;
const COMMIT_FIXED: usize = HEADER_LEN + 22;
const COMMIT_MEMBER_LEN: usize = 4 + RING_ID_LEN + 4 + 4 + 1;
const TOKEN_HOLD_CANCEL_LEN: usize = HEADER_LEN + RING_ID_LEN;

const BODY_FRAME: u8 = 0;
const BODY_RECOVERED: u8 = 1;

const FLAG_SET: u8 = 1;

/// Why a datagram was rejected. Each variant is a distinct way a packet can be malformed,
/// so a log line says what a misbehaving or incompatible peer sent.
#[derive(Clone, PartialEq, Eq, Debug, Error)]
pub enum DecodeError {
    /// The datagram (or a length-prefixed part of it) ends before a field does.
    #[error("truncated: need {need} bytes, have {have}")]
    TooShort { need: usize, have: usize },
    #[error("bad magic {0:#06x}")]
    BadMagic(u16),
    #[error("unsupported version {0}")]
    BadVersion(u8),
    #[error("unknown message type {0}")]
    UnknownType(u8),
    /// A node id of 0 in a field that names a node; the str names the field.
    #[error("node id 0 in {0}")]
    ZeroNodeId(&'static str),
    #[error("{0} retransmit requests (at most {RTR_ENTRIES_MAX})")]
    TooManyRtrEntries(usize),
    #[error("{0} processors (at most {PROCESSORS_MAX})")]
    TooManyProcessors(usize),
    /// A node set or the commit token's members are out of order.
    #[error("node list not sorted ascending")]
    NotSorted,
    /// A node set or the commit token's members list a node twice.
    #[error("node listed twice")]
    Duplicate,
    /// A flag byte with a bit other than its defined ones set.
    #[error("bad flag byte {0:#04x}")]
    BadFlag(u8),
    #[error("bad delivery guarantee {0}")]
    BadGuarantee(u8),
    #[error("bad mcast body kind {0}")]
    BadBodyKind(u8),
    /// A recovery wrapper around a recovery wrapper: recovery only re-sends old-ring
    /// originals, and allowing nesting would let a packet demand unbounded recursion.
    #[error("recovered mcast inside a recovered mcast")]
    NestedRecovery,
    #[error("frame of {0} bytes (at most {FRAME_SIZE_MAX})")]
    FrameTooLarge(usize),
    #[error("commit token memb_index {index} beyond its {members} members")]
    MembIndexOutOfRange { index: u32, members: usize },
    /// Bytes after the message (or after a recovered record, inside its stated length).
    #[error("{0} trailing bytes")]
    TrailingBytes(usize),
}

// ---------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------

/// The exact size [`encode`] appends, so callers can size buffers and check the MTU first.
pub fn encoded_len(msg: &Message) -> usize {
    match msg {
        Message::Token(t) => TOKEN_FIXED + RTR_ENTRY_LEN * t.rtr.len(),
        Message::Mcast(m) => HEADER_LEN + record_len(m),
        Message::MergeDetect(_) => MERGE_DETECT_LEN,
        Message::Join(j) => JOIN_FIXED + 4 * (j.proc_set.len() + j.failed_set.len()),
        Message::CommitToken(c) => COMMIT_FIXED + COMMIT_MEMBER_LEN * c.members.len(),
        Message::TokenHoldCancel(_) => TOKEN_HOLD_CANCEL_LEN,
    }
}

fn record_len(m: &Mcast) -> usize {
    MCAST_RECORD_LEN
        + match &m.body {
            McastBody::Frame(f) => f.len(),
            McastBody::Recovered(inner) => record_len(inner),
        }
}

/// Appends the datagram for `msg` sent by `sender` to `buf`.
///
/// Appending (rather than returning a fresh `Vec`) lets the runtime reuse one buffer per
/// socket, and lets a crypto layer put its own header in front without a copy. Encoding
/// cannot fail: a message outside the protocol's limits (too many entries, a frame over
/// [`FRAME_SIZE_MAX`], nested recovery) still encodes, with counts saturated, into bytes that
/// [`decode`] rejects, so the bug shows up at the receiver instead of as a panic here.
pub fn encode(sender: NodeId, msg: &Message, buf: &mut Vec<u8>) {
    buf.reserve(encoded_len(msg));
    match msg {
        Message::Token(t) => {
            header(buf, TYPE_TOKEN, sender);
            ring_id(buf, t.ring_id);
            u32(buf, t.token_seq);
            u32(buf, t.seq.0);
            u32(buf, t.aru.0);
            u32(buf, t.aru_addr.map_or(0, |n| n.0));
            u32(buf, t.fcc);
            u32(buf, t.backlog);
            buf.push(u8::from(t.retrans_flag));
            buf.push(u8::try_from(t.rtr.len()).unwrap_or(u8::MAX));
            for e in &t.rtr {
                ring_id(buf, e.ring_id);
                u32(buf, e.seq.0);
            }
        }
        Message::Mcast(m) => {
            header(buf, TYPE_MCAST, sender);
            record(buf, m);
        }
        Message::MergeDetect(d) => {
            header(buf, TYPE_MERGE_DETECT, sender);
            u32(buf, d.sender.0);
            ring_id(buf, d.ring_id);
        }
        Message::Join(j) => {
            header(buf, TYPE_JOIN, sender);
            u32(buf, j.sender.0);
            buf.extend_from_slice(&j.ring_seq.to_le_bytes());
            buf.push(u8::from(j.leave));
            u16(buf, count16(j.proc_set.len()));
            u16(buf, count16(j.failed_set.len()));
            for n in j.proc_set.iter().chain(&j.failed_set) {
                u32(buf, n.0);
            }
        }
        Message::CommitToken(c) => {
            header(buf, TYPE_COMMIT_TOKEN, sender);
            ring_id(buf, c.ring_id);
            u32(buf, c.token_seq);
            u32(buf, c.memb_index);
            u16(buf, count16(c.members.len()));
            for m in &c.members {
                u32(buf, m.node.0);
                ring_id(buf, m.old_ring_id);
                u32(buf, m.old_aru.0);
                u32(buf, m.high_delivered.0);
                buf.push(u8::from(m.received_flag));
            }
        }
        Message::TokenHoldCancel(h) => {
            header(buf, TYPE_TOKEN_HOLD_CANCEL, sender);
            ring_id(buf, h.ring_id);
        }
    }
}

fn record(buf: &mut Vec<u8>, m: &Mcast) {
    ring_id(buf, m.ring_id);
    u32(buf, m.seq.0);
    u32(buf, m.origin.0);
    buf.push(match m.guarantee {
        Guarantee::Agreed => 0,
        Guarantee::Safe => 1,
    });
    match &m.body {
        McastBody::Frame(f) => {
            buf.push(BODY_FRAME);
            u32(buf, u32::try_from(f.len()).unwrap_or(u32::MAX));
            buf.extend_from_slice(f);
        }
        McastBody::Recovered(inner) => {
            buf.push(BODY_RECOVERED);
            u32(buf, u32::try_from(record_len(inner)).unwrap_or(u32::MAX));
            record(buf, inner);
        }
    }
}

/// Saturates rather than wraps, so an oversized list is rejected by the receiver as too
/// long instead of being misparsed as a short one.
fn count16(n: usize) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
}

#[inline]
fn header(buf: &mut Vec<u8>, kind: u8, sender: NodeId) {
    let [m0, m1] = MAGIC.to_le_bytes();
    let [s0, s1, s2, s3] = sender.0.to_le_bytes();
    buf.extend_from_slice(&[m0, m1, VERSION, kind, s0, s1, s2, s3]);
}

#[inline]
fn ring_id(buf: &mut Vec<u8>, r: RingId) {
    u32(buf, r.rep.0);
    buf.extend_from_slice(&r.seq.to_le_bytes());
}

#[inline]
fn u32(buf: &mut Vec<u8>, v: u32) {
    buf.extend_from_slice(&v.to_le_bytes());
}

#[inline]
fn u16(buf: &mut Vec<u8>, v: u16) {
    buf.extend_from_slice(&v.to_le_bytes());
}

// ---------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------

/// Decodes one datagram, copying frame payloads out of `bytes`.
///
/// For a receive buffer the caller can hand over, [`decode_bytes`] avoids the copy.
pub fn decode(bytes: &[u8]) -> Result<(NodeId, Message), DecodeError> {
    decode_with(bytes, Bytes::copy_from_slice)
}

/// Decodes one datagram; frame payloads share `bytes`' buffer instead of being copied,
/// since frames are most of a datagram and are kept until delivery.
pub fn decode_bytes(bytes: &Bytes) -> Result<(NodeId, Message), DecodeError> {
    // `slice_ref` cannot panic here: every frame is a subslice of `bytes` itself.
    decode_with(bytes, |frame| bytes.slice_ref(frame))
}

/// The one decoder behind both entry points; `frame` turns a frame's bytes (a subslice of
/// `bytes`) into the `Bytes` the message keeps.
fn decode_with<F>(bytes: &[u8], frame: F) -> Result<(NodeId, Message), DecodeError>
where
    F: Fn(&[u8]) -> Bytes,
{
    let mut r = Reader::new(bytes);
    let magic = r.u16()?;
    if magic != MAGIC {
        return Err(DecodeError::BadMagic(magic));
    }
    let version = r.u8()?;
    if version != VERSION {
        return Err(DecodeError::BadVersion(version));
    }
    let kind = r.u8()?;
    if kind > TYPE_TOKEN_HOLD_CANCEL {
        return Err(DecodeError::UnknownType(kind));
    }
    let sender = r.node("sender")?;
    let msg = match kind {
        TYPE_TOKEN => Message::Token(token(&mut r)?),
        TYPE_MCAST => Message::Mcast(mcast_record(&mut r, &frame, false)?),
        TYPE_MERGE_DETECT => Message::MergeDetect(MergeDetect {
            sender: r.node("merge-detect sender")?,
            ring_id: r.ring_id()?,
        }),
        TYPE_JOIN => Message::Join(join(&mut r)?),
        TYPE_COMMIT_TOKEN => Message::CommitToken(commit_token(&mut r)?),
        _ => Message::TokenHoldCancel(TokenHoldCancel { ring_id: r.ring_id()? }),
    };
    r.finish()?;
    Ok((sender, msg))
}

fn token(r: &mut Reader<'_>) -> Result<Token, DecodeError> {
    let ring_id = r.ring_id()?;
    let token_seq = r.u32()?;
    let seq = Seq(r.u32()?);
    let aru = Seq(r.u32()?);
    let aru_addr = match r.u32()? {
        0 => None,
        n => Some(NodeId(n)),
    };
    let fcc = r.u32()?;
    let backlog = r.u32()?;
    let retrans_flag = r.flag()?;
    let n = usize::from(r.u8()?);
    if n > RTR_ENTRIES_MAX {
        return Err(DecodeError::TooManyRtrEntries(n));
    }
    let mut entries = r.array(n, RTR_ENTRY_LEN)?;
    let mut rtr = Vec::with_capacity(n);
    for _ in 0..n {
        rtr.push(RtrEntry { ring_id: entries.ring_id()?, seq: Seq(entries.u32()?) });
    }
    Ok(Token { ring_id, token_seq, seq, aru, aru_addr, fcc, backlog, retrans_flag, rtr })
}

fn mcast_record<F>(r: &mut Reader<'_>, frame: &F, inner: bool) -> Result<Mcast, DecodeError>
where
    F: Fn(&[u8]) -> Bytes,
{
    let ring_id = r.ring_id()?;
    let seq = Seq(r.u32()?);
    let origin = r.node("mcast origin")?;
    let guarantee = match r.u8()? {
        0 => Guarantee::Agreed,
        1 => Guarantee::Safe,
        g => return Err(DecodeError::BadGuarantee(g)),
    };
    let kind = r.u8()?;
    let len = usize::try_from(r.u32()?).unwrap_or(usize::MAX);
    let body = match kind {
        BODY_FRAME => {
            if len > FRAME_SIZE_MAX {
                return Err(DecodeError::FrameTooLarge(len));
            }
            McastBody::Frame(frame(r.take(len)?))
        }
        BODY_RECOVERED if inner => return Err(DecodeError::NestedRecovery),
        BODY_RECOVERED => {
            let mut body = r.sub(len)?;
            let original = mcast_record(&mut body, frame, true)?;
            body.finish()?;
            McastBody::Recovered(Box::new(original))
        }
        k => return Err(DecodeError::BadBodyKind(k)),
    };
    Ok(Mcast { ring_id, seq, origin, guarantee, body })
}

fn join(r: &mut Reader<'_>) -> Result<Join, DecodeError> {
    let sender = r.node("join sender")?;
    let ring_seq = r.u64()?;
    let leave = r.flag()?;
    let p = processors(r.u16()?)?;
    let f = processors(r.u16()?)?;
    let proc_set = node_set(r, p)?;
    let failed_set = node_set(r, f)?;
    Ok(Join { sender, proc_set, failed_set, ring_seq, leave })
}

fn commit_token(r: &mut Reader<'_>) -> Result<CommitToken, DecodeError> {
    let ring_id = r.ring_id()?;
    let token_seq = r.u32()?;
    let memb_index = r.u32()?;
    let n = processors(r.u16()?)?;
    let mut entries = r.array(n, COMMIT_MEMBER_LEN)?;
    let mut members: Vec<CommitMember> = Vec::with_capacity(n);
    for _ in 0..n {
        let node = entries.node("commit member")?;
        if let Some(last) = members.last() {
            ascending(last.node, node)?;
        }
        members.push(CommitMember {
            node,
            old_ring_id: entries.ring_id()?,
            old_aru: Seq(entries.u32()?),
            high_delivered: Seq(entries.u32()?),
            received_flag: entries.flag()?,
        });
    }
    if !usize::try_from(memb_index).is_ok_and(|i| i <= n) {
        return Err(DecodeError::MembIndexOutOfRange { index: memb_index, members: n });
    }
    Ok(CommitToken { token_seq, ring_id, memb_index, members })
}

fn processors(n: u16) -> Result<usize, DecodeError> {
    let n = usize::from(n);
    if n > PROCESSORS_MAX { Err(DecodeError::TooManyProcessors(n)) } else { Ok(n) }
}

fn node_set(r: &mut Reader<'_>, n: usize) -> Result<Vec<NodeId>, DecodeError> {
    let mut entries = r.array(n, 4)?;
    let mut set: Vec<NodeId> = Vec::with_capacity(n);
    for _ in 0..n {
        let node = entries.node("join node set")?;
        if let Some(&last) = set.last() {
            ascending(last, node)?;
        }
        set.push(node);
    }
    Ok(set)
}

/// Sets travel sorted so that receivers can compare them without sorting, and so that
/// each set has one encoding.
fn ascending(prev: NodeId, next: NodeId) -> Result<(), DecodeError> {
    match prev.cmp(&next) {
        core::cmp::Ordering::Less => Ok(()),
        core::cmp::Ordering::Equal => Err(DecodeError::Duplicate),
        core::cmp::Ordering::Greater => Err(DecodeError::NotSorted),
    }
}

/// A bounds-checked cursor over a region of the datagram. Reads split the remaining slice
/// with the checked `split_*` methods, so no decoder path indexes, slices out of bounds or
/// does arithmetic on untrusted lengths.
struct Reader<'a> {
    rest: &'a [u8],
    /// Offset in the datagram where this reader's region ends, for error reports only.
    end: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Reader { rest: bytes, end: bytes.len() }
    }

    #[cold]
    fn too_short(&self, n: usize) -> DecodeError {
        let pos = self.end.saturating_sub(self.rest.len());
        DecodeError::TooShort { need: pos.saturating_add(n), have: self.end }
    }

    #[inline]
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        match self.rest.split_at_checked(n) {
            Some((taken, rest)) => {
                self.rest = rest;
                Ok(taken)
            }
            None => Err(self.too_short(n)),
        }
    }

    #[inline]
    fn fixed<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        match self.rest.split_first_chunk::<N>() {
            Some((taken, rest)) => {
                self.rest = rest;
                Ok(*taken)
            }
            None => Err(self.too_short(N)),
        }
    }

    /// A reader over the next `n` bytes, consumed from `self` at once: length-prefixed
    /// parts must be fully present, and must not read past their stated length.
    fn sub(&mut self, n: usize) -> Result<Reader<'a>, DecodeError> {
        let taken = self.take(n)?;
        Ok(Reader { rest: taken, end: self.end.saturating_sub(self.rest.len()) })
    }

    /// Checks that `count` entries of `size` bytes are present before the caller allocates
    /// room for them, and returns a reader over exactly those bytes.
    fn array(&mut self, count: usize, size: usize) -> Result<Reader<'a>, DecodeError> {
        let n = count.checked_mul(size).ok_or_else(|| self.too_short(usize::MAX))?;
        self.sub(n)
    }

    fn finish(&self) -> Result<(), DecodeError> {
        match self.rest.len() {
            0 => Ok(()),
            n => Err(DecodeError::TrailingBytes(n)),
        }
    }

    #[inline]
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(u8::from_le_bytes(self.fixed()?))
    }

    #[inline]
    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.fixed()?))
    }

    #[inline]
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.fixed()?))
    }

    #[inline]
    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.fixed()?))
    }

    #[inline]
    fn flag(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            FLAG_SET => Ok(true),
            b => Err(DecodeError::BadFlag(b)),
        }
    }

    #[inline]
    fn node(&mut self, field: &'static str) -> Result<NodeId, DecodeError> {
        match self.u32()? {
            0 => Err(DecodeError::ZeroNodeId(field)),
            n => Ok(NodeId(n)),
        }
    }

    #[inline]
    fn ring_id(&mut self) -> Result<RingId, DecodeError> {
        Ok(RingId { rep: NodeId(self.u32()?), seq: self.u64()? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const N1: NodeId = NodeId(1);
    const RING: RingId = RingId::new(NodeId(1), 7);

    fn enc(sender: NodeId, msg: &Message) -> Vec<u8> {
        let mut buf = Vec::new();
        encode(sender, msg, &mut buf);
        assert_eq!(buf.len(), encoded_len(msg));
        buf
    }

    fn token(rtr: usize) -> Message {
        Message::Token(Token {
            ring_id: RING,
            token_seq: 9,
            seq: Seq(100),
            aru: Seq(90),
            aru_addr: Some(NodeId(3)),
            fcc: 4,
            backlog: 2,
            retrans_flag: true,
            rtr: (0..rtr).map(|i| RtrEntry { ring_id: RING, seq: Seq(91 + i as u32) }).collect(),
        })
    }

    fn mcast(body: McastBody) -> Mcast {
        Mcast { ring_id: RING, seq: Seq(5), origin: NodeId(2), guarantee: Guarantee::Safe, body }
    }

    fn frame(data: &'static [u8]) -> Message {
        Message::Mcast(mcast(McastBody::Frame(Bytes::from_static(data))))
    }

    fn recovered() -> Message {
        let inner = mcast(McastBody::Frame(Bytes::from_static(b"old")));
        Message::Mcast(mcast(McastBody::Recovered(Box::new(inner))))
    }

    fn join(proc_set: &[u32], failed_set: &[u32]) -> Message {
        Message::Join(Join {
            sender: N1,
            proc_set: proc_set.iter().copied().map(NodeId).collect(),
            failed_set: failed_set.iter().copied().map(NodeId).collect(),
            ring_seq: 42,
            leave: false,
        })
    }

    fn commit(nodes: &[u32], memb_index: u32) -> Message {
        Message::CommitToken(CommitToken {
            token_seq: 3,
            ring_id: RING,
            memb_index,
            members: nodes
                .iter()
                .map(|&n| CommitMember {
                    node: NodeId(n),
                    old_ring_id: RingId::new(NodeId(n), 6),
                    old_aru: Seq(10),
                    high_delivered: Seq(9),
                    received_flag: true,
                })
                .collect(),
        })
    }

    fn all_samples() -> Vec<Message> {
        vec![
            token(0),
            token(RTR_ENTRIES_MAX),
            frame(b""),
            frame(b"hello"),
            recovered(),
            Message::MergeDetect(MergeDetect { sender: NodeId(4), ring_id: RING }),
            join(&[1, 2, 5], &[5]),
            commit(&[1, 2, 3], 1),
            commit(&[], 0),
            Message::TokenHoldCancel(TokenHoldCancel { ring_id: RING }),
        ]
    }

    fn err(bytes: &[u8]) -> DecodeError {
        decode(bytes).expect_err("malformed packet accepted")
    }

    // Goal: every message type round-trips through both decoders, and encodings are
    // canonical (re-encoding the decoded message gives the same bytes).
    #[test]
    fn round_trip_every_type() {
        for msg in all_samples() {
            let buf = enc(NodeId(77), &msg);
            assert_eq!(decode(&buf), Ok((NodeId(77), msg.clone())), "{msg:?}");
            let shared = Bytes::from(buf.clone());
            assert_eq!(decode_bytes(&shared), Ok((NodeId(77), msg.clone())));
            let (_, again) = decode(&buf).expect("valid");
            assert_eq!(enc(NodeId(77), &again), buf);
        }
    }

    // Goal: the sizes documented in the module tables are the sizes produced.
    #[test]
    fn documented_sizes() {
        assert_eq!(enc(N1, &token(0)).len(), 46);
        assert_eq!(enc(N1, &token(30)).len(), 46 + 30 * 16);
        assert_eq!(enc(N1, &frame(b"12345")).len(), 34 + 5);
        assert_eq!(enc(N1, &recovered()).len(), 34 + 26 + 3);
        assert_eq!(enc(N1, &Message::MergeDetect(MergeDetect { sender: N1, ring_id: RING })).len(), 24);
        assert_eq!(enc(N1, &join(&[1, 2], &[3])).len(), 25 + 12);
        assert_eq!(enc(N1, &commit(&[1, 2], 0)).len(), 30 + 50);
        assert_eq!(enc(N1, &Message::TokenHoldCancel(TokenHoldCancel { ring_id: RING })).len(), 20);
    }

    // Goal: the header bytes are exactly as documented (little-endian, fixed positions).
    #[test]
    fn header_layout() {
        let buf = enc(
            NodeId(0x0403_0201),
            &Message::TokenHoldCancel(TokenHoldCancel {
                ring_id: RingId::new(NodeId(0x0d0c_0b0a), 0x1122_3344_5566_7788),
            }),
        );
        assert_eq!(
            buf,
            [
                0x74, 0x70, 1, 5, 0x01, 0x02, 0x03, 0x04, 0x0a, 0x0b, 0x0c, 0x0d, 0x88, 0x77, 0x66, 0x55,
                0x44, 0x33, 0x22, 0x11
            ]
        );
    }

    // Goal: decode_bytes shares the datagram's buffer for frames instead of copying them.
    #[test]
    fn decode_bytes_is_zero_copy() {
        let buf = Bytes::from(enc(N1, &frame(b"payload")));
        let (_, msg) = decode_bytes(&buf).expect("valid");
        let Message::Mcast(Mcast { body: McastBody::Frame(f), .. }) = msg else {
            panic!("not a frame: {msg:?}")
        };
        assert_eq!(&f[..], b"payload");
        let range = buf.as_ptr_range();
        assert!(range.contains(&f.as_ptr()), "frame was copied");
    }

    // Goal: every strict prefix of every sample is rejected as too short.
    #[test]
    fn too_short() {
        for msg in all_samples() {
            let buf = enc(N1, &msg);
            for cut in 0..buf.len() {
                assert!(
                    matches!(err(&buf[..cut]), DecodeError::TooShort { .. }),
                    "{msg:?} cut at {cut}: {:?}",
                    decode(&buf[..cut])
                );
            }
        }
        assert_eq!(err(&[0x74, 0x70, 1]), DecodeError::TooShort { need: 4, have: 3 });
    }

    #[test]
    fn bad_magic() {
        let mut buf = enc(N1, &token(0));
        buf[0] = 0x70;
        buf[1] = 0xc0;
        assert_eq!(err(&buf), DecodeError::BadMagic(0xC070));
    }

    #[test]
    fn bad_version() {
        let mut buf = enc(N1, &token(0));
        buf[2] = 2;
        assert_eq!(err(&buf), DecodeError::BadVersion(2));
    }

    #[test]
    fn unknown_type() {
        let mut buf = enc(N1, &token(0));
        buf[3] = 6;
        assert_eq!(err(&buf), DecodeError::UnknownType(6));
    }

    #[test]
    fn zero_node_id() {
        let zero_sender = enc(NodeId(0), &token(0));
        assert_eq!(err(&zero_sender), DecodeError::ZeroNodeId("sender"));

        let mut zero_origin = enc(N1, &frame(b"x"));
        zero_origin[24..28].fill(0);
        assert_eq!(err(&zero_origin), DecodeError::ZeroNodeId("mcast origin"));

        // The inner record of a recovery wrapper starts at 34; its origin at 34 + 16.
        let mut zero_inner_origin = enc(N1, &recovered());
        zero_inner_origin[50..54].fill(0);
        assert_eq!(err(&zero_inner_origin), DecodeError::ZeroNodeId("mcast origin"));

        let mut zero_detect = enc(N1, &Message::MergeDetect(MergeDetect { sender: N1, ring_id: RING }));
        zero_detect[8..12].fill(0);
        assert_eq!(err(&zero_detect), DecodeError::ZeroNodeId("merge-detect sender"));

        let mut zero_join = enc(N1, &join(&[1], &[]));
        zero_join[8..12].fill(0);
        assert_eq!(err(&zero_join), DecodeError::ZeroNodeId("join sender"));

        assert_eq!(err(&enc(N1, &join(&[0, 1], &[]))), DecodeError::ZeroNodeId("join node set"));
        assert_eq!(err(&enc(N1, &join(&[1], &[0]))), DecodeError::ZeroNodeId("join node set"));
        assert_eq!(err(&enc(N1, &commit(&[0, 1], 0))), DecodeError::ZeroNodeId("commit member"));
    }

    // Goal: aru_addr 0 is "nobody", not an error.
    #[test]
    fn aru_addr_zero_is_none() {
        let Message::Token(mut t) = token(0) else { unreachable!() };
        t.aru_addr = None;
        let buf = enc(N1, &Message::Token(t.clone()));
        assert_eq!(buf[32..36], [0, 0, 0, 0]);
        assert_eq!(decode(&buf), Ok((N1, Message::Token(t))));
    }

    #[test]
    fn too_many_rtr_entries() {
        // The count byte is checked before the entries are looked for.
        let mut buf = enc(N1, &token(0));
        buf[45] = 31;
        assert_eq!(err(&buf), DecodeError::TooManyRtrEntries(31));
        // An encoder bug cannot sneak past: the count saturates, then is rejected.
        assert_eq!(err(&enc(N1, &token(300))), DecodeError::TooManyRtrEntries(255));
    }

    #[test]
    fn too_many_processors() {
        let mut buf = enc(N1, &join(&[], &[]));
        buf[21..23].copy_from_slice(&385u16.to_le_bytes());
        assert_eq!(err(&buf), DecodeError::TooManyProcessors(385));
        let mut buf = enc(N1, &join(&[], &[]));
        buf[23..25].copy_from_slice(&u16::MAX.to_le_bytes());
        assert_eq!(err(&buf), DecodeError::TooManyProcessors(65535));
        let mut buf = enc(N1, &commit(&[], 0));
        buf[28..30].copy_from_slice(&385u16.to_le_bytes());
        assert_eq!(err(&buf), DecodeError::TooManyProcessors(385));
        // The limit itself is fine.
        let nodes: Vec<u32> = (1..=PROCESSORS_MAX as u32).collect();
        let max = join(&nodes, &nodes);
        assert_eq!(decode(&enc(N1, &max)), Ok((N1, max)));
    }

    #[test]
    fn not_sorted() {
        assert_eq!(err(&enc(N1, &join(&[2, 1], &[]))), DecodeError::NotSorted);
        assert_eq!(err(&enc(N1, &join(&[1], &[3, 2]))), DecodeError::NotSorted);
        assert_eq!(err(&enc(N1, &commit(&[1, 3, 2], 0))), DecodeError::NotSorted);
    }

    #[test]
    fn duplicate() {
        assert_eq!(err(&enc(N1, &join(&[1, 1], &[]))), DecodeError::Duplicate);
        assert_eq!(err(&enc(N1, &join(&[], &[4, 4]))), DecodeError::Duplicate);
        assert_eq!(err(&enc(N1, &commit(&[2, 2], 0))), DecodeError::Duplicate);
    }

    #[test]
    fn bad_flag() {
        let mut buf = enc(N1, &token(0));
        buf[44] = 2;
        assert_eq!(err(&buf), DecodeError::BadFlag(2));
        let mut buf = enc(N1, &join(&[], &[]));
        buf[20] = 0x81;
        assert_eq!(err(&buf), DecodeError::BadFlag(0x81));
        let mut buf = enc(N1, &commit(&[1], 0));
        buf[30 + 24] = 0xff;
        assert_eq!(err(&buf), DecodeError::BadFlag(0xff));
    }

    #[test]
    fn bad_guarantee() {
        let mut buf = enc(N1, &frame(b"x"));
        buf[28] = 2;
        assert_eq!(err(&buf), DecodeError::BadGuarantee(2));
    }

    #[test]
    fn bad_body_kind() {
        let mut buf = enc(N1, &frame(b"x"));
        buf[29] = 2;
        assert_eq!(err(&buf), DecodeError::BadBodyKind(2));
    }

    #[test]
    fn nested_recovery() {
        let Message::Mcast(middle) = recovered() else { unreachable!() };
        let nested = Message::Mcast(mcast(McastBody::Recovered(Box::new(middle))));
        assert_eq!(err(&enc(N1, &nested)), DecodeError::NestedRecovery);
    }

    #[test]
    fn frame_too_large() {
        let big: &'static [u8] = vec![0u8; FRAME_SIZE_MAX + 1].leak();
        assert_eq!(err(&enc(N1, &frame(big))), DecodeError::FrameTooLarge(FRAME_SIZE_MAX + 1));
        // A forged length is rejected before the (absent) bytes are looked for.
        let mut buf = enc(N1, &frame(b""));
        buf[30..34].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(err(&buf), DecodeError::FrameTooLarge(u32::MAX as usize));
        // The limit itself is fine.
        let max = frame(&big[..FRAME_SIZE_MAX]);
        assert_eq!(decode(&enc(N1, &max)), Ok((N1, max)));
    }

    #[test]
    fn memb_index_out_of_range() {
        assert_eq!(
            err(&enc(N1, &commit(&[1, 2], 3))),
            DecodeError::MembIndexOutOfRange { index: 3, members: 2 }
        );
        assert_eq!(
            err(&enc(N1, &commit(&[], u32::MAX))),
            DecodeError::MembIndexOutOfRange { index: u32::MAX, members: 0 }
        );
        let full = commit(&[1, 2], 2);
        assert_eq!(decode(&enc(N1, &full)), Ok((N1, full)));
    }

    #[test]
    fn trailing_bytes() {
        for msg in all_samples() {
            let mut buf = enc(N1, &msg);
            buf.extend_from_slice(&[0, 0, 0]);
            assert_eq!(err(&buf), DecodeError::TrailingBytes(3), "{msg:?}");
        }
        // A recovered record shorter than its wrapper's stated length.
        let mut buf = enc(N1, &recovered());
        buf.push(0);
        buf[30..34].copy_from_slice(&(26u32 + 3 + 1).to_le_bytes());
        assert_eq!(err(&buf), DecodeError::TrailingBytes(1));
    }

    // Goal: a wrapper whose stated length is shorter than its inner record is caught as
    // truncation of the inner record, not read past into the rest of the datagram.
    #[test]
    fn recovered_length_bounds_the_inner_record() {
        let mut buf = enc(N1, &recovered());
        buf[30..34].copy_from_slice(&(26u32 + 2).to_le_bytes());
        assert_eq!(err(&buf), DecodeError::TooShort { need: 34 + 26 + 3, have: 34 + 26 + 2 });
    }
}
