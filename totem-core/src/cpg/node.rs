//! [`CpgNode`]: a Totem node with the CPG service on top, behind one API.

use super::msg::CpgMsg;
use super::service::{Effects, Service};
use super::{CPG_MESSAGE_MAX, ConnFlags, ConnId, CpgError, CpgStats, Event, GroupName, Process};
use crate::config::ConfigError;
use crate::ids::{NodeId, RingId};
use crate::message::{Guarantee, Message};
use crate::node::{Class, Node, Output, SubmitError};
use crate::time::Time;
use crate::timer::TimerKind;
use serde::{Deserialize, Serialize};

/// A Totem node running the CPG service.
///
/// Drive it exactly like a [`Node`] (`start`, `handle_message`, `handle_timeout`,
/// `ring_seq_persisted`, `poll_timeout`); local clients use `connect`, `join`, `leave`,
/// `mcast`, `disconnect` and the read-only queries. Every call appends the node's
/// [`Output`]s (Totem deliveries and configuration changes included, for recorders) and
/// [`Output::Cpg`] events for the connections, in the order they happened.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct CpgNode {
    node: Node,
    service: Service,
}

impl CpgNode {
    /// Put the service on `node` (which must not have been started yet).
    pub fn new(mut node: Node) -> CpgNode {
        node.enable_sync_barrier();
        #[cfg(feature = "broken")]
        let bug = node.config().bug;
        #[cfg(not(feature = "broken"))]
        let bug = None;
        let service = Service::new(node.id(), bug);
        CpgNode { node, service }
    }

    /// Shorthand for `CpgNode::new(Node::new(..)?)`.
    pub fn fresh(
        config: crate::Config,
        me: NodeId,
        persisted_ring_seq: Option<u64>,
    ) -> Result<CpgNode, ConfigError> {
        Ok(CpgNode::new(Node::new(config, me, persisted_ring_seq)?))
    }

    pub fn node(&self) -> &Node {
        &self.node
    }

    pub fn id(&self) -> NodeId {
        self.node.id()
    }

    pub fn start(&mut self, now: Time, out: &mut Vec<Output>) {
        let from = out.len();
        self.node.start(now, out);
        self.process(now, from, out);
    }

    pub fn handle_message(&mut self, now: Time, from: NodeId, msg: Message, out: &mut Vec<Output>) {
        let at = out.len();
        self.node.handle_message(now, from, msg, out);
        self.process(now, at, out);
    }

    pub fn handle_timeout(&mut self, now: Time, kind: TimerKind, out: &mut Vec<Output>) {
        let at = out.len();
        self.node.handle_timeout(now, kind, out);
        self.process(now, at, out);
    }

    pub fn ring_seq_persisted(&mut self, now: Time, seq: u64, out: &mut Vec<Output>) {
        let at = out.len();
        self.node.ring_seq_persisted(now, seq, out);
        self.process(now, at, out);
    }

    /// Leave the ring cleanly (see [`Node::shutdown`]). The connections get nothing more.
    pub fn shutdown(&mut self, now: Time, out: &mut Vec<Output>) {
        self.node.shutdown(now, out);
    }

    pub fn poll_timeout(&self) -> Option<(Time, TimerKind)> {
        self.node.poll_timeout()
    }

    pub fn armed_timers(&self) -> impl Iterator<Item = (TimerKind, Time)> + '_ {
        self.node.armed_timers()
    }

    /// Open a local connection.
    pub fn connect(&mut self, flags: ConnFlags) -> ConnId {
        self.service.connect(flags)
    }

    /// Join `group` as process `pid`. Ok means the join was multicast; the connection's own
    /// JOIN view change follows when it is delivered.
    pub fn join(
        &mut self,
        now: Time,
        conn: ConnId,
        group: &[u8],
        pid: u32,
        out: &mut Vec<Output>,
    ) -> Result<(), CpgError> {
        let group = GroupName::new(group)?;
        self.service.check_join(conn, &group, pid)?;
        let msg = CpgMsg::Join { group: group.clone(), pid, reason: super::Reason::Join };
        self.submit(now, &msg.encode(), Guarantee::Agreed, Class::App, out)?;
        self.service.join_sent(conn, group, pid);
        Ok(())
    }

    /// Leave `group`. Ok means the leave was multicast; the connection's own LEAVE view
    /// change follows, after which it gets nothing more for the group and may join again.
    pub fn leave(
        &mut self,
        now: Time,
        conn: ConnId,
        group: &[u8],
        out: &mut Vec<Output>,
    ) -> Result<(), CpgError> {
        let group = GroupName::new(group)?;
        let pid = self.service.check_leave(conn, &group)?;
        let msg = CpgMsg::Leave { group, pid, reason: super::Reason::Leave };
        self.submit(now, &msg.encode(), Guarantee::Agreed, Class::App, out)?;
        self.service.leave_sent(conn);
        Ok(())
    }

    /// Multicast `payload` to the connection's group. [`CpgError::TryAgain`] while a
    /// synchronization runs or the send queue is full: nothing was queued, retry later.
    pub fn mcast(
        &mut self,
        now: Time,
        conn: ConnId,
        guarantee: Guarantee,
        payload: &[u8],
        out: &mut Vec<Output>,
    ) -> Result<(), CpgError> {
        if payload.len() > CPG_MESSAGE_MAX {
            return Err(CpgError::TooBig { len: payload.len(), max: CPG_MESSAGE_MAX });
        }
        let (group, pid) = self.service.check_mcast(conn)?;
        // Refuse a message the queue cannot take before copying it into one.
        if !self.node.has_room(CpgMsg::mcast_len(&group, payload.len())) {
            return Err(CpgError::TryAgain);
        }
        let bytes = CpgMsg::encode_mcast(&group, pid, payload);
        self.submit(now, &bytes, guarantee, Class::App, out)
    }

    /// The connection's process exited or the connection closed: if it was joined (or
    /// joining), its group sees it leave with PROCDOWN. Never refused for flow control.
    pub fn disconnect(&mut self, now: Time, conn: ConnId, out: &mut Vec<Output>) {
        if let Some(msg) = self.service.disconnect(conn) {
            // Control class: bounded by the number of connections, never TryAgain.
            let _ = self.submit(now, &msg.encode(), Guarantee::Agreed, Class::Control, out);
        }
    }

    /// The members of `group` as this node knows them (any group, joined or not), sorted.
    pub fn membership(&self, group: &[u8]) -> Result<Vec<Process>, CpgError> {
        Ok(self.service.members(&GroupName::new(group)?))
    }

    /// Every group with its members, groups ordered by (length, bytes).
    pub fn groups(&self) -> Vec<(GroupName, Vec<Process>)> {
        self.service.groups().map(|(g, m)| (g.clone(), m.iter().copied().collect())).collect()
    }

    /// The group a connection is in (or joining / leaving), if any.
    pub fn conn_group(&self, conn: ConnId) -> Option<(&GroupName, u32)> {
        self.service.conns.get(&conn).and_then(|c| c.group.as_ref()).map(|(g, p)| (g, *p))
    }

    pub fn is_connected(&self, conn: ConnId) -> bool {
        self.service.conns.contains_key(&conn)
    }

    /// Whether a synchronization round is running (mcast gets TryAgain).
    pub fn is_syncing(&self) -> bool {
        self.service.is_syncing()
    }

    /// The ring and members of the last completed synchronization.
    pub fn synced_ring(&self) -> Option<(RingId, Vec<NodeId>)> {
        self.service.synced_ring().cloned()
    }

    pub fn stats(&self) -> &CpgStats {
        &self.service.stats
    }

    fn submit(
        &mut self,
        now: Time,
        bytes: &[u8],
        guarantee: Guarantee,
        class: Class,
        out: &mut Vec<Output>,
    ) -> Result<(), CpgError> {
        match self.node.submit_as(now, bytes, guarantee, class, out) {
            Ok(()) => {
                self.service.stats.messages_sent += 1;
                Ok(())
            }
            Err(SubmitError::TryAgain) => Err(CpgError::TryAgain),
            Err(SubmitError::TooLarge { len, max }) => Err(CpgError::TooBig { len, max }),
            // CPG messages always carry a header.
            Err(SubmitError::Empty) => Err(CpgError::TooBig { len: 0, max: 0 }),
        }
    }

    /// Feed the node's outputs from `from` on to the service; the service's events and any
    /// further node outputs are appended (and processed in turn).
    fn process(&mut self, now: Time, from: usize, out: &mut Vec<Output>) {
        // One pass: the node's outputs are taken out and put back one by one, each followed
        // by what it causes. What is added after an output is never a delivery or a
        // configuration change, so nothing added needs scanning (and a step that delivers
        // thousands of packed messages costs linear time).
        let node_outputs: Vec<Output> = out.drain(from..).collect();
        let mut events = Vec::new();
        for o in node_outputs {
            let fx = match &o {
                Output::Deliver(d) => self.service.on_deliver(d, &mut events),
                Output::Config(c) => self.service.on_config(c, &mut events),
                _ => Effects::default(),
            };
            out.push(o);
            out.extend(events.drain(..).map(Output::Cpg));
            for m in fx.sync_msgs {
                // Sync messages are unbounded by design (one joinlist per round).
                if self.node.submit_as(now, &m, Guarantee::Agreed, Class::Sync, out).is_ok() {
                    self.service.stats.messages_sent += 1;
                }
            }
            // Only for the ring the node is on: see `Effects::release`.
            if let Some(ring) = fx.release
                && self.node.status().ring_id == ring
            {
                self.node.release_app_traffic(now, out);
            }
        }
    }
}

impl From<Event> for Output {
    fn from(e: Event) -> Output {
        Output::Cpg(e)
    }
}
