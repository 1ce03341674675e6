//! The send window of one client connection: how many multicasts a client may have handed
//! to the daemon that the daemon has not yet taken into the ring's queue.
//!
//! A multicast then costs no round trip: the client writes it and goes on, as long as the
//! window has room, and the daemon returns *credit* (messages and bytes) as it moves them
//! into the core, in the same stream as the client's events. A full window is the client's
//! "try again": nothing was sent. The daemon keeps the same count and disconnects a client
//! that sends past its window (a misbehaving client cannot make the daemon buffer without
//! bound). Credit in transit only makes the client's view more cautious than the daemon's.

use serde::{Deserialize, Serialize};
use totem_core::cpg::CPG_MESSAGE_MAX;

/// How much a connection may have outstanding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowSize {
    pub msgs: u32,
    pub bytes: u64,
}

impl WindowSize {
    /// What the daemon grants every connection: enough small messages to amortise the
    /// socket's costs over many, and room for one message of the largest size.
    pub const DEFAULT: WindowSize = WindowSize { msgs: 256, bytes: (CPG_MESSAGE_MAX + 256 * 1024) as u64 };
}

impl Default for WindowSize {
    fn default() -> WindowSize {
        WindowSize::DEFAULT
    }
}

/// The messages and bytes outstanding against a [`WindowSize`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SendWindow {
    size: WindowSize,
    msgs: u32,
    bytes: u64,
}

impl SendWindow {
    pub fn new(size: WindowSize) -> SendWindow {
        SendWindow { size, msgs: 0, bytes: 0 }
    }

    pub fn size(&self) -> WindowSize {
        self.size
    }

    /// Whether a message of `len` bytes fits now.
    pub fn fits(&self, len: usize) -> bool {
        self.msgs < self.size.msgs && self.bytes.saturating_add(len as u64) <= self.size.bytes
    }

    /// Count a message of `len` bytes as outstanding, if it fits.
    pub fn take(&mut self, len: usize) -> bool {
        if !self.fits(len) {
            return false;
        }
        self.msgs += 1;
        self.bytes += len as u64;
        true
    }

    /// The daemon took `msgs` messages of `bytes` bytes in all.
    pub fn credit(&mut self, msgs: u32, bytes: u64) {
        self.msgs = self.msgs.saturating_sub(msgs);
        self.bytes = self.bytes.saturating_sub(bytes);
    }

    /// Nothing is outstanding.
    pub fn is_idle(&self) -> bool {
        self.msgs == 0
    }

    pub fn outstanding(&self) -> (u32, u64) {
        (self.msgs, self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_messages_and_bytes() {
        let mut w = SendWindow::new(WindowSize { msgs: 2, bytes: 100 });
        assert!(w.take(60));
        assert!(!w.take(41), "bytes");
        assert!(w.take(40));
        assert!(!w.take(0), "messages");
        w.credit(1, 60);
        assert_eq!(w.outstanding(), (1, 40));
        assert!(w.take(60));
        w.credit(2, 100);
        assert!(w.is_idle());
        w.credit(5, 5000);
        assert_eq!(w.outstanding(), (0, 0), "never below zero");
    }

    #[test]
    fn the_default_holds_the_largest_message() {
        let mut w = SendWindow::new(WindowSize::DEFAULT);
        assert!(w.take(CPG_MESSAGE_MAX));
        assert!(w.take(1000));
    }
}
