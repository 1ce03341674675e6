//! The runtime: one event loop that drives a [`CpgNode`] over a transport.
//!
//! Receive, open (authenticate), decode, feed the core; then carry out its outputs in
//! order: seal and send, persist the ring sequence (awaited before the next input), hand
//! CPG events to local clients. Timers are the core's own: the loop sleeps until
//! [`CpgNode::poll_timeout`]. Local clients (the IPC server, an embedding program, the
//! simulator's applications) talk to the loop through a [`Handle`].
//!
//! The loop uses `tokio::time`, so under turmoil it runs on simulated time unchanged.

use crate::crypto::OpenError;
use crate::protect::Protection;
use crate::store::RingSeqStore;
use crate::transport::Transport;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use totem_core::cpg::{ConnFlags, ConnId, CpgError, CpgNode, EventKind, GroupName, Process};
use totem_core::node::Dest;
use totem_core::srp::State;
use totem_core::{Config, ConfigKind, Guarantee, Message, NodeId, Output, RingId, Time};

/// What the runtime needs besides the transport, the store and the protection.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    pub node_id: NodeId,
    pub core: Config,
    /// Every node of the cluster (this one included) and its address.
    pub nodelist: BTreeMap<NodeId, SocketAddr>,
    /// Events queued for one client before it counts as stalled and is disconnected.
    pub client_queue: usize,
}

/// Counters for `totemctl stats`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeStats {
    pub packets_in: u64,
    pub packets_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Datagrams from an address outside the nodelist.
    pub unknown_source: u64,
    /// Datagrams refused for the key: authentication failed (wrong key or tampering), or
    /// cleartext against a key, or a cipher mismatch.
    pub auth_failures: u64,
    pub replays: u64,
    /// Datagrams that are not Totem packets or did not decode, or whose claimed sender is
    /// not the authenticated one or not the nodelist's node at that address.
    pub malformed: u64,
    pub send_errors: u64,
    pub deliveries: u64,
    pub regular_configs: u64,
    pub transitional_configs: u64,
    /// Nodes that left / joined, summed over regular configurations.
    pub nodes_left: u64,
    pub nodes_joined: u64,
    /// Clients disconnected because they stopped reading.
    pub clients_stalled: u64,
}

/// A snapshot for `totemctl status`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub node: u32,
    pub state: String,
    pub ring_rep: u32,
    pub ring_seq: u64,
    pub members: Vec<u32>,
    /// Whether the current ring holds a strict majority of the nodelist.
    pub quorate: bool,
    pub syncing: bool,
    pub runtime: RuntimeStats,
    pub core: totem_core::srp::Stats,
    pub token_rotations_per_sec: f64,
    pub uptime_ms: u64,
}

/// An event for one client connection.
pub type ClientEvent = EventKind;

/// A request from a local client to the loop.
#[derive(Debug)]
pub enum Request {
    Connect {
        flags: ConnFlags,
        events: mpsc::Sender<ClientEvent>,
        reply: oneshot::Sender<ConnId>,
    },
    Join {
        conn: ConnId,
        group: Vec<u8>,
        pid: u32,
        reply: oneshot::Sender<Result<(), CpgError>>,
    },
    Leave {
        conn: ConnId,
        group: Vec<u8>,
        reply: oneshot::Sender<Result<(), CpgError>>,
    },
    Mcast {
        conn: ConnId,
        guarantee: Guarantee,
        payload: Bytes,
        reply: oneshot::Sender<Result<(), CpgError>>,
    },
    Disconnect {
        conn: ConnId,
    },
    Membership {
        group: Vec<u8>,
        reply: oneshot::Sender<Result<Vec<Process>, CpgError>>,
    },
    Groups {
        reply: oneshot::Sender<Vec<(GroupName, Vec<Process>)>>,
    },
    Status {
        reply: oneshot::Sender<NodeStatus>,
    },
    /// Leave the ring cleanly and stop the loop.
    Shutdown,
}

/// Why the loop stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("persisting the ring sequence failed: {0} (the node cannot go on safely)")]
    Persist(std::io::Error),
    #[error("the transport failed: {0}")]
    Transport(std::io::Error),
}

/// The way local clients reach the loop. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Handle {
    tx: mpsc::Sender<Request>,
    node: NodeId,
}

/// The loop has stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the node is not running")]
pub struct Stopped;

impl Handle {
    pub fn node_id(&self) -> NodeId {
        self.node
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Request) -> Result<T, Stopped> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(make(tx)).await.map_err(|_| Stopped)?;
        rx.await.map_err(|_| Stopped)
    }

    /// Open a connection; its events arrive on the returned receiver (closed when the
    /// runtime disconnects the client or stops).
    pub async fn connect(
        &self,
        flags: ConnFlags,
        queue: usize,
    ) -> Result<(ConnId, mpsc::Receiver<ClientEvent>), Stopped> {
        let (etx, erx) = mpsc::channel(queue.max(1));
        let conn = self.ask(|reply| Request::Connect { flags, events: etx, reply }).await?;
        Ok((conn, erx))
    }

    pub async fn join(&self, conn: ConnId, group: &[u8], pid: u32) -> Result<Result<(), CpgError>, Stopped> {
        self.ask(|reply| Request::Join { conn, group: group.to_vec(), pid, reply }).await
    }

    pub async fn leave(&self, conn: ConnId, group: &[u8]) -> Result<Result<(), CpgError>, Stopped> {
        self.ask(|reply| Request::Leave { conn, group: group.to_vec(), reply }).await
    }

    pub async fn mcast(
        &self,
        conn: ConnId,
        guarantee: Guarantee,
        payload: Bytes,
    ) -> Result<Result<(), CpgError>, Stopped> {
        self.ask(|reply| Request::Mcast { conn, guarantee, payload, reply }).await
    }

    pub async fn disconnect(&self, conn: ConnId) {
        let _ = self.tx.send(Request::Disconnect { conn }).await;
    }

    pub async fn membership(&self, group: &[u8]) -> Result<Result<Vec<Process>, CpgError>, Stopped> {
        self.ask(|reply| Request::Membership { group: group.to_vec(), reply }).await
    }

    pub async fn groups(&self) -> Result<Vec<(GroupName, Vec<Process>)>, Stopped> {
        self.ask(|reply| Request::Groups { reply }).await
    }

    pub async fn status(&self) -> Result<NodeStatus, Stopped> {
        self.ask(|reply| Request::Status { reply }).await
    }

    pub async fn shutdown(&self) {
        let _ = self.tx.send(Request::Shutdown).await;
    }
}

/// What the loop did, reported as it happens to an optional observer
/// ([`Runtime::with_observer`]). The cluster simulator writes the spec's trace from it; the
/// daemon has none. The observer runs synchronously inside the loop, so the order it sees is
/// the exact order of the node's actions (a recorder needs that: a request is answered
/// before anything it causes, a delivery comes before the CPG events it triggers).
#[derive(Debug)]
pub enum Observed<'a> {
    /// The core produced `output`; reported right before the loop carries it out.
    /// [`Output::Cpg`] events are reported only once they sit in their connection's queue
    /// (an event for a stalled or vanished client is not reported).
    Output(&'a Output),
    /// A join request was answered.
    Join { conn: ConnId, group: &'a [u8], pid: u32, result: Result<(), CpgError> },
    /// A leave request was answered.
    Leave { conn: ConnId, group: &'a [u8], result: Result<(), CpgError> },
    /// A mcast request was answered. `group` is the connection's group at that moment
    /// (None: it is in none).
    Mcast {
        conn: ConnId,
        group: Option<&'a [u8]>,
        guarantee: Guarantee,
        payload: &'a [u8],
        result: Result<(), CpgError>,
    },
    /// The connection closed (the client disconnected, or it stopped reading and was
    /// dropped); reported before the leave this causes for its process.
    Disconnect { conn: ConnId },
}

/// See [`Observed`]. `Send`, so that a runtime with an observer can still be spawned on a
/// multi-threaded executor.
pub type Observer = Box<dyn FnMut(Observed<'_>) + Send>;

/// One node's event loop.
pub struct Runtime<T: Transport, S: RingSeqStore, P: Protection> {
    core: CpgNode,
    cfg: RuntimeConfig,
    by_addr: BTreeMap<SocketAddr, NodeId>,
    transport: T,
    store: S,
    protection: P,
    requests: mpsc::Receiver<Request>,
    clients: BTreeMap<ConnId, mpsc::Sender<ClientEvent>>,
    epoch: Instant,
    stats: RuntimeStats,
    /// Messages this node sent to itself (a one-node ring), handled before the next input.
    looped: VecDeque<Message>,
    /// Rate limit for the wrong-key log line: the last time it was printed per source.
    auth_warned: BTreeMap<SocketAddr, Instant>,
    observer: Option<Observer>,
}

impl<T: Transport, S: RingSeqStore, P: Protection> std::fmt::Debug for Runtime<T, S, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").field("node", &self.cfg.node_id).field("stats", &self.stats).finish()
    }
}

/// The largest datagram we accept.
const DATAGRAM_MAX: usize = 65_536;
/// Datagrams taken straight from the socket after one wake-up, at most.
const RECV_BURST: usize = 64;
/// Requests a client may have outstanding at the loop.
const REQUEST_QUEUE: usize = 1024;

impl<T: Transport, S: RingSeqStore, P: Protection> Runtime<T, S, P> {
    /// A runtime whose node starts from the store's persisted ring sequence.
    pub fn new(
        cfg: RuntimeConfig,
        transport: T,
        store: S,
        protection: P,
    ) -> Result<(Runtime<T, S, P>, Handle), String> {
        let persisted = store.load().map_err(|e| format!("reading the persisted ring sequence: {e}"))?;
        let node =
            totem_core::Node::new(cfg.core.clone(), cfg.node_id, persisted).map_err(|e| e.to_string())?;
        if !cfg.nodelist.contains_key(&cfg.node_id) {
            return Err(format!("node id {} is not in the nodelist", cfg.node_id.0));
        }
        let by_addr = cfg.nodelist.iter().map(|(&n, &a)| (a, n)).collect();
        let (tx, rx) = mpsc::channel(REQUEST_QUEUE);
        let handle = Handle { tx, node: cfg.node_id };
        Ok((
            Runtime {
                core: CpgNode::new(node),
                cfg,
                by_addr,
                transport,
                store,
                protection,
                requests: rx,
                clients: BTreeMap::new(),
                epoch: Instant::now(),
                stats: RuntimeStats::default(),
                looped: VecDeque::new(),
                auth_warned: BTreeMap::new(),
                observer: None,
            },
            handle,
        ))
    }

    /// Report everything the loop does to `observer` (see [`Observed`]).
    pub fn with_observer(mut self, observer: Observer) -> Self {
        self.observer = Some(observer);
        self
    }

    fn observe(&mut self, what: Observed<'_>) {
        if let Some(f) = self.observer.as_mut() {
            f(what);
        }
    }

    fn now(&self) -> Time {
        Time(self.epoch.elapsed().as_nanos() as u64)
    }

    /// Run until [`Handle::shutdown`] (or every handle is dropped).
    pub async fn run(mut self) -> Result<RuntimeStats, RuntimeError> {
        let mut out = Vec::new();
        self.core.start(self.now(), &mut out);
        self.carry_out(out).await?;
        let mut buf = vec![0u8; DATAGRAM_MAX];
        loop {
            let deadline = self
                .core
                .poll_timeout()
                .map(|(t, _)| self.epoch + Duration::from_nanos(t.0))
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                biased;
                req = self.requests.recv() => {
                    match req {
                        Some(Request::Shutdown) | None => {
                            let mut out = Vec::new();
                            self.core.shutdown(self.now(), &mut out);
                            self.carry_out(out).await?;
                            return Ok(self.stats);
                        }
                        Some(req) => self.request(req).await?,
                    }
                }
                () = tokio::time::sleep_until(deadline) => {
                    if let Some((t, kind)) = self.core.poll_timeout() && t <= self.now() {
                        let mut out = Vec::new();
                        self.core.handle_timeout(self.now(), kind, &mut out);
                        self.carry_out(out).await?;
                    }
                }
                got = self.transport.recv_from(&mut buf) => {
                    self.received(got, &mut buf).await?;
                    // Work through what else is already queued before looking at timers
                    // and requests again (a window of frames arrives as a burst).
                    for _ in 0..RECV_BURST {
                        let Some(got) = self.transport.try_recv_from(&mut buf) else { break };
                        self.received(got, &mut buf).await?;
                    }
                }
            }
        }
    }

    async fn received(
        &mut self,
        got: std::io::Result<(usize, SocketAddr)>,
        buf: &mut [u8],
    ) -> Result<(), RuntimeError> {
        match got {
            Ok((len, from)) => {
                let datagram = buf.get(..len).unwrap_or_default().to_vec();
                self.datagram(&datagram, from).await
            }
            // ICMP errors surface here on some systems: not fatal.
            Err(e) => {
                tracing::debug!("receive error: {e}");
                Ok(())
            }
        }
    }

    async fn datagram(&mut self, datagram: &[u8], from: SocketAddr) -> Result<(), RuntimeError> {
        self.stats.packets_in += 1;
        self.stats.bytes_in += datagram.len() as u64;
        let Some(&expected) = self.by_addr.get(&from) else {
            self.stats.unknown_source += 1;
            return Ok(());
        };
        let (sender, plain) = match self.protection.open(datagram) {
            Ok(x) => x,
            Err(OpenError::Replay { .. }) => {
                self.stats.replays += 1;
                return Ok(());
            }
            Err(e) => {
                let key_problem = matches!(
                    e,
                    OpenError::BadTag { .. }
                        | OpenError::CleartextRejected { .. }
                        | OpenError::KeyRequired { .. }
                        | OpenError::CipherMismatch { .. }
                );
                if key_problem {
                    self.stats.auth_failures += 1;
                } else {
                    self.stats.malformed += 1;
                }
                // Rate-limited: one line per source per 10 s.
                let now = Instant::now();
                let due = self
                    .auth_warned
                    .get(&from)
                    .is_none_or(|t| now.duration_since(*t) > Duration::from_secs(10));
                if due {
                    self.auth_warned.insert(from, now);
                    tracing::error!("dropping packet from {from} (node {} in the nodelist): {e}", expected.0);
                }
                return Ok(());
            }
        };
        let msg = match totem_core::wire::decode_bytes(&plain) {
            Ok((claimed, msg)) if claimed == sender && sender == expected => msg,
            _ => {
                self.stats.malformed += 1;
                return Ok(());
            }
        };
        let mut out = Vec::new();
        self.core.handle_message(self.now(), sender, msg, &mut out);
        self.carry_out(out).await
    }

    async fn request(&mut self, req: Request) -> Result<(), RuntimeError> {
        let now = self.now();
        let mut out = Vec::new();
        match req {
            Request::Connect { flags, events, reply } => {
                let conn = self.core.connect(flags);
                self.clients.insert(conn, events);
                if reply.send(conn).is_err() {
                    self.drop_client(conn, &mut out);
                }
            }
            Request::Join { conn, group, pid, reply } => {
                let r = self.core.join(now, conn, &group, pid, &mut out);
                self.observe(Observed::Join { conn, group: &group, pid, result: r });
                let _ = reply.send(r);
            }
            Request::Leave { conn, group, reply } => {
                let r = self.core.leave(now, conn, &group, &mut out);
                self.observe(Observed::Leave { conn, group: &group, result: r });
                let _ = reply.send(r);
            }
            Request::Mcast { conn, guarantee, payload, reply } => {
                let group = self
                    .observer
                    .is_some()
                    .then(|| self.core.conn_group(conn).map(|(g, _)| g.as_bytes().to_vec()))
                    .flatten();
                let r = self.core.mcast(now, conn, guarantee, &payload, &mut out);
                self.observe(Observed::Mcast {
                    conn,
                    group: group.as_deref(),
                    guarantee,
                    payload: &payload,
                    result: r,
                });
                let _ = reply.send(r);
            }
            Request::Disconnect { conn } => self.drop_client(conn, &mut out),
            Request::Membership { group, reply } => {
                let _ = reply.send(self.core.membership(&group));
            }
            Request::Groups { reply } => {
                let _ = reply.send(self.core.groups());
            }
            Request::Status { reply } => {
                let _ = reply.send(self.status());
            }
            Request::Shutdown => {}
        }
        self.carry_out(out).await
    }

    fn drop_client(&mut self, conn: ConnId, out: &mut Vec<Output>) {
        if self.clients.remove(&conn).is_some() {
            self.observe(Observed::Disconnect { conn });
        }
        self.core.disconnect(self.now(), conn, out);
    }

    pub fn status(&self) -> NodeStatus {
        let s = self.core.node().status();
        let members: Vec<u32> = s.members.iter().map(|n| n.0).collect();
        let uptime = self.epoch.elapsed();
        NodeStatus {
            node: self.cfg.node_id.0,
            state: match s.state {
                State::Operational => "operational",
                State::Gather => "gather",
                State::Commit => "commit",
                State::Recovery => "recovery",
            }
            .into(),
            ring_rep: s.ring_id.rep.0,
            ring_seq: s.ring_id.seq,
            quorate: members.len() * 2 > self.cfg.nodelist.len(),
            members,
            syncing: self.core.is_syncing(),
            runtime: self.stats.clone(),
            token_rotations_per_sec: s.stats.tokens_accepted as f64
                / uptime.as_secs_f64().max(1e-3)
                / (s.members.len().max(1) as f64),
            core: s.stats,
            uptime_ms: uptime.as_millis() as u64,
        }
    }

    /// Carry out the core's outputs in order (and whatever they cause in turn).
    async fn carry_out(&mut self, mut out: Vec<Output>) -> Result<(), RuntimeError> {
        loop {
            let mut next = Vec::new();
            for o in out.drain(..) {
                if !matches!(o, Output::Cpg(_)) {
                    self.observe(Observed::Output(&o));
                }
                match o {
                    Output::Send { dest, msg } => self.send(dest, &msg).await,
                    Output::PersistRingSeq(seq) => {
                        self.store.store(seq).await.map_err(RuntimeError::Persist)?;
                        self.core.ring_seq_persisted(self.now(), seq, &mut next);
                    }
                    Output::Deliver(_) => self.stats.deliveries += 1,
                    Output::Config(c) => self.config_change(&c),
                    Output::Cpg(e) => self.hand_to_client(e.conn, e.kind, &mut next),
                    Output::Probe(_) => {}
                }
            }
            while let Some(msg) = self.looped.pop_front() {
                let me = self.cfg.node_id;
                self.core.handle_message(self.now(), me, msg, &mut next);
            }
            if next.is_empty() {
                return Ok(());
            }
            out = next;
        }
    }

    fn config_change(&mut self, c: &totem_core::ConfigChange) {
        let ring = fmt_ring(c.ring_id);
        match c.kind {
            ConfigKind::Transitional => {
                self.stats.transitional_configs += 1;
                tracing::info!(
                    "transitional configuration {ring}: members {:?} left {:?}",
                    ids(&c.members),
                    ids(&c.left)
                );
            }
            ConfigKind::Regular => {
                self.stats.regular_configs += 1;
                self.stats.nodes_left += c.left.len() as u64;
                self.stats.nodes_joined += c.joined.len() as u64;
                tracing::info!(
                    "regular configuration {ring}: members {:?} joined {:?} left {:?}",
                    ids(&c.members),
                    ids(&c.joined),
                    ids(&c.left)
                );
            }
        }
    }

    fn hand_to_client(&mut self, conn: ConnId, event: ClientEvent, out: &mut Vec<Output>) {
        let Some(tx) = self.clients.get(&conn) else { return };
        let copy = self.observer.is_some().then(|| event.clone());
        if tx.try_send(event).is_ok() {
            if let Some(kind) = copy {
                self.observe(Observed::Output(&Output::Cpg(totem_core::cpg::Event { conn, kind })));
            }
        } else {
            // Full (the client stopped reading) or closed (it went away): its processes
            // leave their groups; nobody else waits for it.
            self.stats.clients_stalled += 1;
            tracing::warn!("client connection {} stopped reading: disconnected", conn.0);
            self.drop_client(conn, out);
        }
    }

    async fn send(&mut self, dest: Dest, msg: &Message) {
        let me = self.cfg.node_id;
        if dest == Dest::Node(me) {
            self.looped.push_back(msg.clone());
            return;
        }
        let mut plain = Vec::with_capacity(totem_core::wire::encoded_len(msg));
        totem_core::wire::encode(me, msg, &mut plain);
        let Some(datagram) = self.protection.seal(&plain) else {
            self.stats.send_errors += 1;
            return;
        };
        let targets: Vec<SocketAddr> = match dest {
            Dest::Node(to) => self.cfg.nodelist.get(&to).copied().into_iter().collect(),
            Dest::All => self.cfg.nodelist.iter().filter(|(n, _)| **n != me).map(|(_, a)| *a).collect(),
        };
        // One call for all peers (one sendmmsg on the UDP socket).
        let results = self.transport.send_to_each(&datagram, &targets).await;
        for (to, result) in targets.iter().zip(results) {
            match result {
                Ok(_) => {
                    self.stats.packets_out += 1;
                    self.stats.bytes_out += datagram.len() as u64;
                }
                Err(e) => {
                    self.stats.send_errors += 1;
                    tracing::debug!("send to {to} failed: {e}");
                }
            }
        }
    }
}

fn ids(v: &[NodeId]) -> Vec<u32> {
    v.iter().map(|n| n.0).collect()
}

fn fmt_ring(r: RingId) -> String {
    format!("{}.{}", r.rep.0, r.seq)
}
