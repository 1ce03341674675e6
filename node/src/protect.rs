//! The seam between the runtime and packet protection: every datagram is sealed before it
//! leaves and opened (authenticated, replay-checked) before anything parses it.
//!
//! The daemon and the cluster simulator both use [`PacketCrypto`] (the [`crate::crypto`]
//! module's AES-SIV sealing, or its explicit cleartext mode); the trait lets a test plug in
//! something else.

use crate::crypto::{BootId, OpenError, Opener, Protection as Keys, Sealer};
use bytes::Bytes;
use totem_core::NodeId;

/// Seals and opens datagrams, a batch at a time (a step's packets, a receive burst's
/// frames: see [`crate::siv_batch`]).
pub trait Protection: Send {
    /// Bytes a packet needs before its payload (header and tag) for [`Protection::seal_batch`].
    fn overhead(&self) -> usize;
    /// Seals, in place and in order, packets that each start with [`Protection::overhead`]
    /// bytes of room, then the payload: the same datagrams as sealing them one by one, but
    /// faster together. False if they cannot be sealed (none is; logged), e.g. the packet
    /// counter is exhausted.
    fn seal_batch(&mut self, packets: &mut [Vec<u8>]) -> bool;
    /// The sender and plaintext of every datagram, in order, if it is authentic and not a
    /// replay: the same results as opening them one by one.
    fn open_batch(&mut self, datagrams: Vec<Vec<u8>>) -> Vec<Result<(NodeId, Bytes), OpenError>>;

    /// The datagram carrying `plaintext` from this node (None: cannot seal).
    fn seal(&mut self, plaintext: &[u8]) -> Option<Vec<u8>> {
        let mut packet = [vec![0; self.overhead()], plaintext.to_vec()].concat();
        self.seal_batch(std::slice::from_mut(&mut packet)).then_some(packet)
    }
    /// The sender and plaintext of one datagram.
    fn open(&mut self, datagram: &[u8]) -> Result<(NodeId, Bytes), OpenError> {
        // One result per datagram: the fallback is never taken.
        self.open_batch(vec![datagram.to_vec()])
            .pop()
            .unwrap_or(Err(OpenError::Truncated { len: 0, need: 1 }))
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
