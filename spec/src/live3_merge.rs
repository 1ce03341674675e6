//! LIVE-3: merge.
//!
//! **Property.** The LIVE-1 predicate (every node of S ends, by the deadline, in the same
//! regular configuration with members exactly S, with no configuration change after it),
//! applied to a window that starts when two (or more) converged partitions become
//! connected. The difference from LIVE-1 is the bound the caller uses for the deadline: a
//! merge is triggered by merge detection, not by a failure, so the caller should set
//! `deadline = healed_at + B` with B about one merge-detection period (when idle: one token
//! hold period at the representative; when busy: the first foreign message) plus one join
//! round (join timeout + consensus timeout) plus a few token rotations, rather than the
//! token-loss based bound of LIVE-1.
//!
//! Source: Totem (Amir et al. 1995), merging rings; study §9.1 LIVE-3 and TOT-10.

use crate::index::Index;
use crate::live1_convergence::convergence;
use crate::trace::Trace;
use crate::{LivenessWindow, Violation, finish};

pub const ID: &str = "LIVE-3";
pub const STATEMENT: &str = "Merge: partitions connected at healed_at end in one REG with members exactly S within \
     the merge bound (LIVE-1 with a merge-specific deadline).";

/// Check LIVE-3 over `trace`.
pub fn check(trace: &Trace, window: &LivenessWindow) -> Vec<Violation> {
    check_indexed(&Index::new(trace), window)
}

/// Check LIVE-3 using a shared index.
pub fn check_indexed(ix: &Index<'_>, window: &LivenessWindow) -> Vec<Violation> {
    finish(convergence(ix, window, ID))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::TraceBuilder;
    use crate::trace::Ring;

    // Goal: two partitions that merge before the deadline pass.
    // Method: {1,2} and {3} merge into {1,2,3} shortly after healing at t = 100.
    #[test]
    fn accepts_merge() {
        let mut b = TraceBuilder::with_ring(Ring::new(1, 4), &[1, 2]);
        b.start(3);
        b.form(Ring::new(3, 4), &[3]);
        b.at(100);
        b.form(Ring::new(1, 8), &[1, 2, 3]);
        let w = LivenessWindow { healed_at: 100, deadline: 200, live: vec![1, 2, 3] };
        assert_eq!(check(&b.build(), &w), vec![]);
    }

    // Goal: partitions that stay apart are flagged, under LIVE-3's id.
    // Method: {1,2} and {3} never merge.
    #[test]
    fn flags_no_merge() {
        let mut b = TraceBuilder::with_ring(Ring::new(1, 4), &[1, 2]);
        b.start(3);
        b.form(Ring::new(3, 4), &[3]);
        let w = LivenessWindow { healed_at: 100, deadline: 200, live: vec![1, 2, 3] };
        let v = check(&b.build(), &w);
        assert_eq!(v.len(), 3, "{v:#?}");
        assert!(v.iter().all(|v| v.property == ID));
    }
}
