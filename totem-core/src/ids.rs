//! Identifiers and sequence-number arithmetic.
//!
//! Sequence numbers restart at zero in every ring and wrap at 2^32. Corosync compares them
//! with a shift-by-0x10000 trick that only orders values close to the wrap; we use RFC 1982
//! serial-number arithmetic instead, which orders any two values less than 2^31 apart. The
//! protocol never holds more than `SORT_QUEUE_SLOTS` messages in flight, far below that bound.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A node's identity: a non-zero 32-bit integer (0 is reserved as "nobody").
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(pub u32);

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}", self.0)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A ring's identity: its representative (the lowest member) and a ring sequence number
/// that only grows, so no two rings ever share an id, across restarts too.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RingId {
    pub rep: NodeId,
    pub seq: u64,
}

impl RingId {
    pub const fn new(rep: NodeId, seq: u64) -> Self {
        RingId { rep, seq }
    }
}

impl fmt::Debug for RingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.rep.0, self.seq)
    }
}

impl fmt::Display for RingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.rep.0, self.seq)
    }
}

/// A message sequence number inside one ring, compared with serial-number arithmetic.
///
/// `Seq` deliberately implements no `Ord`: "less than" is only meaningful between values
/// less than 2^31 apart, which is what [`Seq::is_before`] states.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Seq(pub u32);

impl Seq {
    /// The value before the first message of a ring: a new ring's token starts with
    /// `aru = Seq::ZERO.prev()` ("-1"), and the first message gets `Seq(1)`.
    pub const ZERO: Seq = Seq(0);

    pub const fn next(self) -> Seq {
        Seq(self.0.wrapping_add(1))
    }

    pub const fn prev(self) -> Seq {
        Seq(self.0.wrapping_sub(1))
    }

    pub const fn add(self, n: u32) -> Seq {
        Seq(self.0.wrapping_add(n))
    }

    /// `self < other` in serial-number arithmetic.
    pub const fn is_before(self, other: Seq) -> bool {
        (other.0.wrapping_sub(self.0) as i32) > 0
    }

    /// `self <= other` in serial-number arithmetic.
    pub const fn is_before_or_eq(self, other: Seq) -> bool {
        self.0 == other.0 || self.is_before(other)
    }

    /// How many steps from `earlier` to `self` (`self - earlier`), when `earlier` is not after
    /// `self`; `None` otherwise.
    pub const fn since(self, earlier: Seq) -> Option<u32> {
        if earlier.is_before_or_eq(self) { Some(self.0.wrapping_sub(earlier.0)) } else { None }
    }

    /// The earlier of two sequence numbers.
    pub const fn min(self, other: Seq) -> Seq {
        if self.is_before(other) { self } else { other }
    }

    /// The later of two sequence numbers.
    pub const fn max(self, other: Seq) -> Seq {
        if self.is_before(other) { other } else { self }
    }
}

impl fmt::Debug for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: ordering holds across the 2^32 wrap, where plain integer comparison fails.
    #[test]
    fn ordering_across_the_wrap() {
        let near_end = Seq(u32::MAX - 2);
        let wrapped = Seq(3);
        assert!(near_end.is_before(wrapped));
        assert!(!wrapped.is_before(near_end));
        assert_eq!(wrapped.since(near_end), Some(6));
        assert_eq!(near_end.since(wrapped), None);
        assert_eq!(Seq(u32::MAX).next(), Seq(0));
        assert_eq!(Seq::ZERO.prev(), Seq(u32::MAX));
        assert!(Seq::ZERO.prev().is_before(Seq(1)));
        assert_eq!(near_end.max(wrapped), wrapped);
        assert_eq!(near_end.min(wrapped), near_end);
    }

    // Goal: the relation is irreflexive and antisymmetric for every pair within the window.
    #[test]
    fn strict_order_within_window() {
        for base in [0u32, 1, 0x7fff_ffff, 0x8000_0000, u32::MAX - 5, u32::MAX] {
            for delta in [1u32, 2, 1000, 0x7fff_ffff] {
                let a = Seq(base);
                let b = a.add(delta);
                assert!(a.is_before(b), "{a:?} < {b:?}");
                assert!(!b.is_before(a));
                assert!(!a.is_before(a));
                assert!(a.is_before_or_eq(a));
                assert_eq!(b.since(a), Some(delta));
            }
        }
    }
}
