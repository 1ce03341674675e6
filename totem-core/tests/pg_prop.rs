//! Property tests of packing and fragmentation (`totem_core::pg`): round trips, frame
//! sizes, the `frames_for` bound, loss of frames, and arbitrary input frames.

use bytes::Bytes;
use proptest::prelude::*;
use totem_core::config::MESSAGE_SIZE_MAX;
use totem_core::message::Guarantee;
use totem_core::pg::{FrameInfo, HEADER_LEN, ITEM_HEADER_LEN, Packer, Reassembler};

/// A message size, resolved against the frame size of the case.
#[derive(Clone, Debug)]
enum Size {
    /// 1..=128 bytes.
    Small(usize),
    /// Up to 4 frames' worth: `n % (4 * per_frame) + 1`.
    Frames(usize),
    /// `m * per_frame - k` for m in 1..=3: sizes that fill frames exactly or nearly.
    Boundary(usize, usize),
    /// 100 000 ..= MESSAGE_SIZE_MAX bytes (MESSAGE_SIZE_MAX itself has its own weight).
    Large(usize),
}

impl Size {
    fn resolve(&self, fsm: usize) -> usize {
        let per_frame = fsm - HEADER_LEN - ITEM_HEADER_LEN;
        match *self {
            Size::Small(n) | Size::Large(n) => n,
            Size::Frames(n) => n % (4 * per_frame) + 1,
            Size::Boundary(m, k) => (m * per_frame).saturating_sub(k).max(1),
        }
    }
}

fn guarantee() -> impl Strategy<Value = Guarantee> {
    prop_oneof![Just(Guarantee::Agreed), Just(Guarantee::Safe)]
}

fn size(large_weight: u32) -> impl Strategy<Value = Size> {
    prop_oneof![
        12 => (1usize..=128).prop_map(Size::Small),
        4 => any::<usize>().prop_map(Size::Frames),
        3 => (1usize..=3, 0usize..=16).prop_map(|(m, k)| Size::Boundary(m, k)),
        large_weight => (100_000usize..=MESSAGE_SIZE_MAX).prop_map(Size::Large),
        large_weight.min(1) => Just(Size::Large(MESSAGE_SIZE_MAX)),
    ]
}

/// One submitted message: its size, guarantee, and whether a token visit (flush) follows.
fn ops(large_weight: u32, max_len: usize) -> impl Strategy<Value = Vec<(Size, Guarantee, bool)>> {
    prop::collection::vec((size(large_weight), guarantee(), prop::bool::weighted(0.15)), 1..max_len)
}

/// Distinct, cheap content for message `i`.
fn content(i: usize, len: usize) -> Vec<u8> {
    let mut x = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

struct Packed {
    frames: Vec<(Bytes, Guarantee)>,
    msgs: Vec<(Vec<u8>, Guarantee)>,
    /// Inclusive range of the frames each message touches.
    touched: Vec<(usize, usize)>,
}

/// Pack the messages, checking frame sizes, homogeneity and the `frames_for` bound.
fn pack(fsm: usize, ops: &[(Size, Guarantee, bool)]) -> Result<Packed, TestCaseError> {
    let mut p = Packer::new(fsm);
    let mut frames = Vec::new();
    let mut msgs = Vec::new();
    let mut touched = Vec::new();
    for (i, (size, g, flush)) in ops.iter().enumerate() {
        let len = size.resolve(fsm);
        let payload = content(i, len);
        let bound = p.frames_for(len);
        let before = frames.len();
        let first = match p.staged_guarantee() {
            Some(sg) if sg != *g => before + 1,
            _ => before,
        };
        p.push(&payload, *g, &mut frames);
        let last = if p.is_empty() { frames.len() - 1 } else { frames.len() };
        let added = frames.len() - before + usize::from(!p.is_empty());
        prop_assert!(added <= bound, "len {} added {} frames, bound {}", len, added, bound);
        prop_assert!(p.staged_bytes() <= fsm);
        prop_assert_eq!(p.is_empty(), p.staged_bytes() == 0);
        touched.push((first, last));
        msgs.push((payload, *g));
        if *flush {
            frames.extend(p.flush());
            prop_assert!(p.is_empty());
        }
    }
    frames.extend(p.flush());
    for (seq, (f, _)) in frames.iter().enumerate() {
        prop_assert!(f.len() <= fsm, "frame of {} bytes > {}", f.len(), fsm);
        let info = FrameInfo::parse(f).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(info.seq, seq as u32);
    }
    for ((_, g), &(first, last)) in msgs.iter().zip(&touched) {
        prop_assert!(last < frames.len());
        for (_, fg) in &frames[first..=last] {
            prop_assert_eq!(fg, g, "a frame mixes guarantees");
        }
    }
    Ok(Packed { frames, msgs, touched })
}

/// Lengths of the items of a well-formed frame.
fn item_lens(frame: &[u8]) -> Vec<usize> {
    let mut lens = Vec::new();
    let mut pos = HEADER_LEN;
    while pos < frame.len() {
        let len = usize::from(u16::from_le_bytes([frame[pos], frame[pos + 1]]));
        lens.push(len);
        pos += ITEM_HEADER_LEN + len;
    }
    lens
}

/// Deliver the frames not in `lost`, returning each delivered message with the guarantee
/// of the frame that completed it.
fn deliver(
    frames: &[(Bytes, Guarantee)],
    lost: &[bool],
    r: &mut Reassembler,
) -> Result<Vec<(Bytes, Guarantee)>, TestCaseError> {
    let mut delivered = Vec::new();
    let mut out = Vec::new();
    for (i, (f, g)) in frames.iter().enumerate() {
        if lost[i] {
            continue;
        }
        r.push_frame(f, &mut out).map_err(|e| TestCaseError::fail(e.to_string()))?;
        delivered.extend(out.drain(..).map(|m| (m, *g)));
    }
    Ok(delivered)
}

/// Unpack with the frames in `lost` missing; exactly the messages whose frames all arrived
/// must be delivered, intact and in order, and the discard counters must match.
fn check_loss(packed: &Packed, lost: &[bool]) -> Result<(), TestCaseError> {
    let mut r = Reassembler::new();
    let delivered = deliver(&packed.frames, lost, &mut r)?;
    r.reset();
    prop_assert!(!r.in_progress());
    let mut expected = Vec::new();
    let mut expected_bytes = 0u64;
    let mut any_piece_lost = false;
    for ((m, g), &(first, last)) in packed.msgs.iter().zip(&packed.touched) {
        if (first..=last).all(|f| !lost[f]) {
            expected.push((m.as_slice(), *g));
            continue;
        }
        // Received pieces of a lost message are discarded and counted.
        for f in (first..=last).filter(|&f| !lost[f]) {
            let lens = item_lens(&packed.frames[f].0);
            let piece = if first == last {
                m.len()
            } else if f == first {
                lens[lens.len() - 1]
            } else {
                lens[0]
            };
            expected_bytes += piece as u64;
            any_piece_lost = true;
        }
    }
    prop_assert_eq!(delivered.len(), expected.len(), "delivered count");
    for (i, ((m, g), (e, eg))) in delivered.iter().zip(&expected).enumerate() {
        prop_assert!(m.as_ref() == *e, "delivered message {} differs", i);
        prop_assert_eq!(g, eg);
    }
    prop_assert_eq!(r.discarded_bytes(), expected_bytes);
    prop_assert_eq!(r.discarded() > 0, any_piece_lost);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    // Goal: packing then unpacking returns every message, byte-identical, in order, with
    // its guarantee; frames fit; frames_for bounds; one or several lost frames lose only
    // the messages that touched them.
    #[test]
    fn round_trip_and_loss(
        fsm in prop_oneof![256usize..=2048, 256usize..=65000, Just(256usize), Just(1308usize)],
        ops in ops(0, 40),
        drop_one in any::<prop::sample::Index>(),
        drop_many in prop::collection::vec(prop::bool::weighted(0.2), 0..64),
    ) {
        let packed = pack(fsm, &ops)?;
        let n = packed.frames.len();

        let mut r = Reassembler::new();
        let delivered = deliver(&packed.frames, &vec![false; n], &mut r)?;
        prop_assert!(!r.in_progress());
        prop_assert_eq!(r.discarded(), 0);
        prop_assert_eq!(delivered.len(), packed.msgs.len());
        for ((m, g), (e, eg)) in delivered.iter().zip(&packed.msgs) {
            prop_assert!(m.as_ref() == e.as_slice());
            prop_assert_eq!(g, eg);
        }

        let mut lost = vec![false; n];
        lost[drop_one.index(n)] = true;
        check_loss(&packed, &lost)?;

        let lost: Vec<bool> = (0..n).map(|i| drop_many.get(i).copied().unwrap_or(false)).collect();
        check_loss(&packed, &lost)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    // Goal: the same with messages up to MESSAGE_SIZE_MAX (few cases: they are big).
    #[test]
    fn round_trip_and_loss_large(
        fsm in prop_oneof![256usize..=65000, Just(1308usize)],
        ops in ops(3, 8),
        drop_one in any::<prop::sample::Index>(),
    ) {
        let packed = pack(fsm, &ops)?;
        let n = packed.frames.len();
        check_loss(&packed, &vec![false; n])?;
        let mut lost = vec![false; n];
        lost[drop_one.index(n)] = true;
        check_loss(&packed, &lost)?;
    }
}

/// A frame that is either arbitrary bytes or a valid-looking frame with random flags and
/// sequence numbers (to drive the reassembler through all its states).
fn any_frame() -> impl Strategy<Value = Vec<u8>> {
    let structured =
        (0u8..4, 0u32..6, prop::collection::vec(prop::collection::vec(any::<u8>(), 1..40), 1..4)).prop_map(
            |(flags, seq, items)| {
                let mut f = vec![flags, 0];
                f.extend_from_slice(&(items.len() as u16).to_le_bytes());
                f.extend_from_slice(&seq.to_le_bytes());
                for it in items {
                    f.extend_from_slice(&(it.len() as u16).to_le_bytes());
                    f.extend_from_slice(&it);
                }
                f
            },
        );
    let mutated = (structured.clone(), any::<prop::sample::Index>(), any::<u8>(), any::<bool>()).prop_map(
        |(mut f, at, byte, truncate)| {
            let i = at.index(f.len());
            if truncate {
                f.truncate(i);
            } else {
                f[i] = byte;
            }
            f
        },
    );
    prop_oneof![
        2 => prop::collection::vec(any::<u8>(), 0..300),
        3 => structured,
        3 => mutated,
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    // Goal: arbitrary frames never panic; the reassembler stays usable, never delivers an
    // empty or oversized message, and delivers nothing from a frame it rejects.
    #[test]
    fn arbitrary_frames_never_panic(frames in prop::collection::vec(any_frame(), 1..12)) {
        let mut r = Reassembler::new();
        let mut out = Vec::new();
        for f in frames {
            let before = out.len();
            let frame = Bytes::from(f);
            let result = r.push_frame(&frame, &mut out);
            if result.is_err() {
                prop_assert_eq!(out.len(), before);
                prop_assert!(!r.in_progress());
            } else {
                prop_assert!(FrameInfo::parse(&frame).is_ok());
            }
            prop_assert!(out.iter().all(|m| !m.is_empty() && m.len() <= MESSAGE_SIZE_MAX));
        }
        r.reset();
        prop_assert!(!r.in_progress());
    }
}
