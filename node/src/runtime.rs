//! The runtime: one event loop that drives a [`CpgNode`] over a transport.
//!
//! Receive, open (authenticate), decode, feed the core; then carry out its outputs in
//! order: seal and send (a token ahead of a big visit's multicasts), persist the ring
//! sequence (awaited before the next input), hand CPG events to local clients. Timers
//! are the core's own: the loop sleeps until [`CpgNode::poll_timeout`]. Local clients (the
//! IPC server, an embedding program, the simulator's applications) talk to the loop
//! through a [`Handle`].
//!
//! Each connection's requests are carried out in the order they arrive. Multicasts sent
//! with [`Handle::send`] need no reply: they wait in the connection's *outbox* until the
//! core accepts them (its queue has room and no synchronization runs), and the loop hands
//! back credit for them ([`ClientEvent::Credit`], see [`crate::window`]). A join, leave or
//! disconnect that arrives while the outbox holds multicasts waits behind them, so a
//! process's messages always precede its own leave or PROCDOWN.
//!
//! The loop uses `tokio::time`, so under turmoil it runs on simulated time unchanged.

use crate::crypto::OpenError;
use crate::events::{EventReceiver, EventSender, QueueLimit};
use crate::fragment::{Reassembler, ReassemblyStats, SEGMENT};
use crate::protect::Protection;
use crate::store::RingSeqStore;
use crate::transport::{RecvBurst, Transport};
use crate::window::WindowSize;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
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
    /// The send window of every connection (see [`crate::window`]).
    pub window: WindowSize,
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
    /// Clients disconnected because they sent past their send window.
    pub clients_overrun: u64,
    /// Frames sent as fragments of one MTU (see [`crate::fragment`]), and how they came in.
    pub frames_fragmented: u64,
    pub reassembly: ReassemblyStats,
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
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ClientEvent {
    /// A CPG callback: a delivery, a view change or a Totem view change.
    Cpg(EventKind),
    /// The loop took `msgs` multicasts of `bytes` bytes sent with [`Handle::send`] out of
    /// the connection's outbox: they no longer count against its window. `failed`: some of
    /// them were refused rather than sent, the last with this error (a well-behaved client
    /// checks what it can before sending, so this means a misuse).
    Credit { msgs: u32, bytes: u64, failed: Option<CpgError> },
}

/// A request from a local client to the loop.
#[derive(Debug)]
pub enum Request {
    Connect {
        flags: ConnFlags,
        events: EventSender,
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
    /// One multicast, answered with the core's verdict (TryAgain while the connection's
    /// outbox holds anything: it never overtakes earlier sends).
    Mcast {
        conn: ConnId,
        guarantee: Guarantee,
        payload: Bytes,
        reply: oneshot::Sender<Result<(), CpgError>>,
    },
    /// Multicasts without a reply, within the connection's send window: credit comes back
    /// as [`ClientEvent::Credit`]. A connection that sends past its window is disconnected.
    Send {
        conn: ConnId,
        msgs: Vec<(Guarantee, Bytes)>,
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
    window: WindowSize,
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
    /// runtime disconnects the client or stops). A client that lets `limit` fill has
    /// stopped reading and is disconnected.
    pub async fn connect(
        &self,
        flags: ConnFlags,
        limit: QueueLimit,
    ) -> Result<(ConnId, EventReceiver), Stopped> {
        let (etx, erx) = crate::events::queue(limit);
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

    /// Queue multicasts on `conn` without waiting for a verdict (see [`Request::Send`]);
    /// the caller keeps them within the window with a [`crate::window::SendWindow`].
    pub async fn send(&self, conn: ConnId, msgs: Vec<(Guarantee, Bytes)>) -> Result<(), Stopped> {
        self.tx.send(Request::Send { conn, msgs }).await.map_err(|_| Stopped)
    }

    /// The send window every connection of this runtime gets.
    pub fn window(&self) -> WindowSize {
        self.window
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
    clients: BTreeMap<ConnId, Client>,
    /// Connections whose outbox waits for the core (served in turn after every input).
    blocked: BTreeSet<ConnId>,
    /// Where the next round over `blocked` starts (fairness between connections).
    rotation: ConnId,
    epoch: Instant,
    stats: RuntimeStats,
    /// Messages this node sent to itself (a one-node ring), handled before the next input.
    looped: VecDeque<Message>,
    /// Packets of this step, encoded but not yet sealed, their destinations, and whether
    /// each is a token (sealed and sent together by [`Runtime::flush`]).
    unsealed: Vec<(Vec<u8>, Dest, bool)>,
    /// Rate limit for the wrong-key log line: the last time it was printed per source.
    auth_warned: BTreeMap<SocketAddr, Instant>,
    observer: Option<Observer>,
    /// Frames coming in as fragments, and the id of the next frame this node fragments.
    reassembler: Reassembler,
    next_frame_id: u32,
    token_rate: TokenRate,
}

/// Token rotations per second over the last whole second that saw traffic. Every member
/// accepts the token once per rotation, so this node's accepted-token count is the
/// rotation count.
#[derive(Debug)]
struct TokenRate {
    /// When the current window began and the count then.
    mark: (Instant, u64),
    /// The rate over the last finished window, if one has finished.
    last: Option<f64>,
}

impl TokenRate {
    const WINDOW: Duration = Duration::from_secs(1);

    fn new(now: Instant) -> TokenRate {
        TokenRate { mark: (now, 0), last: None }
    }

    fn observe(&mut self, now: Instant, accepted: u64) {
        let elapsed = now.saturating_duration_since(self.mark.0);
        if elapsed >= Self::WINDOW {
            self.last = Some(accepted.saturating_sub(self.mark.1) as f64 / elapsed.as_secs_f64());
            self.mark = (now, accepted);
        }
    }

    /// The last window's rate; when nothing has closed a window for a while (no traffic),
    /// the rate since the window began; before any window closed, the average since `start`.
    fn per_sec(&self, start: Instant, now: Instant, accepted: u64) -> f64 {
        let open = now.saturating_duration_since(self.mark.0);
        match self.last {
            Some(_) if open >= Self::WINDOW => {
                accepted.saturating_sub(self.mark.1) as f64 / open.as_secs_f64()
            }
            Some(rate) => rate,
            None => accepted as f64 / now.saturating_duration_since(start).as_secs_f64().max(1e-3),
        }
    }
}

impl<T: Transport, S: RingSeqStore, P: Protection> std::fmt::Debug for Runtime<T, S, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").field("node", &self.cfg.node_id).field("stats", &self.stats).finish()
    }
}

/// A local client connection as the loop sees it.
#[derive(Debug)]
struct Client {
    /// None once the client is gone: what its outbox holds still goes out first.
    events: Option<EventSender>,
    outbox: VecDeque<Queued>,
    /// Multicasts in the outbox, and their bytes: at most the window.
    queued_msgs: u32,
    queued_bytes: u64,
}

/// A request waiting in a connection's outbox.
#[derive(Debug)]
enum Queued {
    Mcast(Guarantee, Bytes),
    Join { group: Vec<u8>, pid: u32, reply: oneshot::Sender<Result<(), CpgError>> },
    Leave { group: Vec<u8>, reply: oneshot::Sender<Result<(), CpgError>> },
    Disconnect,
}

/// The largest datagram we accept.
const DATAGRAM_MAX: usize = 65_536;
/// Datagrams one burst read takes from the socket, at most.
const RECV_BURST: usize = 32;
/// Burst reads after one wake-up, at most (then timers and requests get their turn).
const RECV_ROUNDS: usize = 4;
/// Datagram bytes queued in a step from which its token goes out ahead of them (see
/// `Runtime::seal_step`): a quarter of a full 64 KiB frame sent to two peers; a visit of a
/// few small messages stays far below.
const TOKEN_AHEAD_BYTES: usize = 32 * 1024;
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
        let handle = Handle { tx, node: cfg.node_id, window: cfg.window };
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
                blocked: BTreeSet::new(),
                rotation: ConnId(0),
                epoch: Instant::now(),
                stats: RuntimeStats::default(),
                looped: VecDeque::new(),
                unsealed: Vec::new(),
                auth_warned: BTreeMap::new(),
                observer: None,
                reassembler: Reassembler::new(DATAGRAM_MAX),
                token_rate: TokenRate::new(Instant::now()),
                // Time-derived, so that a restarted node's first frames do not share ids
                // with the fragments of its last ones that a peer may still hold.
                next_frame_id: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.subsec_nanos() ^ d.as_secs() as u32),
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
        let mut burst = RecvBurst::new(RECV_BURST, DATAGRAM_MAX);
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
                            return Ok(self.stats());
                        }
                        Some(req) => self.request(req).await?,
                    }
                }
                () = tokio::time::sleep_until(deadline) => {
                    if let Some((t, kind)) = self.core.poll_timeout() && t <= self.now() {
                        let mut out = Vec::new();
                        self.core.handle_timeout(self.now(), kind, &mut out);
                        self.carry_out(out).await?;
                        self.serve_blocked().await?;
                    }
                }
                got = self.transport.recv_burst(&mut burst) => {
                    match got {
                        Ok(()) => self.burst(&burst).await?,
                        // ICMP errors surface here on some systems: not fatal.
                        Err(e) => tracing::debug!("receive error: {e}"),
                    }
                    // Work through what else is already queued before looking at timers
                    // and requests again (a window of frames arrives as a burst).
                    for _ in 0..RECV_ROUNDS {
                        match self.transport.try_recv_burst(&mut burst) {
                            None => break,
                            Some(Err(e)) => {
                                tracing::debug!("receive error: {e}");
                                break;
                            }
                            Some(Ok(())) => self.burst(&burst).await?,
                        }
                    }
                    self.serve_blocked().await?;
                    self.token_rate.observe(Instant::now(), self.core.node().stats().tokens_accepted);
                }
            }
        }
    }

    /// Everything one receive call took: the frames it completes are opened together (see
    /// [`crate::siv_batch`]), then handled in order.
    async fn burst(&mut self, burst: &RecvBurst) -> Result<(), RuntimeError> {
        let mut frames = Vec::new();
        let mut sources = Vec::new();
        for (datagram, from) in burst.datagrams() {
            if let Some((frame, expected)) = self.admit(datagram, from) {
                frames.push(frame);
                sources.push((from, expected));
            }
        }
        if frames.is_empty() {
            return Ok(());
        }
        let opened = self.protection.open_batch(frames);
        for (opened, (from, expected)) in opened.into_iter().zip(sources) {
            self.packet(opened, from, expected).await?;
        }
        Ok(())
    }

    /// A datagram from a node of the nodelist, as a whole frame (a fragment completes one
    /// or is kept), and the node its address belongs to.
    fn admit(&mut self, datagram: &[u8], from: SocketAddr) -> Option<(Vec<u8>, NodeId)> {
        self.stats.packets_in += 1;
        self.stats.bytes_in += datagram.len() as u64;
        let Some(&expected) = self.by_addr.get(&from) else {
            self.stats.unknown_source += 1;
            return None;
        };
        if !crate::fragment::is_fragment(datagram) {
            return Some((datagram.to_vec(), expected));
        }
        // Not complete yet, or dropped and counted.
        self.reassembler.push(from, datagram).ok().flatten().map(|frame| (frame, expected))
    }

    async fn packet(
        &mut self,
        opened: Result<(NodeId, Bytes), OpenError>,
        from: SocketAddr,
        expected: NodeId,
    ) -> Result<(), RuntimeError> {
        let (sender, plain) = match opened {
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
        let mut out = Vec::new();
        match req {
            Request::Connect { flags, events, reply } => {
                let conn = self.core.connect(flags);
                let client =
                    Client { events: Some(events), outbox: VecDeque::new(), queued_msgs: 0, queued_bytes: 0 };
                self.clients.insert(conn, client);
                if reply.send(conn).is_err() {
                    self.drop_client(conn, &mut out);
                }
            }
            Request::Join { conn, group, pid, reply } => {
                if let Some(c) = self.waiting(conn) {
                    c.outbox.push_back(Queued::Join { group, pid, reply });
                } else {
                    self.join(conn, &group, pid, reply, &mut out);
                }
            }
            Request::Leave { conn, group, reply } => {
                if let Some(c) = self.waiting(conn) {
                    c.outbox.push_back(Queued::Leave { group, reply });
                } else {
                    self.leave(conn, &group, reply, &mut out);
                }
            }
            Request::Mcast { conn, guarantee, payload, reply } => {
                let r = if self.waiting(conn).is_some() {
                    Err(CpgError::TryAgain)
                } else {
                    self.mcast(conn, guarantee, &payload, false, &mut out)
                };
                let _ = reply.send(r);
            }
            Request::Send { conn, msgs } => self.queue_sends(conn, msgs, &mut out),
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

    /// The connection, if its outbox holds anything (a new request must wait behind it).
    fn waiting(&mut self, conn: ConnId) -> Option<&mut Client> {
        self.clients.get_mut(&conn).filter(|c| !c.outbox.is_empty())
    }

    fn join(
        &mut self,
        conn: ConnId,
        group: &[u8],
        pid: u32,
        reply: oneshot::Sender<Result<(), CpgError>>,
        out: &mut Vec<Output>,
    ) {
        let r = self.core.join(self.now(), conn, group, pid, out);
        self.observe(Observed::Join { conn, group, pid, result: r });
        let _ = reply.send(r);
    }

    fn leave(
        &mut self,
        conn: ConnId,
        group: &[u8],
        reply: oneshot::Sender<Result<(), CpgError>>,
        out: &mut Vec<Output>,
    ) {
        let r = self.core.leave(self.now(), conn, group, out);
        self.observe(Observed::Leave { conn, group, result: r });
        let _ = reply.send(r);
    }

    /// Offer one multicast to the core. The observer hears the verdict, except a TryAgain
    /// for a `queued` one (it stays in the outbox; no client ever saw that answer).
    fn mcast(
        &mut self,
        conn: ConnId,
        guarantee: Guarantee,
        payload: &[u8],
        queued: bool,
        out: &mut Vec<Output>,
    ) -> Result<(), CpgError> {
        let group = self
            .observer
            .is_some()
            .then(|| self.core.conn_group(conn).map(|(g, _)| g.as_bytes().to_vec()))
            .flatten();
        let r = self.core.mcast(self.now(), conn, guarantee, payload, out);
        if !(queued && r == Err(CpgError::TryAgain)) {
            self.observe(Observed::Mcast { conn, group: group.as_deref(), guarantee, payload, result: r });
        }
        r
    }

    /// Put multicasts sent without a reply into the connection's outbox (a client that
    /// sends past its window is disconnected), then offer the outbox to the core.
    fn queue_sends(&mut self, conn: ConnId, msgs: Vec<(Guarantee, Bytes)>, out: &mut Vec<Output>) {
        let window = self.cfg.window;
        let Some(c) = self.clients.get_mut(&conn) else { return };
        if c.events.is_none() {
            return; // the client is gone; nothing new is taken from it
        }
        for (guarantee, payload) in msgs {
            let bytes = c.queued_bytes.saturating_add(payload.len() as u64);
            if c.queued_msgs >= window.msgs || bytes > window.bytes {
                self.stats.clients_overrun += 1;
                tracing::warn!("client connection {} sent past its send window: disconnected", conn.0);
                // What fit goes out first (the outbox is served below), then the PROCDOWN.
                self.drop_client(conn, out);
                break;
            }
            c.queued_msgs += 1;
            c.queued_bytes = bytes;
            c.outbox.push_back(Queued::Mcast(guarantee, payload));
        }
        self.serve_outbox(conn, out);
    }

    /// Carry out the connection's outbox in order until the core refuses a multicast for
    /// now (TryAgain); hand back credit for the multicasts taken.
    fn serve_outbox(&mut self, conn: ConnId, out: &mut Vec<Output>) {
        let (mut msgs, mut bytes, mut failed) = (0u32, 0u64, None);
        let mut closed = false;
        while let Some(item) = self.clients.get_mut(&conn).and_then(|c| c.outbox.pop_front()) {
            match item {
                Queued::Mcast(guarantee, payload) => {
                    let r = self.mcast(conn, guarantee, &payload, true, out);
                    let Some(c) = self.clients.get_mut(&conn) else { break };
                    if r == Err(CpgError::TryAgain) {
                        c.outbox.push_front(Queued::Mcast(guarantee, payload));
                        break;
                    }
                    c.queued_msgs = c.queued_msgs.saturating_sub(1);
                    c.queued_bytes = c.queued_bytes.saturating_sub(payload.len() as u64);
                    msgs += 1;
                    bytes += payload.len() as u64;
                    if let Err(e) = r {
                        failed = Some(e);
                    }
                }
                Queued::Join { group, pid, reply } => self.join(conn, &group, pid, reply, out),
                Queued::Leave { group, reply } => self.leave(conn, &group, reply, out),
                Queued::Disconnect => {
                    self.disconnect_now(conn, out);
                    closed = true;
                    break;
                }
            }
        }
        if !closed && self.clients.get(&conn).is_some_and(|c| !c.outbox.is_empty()) {
            self.blocked.insert(conn);
        } else {
            self.blocked.remove(&conn);
        }
        if msgs > 0 {
            self.hand_to_client(conn, ClientEvent::Credit { msgs, bytes, failed }, out);
        }
    }

    /// Offer every waiting outbox to the core again (after an input that may have made
    /// room or ended a synchronization), starting after the one served first last time.
    async fn serve_blocked(&mut self) -> Result<(), RuntimeError> {
        if self.blocked.is_empty() || self.core.is_syncing() {
            return Ok(());
        }
        let start = self.rotation;
        let order: Vec<ConnId> =
            self.blocked.range(start..).chain(self.blocked.range(..start)).copied().collect();
        let mut out = Vec::new();
        for conn in order {
            self.serve_outbox(conn, &mut out);
        }
        self.rotation =
            self.blocked.range(ConnId(start.0.saturating_add(1))..).next().copied().unwrap_or(ConnId(0));
        self.carry_out(out).await
    }

    /// The client went away (or stopped reading): what its outbox holds goes out first,
    /// then its processes leave their groups (PROCDOWN).
    fn drop_client(&mut self, conn: ConnId, out: &mut Vec<Output>) {
        match self.clients.get_mut(&conn) {
            Some(c) if !c.outbox.is_empty() => {
                if c.events.take().is_some() {
                    c.outbox.push_back(Queued::Disconnect);
                }
            }
            Some(_) => self.disconnect_now(conn, out),
            None => self.core.disconnect(self.now(), conn, out),
        }
    }

    fn disconnect_now(&mut self, conn: ConnId, out: &mut Vec<Output>) {
        if self.clients.remove(&conn).is_some() {
            self.observe(Observed::Disconnect { conn });
        }
        self.blocked.remove(&conn);
        self.core.disconnect(self.now(), conn, out);
    }

    fn stats(&self) -> RuntimeStats {
        RuntimeStats { reassembly: self.reassembler.stats.clone(), ..self.stats.clone() }
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
            runtime: self.stats(),
            token_rotations_per_sec: self.token_rate.per_sec(
                self.epoch,
                Instant::now(),
                s.stats.tokens_accepted,
            ),
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
                    Output::Send { dest, msg } => self.send(dest, &msg),
                    Output::PersistRingSeq(seq) => {
                        self.store.store(seq).await.map_err(RuntimeError::Persist)?;
                        self.core.ring_seq_persisted(self.now(), seq, &mut next);
                    }
                    Output::Deliver(_) => self.stats.deliveries += 1,
                    Output::Config(c) => self.config_change(&c),
                    Output::Cpg(e) => self.hand_to_client(e.conn, ClientEvent::Cpg(e.kind), &mut next),
                    Output::Probe(_) => {}
                }
            }
            while let Some(msg) = self.looped.pop_front() {
                let me = self.cfg.node_id;
                self.core.handle_message(self.now(), me, msg, &mut next);
            }
            if next.is_empty() {
                self.flush().await;
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
        let Some(tx) = self.clients.get(&conn).and_then(|c| c.events.as_ref()) else { return };
        let copy = match &event {
            ClientEvent::Cpg(kind) if self.observer.is_some() => Some(kind.clone()),
            _ => None,
        };
        if tx.push(event).is_ok() {
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

    /// Seal `msg` once and queue it for every destination (sent by [`Runtime::flush`]).
    fn send(&mut self, dest: Dest, msg: &Message) {
        let me = self.cfg.node_id;
        if dest == Dest::Node(me) {
            self.looped.push_back(msg.clone());
            return;
        }
        // Encoded now, sealed with the rest of the step's packets in `flush`.
        let room = self.protection.overhead();
        let mut packet = Vec::with_capacity(room + totem_core::wire::encoded_len(msg));
        packet.resize(room, 0);
        totem_core::wire::encode(me, msg, &mut packet);
        self.unsealed.push((packet, dest, matches!(msg, Message::Token(_))));
    }

    /// Seal the step's packets together; the datagrams to send, in order, with their
    /// destinations.
    ///
    /// After a big visit the token goes out ahead of the multicasts queued before it. On
    /// veth and loopback a `sendmmsg` carries every datagram through the receivers' stacks
    /// before it returns, so a token queued behind a visit's worth of 64 KiB frames waited
    /// for all of them and the ring worked one node at a time; ahead of them, the next node
    /// starts its visit while they arrive (3 senders of 16 KiB: +26 % messages/s, 1 KiB:
    /// saturation p50 124 -> 17 ms). After a small visit it stays behind: the next node
    /// then finds the multicast before the token and delivers it before it forwards the
    /// token (1 KiB at 1,000 msgs/s: token first doubled the remote p99). Order does not
    /// matter for safety (UDP may reorder anyway), and a hole is requested only after
    /// `miss_count_const` visits, so frames that trail the token cost no retransmission.
    fn seal_step(&mut self) -> Vec<(Bytes, SocketAddr)> {
        let unsealed = std::mem::take(&mut self.unsealed);
        let (mut packets, rest): (Vec<Vec<u8>>, Vec<(Dest, bool)>) =
            unsealed.into_iter().map(|(p, dest, token)| (p, (dest, token))).unzip();
        if !self.protection.seal_batch(&mut packets) {
            self.stats.send_errors += packets.len() as u64;
            return Vec::new();
        }
        let me = self.cfg.node_id;
        let mut outgoing = Vec::with_capacity(packets.len());
        // Tokens at the front of `outgoing` (in their own order), and the bytes of the rest.
        let (mut tokens_ahead, mut bytes) = (0, 0);
        for (datagram, (dest, token)) in packets.into_iter().zip(rest) {
            let Some(runs) = self.runs(datagram) else { continue };
            let addrs: Vec<SocketAddr> = match dest {
                Dest::Node(to) => self.cfg.nodelist.get(&to).copied().into_iter().collect(),
                Dest::All => self.cfg.nodelist.iter().filter(|(n, _)| **n != me).map(|(_, &a)| a).collect(),
            };
            for addr in addrs {
                for run in &runs {
                    if token && bytes >= TOKEN_AHEAD_BYTES {
                        outgoing.insert(tokens_ahead, (run.clone(), addr));
                        tokens_ahead += 1;
                    } else {
                        bytes += run.len();
                        outgoing.push((run.clone(), addr));
                    }
                }
            }
        }
        outgoing
    }

    /// A sealed datagram as it goes out: whole, or past one MTU as runs of fragments (see
    /// `crate::fragment`).
    fn runs(&mut self, datagram: Vec<u8>) -> Option<Vec<Bytes>> {
        if datagram.len() <= SEGMENT {
            return Some(vec![Bytes::from(datagram)]);
        }
        let id = self.next_frame_id;
        self.next_frame_id = id.wrapping_add(1);
        let Some(runs) = crate::fragment::split(&datagram, id, SEGMENT) else {
            self.stats.send_errors += 1;
            return None;
        };
        self.stats.frames_fragmented += 1;
        Some(runs.into_iter().map(Bytes::from).collect())
    }

    /// Seal and send what a step queued, in order, in one call (one `sendmmsg` on the UDP
    /// socket).
    async fn flush(&mut self) {
        if self.unsealed.is_empty() {
            return;
        }
        let outgoing = self.seal_step();
        let batch: Vec<(&[u8], SocketAddr)> = outgoing.iter().map(|(d, a)| (d.as_ref(), *a)).collect();
        let results = self.transport.send_batch(&batch, SEGMENT).await;
        for ((datagram, to), result) in batch.iter().zip(results) {
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

#[cfg(test)]
mod tests {
    use super::TokenRate;
    use std::time::Duration;
    use tokio::time::Instant;

    #[test]
    fn token_rate_is_the_last_windows_and_goes_stale_to_zero() {
        let start = Instant::now();
        let ms = |n: u64| start + Duration::from_millis(n);
        let mut rate = TokenRate::new(start);
        // Before a window closes: the average since start.
        rate.observe(ms(500), 1_000);
        assert!((rate.per_sec(start, ms(500), 1_000) - 2_000.0).abs() < 1e-6);
        // 3,000 accepted tokens in the first 1.5 s, then 10,000 in the next second: the
        // figure is the last window's, not the average since start.
        rate.observe(ms(1_500), 3_000);
        rate.observe(ms(2_500), 13_000);
        assert!((rate.per_sec(start, ms(2_600), 13_100) - 10_000.0).abs() < 1e-6);
        // The ring stops: no input closes a window, and the figure falls with the silence.
        assert!(rate.per_sec(start, ms(4_500), 13_000) < 1e-6);
    }
}
