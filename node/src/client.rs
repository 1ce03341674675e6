//! The CPG client library (async face): talk to the local `totemd` over its Unix socket.
//!
//! ```no_run
//! # async fn demo() -> Result<(), totem_node::client::ClientError> {
//! use totem_node::client::{Client, Event};
//! use totem_core::Guarantee;
//!
//! let client = Client::connect(&totem_node::client::socket_path(None)).await?;
//! client.join(b"chat", std::process::id()).await?;
//! client.send_retrying(Guarantee::Agreed, b"hello".to_vec()).await?;
//! while let Some(event) = client.next_event().await {
//!     if let Event::Deliver { sender, payload, .. } = event {
//!         println!("{sender:?}: {}", String::from_utf8_lossy(&payload));
//!     }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Replies and events share the socket, in the daemon's order, and at most 1024 unread
//! events are buffered here: a call awaited while nobody reads events can wait behind them.
//! Read events concurrently with calls ([`Client::next_event`] takes `&self`), as
//! `examples/chat.rs` does; a client that stops reading altogether is eventually
//! disconnected by the daemon.
//!
//! Sending costs no round trip: [`Client::send`] writes the message and returns as soon as
//! it is on its way, within the connection's send window (see [`crate::window`]). The
//! daemon takes the messages into the ring in order, also across a synchronization, and
//! hands back credit as it does. Flow control is explicit: when the window is full (the
//! daemon has not yet taken earlier messages, because its queue is full or a
//! synchronization runs), [`Client::send`] returns [`ClientError::Cpg`] with
//! [`CpgError::TryAgain`] and nothing was sent; [`Client::send_retrying`] waits for credit
//! instead. A join, leave or exit takes effect after every message sent before it.

use crate::ipc::{ClientMsg, DaemonMsg, Reply, Request, decode_daemon_msg, read_frame, write_frame};
use crate::runtime::{ClientEvent, NodeStatus};
use crate::window::{SendWindow, WindowSize};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::UnixStream;
use tokio::sync::{Mutex, Notify, mpsc, oneshot};
use totem_core::Guarantee;
use totem_core::cpg::{CPG_MESSAGE_MAX, GROUP_NAME_MAX};
pub use totem_core::cpg::{ConnFlags, CpgError, EventKind as Event, GroupName, Process, Reason};

/// Where the daemon's socket is when nothing says otherwise.
pub const DEFAULT_SOCKET: &str = "/run/totem/totem.sock";

/// The socket path: the explicit one, else `$TOTEM_SOCKET`, else [`DEFAULT_SOCKET`].
pub fn socket_path(explicit: Option<&Path>) -> PathBuf {
    match explicit {
        Some(p) => p.to_path_buf(),
        None => std::env::var_os("TOTEM_SOCKET").map(PathBuf::from).unwrap_or_else(|| DEFAULT_SOCKET.into()),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach totemd at {path}: {source} (is the daemon running? set --socket or TOTEM_SOCKET)")]
    Connect { path: PathBuf, source: std::io::Error },
    #[error("the connection to totemd closed")]
    Closed,
    #[error(transparent)]
    Cpg(#[from] CpgError),
    #[error("totemd refused the request: {0}")]
    Refused(String),
    #[error("unexpected reply from totemd")]
    Protocol,
}

type Pending = Arc<std::sync::Mutex<BTreeMap<u64, oneshot::Sender<Reply>>>>;

/// The send side's state, shared with the reader task (which returns credit).
#[derive(Debug, Default)]
struct Sending {
    window: SendWindow,
    /// The daemon refused a sent message (a misuse the client could not see): reported by
    /// the next send.
    refused: Option<CpgError>,
    /// The connection is in a group (joined, and no leave since): sends are allowed.
    joined: bool,
    closed: bool,
}

#[derive(Debug, Default)]
struct SendState {
    state: std::sync::Mutex<Sending>,
    /// Woken when credit comes back or the connection closes.
    credit: Notify,
}

impl SendState {
    fn lock(&self) -> std::sync::MutexGuard<'_, Sending> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A connection to the local daemon: one CPG connection (at most one group at a time).
#[derive(Debug)]
pub struct Client {
    writer: Mutex<tokio::net::unix::OwnedWriteHalf>,
    pending: Pending,
    next_id: AtomicU64,
    /// Behind a lock so that [`Client::next_event`] takes `&self` and can run alongside a
    /// call (see the module docs).
    events: Mutex<mpsc::Receiver<Event>>,
    sending: Arc<SendState>,
    node_id: u32,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Client {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Client {
    /// Connect with default flags.
    pub async fn connect(path: &Path) -> Result<Client, ClientError> {
        Client::connect_with(path, ConnFlags::default()).await
    }

    pub async fn connect_with(path: &Path, flags: ConnFlags) -> Result<Client, ClientError> {
        let mut client = Client::open(path).await?;
        match client.call(Request::Hello { flags }).await? {
            Reply::Welcome { node_id, window } => {
                client.node_id = node_id;
                client.sending.lock().window = SendWindow::new(window);
                Ok(client)
            }
            Reply::Refused(why) => Err(ClientError::Refused(why)),
            _ => Err(ClientError::Protocol),
        }
    }

    /// A connection for queries only (status, groups, membership): no CPG connection.
    pub async fn admin(path: &Path) -> Result<Client, ClientError> {
        Client::open(path).await
    }

    async fn open(path: &Path) -> Result<Client, ClientError> {
        let stream = UnixStream::connect(path)
            .await
            .map_err(|source| ClientError::Connect { path: path.to_path_buf(), source })?;
        let (rd, wr) = stream.into_split();
        // Buffered: one read takes in every reply and event already queued.
        let mut rd = tokio::io::BufReader::with_capacity(crate::ipc::READ_BUFFER, rd);
        let pending: Pending = Arc::default();
        let (tx, events) = mpsc::channel(1024);
        let p = pending.clone();
        let sending = Arc::new(SendState::default());
        let s = sending.clone();
        let reader = tokio::spawn(async move {
            while let Ok(Some(frame)) = read_frame(&mut rd).await {
                match decode_daemon_msg(&Bytes::from(frame)) {
                    Ok(DaemonMsg::Reply { id, reply }) => {
                        let waiter = p.lock().ok().and_then(|mut m| m.remove(&id));
                        if let Some(w) = waiter {
                            let _ = w.send(reply);
                        }
                    }
                    Ok(DaemonMsg::Event(ClientEvent::Cpg(e))) => {
                        if tx.send(e).await.is_err() {
                            break;
                        }
                    }
                    Ok(DaemonMsg::Event(ClientEvent::Credit { msgs, bytes, failed })) => {
                        {
                            let mut st = s.lock();
                            st.window.credit(msgs, bytes);
                            if failed.is_some() {
                                st.refused = failed;
                            }
                        }
                        s.credit.notify_waiters();
                    }
                    Err(_) => break,
                }
            }
            // Wake every waiter: the connection is gone.
            if let Ok(mut m) = p.lock() {
                m.clear();
            }
            s.lock().closed = true;
            s.credit.notify_waiters();
        });
        Ok(Client {
            writer: Mutex::new(wr),
            pending,
            next_id: AtomicU64::new(1),
            events: Mutex::new(events),
            sending,
            node_id: 0,
            reader,
        })
    }

    async fn call(&self, request: Request) -> Result<Reply, ClientError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().map_err(|_| ClientError::Closed)?.insert(id, tx);
        {
            let mut w = self.writer.lock().await;
            write_frame(&mut *w, &ClientMsg { id, request }).await.map_err(|_| ClientError::Closed)?;
        }
        rx.await.map_err(|_| ClientError::Closed)
    }

    async fn done(&self, request: Request) -> Result<(), ClientError> {
        match self.call(request).await? {
            Reply::Done(r) => Ok(r?),
            Reply::Refused(why) => Err(ClientError::Refused(why)),
            _ => Err(ClientError::Protocol),
        }
    }

    /// The id of the node this client is connected to.
    pub fn local_node_id(&self) -> u32 {
        self.node_id
    }

    /// Join `group` as process `pid` (usually `std::process::id()`).
    pub async fn join(&self, group: &[u8], pid: u32) -> Result<(), ClientError> {
        check_group(group)?;
        self.done(Request::Join { group: group.to_vec(), pid }).await?;
        self.sending.lock().joined = true;
        Ok(())
    }

    pub async fn leave(&self, group: &[u8]) -> Result<(), ClientError> {
        check_group(group)?;
        self.done(Request::Leave { group: group.to_vec() }).await?;
        self.sending.lock().joined = false;
        Ok(())
    }

    /// Multicast to the joined group: `Ok` once the message is on its way to the daemon
    /// (which takes it into the ring after every earlier one). `Err(Cpg(TryAgain))`: the
    /// send window is full, nothing was sent, retry later. `Err(Cpg(NotExist))`: not in a
    /// group. A message the daemon refused after an `Ok` (a misuse this library cannot
    /// see, such as a second client joined under the same pid) is reported by the next call.
    pub async fn send(&self, guarantee: Guarantee, payload: impl Into<Bytes>) -> Result<(), ClientError> {
        let payload = payload.into();
        // Refused here: a frame over the IPC limit would make the daemon drop the connection.
        if payload.len() > CPG_MESSAGE_MAX {
            return Err(CpgError::TooBig { len: payload.len(), max: CPG_MESSAGE_MAX }.into());
        }
        {
            let mut st = self.sending.lock();
            if st.closed {
                return Err(ClientError::Closed);
            }
            if let Some(e) = st.refused.take() {
                return Err(e.into());
            }
            if !st.joined {
                return Err(CpgError::NotExist.into());
            }
            if !st.window.take(payload.len()) {
                return Err(CpgError::TryAgain.into());
            }
        }
        let mut w = self.writer.lock().await;
        write_frame(&mut *w, &ClientMsg { id: 0, request: Request::Send { guarantee, payload } })
            .await
            .map_err(|_| ClientError::Closed)
    }

    /// [`Client::send`], waiting for credit while the window is full (bounded: gives up
    /// with TryAgain after 30 s without credit).
    pub async fn send_retrying(
        &self,
        guarantee: Guarantee,
        payload: impl Into<Bytes>,
    ) -> Result<(), ClientError> {
        let payload = payload.into();
        loop {
            let credit = self.sending.credit.notified();
            tokio::pin!(credit);
            credit.as_mut().enable();
            match self.send(guarantee, payload.clone()).await {
                Err(ClientError::Cpg(CpgError::TryAgain)) => {
                    if tokio::time::timeout(SEND_WAIT_MAX, credit).await.is_err() {
                        return Err(ClientError::Cpg(CpgError::TryAgain));
                    }
                }
                other => return other,
            }
        }
    }

    /// Multicast and wait for the daemon's verdict on this one message (a round trip; a
    /// full queue or a running synchronization is `TryAgain` at once). [`Client::send`] is
    /// the fast way; this one is for callers that want the daemon's own answer.
    pub async fn send_confirmed(
        &self,
        guarantee: Guarantee,
        payload: impl Into<Bytes>,
    ) -> Result<(), ClientError> {
        let payload = payload.into();
        if payload.len() > CPG_MESSAGE_MAX {
            return Err(CpgError::TooBig { len: payload.len(), max: CPG_MESSAGE_MAX }.into());
        }
        self.done(Request::Mcast { guarantee, payload }).await
    }

    /// Wait until the daemon has taken every message sent so far into the ring's queue
    /// (bounded: TryAgain after 30 s without progress).
    pub async fn flush(&self) -> Result<(), ClientError> {
        loop {
            let credit = self.sending.credit.notified();
            tokio::pin!(credit);
            credit.as_mut().enable();
            {
                let st = self.sending.lock();
                if st.window.is_idle() {
                    return Ok(());
                }
                if st.closed {
                    return Err(ClientError::Closed);
                }
            }
            if tokio::time::timeout(SEND_WAIT_MAX, credit).await.is_err() {
                return Err(ClientError::Cpg(CpgError::TryAgain));
            }
        }
    }

    /// The send window the daemon granted.
    pub fn window(&self) -> WindowSize {
        self.sending.lock().window.size()
    }

    /// The members of any group as the local node knows them.
    pub async fn membership(&self, group: &[u8]) -> Result<Vec<Process>, ClientError> {
        check_group(group)?;
        match self.call(Request::Membership { group: group.to_vec() }).await? {
            Reply::Members(r) => Ok(r?),
            _ => Err(ClientError::Protocol),
        }
    }

    pub async fn groups(&self) -> Result<Vec<(GroupName, Vec<Process>)>, ClientError> {
        match self.call(Request::Groups).await? {
            Reply::Groups(g) => Ok(g),
            _ => Err(ClientError::Protocol),
        }
    }

    /// Ask the daemon to re-read its configuration, as SIGHUP does (root or the daemon's
    /// user only). Returns once the request is queued; the outcome is in the daemon's log.
    pub async fn reload(&self) -> Result<(), ClientError> {
        match self.call(Request::Reload).await? {
            Reply::ReloadRequested => Ok(()),
            Reply::Refused(why) => Err(ClientError::Refused(why)),
            _ => Err(ClientError::Protocol),
        }
    }

    pub async fn status(&self) -> Result<NodeStatus, ClientError> {
        match self.call(Request::Status).await? {
            Reply::Status(s) => Ok(*s),
            _ => Err(ClientError::Protocol),
        }
    }

    /// The next event (deliveries, view changes, Totem view changes), in order; None once
    /// the daemon closed the connection.
    ///
    /// Takes `&self`, so one task (or one branch of a `select!`/`join!`) can read events while
    /// another awaits a call. Cancel-safe: an event is never lost by dropping the future.
    pub async fn next_event(&self) -> Option<Event> {
        self.events.lock().await.recv().await
    }

    /// The next event if one has already arrived (never waits). `None` also when another
    /// task is reading events at this moment.
    pub fn try_next_event(&self) -> Option<Event> {
        self.events.try_lock().ok()?.try_recv().ok()
    }
}

/// How long [`Client::send_retrying`] and [`Client::flush`] wait for credit.
const SEND_WAIT_MAX: Duration = Duration::from_secs(30);

/// The daemon would refuse a longer name too; checking here also keeps an absurdly long one
/// from overflowing the IPC frame limit, which would cost the connection.
fn check_group(group: &[u8]) -> Result<(), ClientError> {
    if group.len() > GROUP_NAME_MAX {
        return Err(CpgError::NameTooLong { len: group.len() }.into());
    }
    Ok(())
}
