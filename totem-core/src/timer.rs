//! Named timers. The core keeps its own table of deadlines; the runtime asks for the next
//! one with [`crate::Node::poll_timeout`] and reports expiry with
//! [`crate::Node::handle_timeout`]. A model checker may fire any armed timer at any moment:
//! time is abstracted, correctness must not depend on which one fires first.
//!
//! Keeping the table inside the core (as quinn-proto does) rather than emitting
//! arm/cancel commands means a runtime cannot fire a timer the core already cancelled:
//! an expiry for a timer that is not armed is ignored.

use crate::time::Time;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub enum TimerKind {
    /// No token within `token`: the ring is declared broken.
    TokenLoss,
    /// Resend the last token this node sent: it may have been lost.
    TokenRetransmit,
    /// The representative releases a token it held because the ring was idle.
    Hold,
    /// An idle representative advertises its ring (merge detection).
    Merge,
    /// Resend this node's JOIN during gather.
    Join,
    /// Declare the nodes that did not agree failed.
    Consensus,
    /// Send the JOIN that was delayed by a random jitter (`send_join`).
    SendJoin,
}

impl TimerKind {
    pub const ALL: [TimerKind; 7] = [
        TimerKind::TokenLoss,
        TimerKind::TokenRetransmit,
        TimerKind::Hold,
        TimerKind::Merge,
        TimerKind::Join,
        TimerKind::Consensus,
        TimerKind::SendJoin,
    ];

    const fn index(self) -> usize {
        self as usize
    }
}

/// Deadlines of the armed timers.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Default, Serialize, Deserialize)]
pub struct TimerTable {
    deadlines: [Option<Time>; 7],
}

impl TimerTable {
    pub fn arm(&mut self, kind: TimerKind, at: Time) {
        self.deadlines[kind.index()] = Some(at);
    }

    pub fn cancel(&mut self, kind: TimerKind) {
        self.deadlines[kind.index()] = None;
    }

    pub fn is_armed(&self, kind: TimerKind) -> bool {
        self.deadlines[kind.index()].is_some()
    }

    pub fn deadline(&self, kind: TimerKind) -> Option<Time> {
        self.deadlines[kind.index()]
    }

    /// Disarm `kind` if it is armed; true if it was (the expiry is then to be acted on).
    pub fn take(&mut self, kind: TimerKind) -> bool {
        self.deadlines[kind.index()].take().is_some()
    }

    /// The earliest deadline; ties go to the kind listed first in [`TimerKind::ALL`].
    pub fn next(&self) -> Option<(Time, TimerKind)> {
        TimerKind::ALL.iter().filter_map(|&k| self.deadline(k).map(|t| (t, k))).min_by_key(|&(t, k)| (t, k))
    }

    pub fn armed(&self) -> impl Iterator<Item = (TimerKind, Time)> + '_ {
        TimerKind::ALL.iter().filter_map(|&k| self.deadline(k).map(|t| (k, t)))
    }
}
