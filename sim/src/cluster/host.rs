//! One simulated host: the real node runtime over turmoil, and its CPG applications.
//!
//! The host's software (what turmoil starts, and starts again on a bounce) begins a new
//! incarnation: it records `Start` (after `StateLost` when the disk was lost), binds the
//! Totem port, builds a [`Runtime`] over a [`SimSocket`] with the node's [`MemStore`] (which
//! outlives the incarnation, like a disk), and runs it, frozen while the driver pauses the
//! node ([`Freezable`]). Beside it run the applications ([`app`]): one task that drives
//! every application process of the host through the runtime's [`Handle`] (the in-memory
//! IPC layer), and one task per connection that drains its events.
//!
//! A crash is turmoil's: every task of the host is dropped in the middle of whatever it
//! was doing. A clean leave goes through [`Handle::shutdown`].

use super::net::{NetShared, SimSocket, protection};
use super::plan::{Apps, ClusterOptions};
use super::record::{SharedRecorder, host_now, observer};
use crate::payload;
use crate::rng::Rng;
use bytes::Bytes;
use spec::trace::{EventKind, MsgId};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::sync::Notify;
use totem_core::cpg::{ConnFlags, ConnId};
use totem_core::{Guarantee, NodeId};
use totem_node::runtime::{ClientEvent, Handle, Runtime, RuntimeConfig};
use totem_node::store::MemStore;
use totem_node::window::SendWindow;

/// The Totem port every host binds.
pub const PORT: u16 = 5405;

/// Where a simulated machine is in its life (as the driver and the host see it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Life {
    NotStarted,
    Up,
    /// Frozen by the driver.
    Paused,
    Crashed,
    /// Left cleanly.
    Left,
}

/// What the driver and one node's software share. Lives for the whole run.
#[derive(Debug)]
pub struct NodeCtl {
    pub id: u32,
    /// The current (or last) incarnation; None before the first start.
    pub incarnation: Cell<Option<u32>>,
    pub life: Cell<Life>,
    /// The disk. Replaced by a fresh one when a restart loses it.
    pub store: RefCell<MemStore>,
    /// The next start records `StateLost` first.
    pub wiped: Cell<bool>,
    /// The driver started the host's software, which has not run yet (so a crash now ends
    /// no recorded incarnation).
    pub pending_start: Cell<bool>,
    /// Frozen until this simulated time (ns); None: running.
    pub frozen_until: Cell<Option<u64>>,
    freeze_waker: RefCell<Option<Waker>>,
    /// The driver asks for a clean leave: the flag says it is for the running incarnation
    /// (a notification left over from a crashed one is ignored).
    pub leave: Notify,
    pub leave_requested: Cell<bool>,
    /// Scripted sends waiting for the application: sizes in bytes.
    pub backlog: RefCell<VecDeque<usize>>,
}

impl NodeCtl {
    pub fn new(id: u32) -> NodeCtl {
        NodeCtl {
            id,
            incarnation: Cell::new(None),
            life: Cell::new(Life::NotStarted),
            store: RefCell::new(MemStore::default()),
            wiped: Cell::new(false),
            pending_start: Cell::new(false),
            frozen_until: Cell::new(None),
            freeze_waker: RefCell::new(None),
            leave: Notify::new(),
            leave_requested: Cell::new(false),
            backlog: RefCell::new(VecDeque::new()),
        }
    }

    /// Running or paused.
    pub fn alive(&self) -> bool {
        matches!(self.life.get(), Life::Up | Life::Paused)
    }

    /// Freeze the runtime until `until` (simulated ns).
    pub fn freeze(&self, until: u64) {
        self.frozen_until.set(Some(until));
        if self.life.get() == Life::Up {
            self.life.set(Life::Paused);
        }
    }

    /// Unfreeze now.
    pub fn thaw(&self) {
        self.frozen_until.set(None);
        if self.life.get() == Life::Paused {
            self.life.set(Life::Up);
        }
        if let Some(w) = self.freeze_waker.borrow_mut().take() {
            w.wake();
        }
    }
}

/// Everything the hosts share with the driver.
#[derive(Debug)]
pub struct Shared {
    pub opts: ClusterOptions,
    pub nodes: Vec<Rc<NodeCtl>>,
    pub nodelist: BTreeMap<NodeId, SocketAddr>,
    pub net: Rc<NetShared>,
    pub recorder: SharedRecorder,
    /// Applications submit only while this is set.
    pub submitting: Cell<bool>,
    pub traffic: Cell<bool>,
    pub churn: Cell<bool>,
}

impl Shared {
    fn record(&self, node: u32, inc: u32, kind: EventKind) {
        if let Ok(mut r) = self.recorder.lock() {
            r.push(node, inc, kind);
        }
    }

    fn error(&self, message: String) {
        if let Ok(mut r) = self.recorder.lock() {
            r.errors.push(message);
        }
    }
}

/// The host software of node `index` (0-based): one incarnation.
pub async fn host_main(shared: Rc<Shared>, index: usize) -> turmoil::Result {
    let Some(ctl) = shared.nodes.get(index).cloned() else { return Ok(()) };
    let node = ctl.id;
    let inc = ctl.incarnation.get().map_or(0, |i| i + 1);
    ctl.pending_start.set(false);
    ctl.incarnation.set(Some(inc));
    ctl.life.set(Life::Up);
    ctl.frozen_until.set(None);
    ctl.backlog.borrow_mut().clear();
    ctl.leave_requested.set(false);
    if ctl.wiped.replace(false) {
        shared.record(node, inc, EventKind::StateLost);
    }
    shared.record(node, inc, EventKind::Start);

    let socket = match turmoil::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, PORT)).await {
        Ok(s) => s,
        Err(e) => return fail(&shared, &ctl, inc, format!("node {node}#{inc}: bind failed: {e}")),
    };
    let seed = shared.opts.seed ^ (u64::from(node) << 40) ^ (u64::from(inc) << 20);
    let transport = SimSocket::new(socket, shared.net.clone(), Rng::new(seed).fork(31));
    let cfg = RuntimeConfig {
        node_id: NodeId(node),
        core: shared.opts.node_config(node, inc),
        nodelist: shared.nodelist.clone(),
        window: totem_node::window::WindowSize::DEFAULT,
    };
    let store = ctl.store.borrow().clone();
    let (runtime, handle) = match Runtime::new(cfg, transport, store, protection(NodeId(node), inc)) {
        Ok(x) => x,
        Err(e) => {
            return fail(&shared, &ctl, inc, format!("node {node}#{inc}: runtime refused to start: {e}"));
        }
    };
    let runtime = runtime.with_observer(observer(shared.recorder.clone(), node, inc));
    // Half the incarnations multicast through the send window (no reply per message, the
    // daemon's outbox and credit), the others one round trip per message.
    let pipelined = Rng::new(seed).fork(33).chance(0.5);
    tokio::task::spawn_local(app(
        shared.clone(),
        index,
        inc,
        handle.clone(),
        Rng::new(seed).fork(32),
        pipelined,
    ));
    let watcher = ctl.clone();
    let leaver = handle.clone();
    tokio::task::spawn_local(async move {
        loop {
            watcher.leave.notified().await;
            if watcher.leave_requested.replace(false) {
                leaver.shutdown().await;
                return;
            }
        }
    });
    let result = Freezable { inner: Box::pin(runtime.run()), ctl: ctl.clone(), sleep: None }.await;
    match result {
        Ok(_) => {
            shared.record(node, inc, EventKind::Leave);
            ctl.life.set(Life::Left);
            Ok(())
        }
        Err(e) => fail(&shared, &ctl, inc, format!("node {node}#{inc}: runtime failed: {e}")),
    }
}

/// The incarnation ends abnormally: reported as a simulation error, recorded as a crash.
fn fail(shared: &Shared, ctl: &NodeCtl, inc: u32, message: String) -> turmoil::Result {
    shared.error(message);
    shared.record(ctl.id, inc, EventKind::Crash);
    ctl.life.set(Life::Crashed);
    Ok(())
}

/// A future frozen while its node is paused: it is not polled at all, so its timers do
/// not fire and its socket is not read until the pause ends (then everything that came due
/// happens at once, like a process resumed after SIGSTOP).
struct Freezable<F: Future> {
    inner: Pin<Box<F>>,
    ctl: Rc<NodeCtl>,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<F: Future> Future for Freezable<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        loop {
            let Some(until) = self.ctl.frozen_until.get() else {
                self.sleep = None;
                return self.inner.as_mut().poll(cx);
            };
            let now = host_now().unwrap_or(until);
            if now >= until {
                self.ctl.thaw();
                continue;
            }
            *self.ctl.freeze_waker.borrow_mut() = Some(cx.waker().clone());
            let sleep = self
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(Duration::from_nanos(until - now))));
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.sleep = None;
            self.ctl.thaw();
        }
    }
}

/// One application process: a client connection, and the group it is in.
#[derive(Debug, Default)]
struct Proc {
    conn: Option<ConnId>,
    /// The group it joined and its pid.
    joined: Option<(Vec<u8>, u32)>,
    /// Pipelined mode: the connection's send window, credited by its event task.
    window: Option<Rc<RefCell<SendWindow>>>,
}

impl Proc {
    /// Nothing of this process waits in the daemon's outbox.
    fn idle(&self) -> bool {
        self.window.as_ref().is_none_or(|w| w.borrow().is_idle())
    }
}

/// The applications of one host incarnation: `processes` client connections driven in
/// turn by this one task (so message ids are allocated in the order the runtime sees the
/// requests, as the spec requires). Each turn, a process without a connection connects;
/// one without a group joins one; a joined one may leave or exit (churn), or multicast a
/// burst of Agreed and Safe messages. Scripted sends go through the first joined process.
///
/// `pipelined`: multicasts go through [`Handle::send`] within the connection's window
/// instead of one [`Handle::mcast`] each. The spec orders a node's messages by the counter
/// in their ids, allocated here; the daemon keeps each connection's order but may take two
/// connections' queued messages in either order, so a process sends only while no other
/// has messages outstanding, and exits only once its own are taken (a disconnect's credit
/// never comes back). A leave may wait behind its sends: that order is the daemon's to keep.
async fn app(shared: Rc<Shared>, index: usize, inc: u32, handle: Handle, mut rng: Rng, pipelined: bool) {
    let Some(ctl) = shared.nodes.get(index).cloned() else { return };
    let node = ctl.id;
    let apps = shared.opts.apps.clone();
    let mut procs: Vec<Proc> = (0..apps.processes.max(1)).map(|_| Proc::default()).collect();
    let mut counter = 0u64;
    let mut next_pid = 100u32;
    let mut next_id = || {
        let m = MsgId::new(node, inc, counter);
        counter += 1;
        m
    };
    loop {
        let pause = rng.range(0, 2 * apps.interval_mean_ns.max(1));
        tokio::time::sleep(Duration::from_nanos(pause)).await;
        if !shared.submitting.get() {
            continue;
        }
        for k in 0..procs.len() {
            let Some(p) = procs.get_mut(k) else { continue };
            let Some(conn) = p.conn else {
                let flags = ConnFlags { deliver_initial_totem_conf: rng.chance(0.3) };
                let Ok((conn, mut events)) =
                    handle.connect(flags, totem_node::events::QueueLimit::events(1 << 16)).await
                else {
                    return;
                };
                if pipelined {
                    let window = Rc::new(RefCell::new(SendWindow::new(handle.window())));
                    let credited = window.clone();
                    tokio::task::spawn_local(async move {
                        while let Some(e) = events.recv().await {
                            if let ClientEvent::Credit { msgs, bytes, .. } = e {
                                credited.borrow_mut().credit(msgs, bytes);
                            }
                        }
                    });
                    p.window = Some(window);
                } else {
                    tokio::task::spawn_local(async move { while events.recv().await.is_some() {} });
                }
                p.conn = Some(conn);
                continue;
            };
            let Some((group, _)) = &p.joined else {
                let group = format!("g{}", rng.range(0, apps.groups.max(1) as u64 - 1)).into_bytes();
                let pid = next_pid;
                next_pid += 1;
                match handle.join(conn, &group, pid).await {
                    Err(_) => return,
                    Ok(Ok(())) => p.joined = Some((group, pid)),
                    Ok(Err(_)) => {}
                }
                continue;
            };
            let group = group.clone();
            if shared.churn.get() && rng.chance(apps.exit_p) && p.idle() {
                handle.disconnect(conn).await;
                *p = Proc::default();
                continue;
            }
            if shared.churn.get() && rng.chance(apps.leave_p) {
                match handle.leave(conn, &group).await {
                    Err(_) => return,
                    Ok(Ok(())) => p.joined = None,
                    Ok(Err(_)) => {}
                }
                continue;
            }
            if let Some(window) = p.window.clone() {
                let others_idle = procs.iter().enumerate().all(|(j, q)| j == k || q.idle());
                if others_idle {
                    let batch = draw_sends(&shared, &ctl, &apps, &mut rng, &mut next_id, &window);
                    if !batch.is_empty() && handle.send(conn, batch).await.is_err() {
                        return;
                    }
                }
                continue;
            }
            let mut turn = Turn::new(&shared, &apps, &mut rng);
            while let Some((size, scripted)) = turn.next(&ctl, &apps, &mut rng) {
                let guarantee =
                    if rng.chance(apps.safe_fraction) { Guarantee::Safe } else { Guarantee::Agreed };
                let bytes = Bytes::from(payload::build(next_id(), size));
                match handle.mcast(conn, guarantee, bytes).await {
                    Err(_) => return,
                    Ok(Ok(())) => {}
                    // TryAgain (flow control, a synchronization): retry next turn with a
                    // fresh id. Nothing else is expected of a joined connection; the spec
                    // judges the recorded result either way.
                    Ok(Err(_)) => {
                        turn.put_back(&ctl, size, scripted);
                        break;
                    }
                }
            }
        }
    }
}

/// The sizes one process sends in one turn: the scripted ones first, then random traffic.
struct Turn {
    random: u64,
}

impl Turn {
    fn new(shared: &Shared, apps: &Apps, rng: &mut Rng) -> Turn {
        Turn { random: if shared.traffic.get() { rng.range(1, apps.burst_max.max(1)) } else { 0 } }
    }

    /// The next message's size, and whether it was scripted.
    fn next(&mut self, ctl: &NodeCtl, apps: &Apps, rng: &mut Rng) -> Option<(usize, bool)> {
        if let Some(size) = ctl.backlog.borrow_mut().pop_front() {
            return Some((size, true));
        }
        if self.random == 0 {
            return None;
        }
        self.random -= 1;
        Some((apps.draw_size(rng), false))
    }

    /// A message not sent: a scripted one waits at the front for the next turn.
    fn put_back(&self, ctl: &NodeCtl, size: usize, scripted: bool) {
        if scripted {
            ctl.backlog.borrow_mut().push_front(size);
        }
    }
}

/// A pipelined process's turn: as many of its messages as the window has room for.
fn draw_sends(
    shared: &Shared,
    ctl: &NodeCtl,
    apps: &Apps,
    rng: &mut Rng,
    next_id: &mut impl FnMut() -> MsgId,
    window: &RefCell<SendWindow>,
) -> Vec<(Guarantee, Bytes)> {
    let mut turn = Turn::new(shared, apps, rng);
    let mut batch = Vec::new();
    while let Some((size, scripted)) = turn.next(ctl, apps, rng) {
        if !window.borrow_mut().take(payload::built_len(size)) {
            turn.put_back(ctl, size, scripted);
            break;
        }
        let guarantee = if rng.chance(apps.safe_fraction) { Guarantee::Safe } else { Guarantee::Agreed };
        batch.push((guarantee, Bytes::from(payload::build(next_id(), size))));
    }
    batch
}
