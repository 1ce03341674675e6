//! EVS-6a: agreed (total) order.
//!
//! **Property.** There is one total order on all delivered messages that every node
//! incarnation's delivery sequence follows. Equivalently, the directed graph with an edge
//! m → m' whenever some incarnation delivers m' immediately after m (ignoring repeated
//! deliveries) has no cycle.
//!
//! This is the EVS paper's formulation (a global order function that every delivery
//! sequence respects). It implies the pairwise one of the study (if p and q both deliver
//! m1 and m2, they deliver them in the same order) and is slightly stronger: three nodes
//! each sharing a different pair of messages may be pairwise consistent yet admit no
//! common order. Totem's order, lexicographic by (ring seq, slot seq, position in the
//! packed slot), is such a common order, so a correct run never trips the difference.
//!
//! The checker reports one cycle (the messages on it and the deliveries that order them),
//! and how many messages lie on cycles in all.
//!
//! Source: EVS (Moser et al. 1994), totally ordered delivery; study §9.1 EVS-6a.

use crate::index::{FastMap, Index, fmt_inc};
use crate::trace::{MsgId, Trace};
use crate::{Violation, finish};
use std::collections::VecDeque;

pub const ID: &str = "EVS-6a";
pub const STATEMENT: &str = "Total order: one order of all messages is followed by every incarnation's deliveries \
     (no two incarnations deliver a pair in opposite orders).";

/// Check EVS-6a over `trace`.
pub fn check(trace: &Trace) -> Vec<Violation> {
    check_indexed(&Index::new(trace))
}

#[derive(Clone, Copy)]
struct Edge {
    from: usize,
    to: usize,
    from_event: usize,
    to_event: usize,
}

/// Check EVS-6a using a shared index.
pub fn check_indexed(ix: &Index<'_>) -> Vec<Violation> {
    let mut ids: FastMap<MsgId, usize> = FastMap::default();
    let mut msgs: Vec<MsgId> = Vec::new();
    let mut edges: Vec<Edge> = Vec::new();
    for h in ix.history().incarnations.values() {
        let ds: Vec<_> = h.distinct_deliveries().collect();
        let mut id_of = |m: MsgId| {
            *ids.entry(m).or_insert_with(|| {
                msgs.push(m);
                msgs.len() - 1
            })
        };
        for d in &ds {
            id_of(d.msg);
        }
        for w in ds.windows(2) {
            edges.push(Edge {
                from: id_of(w[0].msg),
                to: id_of(w[1].msg),
                from_event: w[0].event,
                to_event: w[1].event,
            });
        }
    }
    let n = msgs.len();
    let mut outgoing: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut incoming: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut indegree = vec![0usize; n];
    for (k, e) in edges.iter().enumerate() {
        outgoing[e.from].push(k);
        incoming[e.to].push(k);
        indegree[e.to] += 1;
    }
    let mut queue: VecDeque<usize> = (0..n).filter(|&v| indegree[v] == 0).collect();
    let mut done = vec![false; n];
    while let Some(v) = queue.pop_front() {
        done[v] = true;
        for &k in &outgoing[v] {
            let to = edges[k].to;
            indegree[to] -= 1;
            if indegree[to] == 0 {
                queue.push_back(to);
            }
        }
    }
    let on_cycles = done.iter().filter(|d| !**d).count();
    let Some(start) = (0..n).find(|&v| !done[v]) else { return Vec::new() };
    // Every remaining vertex has an incoming edge from another remaining vertex: walk
    // backwards until a vertex repeats.
    let mut position: FastMap<usize, usize> = FastMap::default();
    let mut walk: Vec<usize> = Vec::new(); // edges, backwards
    let mut v = start;
    let cycle: Vec<Edge> = loop {
        if let Some(&p) = position.get(&v) {
            let mut cycle: Vec<Edge> = walk[p..].iter().map(|&k| edges[k]).collect();
            cycle.reverse();
            break cycle;
        }
        position.insert(v, walk.len());
        let Some(&k) = incoming[v].iter().find(|&&k| !done[edges[k].from]) else {
            break Vec::new();
        };
        walk.push(k);
        v = edges[k].from;
    };
    let trace = ix.trace();
    let steps: Vec<String> = cycle
        .iter()
        .take(8)
        .map(|e| {
            let at = trace
                .events
                .get(e.to_event)
                .map_or_else(|| "?".to_string(), |x| fmt_inc(x.incarnation_key()));
            format!("{at} delivers {:?} before {:?}", msgs[e.from], msgs[e.to])
        })
        .collect();
    let events: Vec<usize> = cycle.iter().take(8).flat_map(|e| [e.from_event, e.to_event]).collect();
    finish(vec![Violation::new(
        ID,
        format!(
            "no total order: {}{} ({on_cycles} messages lie on ordering cycles)",
            steps.join("; "),
            if cycle.len() > 8 { "; ..." } else { "" }
        ),
        events,
    )])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::TraceBuilder;
    use crate::trace::{Ring, Slot};

    // Goal: consistent orders pass, including partial overlaps.
    // Method: node 3 delivers only a suffix of what 1 and 2 deliver.
    #[test]
    fn accepts_consistent_orders() {
        let r = Ring::new(1, 4);
        let mut b = TraceBuilder::with_ring(r, &[1, 2, 3]);
        let a = b.send(1);
        let c = b.send(2);
        let d = b.send(3);
        for n in [1, 2] {
            b.deliver(n, a, Slot::new(r, 1));
            b.deliver(n, c, Slot::new(r, 2));
            b.deliver(n, d, Slot::new(r, 3));
        }
        b.deliver(3, c, Slot::new(r, 2));
        b.deliver(3, d, Slot::new(r, 3));
        assert_eq!(check(&b.build()), vec![]);
    }

    // Goal: two nodes delivering a pair in opposite orders are flagged.
    // Method: node 1 delivers a, c; node 2 delivers c, a.
    #[test]
    fn flags_opposite_orders() {
        let r = Ring::new(1, 4);
        let mut b = TraceBuilder::with_ring(r, &[1, 2]);
        let a = b.send(1);
        let c = b.send(2);
        b.deliver(1, a, Slot::new(r, 1));
        b.deliver(1, c, Slot::new(r, 2));
        b.deliver(2, c, Slot::new(r, 2));
        b.deliver(2, a, Slot::new(r, 1));
        let v = check(&b.build());
        assert_eq!(v.len(), 1);
        assert!(v[0].message.contains("2 messages lie on ordering cycles"), "{}", v[0]);
        assert_eq!(v[0].events.len(), 4);
    }

    // Goal: a three-way cycle with no pairwise conflict is flagged (EVS's global order).
    // Method: nodes 1, 2, 3 deliver (a, c), (c, d), (d, a).
    #[test]
    fn flags_three_way_cycle() {
        let r = Ring::new(1, 4);
        let mut b = TraceBuilder::with_ring(r, &[1, 2, 3]);
        let a = b.send(1);
        let c = b.send(2);
        let d = b.send(3);
        let s = Slot::new(r, 1);
        b.deliver(1, a, s);
        b.deliver(1, c, s);
        b.deliver(2, c, s);
        b.deliver(2, d, s);
        b.deliver(3, d, s);
        b.deliver(3, a, s);
        let v = check(&b.build());
        assert_eq!(v.len(), 1);
        assert!(v[0].message.contains("3 messages"), "{}", v[0]);
    }
}
