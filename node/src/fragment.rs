//! Frames bigger than one Ethernet-sized datagram travel as fragments of our own, not as
//! IP fragments.
//!
//! With knet's frame size (64 KiB) a sealed frame used to leave as one UDP datagram that
//! the IP layer cut into 1,500-byte fragments: each fragment went through the bridge,
//! netfilter and the receiver's reassembly on its own. Cut here into [`SEGMENT`]-byte
//! datagrams, the fragments of one frame to one peer leave back to back in one buffer (a
//! *run*), which Linux sends as one packet through the whole path (UDP GSO) and hands to
//! the receiver whole (UDP GRO): several times fewer packets for the kernel to handle.
//! Without GSO they are plain datagrams, so the wire format does not depend on it.
//!
//! A fragment is `"sf"`, its index, the fragment count, and the frame's id (per sender),
//! then its piece of the sealed frame. Fragments are not authenticated on their own: the
//! reassembled frame is, so a forged or damaged fragment costs that frame (dropped and
//! counted, then retransmitted like any lost frame) and nothing else.

use std::net::SocketAddr;

/// The datagram size fragments are cut to: a 1,500-byte MTU under IPv6 (40-byte header)
/// and UDP (8), so it fits IPv4 too. A frame up to this size is sent whole.
pub const SEGMENT: usize = 1452;
/// Fragment header: magic, index, count, frame id.
pub const HEADER_LEN: usize = 8;
/// The first two bytes of every fragment (a sealed frame starts `"st"`).
pub const MAGIC: [u8; 2] = *b"sf";
/// The largest UDP payload: a run is at most this long.
const UDP_PAYLOAD_MAX: usize = 65_507;
/// Fragments of one frame at most (the count is one byte).
const FRAGMENTS_MAX: usize = 255;
/// Frames being reassembled at once, at most (from all sources): bounds the memory a
/// stream of forged first fragments can take, and how long a lost fragment's frame waits.
const PARTIALS_MAX: usize = 16;

/// Whether `datagram` is a fragment (else it is a whole frame, or garbage).
pub fn is_fragment(datagram: &[u8]) -> bool {
    datagram.starts_with(&MAGIC)
}

/// Fragments of at most `segment` bytes in a run, at most.
pub fn run_max(segment: usize) -> usize {
    (UDP_PAYLOAD_MAX / segment).max(1)
}

/// `frame` cut into fragments of `segment` bytes (the last one shorter), grouped into runs
/// of back-to-back fragments that each fit one UDP send. None if it would take more than
/// 255 fragments.
pub fn split(frame: &[u8], id: u32, segment: usize) -> Option<Vec<Vec<u8>>> {
    let piece = segment.checked_sub(HEADER_LEN).filter(|&p| p > 0)?;
    let count = frame.len().div_ceil(piece);
    if !(2..=FRAGMENTS_MAX).contains(&count) {
        return None;
    }
    let per_run = run_max(segment);
    let mut runs = Vec::with_capacity(count.div_ceil(per_run));
    for (index, chunk) in frame.chunks(piece).enumerate() {
        if index % per_run == 0 {
            let left = frame.len() - index * piece;
            let in_run = left.div_ceil(piece).min(per_run);
            runs.push(Vec::with_capacity(in_run * HEADER_LEN + left.min(in_run * piece)));
        }
        let run = runs.last_mut()?;
        run.extend_from_slice(&MAGIC);
        run.push(index as u8);
        run.push(count as u8);
        run.extend_from_slice(&id.to_le_bytes());
        run.extend_from_slice(chunk);
    }
    Some(runs)
}

/// Why a fragment was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FragmentError {
    /// Too short, a count below 2, or an index past the count.
    Malformed,
    /// At odds with the other fragments of its frame (count, sizes, or a frame past the
    /// largest datagram): the whole frame is dropped.
    Inconsistent,
    /// Already had it.
    Duplicate,
}

/// Counters for `totemctl stats`.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReassemblyStats {
    pub fragments: u64,
    pub frames: u64,
    /// Fragments dropped as malformed or inconsistent.
    pub dropped: u64,
    pub duplicates: u64,
    /// Unfinished frames pushed out by newer ones (a fragment was lost).
    pub evicted: u64,
}

/// Frames being put together from their fragments.
#[derive(Debug)]
pub struct Reassembler {
    partials: Vec<Partial>,
    /// Bumped by every fragment: the least recently touched frame is evicted first.
    clock: u64,
    /// The largest frame accepted.
    frame_max: usize,
    pub stats: ReassemblyStats,
}

#[derive(Debug)]
struct Partial {
    from: SocketAddr,
    id: u32,
    count: u8,
    have: [u64; 4],
    got: usize,
    /// The size of every fragment but the last (known from the first such to arrive).
    piece: Option<usize>,
    /// Every fragment but the last, each at `index * piece`.
    body: Vec<u8>,
    last: Option<Vec<u8>>,
    touched: u64,
}

impl Reassembler {
    pub fn new(frame_max: usize) -> Reassembler {
        Reassembler { partials: Vec::new(), clock: 0, frame_max, stats: ReassemblyStats::default() }
    }

    /// Take one fragment from `from`; the frame if it is now complete.
    pub fn push(&mut self, from: SocketAddr, fragment: &[u8]) -> Result<Option<Vec<u8>>, FragmentError> {
        self.stats.fragments += 1;
        let result = self.place(from, fragment);
        match result {
            Ok(Some(_)) => self.stats.frames += 1,
            Ok(None) => {}
            Err(FragmentError::Duplicate) => self.stats.duplicates += 1,
            Err(_) => self.stats.dropped += 1,
        }
        result
    }

    fn place(&mut self, from: SocketAddr, fragment: &[u8]) -> Result<Option<Vec<u8>>, FragmentError> {
        let (Some(header), Some(data)) = (fragment.get(..HEADER_LEN), fragment.get(HEADER_LEN..)) else {
            return Err(FragmentError::Malformed);
        };
        if header[..2] != MAGIC || header[3] < 2 || header[2] >= header[3] || data.is_empty() {
            return Err(FragmentError::Malformed);
        }
        let (index, count) = (header[2], header[3]);
        let id = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        self.clock += 1;
        let slot = match self.partials.iter().position(|p| p.from == from && p.id == id) {
            Some(i) => i,
            None => {
                if self.partials.len() >= PARTIALS_MAX
                    && let Some(oldest) = (0..self.partials.len()).min_by_key(|&i| self.partials[i].touched)
                {
                    self.partials.swap_remove(oldest);
                    self.stats.evicted += 1;
                }
                self.partials.push(Partial {
                    from,
                    id,
                    count,
                    have: [0; 4],
                    got: 0,
                    piece: None,
                    body: Vec::new(),
                    last: None,
                    touched: 0,
                });
                self.partials.len() - 1
            }
        };
        let frame_max = self.frame_max;
        let p = &mut self.partials[slot];
        p.touched = self.clock;
        let placed = p.place(index, count, data, frame_max);
        if placed.is_err() {
            if placed == Err(FragmentError::Inconsistent) {
                self.partials.swap_remove(slot);
            }
            return placed.map(|()| None);
        }
        if p.got < usize::from(p.count) {
            return Ok(None);
        }
        let mut done = self.partials.swap_remove(slot);
        let last = done.last.take().unwrap_or_default();
        if done.piece.is_some_and(|piece| last.len() > piece) || done.body.len() + last.len() > self.frame_max
        {
            return Err(FragmentError::Inconsistent);
        }
        done.body.extend_from_slice(&last);
        Ok(Some(done.body))
    }
}

impl Partial {
    fn place(&mut self, index: u8, count: u8, data: &[u8], frame_max: usize) -> Result<(), FragmentError> {
        if count != self.count {
            return Err(FragmentError::Inconsistent);
        }
        let (word, bit) = (usize::from(index / 64), 1u64 << (index % 64));
        if self.have[word] & bit != 0 {
            return Err(FragmentError::Duplicate);
        }
        if index + 1 == count {
            if data.len() > frame_max || self.piece.is_some_and(|p| data.len() > p) {
                return Err(FragmentError::Inconsistent);
            }
            self.last = Some(data.to_vec());
        } else {
            let piece = *self.piece.get_or_insert(data.len());
            if data.len() != piece || (usize::from(count) - 1) * piece >= frame_max {
                return Err(FragmentError::Inconsistent);
            }
            if self.body.is_empty() {
                // Room for the last fragment too (no longer than a piece), so that appending
                // it to the complete frame does not move a whole frame to a bigger buffer.
                self.body = Vec::with_capacity(usize::from(count) * piece);
                self.body.resize((usize::from(count) - 1) * piece, 0);
            }
            let at = usize::from(index) * piece;
            self.body.get_mut(at..at + piece).ok_or(FragmentError::Inconsistent)?.copy_from_slice(data);
        }
        self.have[word] |= bit;
        self.got += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// The fragments of `runs`, one by one.
    fn fragments(runs: &[Vec<u8>], segment: usize) -> Vec<Vec<u8>> {
        runs.iter().flat_map(|r| r.chunks(segment).map(<[u8]>::to_vec)).collect()
    }

    fn frame(len: usize, seed: u8) -> Vec<u8> {
        (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
    }

    /// A tiny seeded generator (xorshift), so that the orders below are reproducible.
    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
    }

    #[test]
    fn runs_are_back_to_back_fragments_that_fit_one_udp_send() {
        let f = frame(65_536, 7);
        let runs = split(&f, 9, SEGMENT).unwrap();
        let per = run_max(SEGMENT);
        assert_eq!(per, 45);
        assert!(runs.iter().all(|r| r.len() <= UDP_PAYLOAD_MAX));
        let frags = fragments(&runs, SEGMENT);
        assert_eq!(frags.len(), 65_536usize.div_ceil(SEGMENT - HEADER_LEN));
        assert_eq!(runs.len(), frags.len().div_ceil(per));
        // Every fragment but the last is a full segment (what GSO needs within a run).
        assert!(frags[..frags.len() - 1].iter().all(|x| x.len() == SEGMENT));
        assert!(frags.iter().all(|x| is_fragment(x)));
        // Small frames are not split.
        assert_eq!(split(&frame(SEGMENT - HEADER_LEN, 0), 1, SEGMENT), None);
        assert_eq!(split(&frame(400_000, 0), 1, SEGMENT), None);
    }

    #[test]
    fn any_order_with_duplicates_gives_back_each_frame_once() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for round in 0..200 {
            let segment = 64 + rng.below(1500);
            let len = segment + rng.below(20_000);
            let mut expected = Vec::new();
            let mut all = Vec::new();
            for (src, id) in [(1u16, round as u32), (2, round as u32), (1, round as u32 + 1000)] {
                let f = frame(len + usize::from(src), round as u8);
                let frags = fragments(&split(&f, id, segment).unwrap(), segment);
                all.extend(frags.iter().map(|x| (addr(src), x.clone())));
                // Some fragments twice (not all: a frame whose every fragment is duplicated
                // comes back twice, as a duplicated whole datagram does, and the replay
                // window drops the copy).
                for x in frags.iter().take(rng.below(frags.len())) {
                    all.push((addr(src), x.clone()));
                }
                expected.push(f);
            }
            for i in (1..all.len()).rev() {
                all.swap(i, rng.below(i + 1));
            }
            let mut r = Reassembler::new(65_536);
            let mut got = Vec::new();
            for (from, x) in &all {
                match r.push(*from, x) {
                    Ok(Some(f)) => got.push(f),
                    Ok(None) | Err(FragmentError::Duplicate) => {}
                    Err(e) => panic!("round {round}: {e:?}"),
                }
            }
            got.sort();
            expected.sort();
            let lens = |v: &[Vec<u8>]| v.iter().map(Vec::len).collect::<Vec<_>>();
            assert_eq!(lens(&got), lens(&expected), "round {round} (segment {segment})");
            assert!(got == expected, "round {round}: a frame came back wrong");
            assert!(r.partials.len() <= PARTIALS_MAX);
        }
    }

    #[test]
    fn forged_and_damaged_fragments_are_dropped_not_trusted() {
        let f = frame(5000, 3);
        let frags = fragments(&split(&f, 4, 1000).unwrap(), 1000);
        let mut r = Reassembler::new(65_536);
        assert_eq!(r.push(addr(1), b"sf"), Err(FragmentError::Malformed));
        assert_eq!(r.push(addr(1), &[b's', b'f', 3, 3, 0, 0, 0, 0, 1]), Err(FragmentError::Malformed));
        assert_eq!(r.push(addr(1), &[b's', b'f', 0, 1, 0, 0, 0, 0, 1]), Err(FragmentError::Malformed));
        assert_eq!(r.push(addr(1), &[b's', b'f', 0, 3, 0, 0, 0, 0]), Err(FragmentError::Malformed));
        // A fragment of another size than its siblings drops the frame.
        assert_eq!(r.push(addr(1), &frags[0]), Ok(None));
        let mut short = frags[1].clone();
        short.pop();
        assert_eq!(r.push(addr(1), &short), Err(FragmentError::Inconsistent));
        assert!(r.partials.is_empty());
        // A claimed frame past the largest datagram.
        let mut r = Reassembler::new(4000);
        assert_eq!(r.push(addr(1), &frags[0]), Err(FragmentError::Inconsistent));
        // Another source's fragments never complete this source's frame.
        let mut r = Reassembler::new(65_536);
        for x in &frags[..frags.len() - 1] {
            assert_eq!(r.push(addr(1), x), Ok(None));
        }
        assert_eq!(r.push(addr(2), &frags[frags.len() - 1]), Ok(None));
        assert_eq!(r.push(addr(1), &frags[frags.len() - 1]), Ok(Some(f)));
        assert_eq!(r.stats.dropped, 0);
    }

    #[test]
    fn lost_fragments_cost_bounded_memory() {
        let mut r = Reassembler::new(65_536);
        for id in 0..1000u32 {
            let frags = fragments(&split(&frame(3000, 1), id, 1000).unwrap(), 1000);
            assert_eq!(r.push(addr(1), &frags[0]), Ok(None));
        }
        assert_eq!(r.partials.len(), PARTIALS_MAX);
        assert_eq!(r.stats.evicted, 1000 - PARTIALS_MAX as u64);
        // The newest frames are the ones kept.
        let frags = fragments(&split(&frame(3000, 1), 999, 1000).unwrap(), 1000);
        assert_eq!(r.push(addr(1), &frags[1]), Ok(None));
        assert_eq!(r.push(addr(1), &frags[2]), Ok(None));
        assert_eq!(r.push(addr(1), &frags[3]), Ok(Some(frame(3000, 1))));
    }
}
