//! TOT-9: the membership state machine.
//!
//! **Property.** For every node incarnation, its `State` events form a chain along the
//! edges of the Totem state machine:
//! - each `State` event's `from` is the previous `State` event's `to` (the first `State`
//!   event of an incarnation may start from any state);
//! - `from` -> `to` is one of OPERATIONAL -> GATHER, GATHER -> COMMIT, COMMIT -> RECOVERY,
//!   COMMIT -> GATHER, RECOVERY -> OPERATIONAL, RECOVERY -> GATHER. Re-entering GATHER is
//!   not a change and is not recorded; OPERATIONAL goes through GATHER before COMMIT (a
//!   commit token is accepted only in GATHER).
//!
//! And configurations are delivered only in OPERATIONAL: at every `Config` event the
//! incarnation's state (the `to` of its last `State` event, or the `from` of its first one
//! before it) is OPERATIONAL. The recorder emits the RECOVERY -> OPERATIONAL change before
//! the configurations of the OPERATIONAL entry. An incarnation without `State` events is not
//! judged.
//!
//! The chain is reported once per broken link; after a broken link the chain continues from
//! the new event's `to`.
//!
//! Source: Totem (Amir et al. 1995); study §1.5 (transition table), §1.8 and §9.1 TOT-9.

use crate::index::{Index, ProtoStates, fmt_inc};
use crate::trace::{EventKind, ProtoState, Trace};
use crate::{Violation, finish};

pub const ID: &str = "TOT-9";
pub const STATEMENT: &str = "State machine: each incarnation's State changes chain (from = previous to) along \
     O->G, G->C, C->R, C->G, R->O, R->G; configurations are delivered only in OPERATIONAL.";

/// True for the edges of the Totem state machine.
pub fn allowed(from: ProtoState, to: ProtoState) -> bool {
    use ProtoState::{Commit, Gather, Operational, Recovery};
    matches!(
        (from, to),
        (Operational, Gather)
            | (Gather, Commit)
            | (Commit, Recovery)
            | (Commit, Gather)
            | (Recovery, Operational)
            | (Recovery, Gather)
    )
}

/// Check TOT-9 over `trace`.
pub fn check(trace: &Trace) -> Vec<Violation> {
    check_indexed(&Index::new(trace))
}

/// Check TOT-9 using a shared index.
pub fn check_indexed(ix: &Index<'_>) -> Vec<Violation> {
    let trace = ix.trace();
    let mut states = ProtoStates::new(trace);
    if states.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for (i, e) in trace.events.iter().enumerate() {
        let inc = e.incarnation_key();
        match &e.kind {
            EventKind::State { from, to } => {
                if let Some((current, Some(j))) = states.state(inc)
                    && current != *from
                {
                    out.push(Violation::new(
                        ID,
                        format!("{} changes state from {from:?} but was in {current:?}", fmt_inc(inc)),
                        vec![j, i],
                    ));
                }
                if !allowed(*from, *to) {
                    out.push(Violation::new(
                        ID,
                        format!("{} changes state along {from:?} -> {to:?}, not an edge", fmt_inc(inc)),
                        vec![i],
                    ));
                }
            }
            EventKind::Config { kind, ring, .. } => {
                if let Some((state, set_by)) = states.state(inc)
                    && state != ProtoState::Operational
                {
                    let mut events: Vec<usize> = set_by.into_iter().collect();
                    events.push(i);
                    out.push(Violation::new(
                        ID,
                        format!(
                            "{} delivers the {kind:?} configuration {ring:?} in state {state:?}",
                            fmt_inc(inc)
                        ),
                        events,
                    ));
                }
            }
            _ => {}
        }
        states.observe(i, e);
    }
    finish(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::TraceBuilder;
    use crate::trace::Ring;
    use ProtoState::{Commit, Gather, Operational, Recovery};

    // Goal: the normal round, a failed COMMIT and a failed RECOVERY pass, and so do
    // configurations of an incarnation without probes.
    // Method: install a ring with probes; node 1 goes G->C->G->C->R->G->C->R->O; node 3
    // has no State events.
    #[test]
    fn accepts_valid_chains() {
        let mut b = TraceBuilder::new();
        b.start(1);
        b.start(2);
        b.install(Ring::new(1, 4), &[1, 2]);
        for to in [Gather, Commit, Gather, Commit, Recovery, Gather, Commit, Recovery, Operational] {
            b.move_to(1, to);
        }
        b.start(3);
        b.form(Ring::new(3, 4), &[3]);
        assert_eq!(check(&b.build()), vec![]);
    }

    // Goal: broken chains, non-edges and configurations outside OPERATIONAL are flagged.
    // Method: node 1: O->G, then C->R (chain broken), then R->C (not an edge); node 2:
    // O->G then delivers a configuration in GATHER.
    #[test]
    fn flags_bad_transitions() {
        let mut b = TraceBuilder::new();
        b.start(1);
        let g = b.state(1, Operational, Gather);
        let broken = b.state(1, Commit, Recovery);
        let non_edge = b.state(1, Recovery, Commit);
        b.start(2);
        let g2 = b.state(2, Operational, Gather);
        let config = b.reg(2, Ring::new(2, 4), &[2]);
        let v = check(&b.build());
        assert_eq!(v.len(), 3, "{v:#?}");
        assert_eq!(v[0].events, vec![g, broken]);
        assert!(v[0].message.contains("was in Gather"));
        assert_eq!(v[1].events, vec![non_edge]);
        assert_eq!(v[2].events, vec![g2, config]);
        assert!(v[2].message.contains("in state Gather"));
    }

    // Goal: the edge set is exactly the six edges.
    // Method: enumerate all 16 pairs.
    #[test]
    fn edge_set() {
        let all = [Operational, Gather, Commit, Recovery];
        let edges: Vec<(ProtoState, ProtoState)> = all
            .iter()
            .flat_map(|&f| all.iter().map(move |&t| (f, t)))
            .filter(|&(f, t)| allowed(f, t))
            .collect();
        assert_eq!(
            edges,
            vec![
                (Operational, Gather),
                (Gather, Commit),
                (Commit, Gather),
                (Commit, Recovery),
                (Recovery, Operational),
                (Recovery, Gather)
            ]
        );
    }
}
