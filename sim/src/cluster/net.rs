//! The node runtime's transport and packet protection under turmoil.
//!
//! [`SimSocket`] is turmoil's simulated UDP socket behind the runtime's
//! [`Transport`](totem_node::transport::Transport) trait, with a seeded fault layer on the
//! sending side: per-packet loss, duplication and corruption, which turmoil itself does not
//! have (its links fail and repair as a whole).
//!
//! [`protection`] is the one place that chooses the runtime's packet protection.

use crate::rng::Rng;
use std::cell::{Cell, RefCell};
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use totem_core::NodeId;
use totem_node::crypto::{BootId, Keyring, Protection as Keys};
use totem_node::protect::{PacketCrypto, Protection};

/// Per-packet fault rates in force (changed by the run's actions).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Rates {
    pub loss: f64,
    pub dup: f64,
    pub corrupt: f64,
}

/// What the fault layer did, summed over every host.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetCounts {
    pub sent: u64,
    /// Of those, fragments of a frame past one MTU (`totem_node::fragment`).
    pub fragments: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub corrupted: u64,
}

/// State the fault layers of all hosts share with the driver.
#[derive(Debug, Default)]
pub struct NetShared {
    pub rates: Cell<Rates>,
    pub counts: Cell<NetCounts>,
}

impl NetShared {
    fn count(&self, f: impl FnOnce(&mut NetCounts)) {
        let mut c = self.counts.get();
        f(&mut c);
        self.counts.set(c);
    }
}

/// turmoil's UDP socket with a seeded fault layer. One per node incarnation; its generator
/// derives from the run's seed, the node and the incarnation.
#[derive(Debug)]
pub struct SimSocket {
    socket: turmoil::net::UdpSocket,
    net: Rc<NetShared>,
    rng: RefCell<Rng>,
}

impl SimSocket {
    pub fn new(socket: turmoil::net::UdpSocket, net: Rc<NetShared>, rng: Rng) -> SimSocket {
        SimSocket { socket, net, rng: RefCell::new(rng) }
    }

    /// Decide the fate of one datagram: None (lost), or the bytes to send and how often.
    fn fate(&self, buf: &[u8]) -> Option<(Vec<u8>, usize)> {
        let rates = self.net.rates.get();
        let mut rng = self.rng.borrow_mut();
        self.net.count(|c| c.sent += 1);
        if totem_node::fragment::is_fragment(buf) {
            self.net.count(|c| c.fragments += 1);
        }
        if rng.chance(rates.loss) {
            self.net.count(|c| c.lost += 1);
            return None;
        }
        let copies = if rng.chance(rates.dup) {
            self.net.count(|c| c.duplicated += 1);
            2
        } else {
            1
        };
        let mut bytes = buf.to_vec();
        if !bytes.is_empty() && rng.chance(rates.corrupt) {
            self.net.count(|c| c.corrupted += 1);
            for _ in 0..rng.range(1, 3) {
                let i = rng.range(0, bytes.len() as u64 - 1) as usize;
                let flip = rng.range(1, 255) as u8;
                if let Some(b) = bytes.get_mut(i) {
                    *b ^= flip;
                }
            }
        }
        Some((bytes, copies))
    }
}

impl totem_node::transport::Transport for SimSocket {
    async fn send_to(&self, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
        if let Some((bytes, copies)) = self.fate(buf) {
            for _ in 0..copies {
                self.socket.send_to(&bytes, to).await?;
            }
        }
        // A lost datagram was "sent" as far as the sender can tell.
        Ok(buf.len())
    }

    async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.socket.recv_from(buf).await
    }
}

/// The runtime's packet protection in the cluster simulator. Swapping in the daemon's
/// real cipher (`totem_node::crypto`, once it lands on this branch) is this one line.
pub fn protection(me: NodeId, incarnation: u32) -> impl Protection {
    // The real packet protection (AES-256-SIV, per-sender keys, replay window) under a fixed
    // simulation key. Every incarnation gets a higher boot id, as `BootId::advance_file`
    // gives a restarted daemon, so that peers accept its fresh counters.
    let keys = Keyring::from_authkey(&SIM_KEY).map(Keys::Keyed).unwrap_or(Keys::Cleartext);
    PacketCrypto::new(keys, me, BootId(u64::from(incarnation) + 1))
}

/// The simulated cluster's key (any 128+ bytes; simulation only).
const SIM_KEY: [u8; 128] = [0x5a; 128];

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn sealed_packets_round_trip_and_refuse_flipped_bytes() {
        let mut a = protection(NodeId(3), 0);
        let mut b = protection(NodeId(4), 0);
        let sealed = a.seal(b"hello").unwrap();
        assert_eq!(b.open(&sealed).unwrap(), (NodeId(3), Bytes::from_static(b"hello")));
        let sealed = a.seal(b"hello").unwrap();
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x10;
            assert!(b.open(&bad).is_err(), "byte {i}");
        }
    }
}
