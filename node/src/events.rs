//! The queue of events from the runtime to one client connection, bounded both in events
//! and in bytes.
//!
//! The runtime never waits for a client: it pushes and, if the queue is full, the client
//! counts as stalled and is disconnected. A count alone is the wrong bound: one token visit
//! of large frames delivers tens of thousands of small messages at once (a burst, not a
//! stall), while a few hundred megabyte-sized messages already cost more memory than a
//! daemon should hold for a client that does not read. So both are bounded.

use crate::runtime::ClientEvent;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::mpsc;
use totem_core::cpg::EventKind;

/// How much one connection's queue may hold before its client counts as stalled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueLimit {
    pub events: usize,
    pub bytes: usize,
}

impl QueueLimit {
    /// The daemon's: about a quarter of a million events (several full token rotations of
    /// the smallest messages), or 64 MiB.
    pub const DEFAULT: QueueLimit = QueueLimit { events: 1 << 18, bytes: 64 << 20 };

    /// `events` events, and bytes to match at most.
    pub const fn events(events: usize) -> QueueLimit {
        QueueLimit { events, bytes: QueueLimit::DEFAULT.bytes }
    }
}

/// What an event costs against the byte bound: its payload and a fixed overhead.
fn weight(event: &ClientEvent) -> usize {
    const OVERHEAD: usize = 64;
    OVERHEAD
        + match event {
            ClientEvent::Cpg(EventKind::Deliver { payload, group, .. }) => payload.len() + group.len(),
            ClientEvent::Cpg(EventKind::Confchg { members, left, joined, .. }) => {
                8 * (members.len() + left.len() + joined.len())
            }
            ClientEvent::Cpg(EventKind::TotemConfchg { members, .. }) => 4 * members.len(),
            ClientEvent::Credit { .. } => 0,
        }
}

#[derive(Debug, Default)]
struct Level {
    events: AtomicUsize,
    bytes: AtomicUsize,
}

/// The runtime's end.
#[derive(Debug)]
pub struct EventSender {
    tx: mpsc::UnboundedSender<ClientEvent>,
    level: Arc<Level>,
    limit: QueueLimit,
}

/// Why an event was not queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushError {
    /// A bound is reached: the client has stopped reading (or cannot keep up).
    Full,
    /// The receiving end is gone.
    Closed,
}

/// The client's end.
#[derive(Debug)]
pub struct EventReceiver {
    rx: mpsc::UnboundedReceiver<ClientEvent>,
    level: Arc<Level>,
}

/// A new queue with `limit`.
pub fn queue(limit: QueueLimit) -> (EventSender, EventReceiver) {
    let (tx, rx) = mpsc::unbounded_channel();
    let level = Arc::new(Level::default());
    (EventSender { tx, level: level.clone(), limit }, EventReceiver { rx, level })
}

impl EventSender {
    /// Queue `event`, unless a bound is reached or the receiver is gone.
    pub fn push(&self, event: ClientEvent) -> Result<(), PushError> {
        let w = weight(&event);
        let events = self.level.events.load(Ordering::Relaxed);
        let bytes = self.level.bytes.load(Ordering::Relaxed);
        // One event always fits into an empty queue, however large.
        if events > 0 && (events >= self.limit.events || bytes + w > self.limit.bytes) {
            return Err(PushError::Full);
        }
        self.level.events.fetch_add(1, Ordering::Relaxed);
        self.level.bytes.fetch_add(w, Ordering::Relaxed);
        self.tx.send(event).map_err(|_| PushError::Closed)
    }
}

impl EventReceiver {
    fn took(&self, event: &ClientEvent) {
        self.level.events.fetch_sub(1, Ordering::Relaxed);
        self.level.bytes.fetch_sub(weight(event), Ordering::Relaxed);
    }

    /// The next event; None once the runtime dropped the connection and the queue is empty.
    pub async fn recv(&mut self) -> Option<ClientEvent> {
        let event = self.rx.recv().await?;
        self.took(&event);
        Some(event)
    }

    /// The next event if one is queued (never waits).
    pub fn try_recv(&mut self) -> Option<ClientEvent> {
        let event = self.rx.try_recv().ok()?;
        self.took(&event);
        Some(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use totem_core::Guarantee;
    use totem_core::NodeId;
    use totem_core::cpg::{GroupName, Process};

    fn deliver(len: usize) -> ClientEvent {
        ClientEvent::Cpg(EventKind::Deliver {
            group: GroupName::new(b"g").expect("name"),
            sender: Process { node: NodeId(1), pid: 1 },
            guarantee: Guarantee::Agreed,
            payload: Bytes::from(vec![0; len]),
        })
    }

    #[tokio::test]
    async fn bounded_by_events_and_by_bytes() {
        let (tx, mut rx) = queue(QueueLimit { events: 3, bytes: 10_000 });
        for _ in 0..3 {
            tx.push(deliver(10)).expect("room");
        }
        assert_eq!(tx.push(deliver(10)), Err(PushError::Full), "events");
        rx.recv().await.expect("one");
        tx.push(deliver(10)).expect("room again");

        let (tx, mut rx) = queue(QueueLimit { events: 100, bytes: 10_000 });
        tx.push(deliver(9_000)).expect("room");
        assert_eq!(tx.push(deliver(2_000)), Err(PushError::Full), "bytes");
        assert!(rx.try_recv().is_some());
        tx.push(deliver(50_000)).expect("an empty queue takes any one event");
        drop(rx);
        assert_eq!(tx.push(deliver(1)), Err(PushError::Full), "still full");
    }

    #[tokio::test]
    async fn closed_when_the_receiver_is_gone() {
        let (tx, rx) = queue(QueueLimit::DEFAULT);
        drop(rx);
        assert_eq!(tx.push(deliver(1)), Err(PushError::Closed));
    }
}
