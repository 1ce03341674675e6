//! Application payloads of the simulated workload: a message id followed by a filler that
//! is a function of the id, so every delivery can be checked byte for byte.

use spec::trace::MsgId;

/// The id takes the first 16 bytes; a message is never shorter.
pub const HEADER_LEN: usize = 16;

fn filler_byte(msg: &MsgId, i: usize) -> u8 {
    let x = (msg.origin as u64) ^ ((msg.incarnation as u64) << 8) ^ msg.counter.wrapping_mul(31);
    (x.wrapping_add(i as u64).wrapping_mul(0x9E37_79B9)) as u8
}

/// The length of what `build` makes for `size`.
pub fn built_len(size: usize) -> usize {
    size.max(HEADER_LEN)
}

pub fn build(msg: MsgId, size: usize) -> Vec<u8> {
    let size = size.max(HEADER_LEN);
    let mut v = Vec::with_capacity(size);
    v.extend_from_slice(&msg.origin.to_le_bytes());
    v.extend_from_slice(&msg.incarnation.to_le_bytes());
    v.extend_from_slice(&msg.counter.to_le_bytes());
    v.extend((HEADER_LEN..size).map(|i| filler_byte(&msg, i)));
    v
}

pub fn id_of(bytes: &[u8]) -> Option<MsgId> {
    let origin = u32::from_le_bytes(bytes.get(0..4)?.try_into().ok()?);
    let incarnation = u32::from_le_bytes(bytes.get(4..8)?.try_into().ok()?);
    let counter = u64::from_le_bytes(bytes.get(8..16)?.try_into().ok()?);
    Some(MsgId { origin, incarnation, counter })
}

/// The id, if the whole payload is exactly what `build` made for it.
pub fn verify(bytes: &[u8]) -> Option<MsgId> {
    let msg = id_of(bytes)?;
    bytes[HEADER_LEN..]
        .iter()
        .enumerate()
        .all(|(i, &b)| b == filler_byte(&msg, i + HEADER_LEN))
        .then_some(msg)
}
