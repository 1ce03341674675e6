//! The replicated group state and the synchronization round (see the module docs of
//! [`crate::cpg`]).

use super::msg::CpgMsg;
use super::{ConnFlags, ConnId, CpgError, Event, EventKind, GroupName, Process, Reason};
use crate::ids::{NodeId, RingId};
use crate::message::Guarantee;
use crate::node::{ConfigChange, ConfigKind, Delivery};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Where a connection stands (Corosync's per-connection states).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub(crate) enum ConnState {
    Unjoined,
    /// Join multicast, not yet delivered.
    JoinStarted,
    JoinCompleted,
    /// Leave multicast, not yet delivered.
    LeaveStarted,
}

#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub(crate) struct Conn {
    pub(crate) flags: ConnFlags,
    pub(crate) state: ConnState,
    /// The group and pid of the current (or last requested) membership.
    pub(crate) group: Option<(GroupName, u32)>,
    initial_totem_conf_sent: bool,
}

impl Conn {
    /// Whether the connection receives the group's messages and view changes.
    fn receives(&self, group: &GroupName) -> bool {
        matches!(self.state, ConnState::JoinCompleted | ConnState::LeaveStarted)
            && self.group.as_ref().is_some_and(|(g, _)| g == group)
    }
}

/// Counters for operators and tests.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Default, Serialize, Deserialize)]
pub struct CpgStats {
    /// Delivered Totem messages that are not CPG messages (a bug or forged input).
    pub bad_messages: u64,
    /// Mcasts from a process that is not a member of the group (dropped).
    pub unknown_sender: u64,
    pub syncs_completed: u64,
    pub syncs_aborted: u64,
    /// Totem messages the service multicast (requests, exit notices, joinlists). A recorder
    /// compares it around a call to learn whether the call multicast something (whether a
    /// disconnect announced a PROCDOWN, for instance) without mirroring the service's state.
    pub messages_sent: u64,
}

/// One synchronization round, for the regular configuration `ring_id`.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
struct Round {
    ring_id: RingId,
    members: Vec<NodeId>,
    downlist: Vec<NodeId>,
    /// The joinlists delivered so far, by sender.
    joinlists: BTreeMap<NodeId, Vec<(u32, GroupName)>>,
}

#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub(crate) struct Service {
    me: NodeId,
    pub(crate) conns: BTreeMap<ConnId, Conn>,
    next_conn: u32,
    /// Every process of every group, as this node has applied the total order.
    groups: BTreeMap<GroupName, BTreeSet<Process>>,
    /// From a configuration change until its round completes: mcast gets TryAgain.
    syncing: bool,
    round: Option<Round>,
    /// The transitional configuration that preceded the coming regular one.
    trans: Option<(RingId, Vec<NodeId>)>,
    /// The ring and members of the last completed round.
    synced: Option<(RingId, Vec<NodeId>)>,
    /// The members of the last completed round that were in every transitional
    /// configuration since (see [`Service::on_config`]).
    continuous: Vec<NodeId>,
    pub(crate) stats: CpgStats,
    #[cfg(feature = "broken")]
    bug: Option<crate::broken::Bug>,
}

/// What the wrapper must do on the node after a service step.
#[derive(Default)]
pub(crate) struct Effects {
    /// Multicast these in the sync class.
    pub(crate) sync_msgs: Vec<Vec<u8>>,
    /// The round of this ring completed: release application traffic, if the node is still
    /// on that ring. A round can complete while the node installs the next ring (its last
    /// joinlist recovered among the old ring's messages): the new ring's traffic must then
    /// stay held until the new ring's own round completes.
    pub(crate) release: Option<RingId>,
}

impl Service {
    pub(crate) fn new(me: NodeId, bug: Option<crate::broken::Bug>) -> Service {
        #[cfg(not(feature = "broken"))]
        let _ = bug;
        Service {
            me,
            conns: BTreeMap::new(),
            next_conn: 1,
            groups: BTreeMap::new(),
            syncing: true,
            round: None,
            trans: None,
            synced: None,
            continuous: Vec::new(),
            stats: CpgStats::default(),
            #[cfg(feature = "broken")]
            bug,
        }
    }

    fn has_bug(&self, bug: crate::broken::Bug) -> bool {
        #[cfg(feature = "broken")]
        return self.bug == Some(bug);
        #[cfg(not(feature = "broken"))]
        {
            let _ = bug;
            false
        }
    }

    pub(crate) fn connect(&mut self, flags: ConnFlags) -> ConnId {
        let id = ConnId(self.next_conn);
        self.next_conn += 1;
        self.conns.insert(
            id,
            Conn { flags, state: ConnState::Unjoined, group: None, initial_totem_conf_sent: false },
        );
        id
    }

    pub(crate) fn is_syncing(&self) -> bool {
        self.syncing
    }

    pub(crate) fn members(&self, group: &GroupName) -> Vec<Process> {
        self.groups.get(group).map(|m| m.iter().copied().collect()).unwrap_or_default()
    }

    pub(crate) fn groups(&self) -> impl Iterator<Item = (&GroupName, &BTreeSet<Process>)> {
        self.groups.iter()
    }

    pub(crate) fn synced_ring(&self) -> Option<&(RingId, Vec<NodeId>)> {
        self.synced.as_ref()
    }

    /// Check a join request; on success the caller multicasts the join and calls
    /// [`Service::join_sent`].
    pub(crate) fn check_join(&self, conn: ConnId, group: &GroupName, pid: u32) -> Result<(), CpgError> {
        let c = self.conns.get(&conn).ok_or(CpgError::BadHandle)?;
        match c.state {
            ConnState::JoinStarted | ConnState::JoinCompleted => return Err(CpgError::Exist),
            ConnState::LeaveStarted => return Err(CpgError::Busy),
            ConnState::Unjoined => {}
        }
        let same = |other: &Conn| {
            other.state != ConnState::Unjoined
                && other.group.as_ref().is_some_and(|(g, p)| g == group && *p == pid)
        };
        if self.conns.values().any(same) {
            return Err(CpgError::Exist);
        }
        // A leave of this process that is not yet delivered.
        if self.groups.get(group).is_some_and(|m| m.contains(&Process { node: self.me, pid })) {
            return Err(CpgError::TryAgain);
        }
        Ok(())
    }

    pub(crate) fn join_sent(&mut self, conn: ConnId, group: GroupName, pid: u32) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.state = ConnState::JoinStarted;
            c.group = Some((group, pid));
        }
    }

    /// Check a leave request; returns the pid to announce.
    pub(crate) fn check_leave(&self, conn: ConnId, group: &GroupName) -> Result<u32, CpgError> {
        let c = self.conns.get(&conn).ok_or(CpgError::BadHandle)?;
        match (c.state, &c.group) {
            (ConnState::JoinCompleted, Some((g, pid))) if g == group => Ok(*pid),
            (ConnState::JoinStarted, Some((g, _))) if g == group => Err(CpgError::Busy),
            _ => Err(CpgError::NotExist),
        }
    }

    pub(crate) fn leave_sent(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.state = ConnState::LeaveStarted;
        }
    }

    /// Check a mcast request; returns the group and pid to send as.
    pub(crate) fn check_mcast(&self, conn: ConnId) -> Result<(GroupName, u32), CpgError> {
        let c = self.conns.get(&conn).ok_or(CpgError::BadHandle)?;
        match (c.state, &c.group) {
            (ConnState::JoinStarted | ConnState::JoinCompleted, Some((g, pid))) => {
                if self.syncing && !self.has_bug(crate::broken::Bug::CpgNoTrafficHold) {
                    return Err(CpgError::TryAgain);
                }
                Ok((g.clone(), *pid))
            }
            _ => Err(CpgError::NotExist),
        }
    }

    /// The connection closed. Returns the leave to multicast, if its process is (or is
    /// becoming) a member.
    pub(crate) fn disconnect(&mut self, conn: ConnId) -> Option<CpgMsg> {
        let c = self.conns.remove(&conn)?;
        match (c.state, c.group) {
            (ConnState::JoinStarted | ConnState::JoinCompleted, Some((group, pid))) => {
                Some(CpgMsg::Leave { group, pid, reason: Reason::ProcDown })
            }
            _ => None,
        }
    }

    /// A delivered Totem message.
    pub(crate) fn on_deliver(&mut self, d: &Delivery, out: &mut Vec<Event>) -> Effects {
        let mut fx = Effects::default();
        let msg = match CpgMsg::decode(&d.payload) {
            Ok(m) => m,
            Err(_) => {
                self.stats.bad_messages += 1;
                return fx;
            }
        };
        let n = d.origin;
        match msg {
            CpgMsg::Join { group, pid, reason } => self.apply_join(n, group, pid, reason, out),
            CpgMsg::Leave { group, pid, reason } => self.apply_leave(n, group, pid, reason, out),
            CpgMsg::Mcast { group, pid, payload } => {
                self.apply_mcast(Process { node: n, pid }, group, d.guarantee, payload, out)
            }
            CpgMsg::Joinlist { ring_id, entries } => self.apply_joinlist(n, ring_id, entries, out, &mut fx),
        }
        fx
    }

    fn apply_join(&mut self, n: NodeId, group: GroupName, pid: u32, reason: Reason, out: &mut Vec<Event>) {
        let p = Process { node: n, pid };
        if !self.groups.entry(group.clone()).or_default().insert(p) {
            return;
        }
        if n == self.me {
            for c in self.conns.values_mut() {
                if c.state == ConnState::JoinStarted
                    && c.group.as_ref().is_some_and(|(g, q)| *g == group && *q == pid)
                {
                    c.state = ConnState::JoinCompleted;
                }
            }
        }
        self.confchg(&group, Vec::new(), vec![(p, reason)], out);
    }

    fn apply_leave(&mut self, n: NodeId, group: GroupName, pid: u32, reason: Reason, out: &mut Vec<Event>) {
        let p = Process { node: n, pid };
        let present = self.groups.get(&group).is_some_and(|m| m.contains(&p));
        if present {
            if let Some(m) = self.groups.get_mut(&group) {
                m.remove(&p);
            }
            self.confchg(&group, vec![(p, reason)], Vec::new(), out);
            self.drop_empty(&group);
        }
        if n == self.me {
            // The leaving connection got its view change: it is out of the group now.
            for c in self.conns.values_mut() {
                if c.state == ConnState::LeaveStarted
                    && c.group.as_ref().is_some_and(|(g, q)| *g == group && *q == pid)
                {
                    c.state = ConnState::Unjoined;
                    c.group = None;
                }
            }
        }
    }

    fn apply_mcast(
        &mut self,
        sender: Process,
        group: GroupName,
        guarantee: Guarantee,
        payload: Bytes,
        out: &mut Vec<Event>,
    ) {
        if !self.groups.get(&group).is_some_and(|m| m.contains(&sender)) {
            self.stats.unknown_sender += 1;
            return;
        }
        for (&conn, c) in &self.conns {
            if c.receives(&group) {
                out.push(Event {
                    conn,
                    kind: EventKind::Deliver {
                        group: group.clone(),
                        sender,
                        guarantee,
                        payload: payload.clone(),
                    },
                });
            }
        }
    }

    /// A configuration change from the ring below.
    pub(crate) fn on_config(&mut self, change: &ConfigChange, out: &mut Vec<Event>) -> Effects {
        let mut fx = Effects::default();
        if self.round.is_some() {
            self.stats.syncs_aborted += 1;
        }
        let aborted = self.round.take();
        self.syncing = true;
        match change.kind {
            ConfigKind::Transitional => {
                self.trans = Some((change.ring_id, change.members.clone()));
                if self.has_bug(crate::broken::Bug::CpgKeepJoinlistsOnAbort) {
                    self.round = aborted;
                }
            }
            ConfigKind::Regular => {
                let trans = match self.trans.take() {
                    Some((ring, members)) if ring == change.ring_id => members,
                    _ => Vec::new(),
                };
                let old = self.synced.as_ref().map(|(_, m)| m.clone()).unwrap_or_default();
                // A node that left in any transition since the last completed round is down,
                // not only one missing from this transition: when the rounds in between
                // were aborted, it may have come back in this one, but its messages of the
                // other side were never delivered here, so its processes must leave the
                // views (and come back with NODEUP) for views and messages to stay in step.
                self.continuous.retain(|n| trans.contains(n));
                let downlist = old.iter().copied().filter(|n| !self.continuous.contains(n)).collect();
                let mut joinlists = BTreeMap::new();
                if self.has_bug(crate::broken::Bug::CpgKeepJoinlistsOnAbort)
                    && let Some(r) = aborted
                {
                    joinlists = r.joinlists;
                }
                self.round = Some(Round {
                    ring_id: change.ring_id,
                    members: change.members.clone(),
                    downlist,
                    joinlists,
                });
                fx.sync_msgs.push(self.joinlist(change.ring_id).encode());
                if self.has_bug(crate::broken::Bug::CpgNoTrafficHold) {
                    fx.release = Some(change.ring_id);
                }
                if self.has_bug(crate::broken::Bug::CpgSkipBarrier) {
                    // Apply at once, from this node's own point of view, and let traffic go.
                    self.activate(out);
                    fx.release = Some(change.ring_id);
                }
            }
        }
        fx
    }

    /// This node's local processes, for the round of `ring_id`.
    fn joinlist(&self, ring_id: RingId) -> CpgMsg {
        let mut entries = Vec::new();
        for (group, members) in &self.groups {
            for p in members.iter().filter(|p| p.node == self.me) {
                entries.push((p.pid, group.clone()));
            }
        }
        CpgMsg::Joinlist { ring_id, entries }
    }

    fn apply_joinlist(
        &mut self,
        n: NodeId,
        ring_id: RingId,
        entries: Vec<(u32, GroupName)>,
        out: &mut Vec<Event>,
        fx: &mut Effects,
    ) {
        if self.has_bug(crate::broken::Bug::CpgSkipBarrier) {
            // The round was applied already; add what this joinlist announces right away.
            if self.synced.as_ref().is_some_and(|(r, _)| *r == ring_id) && n != self.me {
                let mut added: BTreeMap<GroupName, Vec<(Process, Reason)>> = BTreeMap::new();
                for (pid, group) in entries {
                    let p = Process { node: n, pid };
                    if self.groups.entry(group.clone()).or_default().insert(p) {
                        added.entry(group).or_default().push((p, Reason::NodeUp));
                    }
                }
                for (group, joined) in added {
                    self.confchg(&group, Vec::new(), joined, out);
                }
            }
            return;
        }
        let Some(round) = self.round.as_mut() else { return };
        if round.ring_id != ring_id || !round.members.contains(&n) {
            return;
        }
        round.joinlists.entry(n).or_insert(entries);
        if round.members.iter().all(|m| round.joinlists.contains_key(m)) {
            fx.release = Some(ring_id);
            self.activate(out);
        }
    }

    /// Apply the round: the same point of the total order at every member.
    fn activate(&mut self, out: &mut Vec<Event>) {
        let Some(round) = self.round.take() else { return };
        self.syncing = false;
        self.stats.syncs_completed += 1;
        self.synced = Some((round.ring_id, round.members.clone()));
        self.continuous = round.members.clone();

        // 1. Processes of nodes that left: one NODEDOWN view change per group.
        let mut removed: BTreeMap<GroupName, Vec<(Process, Reason)>> = BTreeMap::new();
        for (group, members) in &mut self.groups {
            members.retain(|p| {
                let down = round.downlist.contains(&p.node);
                if down {
                    removed.entry(group.clone()).or_default().push((*p, Reason::NodeDown));
                }
                !down
            });
        }
        for (group, left) in removed {
            if self.has_bug(crate::broken::Bug::CpgNodedownPerNode) {
                let mut nodes: Vec<NodeId> = left.iter().map(|(p, _)| p.node).collect();
                nodes.dedup();
                for node in nodes {
                    let mine = left.iter().filter(|(p, _)| p.node == node).copied().collect();
                    self.confchg(&group, mine, Vec::new(), out);
                }
            } else {
                self.confchg(&group, left, Vec::new(), out);
            }
        }

        // 2. Processes the joinlists announce that this node does not know: NODEUP.
        let mut added: BTreeMap<GroupName, Vec<(Process, Reason)>> = BTreeMap::new();
        let mut announced: BTreeSet<(GroupName, Process)> = BTreeSet::new();
        for (&n, entries) in &round.joinlists {
            for (pid, group) in entries {
                let p = Process { node: n, pid: *pid };
                announced.insert((group.clone(), p));
                if n != self.me && self.groups.entry(group.clone()).or_default().insert(p) {
                    added.entry(group.clone()).or_default().push((p, Reason::NodeUp));
                }
            }
        }
        for (group, mut joined) in added {
            joined.sort();
            self.confchg(&group, Vec::new(), joined, out);
        }

        // 3. Zombies: processes of other nodes that no joinlist announces.
        let mut zombies = Vec::new();
        for (group, members) in &self.groups {
            for p in members {
                if p.node != self.me && !announced.contains(&(group.clone(), *p)) {
                    zombies.push((group.clone(), *p));
                }
            }
        }
        for (group, p) in zombies {
            if let Some(m) = self.groups.get_mut(&group) {
                m.remove(&p);
            }
            self.confchg(&group, vec![(p, Reason::ProcDown)], Vec::new(), out);
        }
        let names: Vec<GroupName> = self.groups.keys().cloned().collect();
        for g in names {
            self.drop_empty(&g);
        }

        // 4. Every connection learns the new Totem membership.
        for &conn in self.conns.keys() {
            out.push(Event {
                conn,
                kind: EventKind::TotemConfchg {
                    ring_id: round.ring_id,
                    members: round.members.clone(),
                    initial: false,
                },
            });
        }
    }

    fn drop_empty(&mut self, group: &GroupName) {
        if self.groups.get(group).is_some_and(|m| m.is_empty()) {
            self.groups.remove(group);
        }
    }

    /// Send a view change of `group` to every connection that receives the group.
    fn confchg(
        &mut self,
        group: &GroupName,
        left: Vec<(Process, Reason)>,
        joined: Vec<(Process, Reason)>,
        out: &mut Vec<Event>,
    ) {
        let members = self.members(group);
        let synced = self.synced.clone();
        for (&conn, c) in self.conns.iter_mut() {
            let receives = c.receives(group);
            if !receives {
                continue;
            }
            out.push(Event {
                conn,
                kind: EventKind::Confchg {
                    group: group.clone(),
                    members: members.clone(),
                    left: left.clone(),
                    joined: joined.clone(),
                },
            });
            if c.flags.deliver_initial_totem_conf && !c.initial_totem_conf_sent {
                c.initial_totem_conf_sent = true;
                if let Some((ring_id, members)) = &synced {
                    out.push(Event {
                        conn,
                        kind: EventKind::TotemConfchg {
                            ring_id: *ring_id,
                            members: members.clone(),
                            initial: true,
                        },
                    });
                }
            }
        }
    }
}
