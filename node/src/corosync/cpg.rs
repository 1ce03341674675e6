//! Closed process groups with the API of `rust-corosync`'s `cpg` module.
//!
//! The functions, types and callback signatures are rust-corosync's, so a program written
//! for it ports by changing its import. Underneath is [`crate::client`]: every [`Handle`]
//! owns one connection to the local `totemd` and a small worker thread (a current-thread
//! tokio runtime) that performs the calls and moves incoming events into the handle's
//! queue. Callbacks run on the thread that calls [`dispatch`], never on the worker, so a
//! callback may call any function of this module on its handle (mcast, leave, even
//! finalize).
//!
//! ```no_run
//! use totem_node::corosync::{self, cpg, NodeId};
//!
//! fn deliver(_h: &cpg::Handle, group: String, node: NodeId, pid: u32, msg: &[u8], _len: usize) {
//!     println!("{group}: {node}/{pid}: {}", String::from_utf8_lossy(msg));
//! }
//!
//! let model = cpg::ModelData::ModelV1(cpg::Model1Data {
//!     flags: cpg::Model1Flags::None,
//!     deliver_fn: Some(deliver),
//!     confchg_fn: None,
//!     totem_confchg_fn: None,
//! });
//! let handle = cpg::initialize(&model, 0)?;
//! cpg::join(&handle, "chat")?;
//! cpg::mcast_joined(&handle, cpg::Guarantee::TypeAgreed, b"hello")?;
//! loop {
//!     cpg::dispatch(&handle, corosync::DispatchFlags::One)?;
//! }
//! # Ok::<(), corosync::CsError>(())
//! ```
//!
//! # Where this differs from rust-corosync (and libcpg)
//!
//! - [`initialize`] connects to `$TOTEM_SOCKET`, else `/run/totem/totem.sock`;
//!   [`initialize_at`] (a Totem addition) takes the socket path.
//! - [`Model1Flags::DeliverInitialTotemConf`] is a Totem addition: libcpg's
//!   `CPG_MODEL_V1_DELIVER_INITIAL_TOTEM_CONF`, which rust-corosync does not expose.
//! - Group names are bytes, up to 128 of them ([`GROUP_NAME_MAX`]); a longer name is
//!   `CsErrNameTooLong` as in libcpg (rust-corosync says `CsErrInvalidParam` above 127,
//!   because of its C string's terminator). The name given to callbacks is decoded as UTF-8
//!   with replacement characters, and is not cut at a NUL byte.
//! - [`join`] uses `std::process::id()` as the process id, as libcpg uses `getpid()`; two
//!   handles of one process cannot join the same group (`CsErrExist`), as in Corosync.
//! - Unordered and FIFO [`Guarantee`]s are delivered agreed (a stronger order, as Corosync's
//!   CPG also does); `TypeSafe` is really safe, where Corosync's CPG delivers it agreed.
//! - Every message up to [`max_atomic_msgsize_get`] (1 MiB) is one Totem message and is
//!   never fragmented; larger ones are refused with `CsErrTooBig` before anything is sent.
//! - [`mcast_joined`] on a handle that has not joined is `CsErrNotExist` (Corosync drops the
//!   message and says OK).
//! - After its own leave view change a handle may [`join`] again at once; before it,
//!   join is `CsErrBusy`.
//! - [`flow_control_state_get`] is true from an [`mcast_joined`] that returned
//!   `CsErrTryAgain` until the next one that succeeds: Totem reports congestion per send,
//!   not as a daemon-wide flag.
//! - Members in `member_list` and in [`membership_get`] carry [`Reason::Undefined`]
//!   (Corosync leaves that field unset there).
//! - If the daemon goes away, the descriptor of [`fd_get`] becomes readable and
//!   [`dispatch`] runs what was already received, then returns `CsErrLibrary`; other calls
//!   return `CsErrLibrary` too. Calls after [`finalize`] return `CsErrBadHandle`.
//! - A handle that falls [`EVENT_QUEUE_MAX`] undispatched events behind is disconnected (its
//!   process leaves its group with PROCDOWN), as the daemon does with any client that stops
//!   reading: [`dispatch`] runs the queued callbacks, then returns `CsErrLibrary`. The
//!   handle's calls never wait behind undispatched events (libcpg has separate reply and
//!   event channels; here the worker keeps reading events while a call is in flight).
//! - Handles, [`Address`], [`RingId`] and the enums also implement `Debug`, `PartialEq` and
//!   (where rust-corosync's do not) `Clone`.

use super::{CsError, DispatchFlags, NodeId, Result};
use crate::client::{Client, ClientError};
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, mpsc as std_mpsc};
use std::thread::JoinHandle;
use tokio::sync::mpsc;
pub use totem_core::cpg::{CPG_MESSAGE_MAX, GROUP_NAME_MAX};
use totem_core::cpg::{ConnFlags, CpgError, EventKind, GroupName, Process};

/// Undispatched events one handle holds before it counts as stalled and is disconnected
/// (the daemon's own bound per client, [`crate::events::QueueLimit::DEFAULT`]).
pub const EVENT_QUEUE_MAX: usize = crate::events::QueueLimit::DEFAULT.events;

/// The ring a Totem view change belongs to: its representative and sequence number.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct RingId {
    pub nodeid: NodeId,
    pub seq: u64,
}

/// The delivery guarantee for [`mcast_joined`]. Totem orders every message totally:
/// `TypeUnordered`, `TypeFifo` and `TypeAgreed` are delivered agreed, `TypeSafe` safe (only
/// once every member holds the message).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Guarantee {
    TypeUnordered,
    TypeFifo,
    TypeAgreed,
    TypeSafe,
}

impl Guarantee {
    /// The `cpg_guarantee_t` value, as rust-corosync's `to_c`.
    pub fn to_c(&self) -> u32 {
        match self {
            Guarantee::TypeUnordered => 0,
            Guarantee::TypeFifo => 1,
            Guarantee::TypeAgreed => 2,
            Guarantee::TypeSafe => 3,
        }
    }

    fn to_totem(self) -> totem_core::Guarantee {
        match self {
            Guarantee::TypeSafe => totem_core::Guarantee::Safe,
            _ => totem_core::Guarantee::Agreed,
        }
    }
}

/// Flow control state (rust-corosync has this type; [`flow_control_state_get`] returns a
/// bool, `true` meaning `Enabled`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum FlowControlState {
    Disabled,
    Enabled,
}

/// Options of a model-1 connection.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Model1Flags {
    None,
    /// Totem addition (libcpg's `CPG_MODEL_V1_DELIVER_INITIAL_TOTEM_CONF`): right after the
    /// handle's first view change, call `totem_confchg_fn` once with the current ring, so
    /// the program learns the membership without waiting for it to change.
    DeliverInitialTotemConf,
}

/// Why a process is in a `left_list` or `joined_list` (Corosync's `cpg_reason_t`, same
/// values).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    Undefined = 0,
    Join = 1,
    Leave = 2,
    NodeDown = 3,
    NodeUp = 4,
    ProcDown = 5,
}

impl Reason {
    /// From the `cpg_reason_t` value; unknown values are `Undefined`.
    pub fn new(r: u32) -> Reason {
        match r {
            1 => Reason::Join,
            2 => Reason::Leave,
            3 => Reason::NodeDown,
            4 => Reason::NodeUp,
            5 => Reason::ProcDown,
            _ => Reason::Undefined,
        }
    }
}

impl From<totem_core::cpg::Reason> for Reason {
    fn from(r: totem_core::cpg::Reason) -> Reason {
        use totem_core::cpg::Reason as R;
        match r {
            R::Join => Reason::Join,
            R::Leave => Reason::Leave,
            R::NodeDown => Reason::NodeDown,
            R::NodeUp => Reason::NodeUp,
            R::ProcDown => Reason::ProcDown,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Reason::Undefined => "Undefined",
            Reason::Join => "Join",
            Reason::Leave => "Leave",
            Reason::NodeDown => "NodeDown",
            Reason::NodeUp => "NodeUp",
            Reason::ProcDown => "ProcDown",
        };
        f.write_str(s)
    }
}

/// A process in a group: its node, its pid and (in left and joined lists) why it moved.
#[derive(Copy, Clone, PartialEq, Eq, Hash)]
pub struct Address {
    pub nodeid: NodeId,
    pub pid: u32,
    pub reason: Reason,
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[nodeid: {}, pid: {}, reason: {}]", self.nodeid, self.pid, self.reason)
    }
}

impl Address {
    fn of(p: &Process, reason: Reason) -> Address {
        Address { nodeid: NodeId::from(p.node), pid: p.pid, reason }
    }
}

/// A message for the group: handle, group name, sender node and pid, payload and its length.
pub type DeliverFn =
    fn(handle: &Handle, group_name: String, nodeid: NodeId, pid: u32, msg: &[u8], msg_len: usize);
/// A view change of the group: the members after it, who left and who joined.
pub type ConfchgFn = fn(
    handle: &Handle,
    group_name: &str,
    member_list: Vec<Address>,
    left_list: Vec<Address>,
    joined_list: Vec<Address>,
);
/// A Totem view change: the new ring and its nodes.
pub type TotemConfchgFn = fn(handle: &Handle, ring_id: RingId, member_list: Vec<NodeId>);

/// The callbacks and options of a model-1 connection ([`initialize`]). The callback types
/// are plain `fn` pointers, as in rust-corosync: use [`context_get`] to find your state.
#[derive(Copy, Clone, Debug)]
pub struct Model1Data {
    pub flags: Model1Flags,
    pub deliver_fn: Option<DeliverFn>,
    pub confchg_fn: Option<ConfchgFn>,
    pub totem_confchg_fn: Option<TotemConfchgFn>,
}

/// The model for [`initialize`]; only `ModelV1` is accepted (`ModelNone` is
/// `CsErrInvalidParam`), as in rust-corosync.
#[derive(Copy, Clone, Debug)]
pub enum ModelData {
    ModelNone,
    ModelV1(Model1Data),
}

/// A connection to the CPG service, from [`initialize`].
///
/// As in rust-corosync, clones refer to the same connection, and dropping the original (not
/// a clone) finalizes it; after [`finalize`] every copy is a bad handle.
#[derive(Debug)]
pub struct Handle {
    id: u64,
    model_data: ModelData,
    clone: bool,
}

impl Clone for Handle {
    fn clone(&self) -> Handle {
        Handle { id: self.id, model_data: self.model_data, clone: true }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        if !self.clone {
            let _ = finalize(self);
        }
    }
}

impl PartialEq for Handle {
    fn eq(&self, other: &Handle) -> bool {
        self.id == other.id
    }
}

/// What the worker does for a call.
#[derive(Debug)]
enum Op {
    Join(Vec<u8>, u32),
    Leave(Vec<u8>),
    Mcast(totem_core::Guarantee, Vec<u8>),
    Membership(Vec<u8>),
    Groups,
}

#[derive(Debug)]
enum Answer {
    Done,
    Members(Vec<Process>),
    Groups(Vec<(GroupName, Vec<Process>)>),
}

type Reply = std::result::Result<Answer, ClientError>;

#[derive(Debug)]
enum Msg {
    Call(Op, std_mpsc::SyncSender<Reply>),
    Stop,
}

/// Whether the connection can still produce events.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum State {
    Open,
    /// The daemon closed the connection.
    Lost,
    /// [`finalize`] was called.
    Finalized,
}

#[derive(Debug)]
struct Queue {
    events: VecDeque<EventKind>,
    state: State,
    /// Whether the wake-up byte is in the socket pair (see [`Shared::sync_signal`]).
    signalled: bool,
}

/// Shared by the handle's users and its worker.
#[derive(Debug)]
struct Shared {
    queue: Mutex<Queue>,
    /// Wakes dispatchers that wait for an event.
    ready: Condvar,
    /// The read end is what [`fd_get`] hands out; the write end is ours.
    wake_rd: UnixStream,
    wake_wr: UnixStream,
}

/// What [`Shared::pop`] found.
#[derive(Debug)]
enum Popped {
    Event(EventKind),
    Empty,
    Lost,
    Finalized,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while holding these locks; should it ever, the data is still valid.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    /// Keep the pollable descriptor readable exactly when there is something to dispatch
    /// (an event, or the end of the connection): one byte sits in the socket pair while
    /// that holds, none otherwise. Called with the queue locked, so the byte and the queue
    /// never disagree; with at most one byte in flight neither end can block.
    fn sync_signal(&self, q: &mut Queue) {
        let want = !q.events.is_empty() || q.state != State::Open;
        if want == q.signalled {
            return;
        }
        if want {
            if (&self.wake_wr).write(&[1]).is_ok() {
                q.signalled = true;
            }
        } else {
            let mut byte = [0u8; 1];
            let _ = (&self.wake_rd).read(&mut byte);
            q.signalled = false;
        }
    }

    /// Queue an event; true if the queue is now full.
    fn push(&self, event: EventKind) -> bool {
        let mut q = lock(&self.queue);
        q.events.push_back(event);
        self.sync_signal(&mut q);
        self.ready.notify_all();
        q.events.len() >= EVENT_QUEUE_MAX
    }

    fn end(&self, state: State) {
        let mut q = lock(&self.queue);
        // Finalized wins over Lost: a finalized handle reports nothing more.
        if q.state != State::Finalized {
            q.state = state;
        }
        self.sync_signal(&mut q);
        self.ready.notify_all();
    }

    /// The next event, waiting for one if `wait`. After finalize nothing more is handed
    /// out; after the daemon went away what was received still is.
    fn pop(&self, wait: bool) -> Popped {
        let mut q = lock(&self.queue);
        loop {
            if q.state == State::Finalized {
                return Popped::Finalized;
            }
            if let Some(e) = q.events.pop_front() {
                self.sync_signal(&mut q);
                return Popped::Event(e);
            }
            if q.state == State::Lost {
                return Popped::Lost;
            }
            if !wait {
                return Popped::Empty;
            }
            q = self.ready.wait(q).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// One open handle.
#[derive(Debug)]
struct Conn {
    calls: mpsc::UnboundedSender<Msg>,
    shared: Arc<Shared>,
    node_id: u32,
    context: AtomicU64,
    flow_control: AtomicBool,
    worker: Mutex<Option<JoinHandle<()>>>,
}

impl Conn {
    /// Run `op` on the worker and wait for its answer.
    fn call(&self, op: Op) -> Result<Answer> {
        let (tx, rx) = std_mpsc::sync_channel(1);
        // The worker is gone only once the handle was finalized.
        self.calls.send(Msg::Call(op, tx)).map_err(|_| CsError::CsErrBadHandle)?;
        let reply = rx.recv().map_err(|_| CsError::CsErrBadHandle)?;
        reply.map_err(|e| cs_error(&e))
    }

    fn done(&self, op: Op) -> Result<()> {
        match self.call(op)? {
            Answer::Done => Ok(()),
            _ => Err(CsError::CsErrMessageError),
        }
    }
}

/// Open handles by id. A handle is a number, as in libcpg, so that finalize invalidates
/// every copy of it at once.
static HANDLES: Mutex<BTreeMap<u64, Arc<Conn>>> = Mutex::new(BTreeMap::new());
static NEXT_HANDLE: AtomicU64 = AtomicU64::new(1);

fn conn(handle: &Handle) -> Result<Arc<Conn>> {
    lock(&HANDLES).get(&handle.id).cloned().ok_or(CsError::CsErrBadHandle)
}

/// The CS error for a failure of the client library.
fn cs_error(e: &ClientError) -> CsError {
    match e {
        ClientError::Connect { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied => {
            CsError::CsErrAccess
        }
        ClientError::Connect { .. } | ClientError::Closed | ClientError::Refused(_) => CsError::CsErrLibrary,
        ClientError::Protocol => CsError::CsErrMessageError,
        ClientError::Cpg(e) => cpg_error(e),
    }
}

fn cpg_error(e: &CpgError) -> CsError {
    match e {
        CpgError::TryAgain => CsError::CsErrTryAgain,
        CpgError::NameTooLong { .. } => CsError::CsErrNameTooLong,
        CpgError::Exist => CsError::CsErrExist,
        CpgError::Busy => CsError::CsErrBusy,
        CpgError::NotExist => CsError::CsErrNotExist,
        CpgError::TooBig { .. } => CsError::CsErrTooBig,
        CpgError::BadHandle => CsError::CsErrBadHandle,
        CpgError::Interrupt => CsError::CsErrInterrupt,
    }
}

/// The worker: connect, report the node id, then serve calls and collect events until
/// told to stop.
fn start_worker(
    path: PathBuf,
    flags: ConnFlags,
    shared: Arc<Shared>,
) -> Result<(mpsc::UnboundedSender<Msg>, u32, JoinHandle<()>)> {
    let (ready_tx, ready_rx) = std_mpsc::sync_channel::<Result<u32>>(1);
    let (calls, rx) = mpsc::unbounded_channel();
    let worker = std::thread::Builder::new()
        .name("totem-cpg".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(_) => {
                    let _ = ready_tx.send(Err(CsError::CsErrNoResources));
                    return;
                }
            };
            rt.block_on(async move {
                let client = match Client::connect_with(&path, flags).await {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = ready_tx.send(Err(cs_error(&e)));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(client.local_node_id()));
                serve(client, rx, shared).await;
            });
        })
        .map_err(|_| CsError::CsErrNoResources)?;
    match ready_rx.recv() {
        Ok(Ok(node_id)) => Ok((calls, node_id, worker)),
        Ok(Err(e)) => {
            let _ = worker.join();
            Err(e)
        }
        // The worker died before it said anything.
        Err(_) => {
            let _ = worker.join();
            Err(CsError::CsErrLibrary)
        }
    }
}

/// Why the event pump stopped.
#[derive(Debug)]
enum PumpEnd {
    /// The daemon closed the connection.
    Closed,
    /// The handle fell [`EVENT_QUEUE_MAX`] events behind.
    Stalled,
}

/// Move events from the connection into the handle's queue. Cancel-safe (no event is lost
/// when the future is dropped), so it can race a call.
async fn pump(client: &Client, shared: &Shared) -> PumpEnd {
    loop {
        match client.next_event().await {
            Some(e) => {
                if shared.push(e) {
                    return PumpEnd::Stalled;
                }
            }
            None => return PumpEnd::Closed,
        }
    }
}

/// Serve calls one at a time and keep pumping events, during calls too: replies come on the
/// same socket after the events the daemon sent before them, so a call must never wait for
/// the application to dispatch.
async fn serve(client: Client, mut calls: mpsc::UnboundedReceiver<Msg>, shared: Arc<Shared>) {
    let mut pumping = true;
    // Leaves the loop only for a stalled handle (Stop and a finalized handle return).
    loop {
        let stalled = tokio::select! {
            msg = calls.recv() => {
                let Some(Msg::Call(op, reply)) = msg else { return };
                let call = perform(&client, op);
                tokio::pin!(call);
                let (answer, stalled) = loop {
                    tokio::select! {
                        answer = &mut call => break (answer, false),
                        end = pump(&client, &shared), if pumping => {
                            pumping = false;
                            match end {
                                PumpEnd::Closed => shared.end(State::Lost),
                                PumpEnd::Stalled => break (Err(ClientError::Closed), true),
                            }
                        }
                    }
                };
                let _ = reply.send(answer);
                stalled
            }
            end = pump(&client, &shared), if pumping => {
                pumping = false;
                match end {
                    PumpEnd::Closed => {
                        shared.end(State::Lost);
                        false
                    }
                    PumpEnd::Stalled => true,
                }
            }
        };
        if stalled {
            break;
        }
    }
    // Stalled: disconnect, so that the group sees this process go (PROCDOWN) instead of
    // keeping a member that no longer receives; the queued events can still be dispatched.
    tracing::warn!("CPG handle fell {EVENT_QUEUE_MAX} events behind dispatch: disconnected");
    shared.end(State::Lost);
    drop(client);
    while let Some(Msg::Call(_, reply)) = calls.recv().await {
        let _ = reply.send(Err(ClientError::Closed));
    }
}

async fn perform(client: &Client, op: Op) -> Reply {
    match op {
        Op::Join(group, pid) => client.join(&group, pid).await.map(|()| Answer::Done),
        Op::Leave(group) => client.leave(&group).await.map(|()| Answer::Done),
        Op::Mcast(guarantee, payload) => client.send(guarantee, payload).await.map(|()| Answer::Done),
        Op::Membership(group) => client.membership(&group).await.map(Answer::Members),
        Op::Groups => client.groups().await.map(Answer::Groups),
    }
}

fn group_bytes(group: &str) -> Result<Vec<u8>> {
    if group.len() > GROUP_NAME_MAX {
        return Err(CsError::CsErrNameTooLong);
    }
    Ok(group.as_bytes().to_vec())
}

fn group_string(group: &GroupName) -> String {
    String::from_utf8_lossy(group.as_bytes()).into_owned()
}

/// Open a CPG connection to the local daemon (socket `$TOTEM_SOCKET`, else
/// `/run/totem/totem.sock`). `context` is returned by [`context_get`]. Release the handle
/// with [`finalize`] (or drop it).
///
/// Errors: `CsErrInvalidParam` for `ModelNone`; `CsErrLibrary` if the daemon cannot be
/// reached; `CsErrAccess` if the socket may not be opened.
pub fn initialize(model_data: &ModelData, context: u64) -> Result<Handle> {
    initialize_at(&crate::client::socket_path(None), model_data, context)
}

/// [`initialize`] with the daemon's socket path (a Totem addition).
pub fn initialize_at(socket: &Path, model_data: &ModelData, context: u64) -> Result<Handle> {
    let ModelData::ModelV1(md) = model_data else {
        return Err(CsError::CsErrInvalidParam);
    };
    let flags = ConnFlags { deliver_initial_totem_conf: md.flags == Model1Flags::DeliverInitialTotemConf };
    let (wake_rd, wake_wr) = UnixStream::pair().map_err(|_| CsError::CsErrNoResources)?;
    // Never block on the wake-up pair: the queue lock is held while it is touched.
    wake_rd.set_nonblocking(true).map_err(|_| CsError::CsErrNoResources)?;
    wake_wr.set_nonblocking(true).map_err(|_| CsError::CsErrNoResources)?;
    let shared = Arc::new(Shared {
        queue: Mutex::new(Queue { events: VecDeque::new(), state: State::Open, signalled: false }),
        ready: Condvar::new(),
        wake_rd,
        wake_wr,
    });
    let (calls, node_id, worker) = start_worker(socket.to_path_buf(), flags, shared.clone())?;
    let id = NEXT_HANDLE.fetch_add(1, Ordering::Relaxed);
    let conn = Conn {
        calls,
        shared,
        node_id,
        context: AtomicU64::new(context),
        flow_control: AtomicBool::new(false),
        worker: Mutex::new(Some(worker)),
    };
    lock(&HANDLES).insert(id, Arc::new(conn));
    Ok(Handle { id, model_data: *model_data, clone: false })
}

/// Close the connection: a joined group sees this process leave (PROCDOWN, as when a
/// Corosync client finalizes without leaving). Every copy of the handle becomes bad; a
/// [`dispatch`] waiting on another thread returns `Ok`.
pub fn finalize(handle: &Handle) -> Result<()> {
    let conn = lock(&HANDLES).remove(&handle.id).ok_or(CsError::CsErrBadHandle)?;
    conn.shared.end(State::Finalized);
    let _ = conn.calls.send(Msg::Stop);
    let worker = lock(&conn.worker).take();
    if let Some(worker) = worker {
        // The worker never calls finalize, so this cannot wait on itself.
        let _ = worker.join();
    }
    Ok(())
}

/// A descriptor to poll (for reading) in an event loop: readable while callbacks are
/// waiting for [`dispatch`], or once the daemon went away. It stays owned by the handle:
/// do not read from it or close it; it is valid until [`finalize`].
pub fn fd_get(handle: &Handle) -> Result<i32> {
    Ok(conn(handle)?.shared.wake_rd.as_raw_fd())
}

/// Run the callbacks of pending events, as [`DispatchFlags`] says, on this thread.
///
/// Returns `CsErrTryAgain` for `OneNonblocking` when nothing is pending, `CsErrLibrary`
/// once the daemon went away (after what was already received), `Ok` if the handle is
/// finalized while waiting, and `CsErrBadHandle` if it already was.
pub fn dispatch(handle: &Handle, flags: DispatchFlags) -> Result<()> {
    let conn = conn(handle)?;
    let (wait, many, nothing) = match flags {
        DispatchFlags::One => (true, false, Ok(())),
        DispatchFlags::OneNonblocking => (false, false, Err(CsError::CsErrTryAgain)),
        DispatchFlags::All => (false, true, Ok(())),
        DispatchFlags::Blocking => (true, true, Ok(())),
    };
    loop {
        match conn.shared.pop(wait) {
            Popped::Event(e) => {
                run_callback(handle, e);
                if !many {
                    return Ok(());
                }
            }
            Popped::Empty => return nothing,
            Popped::Lost => return Err(CsError::CsErrLibrary),
            Popped::Finalized => return Ok(()),
        }
    }
}

fn run_callback(handle: &Handle, event: EventKind) {
    let ModelData::ModelV1(md) = handle.model_data else { return };
    match event {
        EventKind::Deliver { group, sender, payload, .. } => {
            if let Some(cb) = md.deliver_fn {
                cb(
                    handle,
                    group_string(&group),
                    NodeId::from(sender.node),
                    sender.pid,
                    &payload,
                    payload.len(),
                );
            }
        }
        EventKind::Confchg { group, members, left, joined } => {
            if let Some(cb) = md.confchg_fn {
                let members = members.iter().map(|p| Address::of(p, Reason::Undefined)).collect();
                let left = left.iter().map(|(p, r)| Address::of(p, Reason::from(*r))).collect();
                let joined = joined.iter().map(|(p, r)| Address::of(p, Reason::from(*r))).collect();
                cb(handle, &group_string(&group), members, left, joined);
            }
        }
        EventKind::TotemConfchg { ring_id, members, .. } => {
            if let Some(cb) = md.totem_confchg_fn {
                let ring = RingId { nodeid: NodeId::from(ring_id.rep), seq: ring_id.seq };
                cb(handle, ring, members.into_iter().map(NodeId::from).collect());
            }
        }
    }
}

/// Join `group` as this process (pid `std::process::id()`). One group per handle:
/// `CsErrExist` if already joined, `CsErrBusy` while the previous leave completes,
/// `CsErrNameTooLong` above [`GROUP_NAME_MAX`] bytes.
pub fn join(handle: &Handle, group: &str) -> Result<()> {
    let group = group_bytes(group)?;
    conn(handle)?.done(Op::Join(group, std::process::id()))
}

/// Leave `group` (the joined one: else `CsErrNotExist`). The handle's own leave view
/// change ends its membership; it may then join again.
pub fn leave(handle: &Handle, group: &str) -> Result<()> {
    let group = group_bytes(group)?;
    conn(handle)?.done(Op::Leave(group))
}

/// The id of the node the handle is connected to.
pub fn local_get(handle: &Handle) -> Result<NodeId> {
    Ok(NodeId::from(conn(handle)?.node_id))
}

/// The members of any group, as the local node knows them (reason `Undefined`); empty for
/// a group nobody joined.
pub fn membership_get(handle: &Handle, group: &str) -> Result<Vec<Address>> {
    let group = group_bytes(group)?;
    match conn(handle)?.call(Op::Membership(group))? {
        Answer::Members(m) => Ok(m.iter().map(|p| Address::of(p, Reason::Undefined)).collect()),
        _ => Err(CsError::CsErrMessageError),
    }
}

/// The largest message [`mcast_joined`] sends: [`CPG_MESSAGE_MAX`]. Every message up to
/// it is one Totem message (never fragmented).
pub fn max_atomic_msgsize_get(handle: &Handle) -> Result<u32> {
    conn(handle)?;
    Ok(CPG_MESSAGE_MAX as u32)
}

/// The handle's context value (set by [`initialize`] or [`context_set`]); callbacks use
/// it to find their state.
pub fn context_get(handle: &Handle) -> Result<u64> {
    Ok(conn(handle)?.context.load(Ordering::Relaxed))
}

pub fn context_set(handle: &Handle, context: u64) -> Result<()> {
    conn(handle)?.context.store(context, Ordering::Relaxed);
    Ok(())
}

/// True while sending is flow controlled: from an [`mcast_joined`] that returned
/// `CsErrTryAgain` until one succeeds.
pub fn flow_control_state_get(handle: &Handle) -> Result<bool> {
    Ok(conn(handle)?.flow_control.load(Ordering::Relaxed))
}

/// Multicast `msg` to the joined group. `CsErrTryAgain`: nothing was sent (a
/// synchronization is running or the send queue is full), retry later; `CsErrNotExist`:
/// not joined; `CsErrTooBig`: over [`max_atomic_msgsize_get`].
pub fn mcast_joined(handle: &Handle, guarantee: Guarantee, msg: &[u8]) -> Result<()> {
    let conn = conn(handle)?;
    if msg.len() > CPG_MESSAGE_MAX {
        return Err(CsError::CsErrTooBig);
    }
    let r = conn.done(Op::Mcast(guarantee.to_totem(), msg.to_vec()));
    match r {
        Ok(()) => conn.flow_control.store(false, Ordering::Relaxed),
        Err(CsError::CsErrTryAgain) => conn.flow_control.store(true, Ordering::Relaxed),
        Err(_) => {}
    }
    r
}

/// What [`CpgIterStart`] lists.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum CpgIterType {
    /// Each group once (nodeid and pid 0).
    NameOnly = 1,
    /// The members of the named group.
    OneGroup = 2,
    /// Every member of every group.
    All = 3,
}

/// The groups (and members) of the cluster as the local node knows them, taken when the
/// iterator is created; use it with `for`.
#[derive(Debug)]
pub struct CpgIterStart {
    items: Vec<CpgIter>,
}

/// One entry of a [`CpgIterStart`].
#[derive(Clone, PartialEq, Eq)]
pub struct CpgIter {
    pub group: String,
    pub nodeid: NodeId,
    pub pid: u32,
}

impl fmt::Debug for CpgIter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[group: {}, nodeid: {}, pid: {}]", self.group, self.nodeid, self.pid)
    }
}

/// The iterator of a [`CpgIterStart`].
#[derive(Debug)]
pub struct CpgIntoIter {
    items: std::vec::IntoIter<CpgIter>,
}

impl Iterator for CpgIntoIter {
    type Item = CpgIter;

    fn next(&mut self) -> Option<CpgIter> {
        self.items.next()
    }
}

impl CpgIterStart {
    /// List groups as `iter_type` says; `group` is used only by `OneGroup`.
    pub fn new(cpg_handle: &Handle, group: &str, iter_type: CpgIterType) -> Result<CpgIterStart> {
        let wanted = match iter_type {
            CpgIterType::OneGroup => Some(group_bytes(group)?),
            _ => None,
        };
        let Answer::Groups(groups) = conn(cpg_handle)?.call(Op::Groups)? else {
            return Err(CsError::CsErrMessageError);
        };
        let mut items = Vec::new();
        for (name, members) in groups {
            if wanted.as_deref().is_some_and(|w| w != name.as_bytes()) {
                continue;
            }
            let group = group_string(&name);
            if iter_type == CpgIterType::NameOnly {
                items.push(CpgIter { group, nodeid: NodeId::from(0), pid: 0 });
                continue;
            }
            for p in members {
                items.push(CpgIter { group: group.clone(), nodeid: NodeId::from(p.node), pid: p.pid });
            }
        }
        Ok(CpgIterStart { items })
    }
}

impl IntoIterator for CpgIterStart {
    type Item = CpgIter;
    type IntoIter = CpgIntoIter;

    fn into_iter(self) -> CpgIntoIter {
        CpgIntoIter { items: self.items.into_iter() }
    }
}
