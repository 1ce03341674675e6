//! Packing small application messages into frames and fragmenting large ones.
//!
//! Totem orders *frames*: each frame is the payload of one MCAST
//! ([`crate::message::McastBody::Frame`]) and holds at most
//! [`Config::frame_size_max`](crate::config::Config::frame_size_max) bytes. A sending node
//! packs its application messages into frames with a [`Packer`]; every receiver (the sender
//! included) unpacks each sender's frames with one [`Reassembler`] per sender.
//!
//! # Frame layout
//!
//! All integers are little-endian. The layout is our own (not Corosync's totempg layout).
//!
//! | Offset | Size | Field      | Meaning                                                        |
//! |-------:|-----:|------------|----------------------------------------------------------------|
//! | 0      | 1    | `flags`    | bit 0 [`FLAG_FIRST_CONTINUES`]: item 0 continues the message left unfinished by this sender's frame `seq - 1`. bit 1 [`FLAG_LAST_CONTINUES`]: the last item is unfinished; its message continues as item 0 of frame `seq + 1`. Bits 2..8 must be 0. |
//! | 1      | 1    | `reserved` | must be 0 (room for a version)                                 |
//! | 2      | 2    | `items`    | number of items that follow, at least 1                        |
//! | 4      | 4    | `seq`      | the sender's frame counter: +1 per frame, wrapping at 2^32     |
//! | 8      | ...  | items      | `items` times: `len: u16` (at least 1), then `len` data bytes  |
//!
//! The items fill the frame exactly: no trailing bytes. Each item is a whole application
//! message, or one piece of a fragmented message. A message that is fragmented occupies
//! consecutive frames of its sender: it starts as the last item of frame `s` (flag
//! `LAST_CONTINUES`), continues as the only item of frames `s+1 .. e-1` (both flags), and
//! ends as item 0 of frame `e` (flag `FIRST_CONTINUES`). Both flags with 2 or more items
//! mean that item 0 ends one fragmented message and the last item starts another.
//!
//! ## Loss detection and resynchronisation
//!
//! The protocol delivers a sender's frames to every member in order, without duplicates,
//! but a membership change may lose some of them (a gap). A receiver accepts a continuation
//! only from the frame whose `seq` is exactly one more than the frame that left the message
//! unfinished. Anything else is an *orphan* piece: it is discarded, along with any
//! message left unfinished, and the other (complete) items of the frame are still
//! delivered. So a message is delivered if and only if every frame it touches is received;
//! a delivered message is always byte-identical to the one sent, never a splice of two.
//! (An undetected gap would need exactly 2^32 consecutive lost frames.)
//!
//! # Costs
//!
//! Packing a message that fits in the staging frame is one 2-byte length and one `memcpy`
//! into a reused `Vec`. A frame is emitted either zero-copy (a full frame: the staging
//! `Vec` becomes the [`Bytes`]) or, for a partial frame at [`Packer::flush`], by copying it
//! into an exactly sized [`Bytes`] and keeping the staging buffer. Unpacking delivers
//! unfragmented items as zero-copy slices of the frame; only fragmented messages are
//! copied into an assembly buffer.

use crate::config::MESSAGE_SIZE_MAX;
use crate::message::Guarantee;
use Assembly::{Assembling, Discarding};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Bytes of the frame header.
pub const HEADER_LEN: usize = 8;
/// Bytes of the length that precedes each item.
pub const ITEM_HEADER_LEN: usize = 2;
/// `flags` bit: item 0 continues the message left unfinished by the previous frame.
pub const FLAG_FIRST_CONTINUES: u8 = 0x01;
/// `flags` bit: the last item is unfinished and continues in the next frame.
pub const FLAG_LAST_CONTINUES: u8 = 0x02;
/// The smallest `frame_size_max` a [`Packer`] accepts: a header and a 1-byte item.
pub const FRAME_SIZE_MIN: usize = HEADER_LEN + ITEM_HEADER_LEN + 1;
/// The largest `frame_size_max` a [`Packer`] accepts: item lengths are 16-bit.
pub const FRAME_SIZE_LIMIT: usize = HEADER_LEN + ITEM_HEADER_LEN + u16::MAX as usize;

const FLAGS_KNOWN: u8 = FLAG_FIRST_CONTINUES | FLAG_LAST_CONTINUES;

/// Why a frame could not be unpacked. The frame delivers nothing; the sender's unfinished
/// message, if any, is discarded.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Error)]
pub enum FrameError {
    #[error("frame of {len} bytes is shorter than its {HEADER_LEN}-byte header")]
    TooShort { len: usize },
    #[error("unknown flags {flags:#04x} or reserved byte {reserved:#04x} set")]
    Reserved { flags: u8, reserved: u8 },
    #[error("frame has no items")]
    NoItems,
    #[error("item {index} has length 0")]
    EmptyItem { index: u16 },
    #[error("item {index} runs past the end of the frame")]
    Truncated { index: u16 },
    #[error("{extra} bytes follow the last item")]
    TrailingBytes { extra: usize },
    #[error("a fragmented message would grow to {len} bytes, over MESSAGE_SIZE_MAX")]
    MessageTooLarge { len: usize },
}

/// The header of a well-formed frame (for traces, probes and tests).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct FrameInfo {
    /// The sender's frame counter.
    pub seq: u32,
    /// Number of items, at least 1.
    pub items: u16,
    /// Item 0 continues a message from frame `seq - 1`.
    pub first_continues: bool,
    /// The last item continues in frame `seq + 1`.
    pub last_continues: bool,
    /// Length of item 0.
    first_len: usize,
}

impl FrameInfo {
    /// Validate the whole frame and return its header.
    pub fn parse(frame: &[u8]) -> Result<FrameInfo, FrameError> {
        let Some((head, mut rest)) = frame.split_first_chunk::<HEADER_LEN>() else {
            return Err(FrameError::TooShort { len: frame.len() });
        };
        let (flags, reserved) = (head[0], head[1]);
        if flags & !FLAGS_KNOWN != 0 || reserved != 0 {
            return Err(FrameError::Reserved { flags, reserved });
        }
        let items = u16::from_le_bytes([head[2], head[3]]);
        let seq = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        if items == 0 {
            return Err(FrameError::NoItems);
        }
        let mut first_len = 0;
        for index in 0..items {
            let Some((len, tail)) = rest.split_first_chunk::<ITEM_HEADER_LEN>() else {
                return Err(FrameError::Truncated { index });
            };
            let len = usize::from(u16::from_le_bytes(*len));
            if len == 0 {
                return Err(FrameError::EmptyItem { index });
            }
            if tail.len() < len {
                return Err(FrameError::Truncated { index });
            }
            if index == 0 {
                first_len = len;
            }
            rest = &tail[len..];
        }
        if !rest.is_empty() {
            return Err(FrameError::TrailingBytes { extra: rest.len() });
        }
        Ok(FrameInfo {
            seq,
            items,
            first_continues: flags & FLAG_FIRST_CONTINUES != 0,
            last_continues: flags & FLAG_LAST_CONTINUES != 0,
            first_len,
        })
    }

    /// Item 0 both continues and stays unfinished: a middle piece.
    fn middle_piece(&self) -> bool {
        self.items == 1 && self.first_continues && self.last_continues
    }
}

/// Packs one node's outgoing application messages into frames.
///
/// Frames are homogeneous in [`Guarantee`]: a message of another guarantee than the staged
/// frame's first flushes the staged frame. A message that does not fit in the staged
/// frame's remaining room fills it, and continues in fresh frames.
///
/// The serde derives are for snapshots and traces; deserialising trusts its input (a
/// snapshot of a real packer), as the invariants between fields are not re-checked.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct Packer {
    frame_size_max: usize,
    /// The staged frame: a header placeholder then the items; empty when nothing is staged.
    /// Its capacity is reused from frame to frame.
    buf: Vec<u8>,
    /// The staged frame's guarantee; `None` exactly when nothing is staged.
    staged: Option<Guarantee>,
    /// Items in the staged frame.
    items: u16,
    /// Flags of the staged frame.
    flags: u8,
    /// `seq` of the next frame emitted.
    seq: u32,
}

impl Packer {
    /// A packer whose frames hold at most `frame_size_max` bytes.
    ///
    /// # Panics
    /// If `frame_size_max` is outside [`FRAME_SIZE_MIN`]..=[`FRAME_SIZE_LIMIT`] (a validated
    /// [`Config`](crate::config::Config) gives 256..=65344).
    pub fn new(frame_size_max: usize) -> Packer {
        assert!(
            (FRAME_SIZE_MIN..=FRAME_SIZE_LIMIT).contains(&frame_size_max),
            "frame_size_max {frame_size_max} outside {FRAME_SIZE_MIN}..={FRAME_SIZE_LIMIT}"
        );
        Packer { frame_size_max, buf: Vec::new(), staged: None, items: 0, flags: 0, seq: 0 }
    }

    /// The largest frame this packer emits.
    pub fn frame_size_max(&self) -> usize {
        self.frame_size_max
    }

    /// Pack `payload`, appending every frame it completes to `out` (with its guarantee),
    /// in order. The tail stays staged until a later `push` fills it or [`Packer::flush`].
    ///
    /// The caller rejects empty payloads and payloads over
    /// [`MESSAGE_SIZE_MAX`] (receivers discard larger messages); an empty payload is
    /// ignored in release builds.
    pub fn push(&mut self, payload: &[u8], guarantee: Guarantee, out: &mut Vec<(Bytes, Guarantee)>) {
        debug_assert!(!payload.is_empty(), "the caller rejects empty messages");
        debug_assert!(payload.len() <= MESSAGE_SIZE_MAX, "the caller rejects oversized messages");
        if payload.is_empty() {
            return;
        }
        if self.staged.is_some_and(|g| g != guarantee) {
            out.push(self.emit());
        }
        let mut rest = payload;
        let mut continues = false;
        loop {
            if self.staged.is_none() {
                self.begin(guarantee, continues);
            }
            // Invariant: a staged frame has room for at least a 1-byte item.
            let room = self.frame_size_max - self.buf.len() - ITEM_HEADER_LEN;
            if rest.len() <= room {
                self.put_item(rest);
                if self.buf.len() + ITEM_HEADER_LEN >= self.frame_size_max {
                    out.push(self.emit());
                }
                return;
            }
            let (piece, tail) = rest.split_at(room);
            self.put_item(piece);
            self.flags |= FLAG_LAST_CONTINUES;
            out.push(self.emit());
            rest = tail;
            continues = true;
        }
    }

    /// Emit the staged partial frame, if any (called when the token arrives, so that small
    /// messages ride the next token visit).
    pub fn flush(&mut self) -> Option<(Bytes, Guarantee)> {
        self.staged.is_some().then(|| self.emit())
    }

    /// An upper bound of the frames that `push` of a `len`-byte message followed by
    /// [`Packer::flush`] appends, counting the frame already staged (if any): the frames a
    /// pending queue must have room for. Exact when nothing is staged.
    pub fn frames_for(&self, len: usize) -> usize {
        let per_frame = self.frame_size_max - HEADER_LEN - ITEM_HEADER_LEN;
        usize::from(self.staged.is_some()) + len.div_ceil(per_frame)
    }

    /// Whether no frame is staged.
    pub fn is_empty(&self) -> bool {
        self.staged.is_none()
    }

    /// Size in bytes of the frame [`Packer::flush`] would emit (header included); 0 if none.
    pub fn staged_bytes(&self) -> usize {
        self.buf.len()
    }

    /// The staged frame's guarantee, if a frame is staged.
    pub fn staged_guarantee(&self) -> Option<Guarantee> {
        self.staged
    }

    fn begin(&mut self, guarantee: Guarantee, continues: bool) {
        debug_assert!(self.buf.is_empty());
        self.buf.reserve_exact(self.frame_size_max);
        self.buf.extend_from_slice(&[0; HEADER_LEN]);
        self.flags = if continues { FLAG_FIRST_CONTINUES } else { 0 };
        self.items = 0;
        self.staged = Some(guarantee);
    }

    fn put_item(&mut self, data: &[u8]) {
        // `room` and FRAME_SIZE_LIMIT keep `data.len()` within u16, and a frame holds at
        // most (FRAME_SIZE_LIMIT - HEADER_LEN) / 3 < 2^16 items.
        debug_assert!(!data.is_empty() && data.len() <= usize::from(u16::MAX));
        self.buf.extend_from_slice(&(data.len() as u16).to_le_bytes());
        self.buf.extend_from_slice(data);
        self.items += 1;
    }

    fn emit(&mut self) -> (Bytes, Guarantee) {
        let guarantee = self.staged.take().unwrap_or(Guarantee::Agreed);
        debug_assert!(self.items > 0 && self.buf.len() <= self.frame_size_max);
        self.buf[0] = self.flags;
        self.buf[1] = 0;
        self.buf[2..4].copy_from_slice(&self.items.to_le_bytes());
        self.buf[4..8].copy_from_slice(&self.seq.to_le_bytes());
        self.seq = self.seq.wrapping_add(1);
        self.flags = 0;
        self.items = 0;
        let frame = if self.buf.len() == self.buf.capacity() {
            // A full frame: hand the buffer over without copying.
            Bytes::from(std::mem::take(&mut self.buf))
        } else {
            // A partial frame: copy it to an exact size and keep the buffer.
            let frame = Bytes::copy_from_slice(&self.buf);
            self.buf.clear();
            frame
        };
        (frame, guarantee)
    }
}

/// What a [`Reassembler`] holds between frames.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Default, Serialize, Deserialize)]
enum Assembly {
    /// No unfinished message.
    #[default]
    Idle,
    /// A fragmented message whose next piece is item 0 of frame `next_seq`.
    Assembling { next_seq: u32, buf: Vec<u8> },
    /// A message already counted as discarded, whose next piece (item 0 of frame
    /// `next_seq`) is dropped too.
    Discarding { next_seq: u32 },
}

/// Unpacks the frames of one sender, in the sender's order, into application messages.
/// The caller keeps one per sender (e.g. in a `BTreeMap<NodeId, Reassembler>`).
#[derive(Clone, PartialEq, Eq, Hash, Debug, Default, Serialize, Deserialize)]
pub struct Reassembler {
    state: Assembly,
    discarded: u64,
    discarded_bytes: u64,
}

impl Reassembler {
    /// A reassembler with no unfinished message.
    pub fn new() -> Reassembler {
        Reassembler::default()
    }

    /// Unpack the sender's next frame, appending to `out` every message it completes, in
    /// order. Unfragmented messages are slices of `frame` (no copy).
    ///
    /// A continuation that does not follow the frame that left the message unfinished is
    /// discarded (see the [module doc](crate::pg)), and so is an unfinished message that
    /// the frame does not continue; the frame's other items are still delivered.
    ///
    /// A malformed frame, or one that would grow the unfinished message beyond
    /// [`MESSAGE_SIZE_MAX`], delivers nothing, discards the unfinished message (and, for an
    /// oversized one, its later pieces) and returns an error. Never panics.
    pub fn push_frame(&mut self, frame: &Bytes, out: &mut Vec<Bytes>) -> Result<(), FrameError> {
        let info = match FrameInfo::parse(frame) {
            Ok(info) => info,
            Err(e) => {
                self.reset();
                return Err(e);
            }
        };
        let next_seq = info.seq.wrapping_add(1);
        let mut pos = HEADER_LEN;
        let mut index = 0;
        if info.first_continues {
            let piece = &frame[pos + ITEM_HEADER_LEN..pos + ITEM_HEADER_LEN + info.first_len];
            pos += ITEM_HEADER_LEN + info.first_len;
            index = 1;
            let keep = info.middle_piece();
            match std::mem::take(&mut self.state) {
                Assembling { next_seq: expected, mut buf } if expected == info.seq => {
                    let len = buf.len() + piece.len();
                    if len > MESSAGE_SIZE_MAX {
                        self.count_discard(len);
                        if keep {
                            self.state = Discarding { next_seq };
                        }
                        return Err(FrameError::MessageTooLarge { len });
                    }
                    append_bounded(&mut buf, piece);
                    if keep {
                        self.state = Assembling { next_seq, buf };
                    } else {
                        out.push(Bytes::from(buf));
                    }
                }
                Discarding { next_seq: expected } if expected == info.seq => {
                    self.discarded_bytes += piece.len() as u64;
                    if keep {
                        self.state = Discarding { next_seq };
                    }
                }
                other => {
                    self.drop_assembly(other);
                    self.count_discard(piece.len());
                    if keep {
                        self.state = Discarding { next_seq };
                    }
                }
            }
        } else {
            let previous = std::mem::take(&mut self.state);
            self.drop_assembly(previous);
        }
        while index < info.items {
            let len = usize::from(u16::from_le_bytes([frame[pos], frame[pos + 1]]));
            let start = pos + ITEM_HEADER_LEN;
            pos = start + len;
            index += 1;
            if index == info.items && info.last_continues {
                let mut buf = Vec::with_capacity((2 * len).min(MESSAGE_SIZE_MAX));
                buf.extend_from_slice(&frame[start..pos]);
                self.state = Assembling { next_seq, buf };
            } else {
                out.push(frame.slice(start..pos));
            }
        }
        Ok(())
    }

    /// Drop the unfinished message, if any (at a membership change that removed the
    /// sender). It counts as discarded.
    pub fn reset(&mut self) {
        let previous = std::mem::take(&mut self.state);
        self.drop_assembly(previous);
    }

    /// Whether an unfinished message is held.
    pub fn in_progress(&self) -> bool {
        matches!(self.state, Assembling { .. })
    }

    /// Number of discard events: each unfinished message dropped (gap, malformed frame,
    /// [`Reassembler::reset`], oversize) and each run of orphan continuation pieces. A
    /// message torn by a gap in its middle counts twice (its head and its orphan tail).
    pub fn discarded(&self) -> u64 {
        self.discarded
    }

    /// Bytes of application data received but discarded as parts of incomplete messages.
    pub fn discarded_bytes(&self) -> u64 {
        self.discarded_bytes
    }

    fn drop_assembly(&mut self, assembly: Assembly) {
        if let Assembling { buf, .. } = assembly {
            self.count_discard(buf.len());
        }
    }

    fn count_discard(&mut self, bytes: usize) {
        self.discarded += 1;
        self.discarded_bytes += bytes as u64;
    }
}

/// Append `piece`, growing the capacity geometrically but never beyond MESSAGE_SIZE_MAX
/// (the caller checked that the result fits).
fn append_bounded(buf: &mut Vec<u8>, piece: &[u8]) {
    let needed = buf.len() + piece.len();
    if needed > buf.capacity() {
        let target = needed.max(2 * buf.capacity()).min(MESSAGE_SIZE_MAX);
        buf.reserve_exact(target - buf.len());
    }
    buf.extend_from_slice(piece);
}

#[cfg(test)]
mod tests {
    use super::*;
    use Guarantee::{Agreed, Safe};

    fn msg(i: usize, len: usize) -> Vec<u8> {
        (0..len).map(|j| (i * 131 + j * 7 + j / 256) as u8).collect()
    }

    fn unpack(frames: &[(Bytes, Guarantee)]) -> (Vec<Bytes>, Reassembler) {
        let mut r = Reassembler::new();
        let mut out = Vec::new();
        for (f, _) in frames {
            r.push_frame(f, &mut out).expect("well-formed");
        }
        (out, r)
    }

    fn frame(flags: u8, seq: u32, items: &[&[u8]]) -> Bytes {
        let mut f = vec![flags, 0];
        f.extend_from_slice(&(items.len() as u16).to_le_bytes());
        f.extend_from_slice(&seq.to_le_bytes());
        for it in items {
            f.extend_from_slice(&(it.len() as u16).to_le_bytes());
            f.extend_from_slice(it);
        }
        Bytes::from(f)
    }

    // Goal: small messages share one frame, emitted only at flush, and come back as
    // zero-copy slices of that frame.
    #[test]
    fn small_messages_pack_and_unpack_zero_copy() {
        let mut p = Packer::new(1308);
        let mut out = Vec::new();
        let msgs: Vec<_> = (0..10).map(|i| msg(i, 64)).collect();
        for m in &msgs {
            p.push(m, Agreed, &mut out);
        }
        assert!(out.is_empty());
        assert_eq!(p.staged_bytes(), HEADER_LEN + 10 * 66);
        let f = p.flush().expect("staged");
        assert!(p.is_empty() && p.flush().is_none());
        assert_eq!(f.0.len(), HEADER_LEN + 10 * 66);
        let info = FrameInfo::parse(&f.0).expect("valid");
        assert_eq!((info.seq, info.items, info.first_continues, info.last_continues), (0, 10, false, false));
        let (got, r) = unpack(std::slice::from_ref(&f));
        assert_eq!(got, msgs);
        let range = f.0.as_ptr() as usize..f.0.as_ptr() as usize + f.0.len();
        assert!(got.iter().all(|m| range.contains(&(m.as_ptr() as usize))));
        assert!(!r.in_progress() && r.discarded() == 0);
    }

    // Goal: a change of guarantee flushes the staged frame; frames stay homogeneous.
    #[test]
    fn guarantee_change_flushes() {
        let mut p = Packer::new(256);
        let mut out = Vec::new();
        p.push(b"a", Agreed, &mut out);
        p.push(b"b", Agreed, &mut out);
        assert!(out.is_empty());
        p.push(b"c", Safe, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].1, Agreed);
        assert_eq!(p.staged_guarantee(), Some(Safe));
        out.extend(p.flush());
        assert_eq!(out[1].1, Safe);
        let (got, _) = unpack(&out);
        assert_eq!(got, vec![&b"a"[..], b"b", b"c"]);
    }

    // Goal: a message that exactly fills a fresh frame is emitted at once without a flush;
    // one byte more is fragmented into two frames; the sizes respect frame_size_max.
    #[test]
    fn boundary_sizes() {
        let fsm = 300;
        let exact = fsm - HEADER_LEN - ITEM_HEADER_LEN;
        let mut p = Packer::new(fsm);
        let mut out = Vec::new();
        assert_eq!(p.frames_for(exact), 1);
        p.push(&msg(1, exact), Safe, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0.len(), fsm);
        assert!(p.is_empty());
        assert_eq!(p.frames_for(exact + 1), 2);
        p.push(&msg(2, exact + 1), Safe, &mut out);
        assert_eq!(out.len(), 2);
        out.extend(p.flush());
        assert_eq!(out.len(), 3);
        assert!(out.iter().all(|(f, g)| f.len() <= fsm && *g == Safe));
        // A message leaving less than 3 bytes of room also completes its frame.
        p.push(&msg(3, exact - 2), Agreed, &mut out);
        assert_eq!(out.len(), 4);
        let (got, _) = unpack(&out);
        assert_eq!(got, vec![msg(1, exact), msg(2, exact + 1), msg(3, exact - 2)]);
    }

    // Goal: fragmentation across the 2^32 wrap of the frame counter still reassembles.
    #[test]
    fn fragments_across_seq_wrap() {
        let mut p = Packer::new(256);
        p.seq = u32::MAX - 2;
        let mut out = Vec::new();
        let big = msg(9, 2000);
        p.push(b"x", Agreed, &mut out);
        p.push(&big, Agreed, &mut out);
        out.extend(p.flush());
        assert!(out.len() >= 8);
        let (got, r) = unpack(&out);
        assert_eq!(got, vec![b"x".to_vec(), big]);
        assert_eq!(r.discarded(), 0);
    }

    // Goal: losing a middle frame loses only the message it carried a piece of; the
    // orphan tail is discarded and counted; later messages are intact.
    #[test]
    fn lost_middle_frame_discards_only_that_message() {
        let mut p = Packer::new(256);
        let mut out = Vec::new();
        p.push(b"before", Agreed, &mut out);
        let big = msg(1, 1000);
        p.push(&big, Agreed, &mut out);
        p.push(b"after", Agreed, &mut out);
        out.extend(p.flush());
        assert!(out.len() >= 4);
        let mut r = Reassembler::new();
        let mut got = Vec::new();
        for (i, (f, _)) in out.iter().enumerate() {
            if i != 2 {
                r.push_frame(f, &mut got).expect("valid");
            }
        }
        assert_eq!(got, vec![&b"before"[..], b"after"]);
        // The head (frames 0..2) and the orphan run after the gap.
        assert_eq!(r.discarded(), 2);
        let lost_piece = out[2].0.len() - HEADER_LEN - ITEM_HEADER_LEN;
        assert_eq!(r.discarded_bytes(), (big.len() - lost_piece) as u64);
        assert!(!r.in_progress());
    }

    // Goal: an orphan continuation (the receiver missed the start) is dropped, the rest
    // of its frame is delivered, and a later unrelated fragmented message assembles.
    #[test]
    fn orphan_continuation_then_resync() {
        let mut r = Reassembler::new();
        let mut out = Vec::new();
        r.push_frame(&frame(FLAG_FIRST_CONTINUES | FLAG_LAST_CONTINUES, 7, &[b"mid"]), &mut out)
            .expect("valid");
        r.push_frame(
            &frame(FLAG_FIRST_CONTINUES | FLAG_LAST_CONTINUES, 8, &[b"end", b"ok", b"he"]),
            &mut out,
        )
        .expect("valid");
        assert!(r.in_progress());
        r.push_frame(&frame(FLAG_FIRST_CONTINUES, 9, &[b"ad"]), &mut out).expect("valid");
        assert_eq!(out, vec![&b"ok"[..], b"head"]);
        assert_eq!((r.discarded(), r.discarded_bytes()), (1, 6));
    }

    // Goal: a continuation from the wrong frame (a gap) never splices two messages.
    #[test]
    fn mismatched_seq_never_splices() {
        let mut r = Reassembler::new();
        let mut out = Vec::new();
        r.push_frame(&frame(FLAG_LAST_CONTINUES, 1, &[b"AAA"]), &mut out).expect("valid");
        r.push_frame(&frame(FLAG_FIRST_CONTINUES, 3, &[b"BBB", b"c"]), &mut out).expect("valid");
        assert_eq!(out, vec![&b"c"[..]]);
        assert_eq!((r.discarded(), r.discarded_bytes()), (2, 6));
        // A fresh frame (no continuation) also drops an unfinished message.
        r.push_frame(&frame(FLAG_LAST_CONTINUES, 4, &[b"DD"]), &mut out).expect("valid");
        r.push_frame(&frame(0, 5, &[b"e"]), &mut out).expect("valid");
        assert_eq!(out, vec![&b"c"[..], b"e"]);
        assert_eq!((r.discarded(), r.discarded_bytes()), (3, 8));
    }

    // Goal: every malformation has its own error, delivers nothing and drops the
    // unfinished message.
    #[test]
    fn malformed_frames() {
        let cases: Vec<(Vec<u8>, FrameError)> = vec![
            (vec![0; 7], FrameError::TooShort { len: 7 }),
            (vec![4, 0, 1, 0, 0, 0, 0, 0, 1, 0, 9], FrameError::Reserved { flags: 4, reserved: 0 }),
            (vec![0, 1, 1, 0, 0, 0, 0, 0, 1, 0, 9], FrameError::Reserved { flags: 0, reserved: 1 }),
            (vec![0, 0, 0, 0, 0, 0, 0, 0], FrameError::NoItems),
            (vec![0, 0, 1, 0, 0, 0, 0, 0, 0, 0], FrameError::EmptyItem { index: 0 }),
            (vec![0, 0, 2, 0, 0, 0, 0, 0, 1, 0, 9], FrameError::Truncated { index: 1 }),
            (vec![0, 0, 1, 0, 0, 0, 0, 0, 5, 0, 9], FrameError::Truncated { index: 0 }),
            (vec![0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 9, 9], FrameError::TrailingBytes { extra: 1 }),
        ];
        for (bytes, err) in cases {
            let mut r = Reassembler::new();
            let mut out = Vec::new();
            r.push_frame(&frame(FLAG_LAST_CONTINUES, 0, &[b"part"]), &mut out).expect("valid");
            assert_eq!(r.push_frame(&Bytes::from(bytes), &mut out), Err(err));
            assert!(out.is_empty() && !r.in_progress());
            assert_eq!((r.discarded(), r.discarded_bytes()), (1, 4));
            assert!(!err.to_string().is_empty());
        }
    }

    // Goal: a fragmented message may not grow past MESSAGE_SIZE_MAX; the rest of it is
    // then dropped silently and the reassembler resynchronises.
    #[test]
    fn oversized_message_is_discarded() {
        let piece = vec![7u8; 60000];
        let mut r = Reassembler::new();
        let mut out = Vec::new();
        r.push_frame(&frame(FLAG_LAST_CONTINUES, 0, &[&piece]), &mut out).expect("valid");
        let mut seq = 1;
        let mut total = piece.len();
        while total + piece.len() <= MESSAGE_SIZE_MAX {
            r.push_frame(&frame(FLAG_FIRST_CONTINUES | FLAG_LAST_CONTINUES, seq, &[&piece]), &mut out)
                .expect("valid");
            total += piece.len();
            seq += 1;
        }
        assert!(r.in_progress());
        let e = r.push_frame(&frame(FLAG_FIRST_CONTINUES | FLAG_LAST_CONTINUES, seq, &[&piece]), &mut out);
        assert_eq!(e, Err(FrameError::MessageTooLarge { len: total + piece.len() }));
        assert!(!r.in_progress());
        assert_eq!(r.discarded(), 1);
        r.push_frame(&frame(FLAG_FIRST_CONTINUES, seq + 1, &[b"tail", b"next"]), &mut out).expect("valid");
        assert_eq!(out, vec![&b"next"[..]]);
        assert_eq!(r.discarded(), 1);
        assert_eq!(r.discarded_bytes(), (total + piece.len() + 4) as u64);
    }

    // Goal: a 1 MiB message round-trips; its assembly never reserves beyond MESSAGE_SIZE_MAX.
    #[test]
    fn largest_message_round_trips() {
        let big = msg(3, MESSAGE_SIZE_MAX);
        let mut p = Packer::new(1308);
        let mut out = Vec::new();
        p.push(b"s", Agreed, &mut out);
        let bound = p.frames_for(big.len());
        let before = out.len();
        p.push(&big, Agreed, &mut out);
        out.extend(p.flush());
        assert!(out.len() - before <= bound);
        let mut r = Reassembler::new();
        let mut got = Vec::new();
        for (f, _) in &out {
            r.push_frame(f, &mut got).expect("valid");
            if let Assembling { buf, .. } = &r.state {
                assert!(buf.capacity() <= MESSAGE_SIZE_MAX);
            }
        }
        assert_eq!(got.len(), 2);
        assert!(got[1] == big);
    }

    // Goal: reset drops the unfinished message and counts it.
    #[test]
    fn reset_drops_partial() {
        let mut r = Reassembler::new();
        let mut out = Vec::new();
        r.push_frame(&frame(FLAG_LAST_CONTINUES, 0, &[b"abc"]), &mut out).expect("valid");
        assert!(r.in_progress());
        r.reset();
        assert!(!r.in_progress());
        assert_eq!((r.discarded(), r.discarded_bytes()), (1, 3));
        r.push_frame(&frame(FLAG_FIRST_CONTINUES, 1, &[b"def", b"g"]), &mut out).expect("valid");
        assert_eq!(out, vec![&b"g"[..]]);
    }

    // Goal: frames_for is exact with nothing staged and an upper bound otherwise.
    #[test]
    fn frames_for_bounds() {
        for fsm in [FRAME_SIZE_MIN, 256, 1308, FRAME_SIZE_LIMIT] {
            for staged in [0, 1, 5] {
                for len in [1, 2, 100, fsm - 11, fsm - 10, fsm - 9, 3 * fsm, 100_000] {
                    if len == 0 {
                        continue;
                    }
                    for g in [Agreed, Safe] {
                        let mut p = Packer::new(fsm);
                        let mut out = Vec::new();
                        for _ in 0..staged {
                            p.push(b"q", Agreed, &mut out);
                        }
                        out.clear();
                        let bound = p.frames_for(len);
                        let exact = p.is_empty();
                        p.push(&msg(0, len), g, &mut out);
                        out.extend(p.flush());
                        assert!(out.len() <= bound, "fsm {fsm} len {len}");
                        if exact {
                            assert_eq!(out.len(), bound, "fsm {fsm} len {len}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "frame_size_max")]
    fn tiny_frame_size_rejected() {
        let _ = Packer::new(FRAME_SIZE_MIN - 1);
    }
}
