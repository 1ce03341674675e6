//! TOT-5: flow control.
//!
//! **Property.** With `max_messages` and `window_size` from [`Params`]:
//! - on every `Token` event, `sent_new + retransmitted <= max_messages`;
//! - for every ring r, let N be the number of distinct nodes with `Token` events of r in
//!   the trace; over any N consecutive `Token` events of r (ring-wide, in trace order; all
//!   of them if there are fewer than N), the sum of `sent_new + retransmitted` is at most
//!   `2 * window_size`.
//!
//! Why twice the window: Totem's flow-control count (fcc) travels on the token and is
//! updated by each node with what it sent on its visit minus what it sent one rotation
//! earlier, so the count a node sees lags by up to one rotation. Corosync's own arithmetic
//! bounds a full rotation by `window_size`, but a node that joins the rotation late, a
//! retransmitted token, or a regenerated token after a stall can let one window's worth of
//! messages overlap the next one. The checker allows that one rotation of lag and no more;
//! a flow-control bug that ignores the window (or counts only new messages) overshoots it
//! within a few rotations under load.
//!
//! Source: Totem (Amir et al. 1995), flow control; study §1.7.3 and §9.1 TOT-5.

use crate::index::{FastMap, Index, fmt_inc};
use crate::trace::{EventKind, Node, Ring, Trace};
use crate::{Params, Violation, finish};
use std::collections::BTreeSet;

pub const ID: &str = "TOT-5";
pub const STATEMENT: &str = "Flow control: a token visit sends at most max_messages; any N consecutive visits of an \
     N-node ring send at most 2 * window_size (one rotation of fcc lag).";

/// Check TOT-5 over `trace`.
pub fn check(trace: &Trace, params: &Params) -> Vec<Violation> {
    check_indexed(&Index::new(trace), params)
}

/// Check TOT-5 using a shared index.
pub fn check_indexed(ix: &Index<'_>, params: &Params) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut visits: FastMap<Ring, Vec<(usize, u64)>> = FastMap::default();
    let mut nodes: FastMap<Ring, BTreeSet<Node>> = FastMap::default();
    for (i, e) in ix.trace().events.iter().enumerate() {
        let EventKind::Token { ring, sent_new, retransmitted, .. } = &e.kind else { continue };
        let sent = u64::from(*sent_new) + u64::from(*retransmitted);
        if sent > u64::from(params.max_messages) {
            out.push(Violation::new(
                ID,
                format!(
                    "{} sends {sent_new} new + {retransmitted} retransmitted on one visit of {ring:?} (max_messages {})",
                    fmt_inc(e.incarnation_key()),
                    params.max_messages
                ),
                vec![i],
            ));
        }
        visits.entry(*ring).or_default().push((i, sent));
        nodes.entry(*ring).or_default().insert(e.node);
    }
    let bound = 2 * u64::from(params.window_size);
    for (ring, list) in &visits {
        let n = nodes.get(ring).map_or(1, BTreeSet::len).clamp(1, list.len().max(1));
        let mut sum: u64 = list.iter().take(n).map(|v| v.1).sum();
        let mut k = n; // the window is list[k - n .. k]
        loop {
            if sum > bound {
                out.push(Violation::new(
                    ID,
                    format!("{n} consecutive token visits of {ring:?} send {sum} messages (bound 2 * window_size = {bound})"),
                    list[k - n..k].iter().map(|v| v.0).collect(),
                ));
                break;
            }
            let Some(&(_, entering)) = list.get(k) else { break };
            sum = sum + entering - list[k - n].1;
            k += 1;
        }
    }
    finish(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::{TokenVisit, TraceBuilder};

    fn params() -> Params {
        Params { max_messages: 5, window_size: 6 }
    }

    // Goal: visits within both limits pass, including a burst of 2 * window over a rotation.
    // Method: 3 nodes; each rotation sends 4 + 4 + 4 = 12 = 2 * window_size.
    #[test]
    fn accepts_within_window() {
        let r = Ring::new(1, 4);
        let mut b = TraceBuilder::with_ring(r, &[1, 2, 3]);
        for k in 0..9u32 {
            b.token(k % 3 + 1, TokenVisit::new(r, k + 1, 0, 0).sent(3, 1));
        }
        assert_eq!(check(&b.build(), &params()), vec![]);
    }

    // Goal: a visit over max_messages and a rotation over the window are flagged.
    // Method: node 1 sends 6 on one visit; later a rotation of 5 + 5 + 5 = 15 > 12.
    #[test]
    fn flags_overload() {
        let r = Ring::new(1, 4);
        let mut b = TraceBuilder::with_ring(r, &[1, 2, 3]);
        let big = b.token(1, TokenVisit::new(r, 1, 0, 0).sent(6, 0));
        b.token(2, TokenVisit::new(r, 2, 0, 0));
        b.token(3, TokenVisit::new(r, 3, 0, 0));
        b.token(1, TokenVisit::new(r, 4, 0, 0).sent(5, 0));
        b.token(2, TokenVisit::new(r, 5, 0, 0).sent(4, 1));
        let last = b.token(3, TokenVisit::new(r, 6, 0, 0).sent(5, 0));
        let v = check(&b.build(), &params());
        assert_eq!(v.len(), 2, "{v:#?}");
        assert_eq!(v[0].events, vec![big]);
        assert_eq!(v[1].events.last(), Some(&last));
    }
}
