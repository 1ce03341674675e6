//! EVS-2b: alternation of configurations.
//!
//! **Property.** For every node incarnation p, the configurations p delivers alternate
//! transitional, regular, transitional, regular, ... The first one may be either kind (a
//! node started on an already formed ring may begin with a regular configuration). Each
//! transitional configuration carries the same ring id as the regular configuration that
//! follows it (Corosync: the transitional configuration is named by the new ring). Finally,
//! the recorded `prev_ring` of every configuration is the ring of the last regular
//! configuration p delivered before it (None when there is none).
//!
//! A trailing transitional configuration with no regular one after it (the incarnation
//! crashed or left, or the trace ended) is allowed.
//!
//! Source: EVS (Moser et al. 1994); study §9.1 EVS-2b and its COR note, §1.8.6 steps 5 and
//! 9.

use crate::index::{Index, fmt_inc};
use crate::trace::{ConfKind, Trace};
use crate::{Violation, finish};

pub const ID: &str = "EVS-2b";
pub const STATEMENT: &str = "Alternation: each incarnation delivers TRANS, REG, TRANS, REG, ... (may begin with REG); \
     a TRANS has the ring of the REG that follows; prev_ring is the last REG delivered.";

/// Check EVS-2b over `trace`.
pub fn check(trace: &Trace) -> Vec<Violation> {
    check_indexed(&Index::new(trace))
}

/// Check EVS-2b using a shared index.
pub fn check_indexed(ix: &Index<'_>) -> Vec<Violation> {
    let mut out = Vec::new();
    for h in ix.history().incarnations.values() {
        let mut previous: Option<&crate::index::ConfigView<'_>> = None;
        for epoch in &h.epochs {
            let c = &epoch.config;
            if c.prev_ring != c.prev_reg {
                out.push(Violation::new(
                    ID,
                    format!(
                        "{} delivers {:?} {:?} with prev_ring {:?}, but its last regular ring is {:?}",
                        fmt_inc(h.key()),
                        c.kind,
                        c.ring,
                        c.prev_ring,
                        c.prev_reg
                    ),
                    vec![c.event],
                ));
            }
            if let Some(p) = previous {
                if p.kind == c.kind {
                    out.push(Violation::new(
                        ID,
                        format!(
                            "{} delivers two {:?} configurations in a row ({:?}, {:?})",
                            fmt_inc(h.key()),
                            c.kind,
                            p.ring,
                            c.ring
                        ),
                        vec![p.event, c.event],
                    ));
                } else if p.kind == ConfKind::Transitional && p.ring != c.ring {
                    out.push(Violation::new(
                        ID,
                        format!(
                            "{} delivers TRANS {:?} followed by REG {:?}",
                            fmt_inc(h.key()),
                            p.ring,
                            c.ring
                        ),
                        vec![p.event, c.event],
                    ));
                }
            }
            previous = Some(c);
        }
    }
    finish(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::TraceBuilder;
    use crate::trace::Ring;

    // Goal: TRANS/REG alternation, a REG-first incarnation and a trailing TRANS pass.
    // Method: form twice at {1,2}; node 3 starts with a REG; node 1 ends with a TRANS.
    #[test]
    fn accepts_alternation() {
        let r1 = Ring::new(1, 4);
        let mut b = TraceBuilder::with_ring(r1, &[1, 2]);
        b.start(3);
        b.reg(3, r1, &[1, 2, 3]);
        b.form(Ring::new(1, 8), &[1, 2]);
        b.trans(1, Ring::new(1, 12), &[1]);
        assert_eq!(check(&b.build()), vec![]);
    }

    // Goal: two REGs in a row, a TRANS named differently from its REG, and a wrong
    // prev_ring are flagged.
    // Method: build each at a separate node.
    #[test]
    fn flags_broken_alternation() {
        let r1 = Ring::new(1, 4);
        let mut b = TraceBuilder::with_ring(r1, &[1, 2, 3]);
        let two_regs = b.reg(1, Ring::new(1, 8), &[1, 2, 3]);
        b.trans(2, Ring::new(1, 8), &[2]);
        let misnamed = b.reg(2, Ring::new(2, 9), &[2]);
        let wrong_prev = b.config(3, ConfKind::Transitional, Ring::new(1, 8), None, &[3], &[1, 2], &[]);
        let v = check(&b.build());
        assert_eq!(v.len(), 3, "{v:#?}");
        assert_eq!(v[0].events.last(), Some(&two_regs));
        assert_eq!(v[1].events.last(), Some(&misnamed));
        assert_eq!(v[2].events, vec![wrong_prev]);
    }
}
