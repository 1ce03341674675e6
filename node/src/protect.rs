//! The seam between the runtime and packet protection: every datagram is sealed before it
//! leaves and opened (authenticated, replay-checked) before anything parses it.

use bytes::Bytes;
use thiserror::Error;
use totem_core::NodeId;

/// Why a datagram was refused before parsing.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum OpenError {
    /// The authentication tag does not verify: a different cluster key, or tampering.
    #[error("authentication failed (is the authkey the same on every node?)")]
    BadTag,
    #[error("replayed or too old packet from node {0}")]
    Replay(u32),
    #[error("malformed packet: {0}")]
    Malformed(String),
    /// A cleartext packet reached a node that has a key (never accepted: no downgrade).
    #[error("cleartext packet refused: this node requires encryption")]
    CleartextRefused,
}

/// Seals and opens datagrams.
pub trait Protection: Send {
    /// The datagram carrying `plaintext` from this node.
    fn seal(&mut self, plaintext: &[u8]) -> Vec<u8>;
    /// The sender and plaintext of a datagram, if it is authentic and not a replay.
    fn open(&mut self, datagram: &[u8]) -> Result<(NodeId, Bytes), OpenError>;
}

/// No protection (`crypto_cipher: none`, an explicit opt-in): a one-byte marker and the
/// sender's id in front of the plaintext, so that a keyed node recognises and refuses it.
#[derive(Debug)]
pub struct Cleartext {
    pub me: NodeId,
}

/// The first byte of a cleartext datagram.
pub const CLEARTEXT_MARKER: u8 = 0x00;

impl Protection for Cleartext {
    fn seal(&mut self, plaintext: &[u8]) -> Vec<u8> {
        let mut v = Vec::with_capacity(5 + plaintext.len());
        v.push(CLEARTEXT_MARKER);
        v.extend_from_slice(&self.me.0.to_le_bytes());
        v.extend_from_slice(plaintext);
        v
    }

    fn open(&mut self, datagram: &[u8]) -> Result<(NodeId, Bytes), OpenError> {
        match datagram {
            [CLEARTEXT_MARKER, a, b, c, d, rest @ ..] => {
                Ok((NodeId(u32::from_le_bytes([*a, *b, *c, *d])), Bytes::copy_from_slice(rest)))
            }
            [CLEARTEXT_MARKER, ..] => Err(OpenError::Malformed("truncated cleartext header".into())),
            _ => Err(OpenError::Malformed("not a cleartext packet (is encryption on at the sender?)".into())),
        }
    }
}
