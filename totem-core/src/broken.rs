//! Deliberately broken variants of the protocol.
//!
//! Every checker (the spec under the simulator, the model checker) must be shown to catch
//! the bug it exists for. Each variant below is one small, realistic mistake; tests enable
//! it through `Config::bug` (only with the `broken` cargo feature, so production builds
//! cannot select one) and assert that the judge notices.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub enum Bug {
    /// Deliver the next present message even when an earlier one is missing.
    DeliverPastGap,
    /// Ignore retransmit requests on the token.
    NeverRetransmit,
    /// Send every pending message on a visit, ignoring max_messages and the window.
    SendPastWindow,
    /// Free buffers on a single reading of the token's aru instead of two.
    EarlyRelease,
    /// Deliver a Safe message as soon as it is received, like an Agreed one.
    SafeOnFirstReceipt,
    /// In RECOVERY, re-send no old-ring messages.
    SkipRecoveryRetransmissions,
    /// Deliver the transitional configuration before the old-ring messages up to the gap.
    TransBeforeOldMessages,
    /// Ignore the persisted ring sequence after a restart (and number rings as Corosync
    /// does, without the incarnation's residue class).
    ReuseRingSeq,
    /// Accept a token whose ring id is not this node's ring.
    AcceptOldRingToken,
    /// Put the failed nodes into the commit token too.
    KeepFailedInCommit,
    /// CPG: apply a membership change at once from the node's own view, without waiting
    /// for every member's joinlist, and let application traffic go.
    CpgSkipBarrier,
    /// CPG: let application traffic queued before a change go out before the
    /// synchronization completed (and accept mcasts during it).
    CpgNoTrafficHold,
    /// CPG: keep the joinlists of an interrupted round (Corosync's #828 ghost members).
    CpgKeepJoinlistsOnAbort,
    /// CPG: one NODEDOWN view change per failed node instead of one per group.
    CpgNodedownPerNode,
}

impl Bug {
    pub const ALL: [Bug; 14] = [
        Bug::DeliverPastGap,
        Bug::NeverRetransmit,
        Bug::SendPastWindow,
        Bug::EarlyRelease,
        Bug::SafeOnFirstReceipt,
        Bug::SkipRecoveryRetransmissions,
        Bug::TransBeforeOldMessages,
        Bug::ReuseRingSeq,
        Bug::AcceptOldRingToken,
        Bug::KeepFailedInCommit,
        Bug::CpgSkipBarrier,
        Bug::CpgNoTrafficHold,
        Bug::CpgKeepJoinlistsOnAbort,
        Bug::CpgNodedownPerNode,
    ];
}
