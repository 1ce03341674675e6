//! TOT-4: token sanity.
//!
//! **Property.** For every node incarnation p and ring r, over p's `Token` events of r in
//! trace order:
//! - `token_seq` is strictly increasing (p never accepts a token twice or an older one);
//! - `seq` never decreases;
//!
//! and on every `Token` event:
//! - `aru <= seq`;
//! - `aru_addr == 0` implies `aru == seq`;
//! - the retransmit request list has at most [`RTR_MAX`] entries, each of ring r with a seq
//!   no higher than the token's `seq`.
//!
//! Source: Totem (Amir et al. 1995), the regular token; Corosync's RETRANSMIT_ENTRIES_MAX;
//! study §9.1 TOT-4.

use crate::index::{FastMap, Inc, Index, fmt_inc};
use crate::trace::{EventKind, Ring, Slot, Trace};
use crate::{Violation, finish};

pub const ID: &str = "TOT-4";
pub const STATEMENT: &str = "Token sanity: per node and ring token_seq strictly increases and seq never decreases; \
     aru <= seq; aru_addr = 0 implies aru = seq; at most 30 rtr entries, all of the ring and <= seq.";

/// Most retransmit requests a token carries (Corosync's RETRANSMIT_ENTRIES_MAX).
pub const RTR_MAX: usize = 30;

/// Check TOT-4 over `trace`.
pub fn check(trace: &Trace) -> Vec<Violation> {
    check_indexed(&Index::new(trace))
}

/// Check TOT-4 using a shared index.
pub fn check_indexed(ix: &Index<'_>) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut last: FastMap<(Inc, Ring), (u32, u32, usize)> = FastMap::default();
    for (i, e) in ix.trace().events.iter().enumerate() {
        let EventKind::Token { ring, token_seq, seq, aru, aru_addr, rtr, .. } = &e.kind else { continue };
        let inc = e.incarnation_key();
        let at = format!("{} token of {ring:?}", fmt_inc(inc));
        if let Some(&(prev_token_seq, prev_seq, j)) = last.get(&(inc, *ring)) {
            if *token_seq <= prev_token_seq {
                out.push(Violation::new(
                    ID,
                    format!("{at}: token_seq {token_seq} after {prev_token_seq}"),
                    vec![j, i],
                ));
            }
            if *seq < prev_seq {
                out.push(Violation::new(ID, format!("{at}: seq {seq} after {prev_seq}"), vec![j, i]));
            }
        }
        last.insert((inc, *ring), (*token_seq, *seq, i));
        if aru > seq {
            out.push(Violation::new(ID, format!("{at}: aru {aru} > seq {seq}"), vec![i]));
        }
        if *aru_addr == 0 && aru != seq {
            out.push(Violation::new(ID, format!("{at}: aru_addr 0 but aru {aru} != seq {seq}"), vec![i]));
        }
        if rtr.len() > RTR_MAX {
            out.push(Violation::new(
                ID,
                format!("{at}: {} retransmit requests (max {RTR_MAX})", rtr.len()),
                vec![i],
            ));
        }
        let bad: Vec<&Slot> = rtr.iter().filter(|s| s.ring != *ring || s.seq > *seq).collect();
        if !bad.is_empty() {
            out.push(Violation::new(
                ID,
                format!("{at} (seq {seq}): retransmit requests {bad:?} out of range"),
                vec![i],
            ));
        }
    }
    finish(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::{TokenVisit, TraceBuilder};

    // Goal: a normal rotation with a lagging aru and retransmit requests passes.
    // Method: three visits at two nodes.
    #[test]
    fn accepts_sane_tokens() {
        let r = Ring::new(1, 4);
        let mut b = TraceBuilder::with_ring(r, &[1, 2]);
        b.token(1, TokenVisit::new(r, 1, 2, 2).sent(2, 0));
        b.token(2, TokenVisit::new(r, 2, 4, 1).aru_addr(2).rtr(vec![Slot::new(r, 2)]).sent(2, 0));
        b.token(1, TokenVisit::new(r, 3, 4, 1).aru_addr(2).sent(0, 1));
        b.token(1, TokenVisit::new(Ring::new(1, 8), 1, 0, 0));
        assert_eq!(check(&b.build()), vec![]);
    }

    // Goal: each insane token is flagged.
    // Method: a repeated token_seq, a decreasing seq, aru > seq, aru_addr 0 with a lagging
    // aru, an rtr entry of another ring and one beyond seq, and too many entries.
    #[test]
    fn flags_insane_tokens() {
        let r = Ring::new(1, 4);
        let mut b = TraceBuilder::with_ring(r, &[1, 2]);
        b.token(1, TokenVisit::new(r, 5, 10, 10));
        let repeated = b.token(1, TokenVisit::new(r, 5, 9, 9));
        let aru_high = b.token(2, TokenVisit::new(r, 6, 10, 11).aru_addr(2));
        let aru_addr0 = b.token(2, TokenVisit::new(r, 7, 10, 8));
        let rtr_bad = b.token(
            2,
            TokenVisit::new(r, 8, 10, 10).rtr(vec![Slot::new(Ring::new(1, 8), 1), Slot::new(r, 11)]),
        );
        let rtr_long =
            b.token(2, TokenVisit::new(r, 9, 40, 40).rtr((1..=31).map(|s| Slot::new(r, s)).collect()));
        let v = check(&b.build());
        assert_eq!(v.len(), 6, "{v:#?}");
        let at = |i: usize| v.iter().filter(|v| v.events.last() == Some(&i)).count();
        assert_eq!(at(repeated), 2);
        assert_eq!(at(aru_high), 1);
        assert_eq!(at(aru_addr0), 1);
        assert_eq!(at(rtr_bad), 1);
        assert_eq!(at(rtr_long), 1);
    }
}
