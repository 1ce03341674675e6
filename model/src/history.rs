//! The trace of one path through the model, shared between states.
//!
//! Every state carries the spec trace of the path that reached it. Copying a growing `Vec`
//! into every successor would cost O(trace) per step, so the trace is a persistent list:
//! a successor shares its parent's events and adds its own at the front, in O(1).

use spec::trace::{Event, Trace};
use std::sync::Arc;

struct Link {
    event: Event,
    prev: Option<Arc<Link>>,
}

impl Drop for Link {
    // Free long chains iteratively: the default recursive drop could overflow the stack.
    fn drop(&mut self) {
        let mut next = self.prev.take();
        while let Some(link) = next {
            match Arc::try_unwrap(link) {
                Ok(mut owned) => next = owned.prev.take(),
                Err(_) => break,
            }
        }
    }
}

/// An append-only, structurally shared list of spec events.
#[derive(Clone, Default)]
pub struct History {
    head: Option<Arc<Link>>,
    len: usize,
}

impl History {
    pub fn new() -> Self {
        History::default()
    }

    pub fn push(&mut self, event: Event) {
        let prev = self.head.take();
        self.head = Some(Arc::new(Link { event, prev }));
        self.len += 1;
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The events, newest first.
    pub fn iter_rev(&self) -> impl Iterator<Item = &Event> {
        let mut cur = self.head.as_deref();
        std::iter::from_fn(move || {
            let link = cur?;
            cur = link.prev.as_deref();
            Some(&link.event)
        })
    }

    /// The events from index `from` on (oldest first).
    pub fn since(&self, from: usize) -> Vec<Event> {
        let n = self.len.saturating_sub(from);
        let mut v: Vec<Event> = self.iter_rev().take(n).cloned().collect();
        v.reverse();
        v
    }

    /// The whole trace, oldest event first.
    pub fn to_trace(&self) -> Trace {
        Trace { events: self.since(0) }
    }
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "History({} events)", self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spec::trace::EventKind;

    fn ev(time: u64) -> Event {
        Event { time, node: 1, incarnation: 0, kind: EventKind::Start }
    }

    // Goal: branches share their common prefix and each sees its own events in order.
    #[test]
    fn branches_share_prefix() {
        let mut a = History::new();
        a.push(ev(0));
        a.push(ev(1));
        let mut b = a.clone();
        a.push(ev(2));
        b.push(ev(3));
        let times = |h: &History| h.to_trace().events.iter().map(|e| e.time).collect::<Vec<_>>();
        assert_eq!(times(&a), vec![0, 1, 2]);
        assert_eq!(times(&b), vec![0, 1, 3]);
        assert_eq!(b.since(2).len(), 1);
    }

    // Goal: dropping a very long history does not overflow the stack.
    #[test]
    fn long_chain_drops() {
        let mut h = History::new();
        for t in 0..200_000 {
            h.push(ev(t));
        }
        drop(h);
    }
}
