//! [`TraceBuilder`]: hand-building traces concisely, for the checkers' own tests and for
//! other crates' tests.
//!
//! The builder tracks, per node, the current incarnation (bumped by every `start` after the
//! first), the next message counter, and the last configurations delivered, so that the
//! common cases need few arguments: `trans` and `reg` fill in `prev_ring`, `left` and
//! `joined` the way a correct implementation would, and `form` installs a new ring at a set
//! of nodes with correctly computed transitional sets. Time starts at 0 and advances by 1
//! per event unless set with [`TraceBuilder::at`] or [`TraceBuilder::advance`].
//!
//! The builder never refuses anything: to build a violating trace, use the raw methods
//! ([`TraceBuilder::config`], [`TraceBuilder::send_msg`], [`TraceBuilder::event`], and the
//! `cpg_*` event methods).
//!
//! For CPG the builder also keeps one cluster-wide view per group and a registry of the
//! connections it has seen, so that the `cpg_*_group` helpers, [`TraceBuilder::cpg_send`],
//! [`TraceBuilder::cpg_node_down`] and [`TraceBuilder::cpg_totem`] emit what a correct
//! service would emit to every member (one partition; for partitions use the raw methods).

use crate::trace::{
    ConfKind, CpgReason, CpgResult, EventKind, Guarantee, MsgId, Node, Process, ProtoState, Ring, Slot, Trace,
};
use std::collections::BTreeMap;

/// The values of one `Token` event; see [`EventKind::Token`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenVisit {
    pub ring: Ring,
    pub token_seq: u32,
    pub seq: u32,
    pub aru: u32,
    pub aru_addr: Node,
    pub rtr: Vec<Slot>,
    pub sent_new: u32,
    pub retransmitted: u32,
}

impl TokenVisit {
    /// A visit with no retransmit requests and nothing sent; `aru_addr` is 0.
    pub fn new(ring: Ring, token_seq: u32, seq: u32, aru: u32) -> Self {
        TokenVisit { ring, token_seq, seq, aru, aru_addr: 0, rtr: Vec::new(), sent_new: 0, retransmitted: 0 }
    }

    /// Set `aru_addr`.
    pub fn aru_addr(mut self, node: Node) -> Self {
        self.aru_addr = node;
        self
    }

    /// Set the retransmit request list.
    pub fn rtr(mut self, rtr: Vec<Slot>) -> Self {
        self.rtr = rtr;
        self
    }

    /// Set the numbers of new and retransmitted messages sent on this visit.
    pub fn sent(mut self, sent_new: u32, retransmitted: u32) -> Self {
        self.sent_new = sent_new;
        self.retransmitted = retransmitted;
        self
    }
}

#[derive(Clone, Debug, Default)]
struct NodeState {
    incarnation: u32,
    started: bool,
    /// The current incarnation was opened by `state_lost`; its `start` must not open another.
    opened: bool,
    /// The last protocol state recorded with `state` (None: none recorded yet).
    proto: Option<ProtoState>,
    next_counter: u64,
    last_reg: Option<(Ring, Vec<Node>)>,
    last_config: Option<(ConfKind, Vec<Node>)>,
}

/// A CPG connection the builder has seen.
#[derive(Clone, Debug)]
struct CpgConn {
    incarnation: u32,
    exited: bool,
    /// The group it is in and its pid there.
    group: Option<(Vec<u8>, u32)>,
}

/// Builds a [`Trace`] event by event. Every method that adds one event returns its index.
#[derive(Clone, Debug, Default)]
pub struct TraceBuilder {
    trace: Trace,
    time: u64,
    nodes: BTreeMap<Node, NodeState>,
    cpg_conns: BTreeMap<(Node, u32), CpgConn>,
    /// The cluster-wide view of each group: member process -> its (node, conn).
    cpg_groups: BTreeMap<Vec<u8>, BTreeMap<Process, (Node, u32)>>,
}

fn minus(a: &[Node], b: &[Node]) -> Vec<Node> {
    a.iter().copied().filter(|n| !b.contains(n)).collect()
}

fn sorted(members: &[Node]) -> Vec<Node> {
    let mut v = members.to_vec();
    v.sort_unstable();
    v.dedup();
    v
}

impl TraceBuilder {
    /// An empty builder at time 0.
    pub fn new() -> Self {
        TraceBuilder::default()
    }

    /// A builder where `nodes` have started and installed `ring` (members = `nodes`): each
    /// node delivered the empty first transitional configuration, then the regular one.
    pub fn with_ring(ring: Ring, nodes: &[Node]) -> Self {
        let mut b = TraceBuilder::new();
        for &n in nodes {
            b.start(n);
        }
        b.form(ring, nodes);
        b
    }

    /// Set the time of the next event.
    pub fn at(&mut self, time: u64) -> &mut Self {
        self.time = time;
        self
    }

    /// Advance the time of the next event by `dt`.
    pub fn advance(&mut self, dt: u64) -> &mut Self {
        self.time = self.time.saturating_add(dt);
        self
    }

    /// The time the next event will get.
    pub fn now(&self) -> u64 {
        self.time
    }

    /// The current incarnation of `node` (0 if never started).
    pub fn incarnation(&self, node: Node) -> u32 {
        self.nodes.get(&node).map_or(0, |s| s.incarnation)
    }

    /// Append a raw event at `node`'s current incarnation.
    pub fn event(&mut self, node: Node, kind: EventKind) -> usize {
        let incarnation = self.incarnation(node);
        self.trace.push(self.time, node, incarnation, kind);
        self.time = self.time.saturating_add(1);
        self.trace.events.len() - 1
    }

    /// Open `node`'s next incarnation (its first, 0, or the one after the previous).
    fn open_incarnation(&mut self, node: Node) {
        let state = self.nodes.entry(node).or_default();
        if state.started {
            *state = NodeState { incarnation: state.incarnation + 1, started: true, ..NodeState::default() };
        } else {
            state.started = true;
        }
    }

    /// Start `node`: its first incarnation (0), or a new one after the previous (unless
    /// [`TraceBuilder::state_lost`] just opened it).
    pub fn start(&mut self, node: Node) -> usize {
        let opened = self.nodes.get_mut(&node).is_some_and(|s| std::mem::take(&mut s.opened));
        if !opened {
            self.open_incarnation(node);
        }
        self.event(node, EventKind::Start)
    }

    /// `node`'s persisted state was lost: opens its next incarnation with a `StateLost`
    /// event; call [`TraceBuilder::start`] next.
    pub fn state_lost(&mut self, node: Node) -> usize {
        self.open_incarnation(node);
        if let Some(s) = self.nodes.get_mut(&node) {
            s.opened = true;
        }
        self.event(node, EventKind::StateLost)
    }

    /// Crash `node`'s current incarnation (its CPG connections die with it).
    pub fn crash(&mut self, node: Node) -> usize {
        self.end_cpg_conns(node);
        self.event(node, EventKind::Crash)
    }

    /// `node`'s current incarnation leaves the ring cleanly (its last event; its CPG
    /// connections die with it).
    pub fn leave(&mut self, node: Node) -> usize {
        self.end_cpg_conns(node);
        self.event(node, EventKind::Leave)
    }

    fn end_cpg_conns(&mut self, node: Node) {
        for ((n, _), c) in self.cpg_conns.iter_mut() {
            if *n == node {
                c.exited = true;
            }
        }
    }

    /// Raw protocol state change of `node`; the builder's tracked state becomes `to`.
    pub fn state(&mut self, node: Node, from: ProtoState, to: ProtoState) -> usize {
        self.nodes.entry(node).or_default().proto = Some(to);
        self.event(node, EventKind::State { from, to })
    }

    /// The last protocol state recorded for `node`'s current incarnation, if any.
    pub fn proto_state(&self, node: Node) -> Option<ProtoState> {
        self.nodes.get(&node).and_then(|s| s.proto)
    }

    /// `node` moves to `to`: a `State` event from its tracked state (OPERATIONAL when none
    /// was recorded, the state a node starts in), unless it already is in `to`. Returns the
    /// event's index, if one was added.
    pub fn move_to(&mut self, node: Node, to: ProtoState) -> Option<usize> {
        let from = self.proto_state(node).unwrap_or(ProtoState::Operational);
        (from != to).then(|| self.state(node, from, to))
    }

    /// Raw `Commit` event: `node` entered COMMIT for `ring`.
    pub fn commit(
        &mut self,
        node: Node,
        ring: Ring,
        members: &[Node],
        proc_minus_failed: &[Node],
        via_consensus: bool,
        agreed: &[Node],
    ) -> usize {
        self.event(
            node,
            EventKind::Commit {
                ring,
                members: members.to_vec(),
                proc_minus_failed: proc_minus_failed.to_vec(),
                via_consensus,
                agreed: agreed.to_vec(),
            },
        )
    }

    /// The membership round for `ring` up to COMMIT, as a correct implementation records
    /// it: every member (ascending) enters GATHER if it is not there; then the lowest member
    /// creates the commit token (`Commit` via consensus, with every member agreed) and
    /// enters COMMIT, and the others accept it in ring order (`Commit` not via consensus)
    /// and enter COMMIT.
    pub fn enter_commit(&mut self, ring: Ring, members: &[Node]) {
        let members = sorted(members);
        for &n in &members {
            self.move_to(n, ProtoState::Gather);
        }
        for (k, &n) in members.iter().enumerate() {
            let creator = k == 0;
            let agreed: &[Node] = if creator { &members } else { &[] };
            self.commit(n, ring, &members, &members, creator, agreed);
            self.move_to(n, ProtoState::Commit);
        }
    }

    /// Every node of `nodes` enters `to` (see [`TraceBuilder::move_to`]).
    pub fn move_all(&mut self, nodes: &[Node], to: ProtoState) {
        for &n in nodes {
            self.move_to(n, to);
        }
    }

    /// A full membership change with probes: [`TraceBuilder::enter_commit`], every member
    /// enters RECOVERY, then OPERATIONAL, then [`TraceBuilder::form`] delivers the
    /// configurations.
    /// Members act in ascending order.
    pub fn install(&mut self, ring: Ring, members: &[Node]) {
        let members = sorted(members);
        self.enter_commit(ring, &members);
        self.move_all(&members, ProtoState::Recovery);
        self.move_all(&members, ProtoState::Operational);
        self.form(ring, &members);
    }

    /// `node` sends its next message (per-incarnation counter) with agreed delivery.
    pub fn send(&mut self, node: Node) -> MsgId {
        self.send_with(node, Guarantee::Agreed)
    }

    /// `node` sends its next message with safe delivery.
    pub fn send_safe(&mut self, node: Node) -> MsgId {
        self.send_with(node, Guarantee::Safe)
    }

    /// `node` sends its next message with `guarantee`.
    pub fn send_with(&mut self, node: Node, guarantee: Guarantee) -> MsgId {
        let incarnation = self.incarnation(node);
        let state = self.nodes.entry(node).or_default();
        let msg = MsgId::new(node, incarnation, state.next_counter);
        state.next_counter += 1;
        self.send_msg(node, msg, guarantee);
        msg
    }

    /// Raw `Send` of any message id (it need not name `node`).
    pub fn send_msg(&mut self, node: Node, msg: MsgId, guarantee: Guarantee) -> usize {
        self.event(node, EventKind::Send { msg, guarantee })
    }

    /// `node` delivers `msg`, ordered at `slot`, with agreed delivery.
    pub fn deliver(&mut self, node: Node, msg: MsgId, slot: Slot) -> usize {
        self.deliver_with(node, msg, slot, Guarantee::Agreed)
    }

    /// `node` delivers `msg`, ordered at `slot`, with safe delivery.
    pub fn deliver_safe(&mut self, node: Node, msg: MsgId, slot: Slot) -> usize {
        self.deliver_with(node, msg, slot, Guarantee::Safe)
    }

    /// `node` delivers `msg`, ordered at `slot`, with `guarantee`.
    pub fn deliver_with(&mut self, node: Node, msg: MsgId, slot: Slot, guarantee: Guarantee) -> usize {
        self.event(node, EventKind::Deliver { msg, slot, guarantee })
    }

    /// `origin` sends a message that is ordered at `slot` (Assign and Receive at `origin`),
    /// received by every node of `nodes`, then delivered by every node of `nodes` in order.
    pub fn multicast(&mut self, origin: Node, slot: Slot, nodes: &[Node]) -> MsgId {
        let msg = self.send(origin);
        self.broadcast(origin, slot, nodes);
        for &n in nodes {
            self.deliver(n, msg, slot);
        }
        msg
    }

    /// `origin` assigns `slot` (Assign and Receive at `origin`), then every other node of
    /// `nodes` receives it.
    pub fn broadcast(&mut self, origin: Node, slot: Slot, nodes: &[Node]) {
        self.assign(origin, slot);
        self.receive(origin, slot);
        for &n in nodes {
            if n != origin {
                self.receive(n, slot);
            }
        }
    }

    /// `node` delivers a transitional configuration of the new ring `ring` with these
    /// members; `prev_ring` is its last regular ring, `left` = that ring's members minus
    /// `members`, `joined` is empty.
    pub fn trans(&mut self, node: Node, ring: Ring, members: &[Node]) -> usize {
        let state = self.nodes.get(&node).cloned().unwrap_or_default();
        let members = sorted(members);
        let (prev_ring, left) = match &state.last_reg {
            Some((r, old)) => (Some(*r), minus(old, &members)),
            None => (None, Vec::new()),
        };
        self.config(node, ConfKind::Transitional, ring, prev_ring, &members, &left, &[])
    }

    /// `node` delivers the regular configuration `ring` with these members (sorted here);
    /// `prev_ring` is its last regular ring, `left` is empty, and `joined` = members minus
    /// the transitional members just delivered (or minus the last regular members when no
    /// transitional configuration came just before).
    pub fn reg(&mut self, node: Node, ring: Ring, members: &[Node]) -> usize {
        let state = self.nodes.get(&node).cloned().unwrap_or_default();
        let members = sorted(members);
        let prev_ring = state.last_reg.as_ref().map(|(r, _)| *r);
        let joined = match (&state.last_config, &state.last_reg) {
            (Some((ConfKind::Transitional, trans)), _) => minus(&members, trans),
            (_, Some((_, old))) => minus(&members, old),
            (_, None) => members.clone(),
        };
        self.config(node, ConfKind::Regular, ring, prev_ring, &members, &[], &joined)
    }

    /// Raw configuration event; the builder's per-node state follows it.
    #[allow(clippy::too_many_arguments)]
    pub fn config(
        &mut self,
        node: Node,
        kind: ConfKind,
        ring: Ring,
        prev_ring: Option<Ring>,
        members: &[Node],
        left: &[Node],
        joined: &[Node],
    ) -> usize {
        let state = self.nodes.entry(node).or_default();
        state.last_config = Some((kind, members.to_vec()));
        if kind == ConfKind::Regular {
            state.last_reg = Some((ring, members.to_vec()));
        }
        self.event(
            node,
            EventKind::Config {
                kind,
                ring,
                prev_ring,
                members: members.to_vec(),
                left: left.to_vec(),
                joined: joined.to_vec(),
            },
        )
    }

    /// Install `ring` with members `members` at every member, as a correct implementation
    /// would: each member delivers a transitional configuration (unless its last
    /// configuration already is one) whose members are the members of `ring` that come
    /// from the same regular ring (empty for a node that has none yet), then the regular
    /// configuration. Each node delivers its pair before the next node starts.
    pub fn form(&mut self, ring: Ring, members: &[Node]) {
        let members = sorted(members);
        let last_reg: BTreeMap<Node, Option<Ring>> = members
            .iter()
            .map(|n| (*n, self.nodes.get(n).and_then(|s| s.last_reg.as_ref().map(|(r, _)| *r))))
            .collect();
        for &n in &members {
            let last_is_trans = self
                .nodes
                .get(&n)
                .is_some_and(|s| matches!(s.last_config, Some((ConfKind::Transitional, _))));
            if !last_is_trans {
                let mine = last_reg.get(&n).copied().flatten();
                let trans: Vec<Node> = match mine {
                    Some(r) => {
                        members.iter().copied().filter(|q| last_reg.get(q) == Some(&Some(r))).collect()
                    }
                    None => Vec::new(),
                };
                self.trans(n, ring, &trans);
            }
            self.reg(n, ring, &members);
        }
    }

    /// `node` assigned `slot` to a message it originated.
    pub fn assign(&mut self, node: Node, slot: Slot) -> usize {
        self.event(node, EventKind::Assign { slot })
    }

    /// `node` now holds Totem message `slot`.
    pub fn receive(&mut self, node: Node, slot: Slot) -> usize {
        self.event(node, EventKind::Receive { slot })
    }

    /// `node` freed its copies of `ring`'s messages up to `up_to`.
    pub fn release(&mut self, node: Node, ring: Ring, up_to: u32) -> usize {
        self.event(node, EventKind::Release { ring, up_to })
    }

    /// `node` processed a token.
    pub fn token(&mut self, node: Node, visit: TokenVisit) -> usize {
        let TokenVisit { ring, token_seq, seq, aru, aru_addr, rtr, sent_new, retransmitted } = visit;
        self.event(
            node,
            EventKind::Token { ring, token_seq, seq, aru, aru_addr, rtr, sent_new, retransmitted },
        )
    }

    /// Raw `CpgJoin`.
    pub fn cpg_join_with(
        &mut self,
        node: Node,
        conn: u32,
        group: &[u8],
        pid: u32,
        result: CpgResult,
    ) -> usize {
        self.event(node, EventKind::CpgJoin { conn, group: group.to_vec(), pid, result })
    }

    /// Raw `CpgJoin` with result `Ok`.
    pub fn cpg_join(&mut self, node: Node, conn: u32, group: &[u8], pid: u32) -> usize {
        self.cpg_join_with(node, conn, group, pid, CpgResult::Ok)
    }

    /// Raw `CpgLeave`.
    pub fn cpg_leave_with(&mut self, node: Node, conn: u32, group: &[u8], result: CpgResult) -> usize {
        self.event(node, EventKind::CpgLeave { conn, group: group.to_vec(), result })
    }

    /// Raw `CpgLeave` with result `Ok`.
    pub fn cpg_leave(&mut self, node: Node, conn: u32, group: &[u8]) -> usize {
        self.cpg_leave_with(node, conn, group, CpgResult::Ok)
    }

    /// Raw `CpgMcast` of any message id.
    pub fn cpg_mcast_msg(
        &mut self,
        node: Node,
        conn: u32,
        group: &[u8],
        msg: MsgId,
        guarantee: Guarantee,
        result: CpgResult,
    ) -> usize {
        self.event(node, EventKind::CpgMcast { conn, group: group.to_vec(), msg, guarantee, result })
    }

    /// `CpgMcast` of `node`'s next message id (the counter it shares with `send`), agreed,
    /// with `result`.
    pub fn cpg_mcast_with(&mut self, node: Node, conn: u32, group: &[u8], result: CpgResult) -> MsgId {
        let incarnation = self.incarnation(node);
        let state = self.nodes.entry(node).or_default();
        let msg = MsgId::new(node, incarnation, state.next_counter);
        state.next_counter += 1;
        self.cpg_mcast_msg(node, conn, group, msg, Guarantee::Agreed, result);
        msg
    }

    /// `CpgMcast` of `node`'s next message id with result `Ok`.
    pub fn cpg_mcast(&mut self, node: Node, conn: u32, group: &[u8]) -> MsgId {
        self.cpg_mcast_with(node, conn, group, CpgResult::Ok)
    }

    /// Raw `CpgDeliver`.
    pub fn cpg_deliver(&mut self, node: Node, conn: u32, group: &[u8], sender: Process, msg: MsgId) -> usize {
        self.event(node, EventKind::CpgDeliver { conn, group: group.to_vec(), sender, msg })
    }

    /// Raw `CpgConfchg` (lists as given).
    pub fn cpg_confchg(
        &mut self,
        node: Node,
        conn: u32,
        group: &[u8],
        members: &[Process],
        left: &[(Process, CpgReason)],
        joined: &[(Process, CpgReason)],
    ) -> usize {
        self.event(
            node,
            EventKind::CpgConfchg {
                conn,
                group: group.to_vec(),
                members: members.to_vec(),
                left: left.to_vec(),
                joined: joined.to_vec(),
            },
        )
    }

    /// Raw `CpgTotemConfchg`.
    pub fn cpg_totem_confchg(&mut self, node: Node, conn: u32, ring: Ring, members: &[Node]) -> usize {
        self.event(node, EventKind::CpgTotemConfchg { conn, ring, members: members.to_vec() })
    }

    /// Raw `CpgMembership` snapshot.
    pub fn cpg_membership(&mut self, node: Node, conn: u32, group: &[u8], members: &[Process]) -> usize {
        self.event(node, EventKind::CpgMembership { conn, group: group.to_vec(), members: members.to_vec() })
    }

    /// Raw `CpgExit`; the builder forgets the connection (no view change is emitted).
    pub fn cpg_exit(&mut self, node: Node, conn: u32) -> usize {
        if let Some(c) = self.cpg_conns.get_mut(&(node, conn)) {
            c.exited = true;
        }
        self.event(node, EventKind::CpgExit { conn })
    }

    /// True when the builder's connection `(node, conn)` is alive: seen in the node's
    /// current incarnation and not exited.
    fn cpg_alive(&self, node: Node, conn: u32) -> bool {
        self.cpg_conns
            .get(&(node, conn))
            .is_some_and(|c| !c.exited && c.incarnation == self.incarnation(node))
    }

    /// The alive member connections of `group` with their processes, in member order.
    fn cpg_member_conns(&self, group: &[u8]) -> Vec<(Process, Node, u32)> {
        self.cpg_groups
            .get(group)
            .map(|m| {
                m.iter()
                    .filter(|(_, (n, c))| self.cpg_alive(*n, *c))
                    .map(|(p, (n, c))| (*p, *n, *c))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The builder's current view of `group`.
    pub fn cpg_view(&self, group: &[u8]) -> Vec<Process> {
        self.cpg_groups.get(group).map(|m| m.keys().copied().collect()).unwrap_or_default()
    }

    /// Emit one confchg of `group` (the builder's current view as members) to every alive
    /// member connection, plus `extra` connections, in member order.
    fn cpg_announce(
        &mut self,
        group: &[u8],
        left: &[(Process, CpgReason)],
        joined: &[(Process, CpgReason)],
        extra: &[(Node, u32)],
    ) {
        let members = self.cpg_view(group);
        let mut targets: Vec<(Process, Node, u32)> = self.cpg_member_conns(group);
        for &(n, c) in extra {
            if let Some((_, pid)) = self.cpg_conns.get(&(n, c)).and_then(|c| c.group.clone()) {
                targets.push((Process::new(n, pid), n, c));
            }
        }
        targets.sort_unstable();
        targets.dedup();
        for (_, n, c) in targets {
            self.cpg_confchg(n, c, group, &members, left, joined);
        }
    }

    /// A correct join: `CpgJoin` (Ok) of process (node, `pid`) on connection `conn`, then a
    /// confchg with it joined (reason Join) at every member connection, the joiner
    /// included. Returns the process.
    pub fn cpg_join_group(&mut self, node: Node, conn: u32, group: &[u8], pid: u32) -> Process {
        let me = Process::new(node, pid);
        let incarnation = self.incarnation(node);
        self.cpg_conns
            .insert((node, conn), CpgConn { incarnation, exited: false, group: Some((group.to_vec(), pid)) });
        self.cpg_join(node, conn, group, pid);
        self.cpg_groups.entry(group.to_vec()).or_default().insert(me, (node, conn));
        self.cpg_announce(group, &[], &[(me, CpgReason::Join)], &[]);
        me
    }

    /// A correct leave of connection `conn`'s group: `CpgLeave` (Ok), then a confchg with
    /// it left (reason Leave) at every member connection, the leaver included.
    pub fn cpg_leave_group(&mut self, node: Node, conn: u32) {
        let Some((group, pid)) = self.cpg_conns.get(&(node, conn)).and_then(|c| c.group.clone()) else {
            return;
        };
        let me = Process::new(node, pid);
        self.cpg_leave(node, conn, &group);
        if let Some(m) = self.cpg_groups.get_mut(&group) {
            m.remove(&me);
        }
        self.cpg_announce(&group, &[(me, CpgReason::Leave)], &[], &[(node, conn)]);
        if let Some(c) = self.cpg_conns.get_mut(&(node, conn)) {
            c.group = None;
        }
    }

    /// Connection `conn`'s process exits: `CpgExit`, then a confchg with it left (reason
    /// ProcDown) at every remaining member connection.
    pub fn cpg_exit_group(&mut self, node: Node, conn: u32) {
        let group = self.cpg_conns.get(&(node, conn)).and_then(|c| c.group.clone());
        self.cpg_exit(node, conn);
        if let Some((group, pid)) = group {
            let me = Process::new(node, pid);
            if let Some(m) = self.cpg_groups.get_mut(&group) {
                m.remove(&me);
            }
            self.cpg_announce(&group, &[(me, CpgReason::ProcDown)], &[], &[]);
        }
    }

    /// Connection `conn` multicasts its node's next message id to its group (result Ok),
    /// and every alive member connection delivers it, in member order.
    pub fn cpg_send(&mut self, node: Node, conn: u32) -> MsgId {
        let (group, pid) = self
            .cpg_conns
            .get(&(node, conn))
            .and_then(|c| c.group.clone())
            .unwrap_or_else(|| (Vec::new(), 0));
        let msg = self.cpg_mcast(node, conn, &group);
        let sender = Process::new(node, pid);
        for (_, n, c) in self.cpg_member_conns(&group) {
            self.cpg_deliver(n, c, &group, sender, msg);
        }
        msg
    }

    /// The processes on `down` leave every group with reason NodeDown: one confchg per
    /// affected group at every remaining alive member connection (the sync activation of a
    /// correct survivor). The builder forgets them.
    pub fn cpg_node_down(&mut self, down: &[Node]) {
        let groups: Vec<Vec<u8>> = self.cpg_groups.keys().cloned().collect();
        for group in groups {
            let gone: Vec<Process> = self
                .cpg_groups
                .get(&group)
                .map(|m| m.keys().filter(|p| down.contains(&p.node)).copied().collect())
                .unwrap_or_default();
            if gone.is_empty() {
                continue;
            }
            if let Some(m) = self.cpg_groups.get_mut(&group) {
                m.retain(|p, _| !down.contains(&p.node));
            }
            let left: Vec<(Process, CpgReason)> = gone.iter().map(|p| (*p, CpgReason::NodeDown)).collect();
            self.cpg_announce(&group, &left, &[], &[]);
        }
    }

    /// A `CpgTotemConfchg` of `ring` (members sorted) at every alive connection the builder
    /// knows on a node of `members`, in (node, conn) order.
    pub fn cpg_totem(&mut self, ring: Ring, members: &[Node]) {
        let members = sorted(members);
        let conns: Vec<(Node, u32)> = self
            .cpg_conns
            .keys()
            .filter(|(n, c)| members.contains(n) && self.cpg_alive(*n, *c))
            .copied()
            .collect();
        for (n, c) in conns {
            self.cpg_totem_confchg(n, c, ring, &members);
        }
    }

    /// Register connection `conn` of `node` (alive, in no group) without an event, so that
    /// [`TraceBuilder::cpg_totem`] reaches it.
    pub fn cpg_connect(&mut self, node: Node, conn: u32) {
        let incarnation = self.incarnation(node);
        self.cpg_conns.insert((node, conn), CpgConn { incarnation, exited: false, group: None });
    }

    /// The trace so far.
    pub fn trace(&self) -> &Trace {
        &self.trace
    }

    /// The finished trace.
    pub fn build(self) -> Trace {
        self.trace
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type ConfigRow = (Node, ConfKind, Vec<Node>, Vec<Node>, Vec<Node>);

    // Goal: `form` computes the transitional sets a correct implementation would deliver.
    // Method: form {1,2,3}, then split 3 off and merge it back, inspecting the events.
    #[test]
    fn form_computes_transitional_sets() {
        let r1 = Ring::new(1, 4);
        let mut b = TraceBuilder::with_ring(r1, &[1, 2, 3]);
        let r2 = Ring::new(1, 8);
        b.form(r2, &[1, 2]);
        let r3 = Ring::new(3, 8);
        b.form(r3, &[3]);
        let r4 = Ring::new(1, 12);
        b.form(r4, &[1, 2, 3]);
        let trace = b.build();
        let configs: Vec<ConfigRow> = trace
            .events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::Config { kind, ring, members, left, joined, .. } if *ring == r4 => {
                    Some((e.node, *kind, members.clone(), left.clone(), joined.clone()))
                }
                _ => None,
            })
            .collect();
        assert_eq!(
            configs,
            vec![
                (1, ConfKind::Transitional, vec![1, 2], vec![], vec![]),
                (1, ConfKind::Regular, vec![1, 2, 3], vec![], vec![3]),
                (2, ConfKind::Transitional, vec![1, 2], vec![], vec![]),
                (2, ConfKind::Regular, vec![1, 2, 3], vec![], vec![3]),
                (3, ConfKind::Transitional, vec![3], vec![], vec![]),
                (3, ConfKind::Regular, vec![1, 2, 3], vec![], vec![1, 2]),
            ]
        );
    }

    // Goal: the CPG helpers emit what a correct service emits to every member.
    // Method: two joins, a multicast, a totem confchg, a leave, a node failure; list the
    // CPG events as (node, conn, kind, detail).
    #[test]
    fn cpg_helpers_emit_member_events() {
        let g = b"g";
        let r = Ring::new(1, 4);
        let mut b = TraceBuilder::with_ring(r, &[1, 2]);
        let p = b.cpg_join_group(1, 1, g, 10);
        let q = b.cpg_join_group(2, 1, g, 20);
        let m = b.cpg_send(2, 1);
        b.cpg_totem(r, &[1, 2]);
        b.cpg_leave_group(1, 1);
        b.cpg_join_group(1, 1, g, 10);
        b.crash(2);
        b.cpg_node_down(&[2]);
        let rows: Vec<(Node, u32, String)> = b
            .build()
            .events
            .iter()
            .filter_map(|e| {
                let conn = e.kind.cpg_conn()?;
                let detail = match &e.kind {
                    EventKind::CpgConfchg { members, left, joined, .. } => {
                        format!("confchg {members:?} {left:?} {joined:?}")
                    }
                    EventKind::CpgDeliver { sender, msg, .. } => format!("deliver {sender:?} {msg:?}"),
                    EventKind::CpgTotemConfchg { members, .. } => format!("totem {members:?}"),
                    k => k.name().to_string(),
                };
                Some((e.node, conn, detail))
            })
            .collect();
        let (j, l, d) = (CpgReason::Join, CpgReason::Leave, CpgReason::NodeDown);
        let expect = [
            (1, 1, "CpgJoin".to_string()),
            (1, 1, format!("confchg {:?} [] {:?}", [p], [(p, j)])),
            (2, 1, "CpgJoin".to_string()),
            (1, 1, format!("confchg {:?} [] {:?}", [p, q], [(q, j)])),
            (2, 1, format!("confchg {:?} [] {:?}", [p, q], [(q, j)])),
            (2, 1, "CpgMcast".to_string()),
            (1, 1, format!("deliver {q:?} {m:?}")),
            (2, 1, format!("deliver {q:?} {m:?}")),
            (1, 1, "totem [1, 2]".to_string()),
            (2, 1, "totem [1, 2]".to_string()),
            (1, 1, "CpgLeave".to_string()),
            (1, 1, format!("confchg {:?} {:?} []", [q], [(p, l)])),
            (2, 1, format!("confchg {:?} {:?} []", [q], [(p, l)])),
            (1, 1, "CpgJoin".to_string()),
            (1, 1, format!("confchg {:?} [] {:?}", [p, q], [(p, j)])),
            (2, 1, format!("confchg {:?} [] {:?}", [p, q], [(p, j)])),
            (1, 1, format!("confchg {:?} {:?} []", [p], [(q, d)])),
        ];
        assert_eq!(rows, expect.to_vec());
    }

    // Goal: incarnations and counters are tracked per node.
    // Method: send, restart, send again; check the ids.
    #[test]
    fn restart_bumps_incarnation_and_resets_counter() {
        let mut b = TraceBuilder::new();
        b.start(1);
        assert_eq!(b.send(1), MsgId::new(1, 0, 0));
        assert_eq!(b.send(1), MsgId::new(1, 0, 1));
        b.crash(1);
        b.start(1);
        assert_eq!(b.send(1), MsgId::new(1, 1, 0));
        assert_eq!(b.trace().events.last().map(|e| e.incarnation), Some(1));
    }

    // Goal: `state_lost` opens the next incarnation and the following `start` stays in it.
    // Method: start, crash, state_lost, start; check the incarnations.
    #[test]
    fn state_lost_opens_the_next_incarnation() {
        let mut b = TraceBuilder::new();
        b.start(1);
        b.crash(1);
        b.state_lost(1);
        b.start(1);
        b.leave(1);
        let incs: Vec<(u32, &str)> =
            b.build().events.iter().map(|e| (e.incarnation, e.kind.name())).collect();
        assert_eq!(incs, vec![(0, "Start"), (0, "Crash"), (1, "StateLost"), (1, "Start"), (1, "Leave")]);
    }

    // Goal: `install` records the membership round a correct node goes through.
    // Method: install a ring at {1,2}; list the probe events.
    #[test]
    fn install_records_the_round() {
        let mut b = TraceBuilder::new();
        b.start(1);
        b.start(2);
        b.install(Ring::new(1, 4), &[2, 1]);
        let kinds: Vec<(Node, String)> = b
            .build()
            .events
            .iter()
            .filter(|e| matches!(e.kind, EventKind::State { .. } | EventKind::Commit { .. }))
            .map(|e| match &e.kind {
                EventKind::State { from, to } => (e.node, format!("{from:?}->{to:?}")),
                EventKind::Commit { via_consensus, .. } => (e.node, format!("Commit {via_consensus}")),
                _ => unreachable!(),
            })
            .collect();
        let expect = [
            (1, "Operational->Gather"),
            (2, "Operational->Gather"),
            (1, "Commit true"),
            (1, "Gather->Commit"),
            (2, "Commit false"),
            (2, "Gather->Commit"),
            (1, "Commit->Recovery"),
            (2, "Commit->Recovery"),
            (1, "Recovery->Operational"),
            (2, "Recovery->Operational"),
        ];
        let expect: Vec<(Node, String)> = expect.iter().map(|(n, s)| (*n, s.to_string())).collect();
        assert_eq!(kinds, expect);
    }
}
