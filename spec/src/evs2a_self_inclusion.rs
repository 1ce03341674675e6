//! EVS-2a: self-inclusion.
//!
//! **Property.** Every configuration (regular or transitional) that node incarnation p
//! delivers lists p among its members, with one exception: the first configuration of an
//! incarnation may be a transitional configuration with no members at all (Corosync's
//! first transitional configuration after start: the old membership is empty).
//!
//! Source: EVS (Moser et al. 1994), self-inclusion; study §9.1 EVS-2a and COR-2a-exception,
//! §1.8.6 (last paragraph).

use crate::index::{Index, fmt_inc};
use crate::trace::{ConfKind, Trace};
use crate::{Violation, finish};

pub const ID: &str = "EVS-2a";
pub const STATEMENT: &str = "Self-inclusion: p is a member of every configuration it delivers, except an empty \
     TRANS as the first configuration of an incarnation.";

/// Check EVS-2a over `trace`.
pub fn check(trace: &Trace) -> Vec<Violation> {
    check_indexed(&Index::new(trace))
}

/// Check EVS-2a using a shared index.
pub fn check_indexed(ix: &Index<'_>) -> Vec<Violation> {
    let mut out = Vec::new();
    for h in ix.history().incarnations.values() {
        for (k, epoch) in h.epochs.iter().enumerate() {
            let c = &epoch.config;
            let initial_empty = k == 0 && c.kind == ConfKind::Transitional && c.members.is_empty();
            if !initial_empty && !c.has_member(h.node) {
                out.push(Violation::new(
                    ID,
                    format!(
                        "{} delivers {:?} configuration {:?} with members {:?}",
                        fmt_inc(h.key()),
                        c.kind,
                        c.ring,
                        c.members
                    ),
                    vec![c.event],
                ));
            }
        }
    }
    finish(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::TraceBuilder;
    use crate::trace::Ring;

    // Goal: the empty first TRANS and configurations containing the node pass.
    // Method: start, form, reform.
    #[test]
    fn accepts_initial_empty_trans() {
        let mut b = TraceBuilder::with_ring(Ring::new(1, 4), &[1, 2]);
        b.form(Ring::new(1, 8), &[1, 2]);
        assert_eq!(check(&b.build()), vec![]);
    }

    // Goal: a configuration without the node, and a second empty TRANS, are flagged.
    // Method: node 2 delivers a REG {1}; node 1 delivers an empty TRANS later.
    #[test]
    fn flags_missing_self() {
        let r1 = Ring::new(1, 4);
        let mut b = TraceBuilder::with_ring(r1, &[1, 2]);
        let bad_reg = b.reg(2, Ring::new(1, 8), &[1]);
        let bad_trans = b.trans(1, Ring::new(1, 8), &[]);
        let v = check(&b.build());
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].events, vec![bad_reg]);
        assert_eq!(v[1].events, vec![bad_trans]);
    }
}
