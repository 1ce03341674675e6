//! Derived views of the CPG part of a trace, shared by the CPG-n checkers.
//!
//! # Connections and sessions
//!
//! A connection is identified by (node, incarnation, conn) ([`Conn`]). It ends at its
//! `CpgExit`, at the end of its incarnation (`Crash` or `Leave`), or at the first event of
//! a later incarnation of its node, whichever comes first; events of the connection after
//! its end are ignored here (TRACE-WF reports them).
//!
//! A *session* is one membership of a connection in one group G, as process
//! (node, pid): it opens at a `CpgJoin` of G with result `Ok` on a connection that has no
//! open session (a second successful join is ignored here and reported by CPG-2), and it
//! closes at the first confchg of G at the connection that lists the session's own process
//! in `left` (normally its LEAVE confchg), or at the connection's end. The session's
//! *events* are the `CpgConfchg` and `CpgDeliver` events of G at the connection while it
//! is open, its closing confchg included; its *join confchg* is its first confchg that
//! lists its own process in `joined`.
//!
//! A `CpgConfchg` or `CpgDeliver` of a group at a connection with no open session of that
//! group is a *stray* event: after a session of the same group closed by its leave confchg
//! (CPG-3), while a session of another group is open (CPG-15), or otherwise (CPG-2).
//! `CpgMembership` snapshots of groups the connection is not in are legitimate and ignored.
//!
//! # Rings and activation
//!
//! CPG's guarantees hold per Totem ring, after the ring's synchronization completed
//! ("activation"). At a connection the activation of the regular configuration r is marked
//! by its `CpgTotemConfchg` for r ([`Activations`]); a connection created after the first
//! such marker at its node (its first event comes later) is entirely post-activation.
//! [`Segment`]s cut the sessions' events along these lines for CPG-1 and CPG-6.

use crate::index::{FastMap, FastSet, History, Inc, IncarnationHistory, Index};
use crate::trace::{ConfKind, CpgResult, EventKind, MsgId, Node, Process, Ring, Trace};
use std::collections::BTreeMap;

/// A CPG connection: (node, incarnation, conn).
pub type Conn = (Node, u32, u32);

/// "node 3#1 conn 2".
pub fn fmt_conn(c: Conn) -> String {
    format!("node {}#{} conn {}", c.0, c.1, c.2)
}

/// The connection of a `Cpg*` event.
pub fn conn_of(e: &crate::trace::Event) -> Option<Conn> {
    e.kind.cpg_conn().map(|c| (e.node, e.incarnation, c))
}

/// Why an event of a group reached a connection outside a session of that group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StrayKind {
    /// The connection never had a session of the group, or its last one did not end with
    /// a leave confchg.
    NoSession,
    /// The connection's last session of the group ended with its leave confchg.
    AfterLeave,
    /// A session of another group is open on the connection.
    OtherGroup,
}

/// A confchg or delivery of a group at a connection outside a session of that group.
#[derive(Clone, Copy, Debug)]
pub struct Stray {
    pub event: usize,
    pub kind: StrayKind,
    /// The session the classification refers to: the closed one (AfterLeave) or the open
    /// one of another group (OtherGroup).
    pub session: Option<usize>,
}

/// One membership of one connection in one group; see the module documentation.
#[derive(Clone, Debug)]
pub struct Session<'t> {
    pub conn: Conn,
    pub group: &'t [u8],
    pub pid: u32,
    /// The `CpgJoin` (result Ok) that opened it.
    pub join: usize,
    /// Its first confchg listing its own process in `joined`.
    pub join_confchg: Option<usize>,
    /// Its first `CpgLeave` of its group with result Ok.
    pub leave_request: Option<usize>,
    /// The confchg that listed its own process in `left` (and closed it).
    pub leave_confchg: Option<usize>,
    /// The connection's end (CpgExit, crash, ...) when that closed the session.
    pub closed_by: Option<usize>,
    /// Its `CpgConfchg` and `CpgDeliver` events, in order.
    pub events: Vec<usize>,
    /// Its `CpgMembership` snapshots of its group.
    pub snapshots: Vec<usize>,
    /// Its connection's `CpgMcast` events while it was open (any group, any result).
    pub mcasts: Vec<usize>,
}

impl Session<'_> {
    /// The session's process.
    pub fn process(&self) -> Process {
        Process::new(self.conn.0, self.pid)
    }

    /// The event that closed it, if it closed.
    pub fn end(&self) -> Option<usize> {
        self.leave_confchg.or(self.closed_by)
    }

    /// The event at which the process started going away: its leave request, its closing
    /// confchg or its connection's end, whichever came first.
    pub fn departure(&self) -> Option<usize> {
        [self.leave_request, self.leave_confchg, self.closed_by].into_iter().flatten().min()
    }

    /// True when the session is open at the end of the trace, received its join confchg and
    /// did not ask to leave: "joined at the end".
    pub fn joined_at_end(&self) -> bool {
        self.end().is_none() && self.join_confchg.is_some() && self.leave_request.is_none()
    }
}

/// Everything one connection did.
#[derive(Clone, Debug, Default)]
pub struct ConnHistory {
    /// All its `Cpg*` events, in order (including any after its end).
    pub events: Vec<usize>,
    /// Its first `CpgExit`.
    pub exit: Option<usize>,
    /// The event that ended it (exit, crash or leave of its incarnation, or the first event
    /// of a later incarnation of its node); None when alive at the end of the trace.
    pub end: Option<usize>,
    /// Its sessions (indices into [`CpgIndex::sessions`]), in order.
    pub sessions: Vec<usize>,
    /// Its `CpgTotemConfchg` events before its end.
    pub totems: Vec<usize>,
}

/// The first `CpgMcast` of a message by the message's own origin incarnation.
#[derive(Clone, Copy, Debug)]
pub struct McastAt<'t> {
    pub event: usize,
    pub time: u64,
    pub conn: Conn,
    pub group: &'t [u8],
    pub result: CpgResult,
    /// The session open on the sending connection at that moment, if any.
    pub session: Option<usize>,
}

/// CPG views of a trace.
#[derive(Clone, Debug, Default)]
pub struct CpgIndex<'t> {
    pub conns: BTreeMap<Conn, ConnHistory>,
    pub sessions: Vec<Session<'t>>,
    pub strays: Vec<Stray>,
    /// First `CpgMcast` of each message by its origin incarnation.
    pub mcasts: FastMap<MsgId, McastAt<'t>>,
    /// Every `CpgDeliver` of each message, in trace order.
    pub deliveries: FastMap<MsgId, Vec<usize>>,
    /// For each event in some session's `events`, that session.
    pub session_of: FastMap<usize, usize>,
    /// True when the trace has at least one `Cpg*` event.
    pub any: bool,
}

/// The end of every incarnation: its Crash or Leave, or else the first event of the
/// node's next incarnation present in the trace.
pub fn incarnation_ends(history: &History<'_>) -> FastMap<Inc, usize> {
    let mut ends = FastMap::default();
    let mut prev: Option<&IncarnationHistory<'_>> = None;
    for h in history.incarnations.values() {
        if let Some(p) = prev
            && p.node == h.node
            && p.end().is_none()
        {
            ends.insert(p.key(), h.first_event);
        }
        if let Some(e) = h.end() {
            ends.insert(h.key(), e);
        }
        prev = Some(h);
    }
    ends
}

impl<'t> CpgIndex<'t> {
    /// Build the CPG views of the indexed trace.
    pub fn new(ix: &Index<'t>) -> Self {
        let trace: &'t Trace = ix.trace();
        let mut cpg = CpgIndex::default();
        for (i, e) in trace.events.iter().enumerate() {
            if let Some(c) = conn_of(e) {
                cpg.any = true;
                let h = cpg.conns.entry(c).or_default();
                h.events.push(i);
                if matches!(e.kind, EventKind::CpgExit { .. }) {
                    h.exit.get_or_insert(i);
                }
            }
        }
        if !cpg.any {
            return cpg;
        }
        let inc_ends = incarnation_ends(ix.history());
        let keys: Vec<Conn> = cpg.conns.keys().copied().collect();
        for c in keys {
            cpg.build_conn(trace, c, inc_ends.get(&(c.0, c.1)).copied());
        }
        for (i, e) in trace.events.iter().enumerate() {
            if let EventKind::CpgDeliver { msg, .. } = &e.kind {
                cpg.deliveries.entry(*msg).or_default().push(i);
            }
        }
        cpg
    }

    fn build_conn(&mut self, trace: &'t Trace, c: Conn, inc_end: Option<usize>) {
        let Some(h) = self.conns.get(&c) else { return };
        let end = [h.exit, inc_end].into_iter().flatten().min();
        let events = h.events.clone();
        let mut open: Option<usize> = None;
        // The last session closed by its leave confchg.
        let mut last_left: Option<usize> = None;
        let mut sessions = Vec::new();
        let mut totems = Vec::new();
        for &i in &events {
            if end.is_some_and(|x| i > x) {
                break;
            }
            let e = &trace.events[i];
            match &e.kind {
                EventKind::CpgJoin { group, pid, result: CpgResult::Ok, .. } if open.is_none() => {
                    let s = self.sessions.len();
                    self.sessions.push(Session {
                        conn: c,
                        group,
                        pid: *pid,
                        join: i,
                        join_confchg: None,
                        leave_request: None,
                        leave_confchg: None,
                        closed_by: None,
                        events: Vec::new(),
                        snapshots: Vec::new(),
                        mcasts: Vec::new(),
                    });
                    sessions.push(s);
                    open = Some(s);
                }
                EventKind::CpgLeave { group, result: CpgResult::Ok, .. } => {
                    if let Some(s) = open.map(|s| &mut self.sessions[s])
                        && s.group == group.as_slice()
                        && s.leave_request.is_none()
                    {
                        s.leave_request = Some(i);
                    }
                }
                EventKind::CpgMcast { msg, group, result, .. } => {
                    if let Some(s) = open {
                        self.sessions[s].mcasts.push(i);
                    }
                    if msg.sender() == (c.0, c.1) {
                        self.mcasts.entry(*msg).or_insert(McastAt {
                            event: i,
                            time: e.time,
                            conn: c,
                            group,
                            result: *result,
                            session: open,
                        });
                    }
                }
                EventKind::CpgMembership { group, .. } => {
                    if let Some(s) = open.map(|s| &mut self.sessions[s])
                        && s.group == group.as_slice()
                    {
                        s.snapshots.push(i);
                    }
                }
                EventKind::CpgTotemConfchg { .. } => totems.push(i),
                EventKind::CpgConfchg { group, .. } | EventKind::CpgDeliver { group, .. } => match open {
                    Some(s) if self.sessions[s].group == group.as_slice() => {
                        let session = &mut self.sessions[s];
                        session.events.push(i);
                        self.session_of.insert(i, s);
                        if let EventKind::CpgConfchg { left, joined, .. } = &e.kind {
                            let me = session.process();
                            if session.join_confchg.is_none() && joined.iter().any(|(p, _)| *p == me) {
                                session.join_confchg = Some(i);
                            }
                            if left.iter().any(|(p, _)| *p == me) {
                                session.leave_confchg = Some(i);
                                last_left = Some(s);
                                open = None;
                            }
                        }
                    }
                    _ => {
                        let after_leave = last_left.filter(|&s| self.sessions[s].group == group.as_slice());
                        let stray = match (after_leave, open) {
                            (Some(s), _) => Stray { event: i, kind: StrayKind::AfterLeave, session: Some(s) },
                            (None, Some(s)) => {
                                Stray { event: i, kind: StrayKind::OtherGroup, session: Some(s) }
                            }
                            (None, None) => Stray { event: i, kind: StrayKind::NoSession, session: None },
                        };
                        self.strays.push(stray);
                    }
                },
                _ => {}
            }
        }
        if let (Some(s), Some(x)) = (open, end) {
            self.sessions[s].closed_by = Some(x);
        }
        if let Some(h) = self.conns.get_mut(&c) {
            h.end = end;
            h.sessions = sessions;
            h.totems = totems;
        }
    }

    /// The session of connection `c` open at event `at` (opened before `at`, not closed
    /// before `at`), if any.
    pub fn open_session_at(&self, c: Conn, at: usize) -> Option<usize> {
        let h = self.conns.get(&c)?;
        let k = h.sessions.partition_point(|&s| self.sessions[s].join < at).checked_sub(1)?;
        let s = h.sessions[k];
        self.sessions[s].end().is_none_or(|e| e > at).then_some(s)
    }

    /// The last session of connection `c` closed before event `at`, if the connection has
    /// no session open at `at`.
    pub fn closed_session_before(&self, c: Conn, at: usize) -> Option<usize> {
        let h = self.conns.get(&c)?;
        let k = h.sessions.partition_point(|&s| self.sessions[s].join < at).checked_sub(1)?;
        let s = h.sessions[k];
        self.sessions[s].end().is_some_and(|e| e < at).then_some(s)
    }

    /// The `CpgJoin` events (any result) made while a session of another connection of the
    /// same incarnation with the same (pid, group) was open: the join may legitimately
    /// be refused with `Exist`.
    pub fn join_conflicts(&self, trace: &Trace) -> FastSet<usize> {
        // Points: (event, order, session or join). Order: 0 close, 1 join check, 2 open.
        let mut points: Vec<(usize, u8, usize)> = Vec::new();
        for (k, s) in self.sessions.iter().enumerate() {
            points.push((s.join, 2, k));
            if let Some(e) = s.end() {
                points.push((e, 0, k));
            }
        }
        for h in self.conns.values() {
            for &i in &h.events {
                if matches!(trace.events[i].kind, EventKind::CpgJoin { .. }) {
                    points.push((i, 1, i));
                }
            }
        }
        points.sort_unstable();
        type Key<'a> = (Node, u32, u32, &'a [u8]);
        let mut open: FastMap<Key<'_>, FastMap<u32, usize>> = FastMap::default();
        let mut out = FastSet::default();
        for (_, order, x) in points {
            match order {
                0 | 2 => {
                    let s = &self.sessions[x];
                    let slot = open.entry((s.conn.0, s.conn.1, s.pid, s.group)).or_default();
                    let n = slot.entry(s.conn.2).or_insert(0);
                    if order == 2 {
                        *n += 1;
                    } else {
                        *n = n.saturating_sub(1);
                        if *n == 0 {
                            slot.remove(&s.conn.2);
                        }
                    }
                }
                _ => {
                    let e = &trace.events[x];
                    if let EventKind::CpgJoin { conn, group, pid, .. } = &e.kind
                        && let Some(slot) = open.get(&(e.node, e.incarnation, *pid, group.as_slice()))
                        && slot.len() > usize::from(slot.contains_key(conn))
                    {
                        out.insert(x);
                    }
                }
            }
        }
        out
    }

    /// True when connection `c` existed at event `at`: it had an event at or before `at`
    /// and did not end before `at`.
    pub fn alive_at(&self, c: Conn, at: usize) -> bool {
        self.conns
            .get(&c)
            .is_some_and(|h| h.events.first().is_some_and(|&f| f <= at) && h.end.is_none_or(|e| e > at))
    }
}

/// The position, in `h.epochs`, of the configuration that was `h`'s current one at event
/// `event` (the last one delivered before it), if any.
pub fn epoch_at(h: &IncarnationHistory<'_>, event: usize) -> Option<usize> {
    h.epochs.partition_point(|e| e.config.event < event).checked_sub(1)
}

/// For each epoch k of an incarnation: the positions of the last regular and of the last
/// transitional configuration among epochs 0..=k.
pub type ConfigTrail = Vec<(Option<usize>, Option<usize>)>;

/// The [`ConfigTrail`] of `h`.
pub fn config_trail(h: &IncarnationHistory<'_>) -> ConfigTrail {
    let mut out = Vec::with_capacity(h.epochs.len());
    let (mut reg, mut trans) = (None, None);
    for (k, e) in h.epochs.iter().enumerate() {
        match e.config.kind {
            ConfKind::Regular => reg = Some(k),
            ConfKind::Transitional => trans = Some(k),
        }
        out.push((reg, trans));
    }
    out
}

/// Members of a confchg entry list.
pub fn procs<T>(list: &[(Process, T)]) -> impl Iterator<Item = Process> + '_ {
    list.iter().map(|(p, _)| *p)
}

/// Where the synchronization of each regular configuration completed, as far as the trace
/// shows: the `CpgTotemConfchg` events that name the ring of the regular configuration
/// current at their node incarnation ("valid markers").
#[derive(Clone, Debug, Default)]
pub struct Activations {
    /// (incarnation, epoch) -> the first valid marker at any connection of the incarnation.
    pub node: FastMap<(Inc, usize), usize>,
    /// (connection, epoch) -> the connection's first valid marker.
    pub conn: FastMap<(Conn, usize), usize>,
}

impl Activations {
    /// True when incarnation `inc` completed the synchronization of its epoch `k`.
    pub fn activated(&self, inc: Inc, k: usize) -> bool {
        self.node.contains_key(&(inc, k))
    }
}

/// The valid activation markers of the trace.
pub fn activations(ix: &Index<'_>, cpg: &CpgIndex<'_>) -> Activations {
    let trace = ix.trace();
    let history = ix.history();
    let mut a = Activations::default();
    for (c, h) in &cpg.conns {
        let Some(ih) = history.incarnations.get(&(c.0, c.1)) else { continue };
        for &i in &h.totems {
            let EventKind::CpgTotemConfchg { ring, .. } = &trace.events[i].kind else { continue };
            let Some(k) = epoch_at(ih, i) else { continue };
            let cfg = &ih.epochs[k].config;
            if cfg.kind != ConfKind::Regular || cfg.ring != *ring {
                continue;
            }
            a.conn.entry((*c, k)).or_insert(i);
            let m = a.node.entry(((c.0, c.1), k)).or_insert(i);
            *m = (*m).min(i);
        }
    }
    a
}

/// The key of a [`Segment`]: the regular ring and its members, the group, and, for
/// segments that extend through the following transitional configuration, the next
/// regular ring.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SegmentKey<'t> {
    pub ring: Ring,
    pub members: &'t [Node],
    pub group: &'t [u8],
    pub next: Option<Ring>,
}

/// A session's events within one ring after the ring's activation (see
/// [`segments`]).
#[derive(Clone, Debug)]
pub struct Segment<'t> {
    pub key: SegmentKey<'t>,
    pub session: usize,
    /// The session was a member when the segment started (its join confchg came before
    /// its connection's activation marker), so the segment starts at the ring's first
    /// post-activation event of the group.
    pub full: bool,
    pub events: Vec<usize>,
    /// Events from this position on were delivered in the transitional configuration (only
    /// for keys with `next`).
    pub trans_from: usize,
    /// The session delivered some message twice within the segment.
    pub repeats: bool,
}

impl Segment<'_> {
    /// True when position `k` lies in the transitional part.
    pub fn in_trans(&self, k: usize) -> bool {
        self.key.next.is_some() && k >= self.trans_from
    }
}

/// Cut every session into segments, for CPG-1 and CPG-6.
///
/// For a session at incarnation p and a regular configuration r (epoch k of p, with
/// members M), the session's *post-activation part* of r is the list of its events while
/// r was p's current configuration that come after its connection's `CpgTotemConfchg` for
/// r; or all of them when the connection was created after the first such marker at p
/// (its first event comes later), since then it saw nothing of r before the activation.
/// Without either, the session has no segment for r (nothing can be judged: the
/// synchronization may have been aborted). Each session yields:
/// - a segment keyed (r, M, G, None) with its post-activation part of r (only the
///   regular part, which every member of r delivers without gaps);
/// - when p's configuration after r is a transitional one followed by a regular r2, a
///   segment keyed (r, M, G, Some(r2)) with the post-activation part followed by its
///   events while that transitional configuration was current.
///
/// Empty segments are dropped. A segment is *full* when the session's join confchg came
/// before the start of the post-activation part.
pub fn segments<'t>(ix: &Index<'t>, cpg: &CpgIndex<'t>) -> Vec<Segment<'t>> {
    let trace = ix.trace();
    let history = ix.history();
    let mut out = Vec::new();
    let Activations { node: node_marker, conn: conn_marker } = activations(ix, cpg);
    for (sid, s) in cpg.sessions.iter().enumerate() {
        let Some(ih) = history.incarnations.get(&(s.conn.0, s.conn.1)) else { continue };
        let Some(conn) = cpg.conns.get(&s.conn) else { continue };
        let first_event = conn.events.first().copied().unwrap_or(usize::MAX);
        let mut by_epoch: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for &i in &s.events {
            if let Some(k) = epoch_at(ih, i) {
                by_epoch.entry(k).or_default().push(i);
            }
        }
        // Regular epochs with events, and those whose following transitional epoch has some.
        let mut regs: Vec<usize> = Vec::new();
        for &k in by_epoch.keys() {
            match ih.epochs[k].config.kind {
                ConfKind::Regular => regs.push(k),
                ConfKind::Transitional => regs.extend(k.checked_sub(1)),
            }
        }
        regs.sort_unstable();
        regs.dedup();
        let empty = Vec::new();
        for epoch in regs {
            let cfg = &ih.epochs[epoch].config;
            if cfg.kind != ConfKind::Regular {
                continue;
            }
            // A connection created after the activation is entirely post-activation (even if
            // it shows a totem confchg of its own); otherwise its own marker counts.
            let start = match (node_marker.get(&(ih.key(), epoch)), conn_marker.get(&(s.conn, epoch))) {
                (Some(&m), _) if first_event > m => cfg.event,
                (_, Some(&m)) => m,
                _ => continue,
            };
            let reg: Vec<usize> =
                by_epoch.get(&epoch).unwrap_or(&empty).iter().copied().filter(|&i| i > start).collect();
            let full = s.join_confchg.is_some_and(|j| j < start);
            let key = SegmentKey { ring: cfg.ring, members: cfg.members, group: s.group, next: None };
            let trans_next = match (ih.epochs.get(epoch + 1), ih.epochs.get(epoch + 2)) {
                (Some(t), Some(r2))
                    if t.config.kind == ConfKind::Transitional && r2.config.kind == ConfKind::Regular =>
                {
                    Some(r2.config.ring)
                }
                _ => None,
            };
            if let Some(r2) = trans_next
                && let Some(trans) = by_epoch.get(&(epoch + 1))
            {
                let mut events = reg.clone();
                let trans_from = events.len();
                events.extend(trans.iter().copied());
                let key = SegmentKey { next: Some(r2), ..key.clone() };
                out.push(make_segment(trace, key, sid, full, events, trans_from));
            }
            if !reg.is_empty() {
                let n = reg.len();
                out.push(make_segment(trace, key, sid, full, reg, n));
            }
        }
    }
    out
}

fn make_segment<'t>(
    trace: &Trace,
    key: SegmentKey<'t>,
    session: usize,
    full: bool,
    events: Vec<usize>,
    trans_from: usize,
) -> Segment<'t> {
    let mut seen = FastSet::default();
    let repeats = events.iter().any(|&i| match &trace.events[i].kind {
        EventKind::CpgDeliver { msg, .. } => !seen.insert(*msg),
        _ => false,
    });
    Segment { key, session, full, events, trans_from, repeats }
}

/// The content of a confchg or delivery, for comparing events of different connections:
/// confchg lists are compared as sorted lists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Content {
    Confchg {
        members: Vec<Process>,
        left: Vec<(Process, crate::trace::CpgReason)>,
        joined: Vec<(Process, crate::trace::CpgReason)>,
    },
    Deliver {
        sender: Process,
        msg: MsgId,
    },
    Other,
}

/// The [`Content`] of event `i`.
pub fn content(trace: &Trace, i: usize) -> Content {
    match &trace.events[i].kind {
        EventKind::CpgConfchg { members, left, joined, .. } => {
            let mut members = members.clone();
            members.sort_unstable();
            let mut left = left.clone();
            left.sort_unstable();
            let mut joined = joined.clone();
            joined.sort_unstable();
            Content::Confchg { members, left, joined }
        }
        EventKind::CpgDeliver { sender, msg, .. } => Content::Deliver { sender: *sender, msg: *msg },
        _ => Content::Other,
    }
}

/// A short description of a confchg or delivery.
pub fn describe(trace: &Trace, i: usize) -> String {
    match &trace.events[i].kind {
        EventKind::CpgConfchg { members, left, joined, .. } => {
            format!("confchg members {members:?} left {left:?} joined {joined:?}")
        }
        EventKind::CpgDeliver { sender, msg, .. } => format!("delivery of {msg:?} from {sender:?}"),
        k => k.name().to_string(),
    }
}
