//! The sort queue: messages of one ring held by sequence number, from the oldest not yet
//! released to the highest received, with a miss count for every hole.

use crate::config::SORT_QUEUE_SLOTS;
use crate::ids::Seq;
use crate::message::Mcast;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
enum Slot {
    /// Not received yet; `misses` counts the token visits that saw the hole.
    Missing {
        misses: u32,
    },
    Present(Mcast),
}

/// Slot `i` holds sequence number `released + 1 + i`.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct SortQueue {
    /// Every message up to and including this one has been released (freed).
    released: Seq,
    slots: VecDeque<Slot>,
}

impl SortQueue {
    /// An empty queue whose first expected message is `released + 1`.
    pub fn new(released: Seq) -> Self {
        SortQueue { released, slots: VecDeque::new() }
    }

    pub fn released(&self) -> Seq {
        self.released
    }

    fn index(&self, seq: Seq) -> Option<usize> {
        let offset = seq.since(self.released.next())?;
        (offset < SORT_QUEUE_SLOTS).then_some(offset as usize)
    }

    /// Whether `seq` may be stored: after the released point and within the window.
    pub fn in_window(&self, seq: Seq) -> bool {
        self.index(seq).is_some()
    }

    pub fn get(&self, seq: Seq) -> Option<&Mcast> {
        match self.slots.get(self.index(seq)?) {
            Some(Slot::Present(m)) => Some(m),
            _ => None,
        }
    }

    pub fn contains(&self, seq: Seq) -> bool {
        self.get(seq).is_some()
    }

    /// Store `mcast` at `seq`; false if it is outside the window or already present.
    pub fn insert(&mut self, seq: Seq, mcast: Mcast) -> bool {
        let Some(i) = self.index(seq) else { return false };
        while self.slots.len() <= i {
            self.slots.push_back(Slot::Missing { misses: 0 });
        }
        match &mut self.slots[i] {
            Slot::Present(_) => false,
            slot => {
                *slot = Slot::Present(mcast);
                true
            }
        }
    }

    /// Count one more token visit that saw `seq` missing; returns the new count, or `None`
    /// if `seq` is present or outside the window.
    pub fn note_miss(&mut self, seq: Seq) -> Option<u32> {
        let i = self.index(seq)?;
        while self.slots.len() <= i {
            self.slots.push_back(Slot::Missing { misses: 0 });
        }
        match &mut self.slots[i] {
            Slot::Missing { misses } => {
                *misses = misses.saturating_add(1);
                Some(*misses)
            }
            Slot::Present(_) => None,
        }
    }

    /// The highest seq such that every message from `from + 1` up to it is present,
    /// starting from `from` (which must not be before the released point).
    pub fn contiguous_from(&self, from: Seq) -> Seq {
        let mut at = from;
        while self.contains(at.next()) {
            at = at.next();
        }
        at
    }

    /// Free every message up to and including `up_to`. Returns the new released point if
    /// anything was freed.
    pub fn release(&mut self, up_to: Seq) -> Option<Seq> {
        let count = up_to.since(self.released)?;
        if count == 0 {
            return None;
        }
        let drain = (count as usize).min(self.slots.len());
        self.slots.drain(..drain);
        self.released = up_to;
        Some(up_to)
    }

    /// Number of slots in use (present or known missing).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Present messages in seq order.
    pub fn iter(&self) -> impl Iterator<Item = (Seq, &Mcast)> {
        let base = self.released.next();
        self.slots.iter().enumerate().filter_map(move |(i, s)| match s {
            Slot::Present(m) => Some((base.add(i as u32), m)),
            Slot::Missing { .. } => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{NodeId, RingId};
    use crate::message::{Guarantee, McastBody};
    use bytes::Bytes;

    fn mcast(seq: u32) -> Mcast {
        Mcast {
            ring_id: RingId::new(NodeId(1), 4),
            seq: Seq(seq),
            origin: NodeId(1),
            guarantee: Guarantee::Agreed,
            body: McastBody::Frame(Bytes::from_static(b"x")),
        }
    }

    // Goal: holes are counted, contiguity stops at a hole, release frees from the front.
    #[test]
    fn holes_contiguity_and_release() {
        let mut q = SortQueue::new(Seq::ZERO);
        assert!(q.insert(Seq(1), mcast(1)));
        assert!(q.insert(Seq(3), mcast(3)));
        assert!(!q.insert(Seq(3), mcast(3)), "duplicates are refused");
        assert_eq!(q.contiguous_from(Seq::ZERO), Seq(1));
        assert_eq!(q.note_miss(Seq(2)), Some(1));
        assert_eq!(q.note_miss(Seq(2)), Some(2));
        assert_eq!(q.note_miss(Seq(3)), None);
        assert!(q.insert(Seq(2), mcast(2)));
        assert_eq!(q.contiguous_from(Seq::ZERO), Seq(3));
        assert_eq!(q.release(Seq(2)), Some(Seq(2)));
        assert!(!q.contains(Seq(1)));
        assert!(q.contains(Seq(3)));
        assert!(!q.in_window(Seq(2)), "released seqs are outside the window");
        assert!(!q.in_window(Seq(3 + SORT_QUEUE_SLOTS)));
        assert!(q.in_window(Seq(2 + SORT_QUEUE_SLOTS)));
    }

    // Goal: the queue works across the 2^32 wrap of sequence numbers.
    #[test]
    fn across_the_wrap() {
        let mut q = SortQueue::new(Seq(u32::MAX - 1));
        assert!(q.insert(Seq(u32::MAX), mcast(0)));
        assert!(q.insert(Seq(0), mcast(0)));
        assert!(q.insert(Seq(1), mcast(0)));
        assert_eq!(q.contiguous_from(Seq(u32::MAX - 1)), Seq(1));
        assert_eq!(q.release(Seq(0)), Some(Seq(0)));
        assert_eq!(q.len(), 1);
    }
}
