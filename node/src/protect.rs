//! The seam between the runtime and packet protection: every datagram is sealed before it
//! leaves and opened (authenticated, replay-checked) before anything parses it.
//!
//! The daemon and the cluster simulator both use [`PacketCrypto`] (the [`crate::crypto`]
//! module's AES-SIV sealing, or its explicit cleartext mode); the trait lets a test plug in
//! something else.

use crate::crypto::{BootId, OpenError, Opener, Protection as Keys, Sealer};
use bytes::Bytes;
use totem_core::NodeId;

/// Seals and opens datagrams.
pub trait Protection: Send {
    /// The datagram carrying `plaintext` from this node (None: cannot seal, e.g. the packet
    /// counter is exhausted; the packet is dropped and logged).
    fn seal(&mut self, plaintext: &[u8]) -> Option<Vec<u8>> {
        self.seal_with(plaintext.len(), &mut |buf| buf.extend_from_slice(plaintext))
    }
    /// The datagram carrying the plaintext that `write` appends to the buffer it is given
    /// (about `capacity` bytes): the runtime encodes a frame straight into its datagram.
    fn seal_with(&mut self, capacity: usize, write: &mut dyn FnMut(&mut Vec<u8>)) -> Option<Vec<u8>>;
    /// The sender and plaintext of a datagram, if it is authentic and not a replay.
    fn open(&mut self, datagram: &[u8]) -> Result<(NodeId, Bytes), OpenError>;
    /// [`Protection::open`] of a datagram the caller owns (a reassembled frame), which
    /// can then be opened in place.
    fn open_owned(&mut self, datagram: Vec<u8>) -> Result<(NodeId, Bytes), OpenError> {
        self.open(&datagram)
    }
    /// Bytes a packet needs before its payload (header and tag) for [`Protection::seal_batch`].
    fn overhead(&self) -> usize;
    /// Seals, in place and in order, packets that each start with [`Protection::overhead`]
    /// bytes of room, then the payload: the same datagrams as sealing them one by one, but
    /// faster together. False if they cannot be sealed (none is; logged).
    fn seal_batch(&mut self, packets: &mut [Vec<u8>]) -> bool;
    /// [`Protection::open_owned`] of every datagram, in order, with the same results.
    fn open_batch(&mut self, datagrams: Vec<Vec<u8>>) -> Vec<Result<(NodeId, Bytes), OpenError>> {
        datagrams.into_iter().map(|d| self.open_owned(d)).collect()
    }
}

/// [`crate::crypto`] behind the [`Protection`] trait: one sealer (this node's counter) and
/// one opener (every peer's replay window).
#[derive(Debug)]
pub struct PacketCrypto {
    sealer: Sealer,
    opener: Opener,
}

impl PacketCrypto {
    /// `boot` must be new for every start of this node (see [`BootId::advance_file`]).
    pub fn new(keys: Keys, me: NodeId, boot: BootId) -> PacketCrypto {
        PacketCrypto { sealer: Sealer::new(&keys, me, boot), opener: Opener::new(keys) }
    }

    /// Cleartext (an explicit opt-in, for tests and `crypto_cipher: none`).
    pub fn cleartext(me: NodeId) -> PacketCrypto {
        PacketCrypto::new(Keys::Cleartext, me, BootId(1))
    }
}

impl Protection for PacketCrypto {
    fn seal_with(&mut self, capacity: usize, write: &mut dyn FnMut(&mut Vec<u8>)) -> Option<Vec<u8>> {
        match self.sealer.seal_with(capacity, write) {
            Ok(d) => Some(d),
            Err(e) => {
                tracing::error!("cannot seal a packet: {e}");
                None
            }
        }
    }

    fn open(&mut self, datagram: &[u8]) -> Result<(NodeId, Bytes), OpenError> {
        // One copy out of the receive buffer (which the next burst reuses), decrypted in
        // place; the payload is a slice of it, not shifted to the front.
        self.open_owned(datagram.to_vec())
    }

    fn open_owned(&mut self, mut packet: Vec<u8>) -> Result<(NodeId, Bytes), OpenError> {
        let opened = self.opener.open_in_place(&mut packet)?;
        Ok((opened.sender, Bytes::from(packet).slice(opened.payload)))
    }

    fn overhead(&self) -> usize {
        self.sealer.overhead()
    }

    fn seal_batch(&mut self, packets: &mut [Vec<u8>]) -> bool {
        match self.sealer.seal_batch(packets) {
            Ok(()) => true,
            Err(e) => {
                tracing::error!("cannot seal {} packets: {e}", packets.len());
                false
            }
        }
    }

    fn open_batch(&mut self, mut datagrams: Vec<Vec<u8>>) -> Vec<Result<(NodeId, Bytes), OpenError>> {
        let opened = self.opener.open_batch(&mut datagrams);
        datagrams
            .into_iter()
            .zip(opened)
            .map(|(d, o)| o.map(|o| (o.sender, Bytes::from(d).slice(o.payload))))
            .collect()
    }
}
