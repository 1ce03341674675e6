//! Hashing a core without its counters.
//!
//! `Node` derives `Hash`, but its statistics (`Stats`, the reassemblers' discard counters,
//! `bad_frames`) are write-only counters that never influence the protocol. Hashing them
//! would make every ignored duplicate or re-sent token a new state, and the state space
//! infinite for no behavioural difference. This module hashes a core through its `serde`
//! representation instead, skipping the struct fields listed in [`SKIPPED`]: two cores
//! that differ only there behave identically from then on, so merging them is sound.

use serde::ser::{self, Serialize};
use std::fmt;
use std::hash::{Hash, Hasher};

/// Struct fields that are counters for operators, plus the configuration (identical in
/// every node of a model, so it adds nothing).
pub const SKIPPED: &[&str] = &["stats", "bad_frames", "discarded", "discarded_bytes", "config", "scratch"];

/// The hash of `value` with the [`SKIPPED`] fields left out.
pub fn hash_without_counters<T: Serialize>(value: &T) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    let _ = value.serialize(&mut HashSer(&mut h));
    h.finish()
}

struct HashSer<'a, H: Hasher>(&'a mut H);

#[derive(Debug)]
pub struct Never;

impl fmt::Display for Never {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("hashing cannot fail")
    }
}

impl std::error::Error for Never {}

impl ser::Error for Never {
    fn custom<T: fmt::Display>(_msg: T) -> Self {
        Never
    }
}

macro_rules! prim {
    ($($name:ident: $t:ty = $tag:expr),* $(,)?) => {
        $(fn $name(self, v: $t) -> Result<(), Never> {
            self.0.write_u8($tag);
            v.hash(self.0);
            Ok(())
        })*
    };
}

impl<'a, 'b, H: Hasher> ser::Serializer for &'a mut HashSer<'b, H> {
    type Ok = ();
    type Error = Never;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    prim! {
        serialize_bool: bool = 1,
        serialize_i8: i8 = 2,
        serialize_i16: i16 = 3,
        serialize_i32: i32 = 4,
        serialize_i64: i64 = 5,
        serialize_u8: u8 = 6,
        serialize_u16: u16 = 7,
        serialize_u32: u32 = 8,
        serialize_u64: u64 = 9,
        serialize_char: char = 10,
        serialize_str: &str = 11,
        serialize_bytes: &[u8] = 12,
    }

    fn serialize_f32(self, v: f32) -> Result<(), Never> {
        self.0.write_u8(13);
        self.0.write_u32(v.to_bits());
        Ok(())
    }

    fn serialize_f64(self, v: f64) -> Result<(), Never> {
        self.0.write_u8(14);
        self.0.write_u64(v.to_bits());
        Ok(())
    }

    fn serialize_none(self) -> Result<(), Never> {
        self.0.write_u8(15);
        Ok(())
    }

    fn serialize_some<T: ?Sized + Serialize>(self, value: &T) -> Result<(), Never> {
        self.0.write_u8(16);
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<(), Never> {
        self.0.write_u8(17);
        Ok(())
    }

    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), Never> {
        self.0.write_u8(18);
        Ok(())
    }

    fn serialize_unit_variant(
        self,
        _name: &'static str,
        index: u32,
        _variant: &'static str,
    ) -> Result<(), Never> {
        self.0.write_u8(19);
        self.0.write_u32(index);
        Ok(())
    }

    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), Never> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _name: &'static str,
        index: u32,
        _variant: &'static str,
        value: &T,
    ) -> Result<(), Never> {
        self.0.write_u8(20);
        self.0.write_u32(index);
        value.serialize(self)
    }

    fn serialize_seq(self, len: Option<usize>) -> Result<Self, Never> {
        self.0.write_u8(21);
        self.0.write_usize(len.unwrap_or(usize::MAX));
        Ok(self)
    }

    fn serialize_tuple(self, _len: usize) -> Result<Self, Never> {
        Ok(self)
    }

    fn serialize_tuple_struct(self, _name: &'static str, _len: usize) -> Result<Self, Never> {
        Ok(self)
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self, Never> {
        self.0.write_u8(22);
        self.0.write_u32(index);
        Ok(self)
    }

    fn serialize_map(self, len: Option<usize>) -> Result<Self, Never> {
        self.0.write_u8(23);
        self.0.write_usize(len.unwrap_or(usize::MAX));
        Ok(self)
    }

    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<Self, Never> {
        Ok(self)
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self, Never> {
        self.0.write_u8(24);
        self.0.write_u32(index);
        Ok(self)
    }
}

impl<H: Hasher> ser::SerializeSeq for &mut HashSer<'_, H> {
    type Ok = ();
    type Error = Never;
    fn serialize_element<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), Never> {
        value.serialize(&mut **self)
    }
    fn end(self) -> Result<(), Never> {
        Ok(())
    }
}

impl<H: Hasher> ser::SerializeTuple for &mut HashSer<'_, H> {
    type Ok = ();
    type Error = Never;
    fn serialize_element<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), Never> {
        value.serialize(&mut **self)
    }
    fn end(self) -> Result<(), Never> {
        Ok(())
    }
}

impl<H: Hasher> ser::SerializeTupleStruct for &mut HashSer<'_, H> {
    type Ok = ();
    type Error = Never;
    fn serialize_field<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), Never> {
        value.serialize(&mut **self)
    }
    fn end(self) -> Result<(), Never> {
        Ok(())
    }
}

impl<H: Hasher> ser::SerializeTupleVariant for &mut HashSer<'_, H> {
    type Ok = ();
    type Error = Never;
    fn serialize_field<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), Never> {
        value.serialize(&mut **self)
    }
    fn end(self) -> Result<(), Never> {
        Ok(())
    }
}

impl<H: Hasher> ser::SerializeMap for &mut HashSer<'_, H> {
    type Ok = ();
    type Error = Never;
    fn serialize_key<T: ?Sized + Serialize>(&mut self, key: &T) -> Result<(), Never> {
        key.serialize(&mut **self)
    }
    fn serialize_value<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), Never> {
        value.serialize(&mut **self)
    }
    fn end(self) -> Result<(), Never> {
        Ok(())
    }
}

impl<H: Hasher> ser::SerializeStruct for &mut HashSer<'_, H> {
    type Ok = ();
    type Error = Never;
    fn serialize_field<T: ?Sized + Serialize>(&mut self, key: &'static str, value: &T) -> Result<(), Never> {
        if SKIPPED.contains(&key) { Ok(()) } else { value.serialize(&mut **self) }
    }
    fn end(self) -> Result<(), Never> {
        Ok(())
    }
}

impl<H: Hasher> ser::SerializeStructVariant for &mut HashSer<'_, H> {
    type Ok = ();
    type Error = Never;
    fn serialize_field<T: ?Sized + Serialize>(&mut self, key: &'static str, value: &T) -> Result<(), Never> {
        if SKIPPED.contains(&key) { Ok(()) } else { value.serialize(&mut **self) }
    }
    fn end(self) -> Result<(), Never> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use totem_core::{Config, Node, NodeId, RingId, Time};

    // Goal: two cores that differ only in their counters hash alike; a real difference
    // shows.
    // Method: a one-node ring; fire the token-retransmit timer (a counter moves, nothing
    // else), then submit a message (the pending queue changes).
    #[test]
    fn counters_are_ignored() {
        let c = Config { probes: false, ..Config::default() };
        let mut a = Node::new_on_ring(c, NodeId(1), RingId::new(NodeId(1), 4), &[NodeId(1)]).expect("node");
        let mut out = Vec::new();
        a.start(Time::ZERO, &mut out);
        let before = hash_without_counters(&a);
        let mut b = a.clone();
        // Resending the kept token only bumps tokens_retransmitted (and re-arms the timer
        // with the same deadline, as `now` does not move).
        b.handle_timeout(Time::ZERO, totem_core::TimerKind::TokenRetransmit, &mut out);
        assert_ne!(a, b, "the counters differ");
        assert_eq!(hash_without_counters(&b), before);
        b.submit(Time::ZERO, b"hello", totem_core::Guarantee::Agreed, &mut out).expect("submit");
        assert_ne!(hash_without_counters(&b), before);
    }
}
