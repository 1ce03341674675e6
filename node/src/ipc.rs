//! Local IPC: the daemon's Unix socket for CPG clients and admin tools.
//!
//! Framing: every message is `len: u32 LE` then `len` bytes of postcard. A client sends
//! [`ClientMsg`]s, each with a request id; the daemon answers each with a
//! [`DaemonMsg::Reply`] of the same id and pushes [`DaemonMsg::Event`]s at any time.
//! [`Request::Send`] is the exception: a multicast within the connection's send window,
//! never answered; its credit comes back as an event (see [`crate::window`]). The session
//! hands every run of consecutive sends it has already read to the loop at once.
//!
//! Isolation: every client has a bounded event queue; a client that stops reading fills it
//! and is disconnected (its processes leave their groups with PROCDOWN); a client that sends
//! an oversized or undecodable frame is disconnected at once. Neither stalls the daemon's
//! loop or other clients: the loop only ever `try_send`s to a client.

use crate::events::{EventReceiver, QueueLimit};
use crate::runtime::{ClientEvent, Handle, NodeStatus};
use crate::window::WindowSize;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::io;
use std::path::{Path, PathBuf};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;
use totem_core::Guarantee;
use totem_core::cpg::{ConnFlags, ConnId, CpgError, EventKind, GroupName, Process};

/// The largest frame either side accepts: a 1 MiB message plus headroom.
pub const FRAME_MAX: usize = 1024 * 1024 + 16 * 1024;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Open the CPG connection of this socket (once, first).
    Hello {
        flags: ConnFlags,
    },
    Join {
        group: Vec<u8>,
        pid: u32,
    },
    Leave {
        group: Vec<u8>,
    },
    /// One multicast, answered with the daemon's verdict.
    Mcast {
        guarantee: Guarantee,
        payload: Bytes,
    },
    /// One multicast within the send window, not answered (see the module docs).
    Send {
        guarantee: Guarantee,
        payload: Bytes,
    },
    Membership {
        group: Vec<u8>,
    },
    Groups,
    Status,
    /// Re-read the configuration, as SIGHUP does (root or the daemon's user only).
    Reload,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientMsg {
    pub id: u64,
    pub request: Request,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Reply {
    Welcome {
        node_id: u32,
        /// The connection's send window for [`Request::Send`].
        window: WindowSize,
    },
    Done(Result<(), CpgError>),
    Members(Result<Vec<Process>, CpgError>),
    Groups(Vec<(GroupName, Vec<Process>)>),
    Status(Box<NodeStatus>),
    /// The request is not valid here (e.g. CPG calls before Hello).
    Refused(String),
    /// The daemon will reload; the outcome is in its log.
    ReloadRequested,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum DaemonMsg {
    Reply { id: u64, reply: Reply },
    Event(ClientEvent),
}

/// A frame from the daemon, decoded; a delivery's payload is a slice of `frame`, not a
/// copy (every delivered byte is copied once less on the client's side).
pub fn decode_daemon_msg(frame: &Bytes) -> Result<DaemonMsg, postcard::Error> {
    if let Some(tags) = deliver_tags()
        && let Some(rest) = frame.strip_prefix(tags)
        && let Ok(((group, sender, guarantee, len), payload)) =
            postcard::take_from_bytes::<(GroupName, Process, Guarantee, usize)>(rest)
        && payload.len() == len
    {
        let payload = frame.slice_ref(payload);
        return Ok(DaemonMsg::Event(ClientEvent::Cpg(EventKind::Deliver {
            group,
            sender,
            guarantee,
            payload,
        })));
    }
    postcard::from_bytes(frame)
}

/// The bytes postcard writes for "a delivery event" before the delivery's fields (the
/// variant indices of `DaemonMsg::Event`, `ClientEvent::Cpg` and `EventKind::Deliver`):
/// a delivery encodes as these, then its group, sender, guarantee and payload in that
/// order (a test holds this).
fn deliver_tags() -> Option<&'static [u8]> {
    static TAGS: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let tags = TAGS.get_or_init(|| {
        let Ok(group) = GroupName::new(b"g") else { return Vec::new() };
        let (sender, guarantee) = (Process { node: totem_core::NodeId(1), pid: 2 }, Guarantee::Agreed);
        let event = DaemonMsg::Event(ClientEvent::Cpg(EventKind::Deliver {
            group: group.clone(),
            sender,
            guarantee,
            payload: Bytes::new(),
        }));
        let whole = postcard::to_allocvec(&event).unwrap_or_default();
        let fields = postcard::to_allocvec(&(group, sender, guarantee, 0usize)).unwrap_or_default();
        whole.strip_suffix(fields.as_slice()).map(<[u8]>::to_vec).unwrap_or_default()
    });
    // Empty only if the encoding were not as described: then no frame takes this path.
    (!tags.is_empty()).then_some(tags.as_slice())
}

/// Read one frame; `Ok(None)` at a clean end of stream.
pub async fn read_frame<R: AsyncReadExt + Unpin>(r: &mut R) -> io::Result<Option<Vec<u8>>> {
    crate::frame::read_async(r, FRAME_MAX).await
}

/// The next frame if the reader's buffer already holds all of it (no waiting, no read).
pub fn buffered_frame<R: tokio::io::AsyncRead + Unpin>(
    r: &mut tokio::io::BufReader<R>,
) -> io::Result<Option<Vec<u8>>> {
    let Some(body) = crate::frame::complete_body(r.buffer(), FRAME_MAX)? else { return Ok(None) };
    let frame = body.to_vec();
    r.consume(4 + frame.len());
    Ok(Some(frame))
}

/// Write one frame (see [`encode_frame`]).
pub async fn write_frame<W: AsyncWriteExt + Unpin, T: Serialize>(w: &mut W, msg: &T) -> io::Result<()> {
    let mut frame = Vec::new();
    encode_frame(msg, &mut frame)?;
    w.write_all(&frame).await
}

/// Append `msg` as one frame to `out` (several frames go out in one write).
/// A message over [`FRAME_MAX`] is refused here, before the peer would drop the
/// connection for it.
pub fn encode_frame<T: Serialize>(msg: &T, out: &mut Vec<u8>) -> io::Result<()> {
    crate::frame::encode_into(msg, FRAME_MAX, out)
}

/// Read buffer of a client session: one read takes in every request already queued.
pub const READ_BUFFER: usize = 64 * 1024;
/// A write batch stops growing past this many bytes (replies and events queued at the
/// same time go out in one write).
const WRITE_BATCH_BYTES: usize = 256 * 1024;

/// Who may connect besides root and the daemon's own user.
#[derive(Clone, Debug, Default)]
pub struct Access {
    pub allowed_gid: Option<u32>,
}

/// The Unix socket server.
#[derive(Debug)]
pub struct Server {
    listener: UnixListener,
    path: PathBuf,
    reload: Option<mpsc::Sender<()>>,
}

impl Server {
    /// Bind `path` (a stale socket file from an earlier run is replaced).
    pub fn bind(path: &Path) -> io::Result<Server> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        if path.exists() {
            std::fs::remove_file(path)?;
        }
        Ok(Server { listener: UnixListener::bind(path)?, path: path.to_path_buf(), reload: None })
    }

    /// Answer [`Request::Reload`] by sending on `reload` (whoever reads it reloads, as on
    /// SIGHUP). Without it the server refuses reloads. A full channel means a reload is
    /// already pending, which covers this request too.
    pub fn set_reload(&mut self, reload: mpsc::Sender<()>) {
        self.reload = Some(reload);
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accept clients until the runtime stops.
    pub async fn serve(self, handle: Handle, access: Access, client_queue: QueueLimit) {
        let me = unsafe_free_uid();
        loop {
            let (stream, _) = match self.listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("IPC accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            // Members of the allowed group may use CPG and query; only root and the
            // daemon's own user may administer (reload).
            let admin = match stream.peer_cred() {
                Ok(cred) => {
                    let admin = cred.uid() == 0 || Some(cred.uid()) == me;
                    let in_group = access.allowed_gid.is_some_and(|g| g == cred.gid());
                    if !admin && !in_group {
                        tracing::warn!("IPC: refused a client of uid {} gid {}", cred.uid(), cred.gid());
                        continue;
                    }
                    admin
                }
                Err(e) => {
                    tracing::warn!("IPC: no peer credentials ({e}): refused");
                    continue;
                }
            };
            let reload = match &self.reload {
                Some(tx) if admin => Ok(tx.clone()),
                Some(_) => Err("reload: only root or the daemon's user may reload"),
                None => Err("reload: this daemon cannot reload"),
            };
            tokio::spawn(client_session(stream, handle.clone(), client_queue, reload));
        }
    }
}

/// Why a session's read ended, said for what it is: a malformed frame (the client's fault:
/// a warning) or a connection the client dropped, which a client that exits with unread
/// events does (a reset: not worth a warning).
fn read_failed(e: &std::io::Error) {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, InvalidData};
    match e.kind() {
        InvalidData => tracing::warn!("IPC client sent a bad frame: {e}; disconnected"),
        ConnectionReset | ConnectionAborted | BrokenPipe => tracing::debug!("IPC client went away: {e}"),
        _ => tracing::info!("IPC client read failed: {e}; disconnected"),
    }
}

/// The daemon's own uid, read without `unsafe` from /proc (None if unavailable: then only
/// root and the configured group may connect).
fn unsafe_free_uid() -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

/// How long one write to a client may block before the client counts as stalled.
const WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// One client: requests in, replies and events out.
/// `reload`: where this client's reload requests go, or why it may not make any.
async fn client_session(
    stream: UnixStream,
    handle: Handle,
    client_queue: QueueLimit,
    reload: Result<mpsc::Sender<()>, &'static str>,
) {
    let (rd, wr) = stream.into_split();
    let mut rd = tokio::io::BufReader::with_capacity(READ_BUFFER, rd);
    let (reply_tx, reply_rx) = mpsc::channel::<DaemonMsg>(64);
    let (events_tx, events_rx) = tokio::sync::oneshot::channel::<EventReceiver>();
    let mut writer = tokio::spawn(session_writer(wr, reply_rx, events_rx));
    let mut events_tx = Some(events_tx);
    let mut conn = None;
    // Consecutive sends already read, handed to the loop together.
    let mut sends: Vec<(Guarantee, Bytes)> = Vec::new();
    'session: loop {
        let frame = tokio::select! {
            // The writer ended: the client stalled, the runtime dropped it, or it closed.
            _ = &mut writer => break,
            f = read_frame(&mut rd) => f,
        };
        let mut frame = match frame {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                read_failed(&e);
                break;
            }
        };
        // This frame, then every complete frame the buffer already holds.
        loop {
            let Ok(ClientMsg { id, request }) = postcard::from_bytes::<ClientMsg>(&frame) else {
                tracing::warn!("IPC client sent an undecodable request; disconnected");
                break 'session;
            };
            match (request, conn) {
                (Request::Send { guarantee, payload }, Some(_)) => sends.push((guarantee, payload)),
                (request, _) => {
                    if let Some(c) = conn
                        && !sends.is_empty()
                        && handle.send(c, std::mem::take(&mut sends)).await.is_err()
                    {
                        break 'session;
                    }
                    let Some(reply) =
                        answer(request, &mut conn, &handle, client_queue, &reload, &mut events_tx).await
                    else {
                        break 'session;
                    };
                    // Bounded: a client that sends requests but never reads replies stalls
                    // here only itself, and the writer's timeout ends the session.
                    if reply_tx.send(DaemonMsg::Reply { id, reply }).await.is_err() {
                        break 'session;
                    }
                }
            }
            frame = match buffered_frame(&mut rd) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    read_failed(&e);
                    break 'session;
                }
            };
        }
        if let Some(c) = conn
            && !sends.is_empty()
            && handle.send(c, std::mem::take(&mut sends)).await.is_err()
        {
            break;
        }
    }
    if let Some(c) = conn {
        if !sends.is_empty() {
            let _ = handle.send(c, sends).await;
        }
        handle.disconnect(c).await;
    }
    writer.abort();
}

/// The reply to one request (None: the runtime stopped, end the session).
async fn answer(
    request: Request,
    conn: &mut Option<ConnId>,
    handle: &Handle,
    client_queue: QueueLimit,
    reload: &Result<mpsc::Sender<()>, &'static str>,
    events_tx: &mut Option<tokio::sync::oneshot::Sender<EventReceiver>>,
) -> Option<Reply> {
    let reply = match (request, *conn) {
        (Request::Hello { flags }, None) => {
            let (c, events) = handle.connect(flags, client_queue).await.ok()?;
            *conn = Some(c);
            if let Some(tx) = events_tx.take() {
                let _ = tx.send(events);
            }
            Reply::Welcome { node_id: handle.node_id().0, window: handle.window() }
        }
        (Request::Hello { .. }, Some(_)) => Reply::Refused("already connected".into()),
        (Request::Status, _) => Reply::Status(Box::new(handle.status().await.ok()?)),
        (Request::Groups, _) => Reply::Groups(handle.groups().await.ok()?),
        (Request::Membership { group }, _) => Reply::Members(handle.membership(&group).await.ok()?),
        (Request::Reload, _) => match reload {
            Ok(tx) => match tx.try_send(()) {
                Ok(()) | Err(mpsc::error::TrySendError::Full(())) => Reply::ReloadRequested,
                Err(mpsc::error::TrySendError::Closed(())) => {
                    Reply::Refused("reload: the daemon no longer accepts reloads".into())
                }
            },
            Err(why) => Reply::Refused((*why).into()),
        },
        (_, None) => Reply::Refused("send Hello first".into()),
        (Request::Join { group, pid }, Some(c)) => Reply::Done(handle.join(c, &group, pid).await.ok()?),
        (Request::Leave { group }, Some(c)) => Reply::Done(handle.leave(c, &group).await.ok()?),
        (Request::Mcast { guarantee, payload }, Some(c)) => {
            Reply::Done(handle.mcast(c, guarantee, payload).await.ok()?)
        }
        // Handled by the caller (batched); unreachable with a connection.
        (Request::Send { .. }, Some(_)) => return None,
    };
    Some(reply)
}

/// Writes replies and events to the client. Ends when a write blocks longer than
/// [`WRITE_TIMEOUT`], when the runtime closes the event queue (it dropped a stalled
/// client), or on a write error.
async fn session_writer(
    mut wr: tokio::net::unix::OwnedWriteHalf,
    mut replies: mpsc::Receiver<DaemonMsg>,
    events: tokio::sync::oneshot::Receiver<EventReceiver>,
) {
    let mut events = events;
    let mut batch = WriteBatch::default();
    let mut awaiting_conn = true;
    let mut stream: Option<EventReceiver> = None;
    loop {
        let msg = tokio::select! {
            r = replies.recv() => match r { Some(m) => m, None => return },
            rx = &mut events, if awaiting_conn => {
                awaiting_conn = false;
                // Err: the session ended without opening a connection.
                if let Ok(rx) = rx {
                    stream = Some(rx);
                }
                continue;
            },
            e = next_event(&mut stream), if stream.is_some() => match e {
                Some(e) => DaemonMsg::Event(e),
                None => return,
            },
        };
        // Everything else already queued goes out in the same write (bounded by
        // WRITE_BATCH_BYTES): a frame of deliveries costs one write, not one per message.
        // Credit is summed into one message at the end of the batch.
        batch.clear();
        let mut credit = Credit::default();
        let mut next = Some(msg);
        while let Some(msg) = next.take() {
            match msg {
                DaemonMsg::Event(ClientEvent::Credit { msgs, bytes, failed }) => {
                    credit.add(msgs, bytes, failed)
                }
                msg => {
                    if batch.push(&msg).is_err() {
                        return;
                    }
                }
            }
            if batch.len() >= WRITE_BATCH_BYTES {
                break;
            }
            next = match replies.try_recv() {
                Ok(m) => Some(m),
                Err(_) => stream.as_mut().and_then(EventReceiver::try_recv).map(DaemonMsg::Event),
            };
        }
        if let Some(event) = credit.take()
            && batch.push(&DaemonMsg::Event(event)).is_err()
        {
            return;
        }
        match tokio::time::timeout(WRITE_TIMEOUT, batch.write_to(&mut wr)).await {
            Ok(Ok(())) => {}
            _ => return,
        }
    }
}

/// Delivered payloads at least this long go to the socket from where they are (a
/// `writev` entry of their own) instead of being copied into the batch.
const BORROW_PAYLOAD: usize = 4096;

/// One write's worth of frames: encoded bytes, with the payloads of big deliveries left
/// where they are and handed to the kernel in place (one copy less per delivered byte).
#[derive(Default)]
struct WriteBatch {
    encoded: Vec<u8>,
    /// Payloads to write after `encoded[..at]` (in order of `at`).
    borrowed: Vec<(usize, Bytes)>,
}

impl WriteBatch {
    fn clear(&mut self) {
        self.encoded.clear();
        self.borrowed.clear();
    }

    /// Bytes the batch writes.
    fn len(&self) -> usize {
        self.encoded.len() + self.borrowed.iter().map(|(_, p)| p.len()).sum::<usize>()
    }

    fn push(&mut self, msg: &DaemonMsg) -> io::Result<()> {
        let start = self.encoded.len();
        let big = match msg {
            DaemonMsg::Event(ClientEvent::Cpg(EventKind::Deliver { group, sender, guarantee, payload }))
                if payload.len() >= BORROW_PAYLOAD =>
            {
                deliver_tags().map(|tags| (tags, (group, sender, guarantee, payload.len()), payload))
            }
            _ => None,
        };
        let Some((tags, head, payload)) = big else {
            return encode_frame(msg, &mut self.encoded);
        };
        // A delivery's frame: its length, the delivery tags, its fields with the payload's
        // length, then the payload, the same bytes `encode_frame` writes (see
        // [`deliver_tags`]; a test below holds this).
        self.encoded.extend_from_slice(&[0; 4]);
        self.encoded.extend_from_slice(tags);
        let encoded = postcard::to_extend(&head, std::mem::take(&mut self.encoded));
        self.encoded = encoded.map_err(|e| io::Error::other(e.to_string()))?;
        let body = self.encoded.len() - start - 4 + payload.len();
        match u32::try_from(body).ok().filter(|&b| b as usize <= FRAME_MAX) {
            Some(b) => self.encoded[start..start + 4].copy_from_slice(&b.to_le_bytes()),
            None => {
                self.encoded.truncate(start);
                return Err(io::Error::new(io::ErrorKind::InvalidInput, "delivery over the frame limit"));
            }
        }
        self.borrowed.push((self.encoded.len(), payload.clone()));
        Ok(())
    }

    /// Everything in order, with as few `writev` calls as the socket allows.
    async fn write_to<W: AsyncWriteExt + Unpin>(&self, w: &mut W) -> io::Result<()> {
        let mut slices = Vec::with_capacity(2 * self.borrowed.len() + 1);
        let mut from = 0;
        for (at, payload) in &self.borrowed {
            slices.push(io::IoSlice::new(&self.encoded[from..*at]));
            slices.push(io::IoSlice::new(payload));
            from = *at;
        }
        slices.push(io::IoSlice::new(&self.encoded[from..]));
        slices.retain(|s| !s.is_empty());
        let mut rest = &mut slices[..];
        // Bounded: every round writes at least one byte, or fails.
        while !rest.is_empty() {
            let n = w.write_vectored(rest).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            io::IoSlice::advance_slices(&mut rest, n);
        }
        Ok(())
    }
}

/// Credit gathered over one write batch.
#[derive(Default)]
struct Credit {
    msgs: u32,
    bytes: u64,
    failed: Option<CpgError>,
}

impl Credit {
    fn add(&mut self, msgs: u32, bytes: u64, failed: Option<CpgError>) {
        self.msgs = self.msgs.saturating_add(msgs);
        self.bytes = self.bytes.saturating_add(bytes);
        self.failed = failed.or(self.failed.take());
    }

    fn take(&mut self) -> Option<ClientEvent> {
        let c = std::mem::take(self);
        (c.msgs > 0).then_some(ClientEvent::Credit { msgs: c.msgs, bytes: c.bytes, failed: c.failed })
    }
}

async fn next_event(stream: &mut Option<EventReceiver>) -> Option<ClientEvent> {
    match stream {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use totem_core::NodeId;

    /// A socket that takes at most 7 bytes per write, so that writes stop mid-slice.
    #[derive(Default)]
    struct Trickle(Vec<u8>);

    impl tokio::io::AsyncWrite for Trickle {
        fn poll_write(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
            let n = buf.len().min(7);
            self.0.extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }

        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[io::IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(7 - n);
                self.0.extend_from_slice(&b[..take]);
                n += take;
                if n == 7 {
                    break;
                }
            }
            Poll::Ready(Ok(n))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn deliver(len: usize) -> DaemonMsg {
        DaemonMsg::Event(ClientEvent::Cpg(EventKind::Deliver {
            group: GroupName::new(b"bench").unwrap(),
            sender: Process { node: NodeId(3), pid: 4242 },
            guarantee: Guarantee::Agreed,
            payload: Bytes::from((0..len).map(|i| (i * 7) as u8).collect::<Vec<u8>>()),
        }))
    }

    // Goal: the client's decode of a frame equals postcard's for every kind of message, and
    // a delivery's payload is a slice of the frame (no copy); a cut frame is an error.
    #[test]
    fn deliveries_decode_in_place_and_the_same() {
        let msgs = vec![
            deliver(0),
            deliver(1),
            deliver(300),
            deliver(70_000),
            DaemonMsg::Event(ClientEvent::Cpg(EventKind::Deliver {
                group: GroupName::new(&[0xff; 100]).unwrap(),
                sender: Process { node: NodeId(u32::MAX), pid: u32::MAX },
                guarantee: Guarantee::Safe,
                payload: Bytes::from_static(b"payload"),
            })),
            DaemonMsg::Event(ClientEvent::Credit { msgs: 3, bytes: 99, failed: None }),
            DaemonMsg::Reply { id: 9, reply: Reply::Done(Ok(())) },
        ];
        for m in &msgs {
            let mut framed = Vec::new();
            encode_frame(m, &mut framed).unwrap();
            let frame = Bytes::from(framed[4..].to_vec());
            let ours = decode_daemon_msg(&frame).unwrap();
            let theirs: DaemonMsg = postcard::from_bytes(&frame).unwrap();
            assert_eq!(postcard::to_allocvec(&ours).unwrap(), postcard::to_allocvec(&theirs).unwrap());
            if let DaemonMsg::Event(ClientEvent::Cpg(EventKind::Deliver { payload, .. })) = &ours
                && !payload.is_empty()
            {
                let inside = frame.as_ptr_range();
                assert!(inside.contains(&payload.as_ptr()), "the payload is a slice of the frame");
            }
            if frame.len() > 1 {
                assert!(decode_daemon_msg(&frame.slice(..frame.len() - 1)).is_err());
            }
        }
    }

    // Goal: a batch with borrowed payloads (below and above the threshold, with one- to
    // three-byte length prefixes) writes exactly the bytes of encoding every frame whole,
    // however the socket splits the writes; and it counts them right.
    #[tokio::test]
    async fn borrowed_payloads_write_the_same_bytes() {
        let msgs = vec![
            deliver(0),
            deliver(BORROW_PAYLOAD - 1),
            deliver(BORROW_PAYLOAD),
            DaemonMsg::Event(ClientEvent::Credit { msgs: 3, bytes: 99, failed: None }),
            deliver(70_000),
            deliver(BORROW_PAYLOAD + 1),
            DaemonMsg::Reply { id: 9, reply: Reply::Done(Ok(())) },
        ];
        let mut whole = Vec::new();
        let mut batch = WriteBatch::default();
        for m in &msgs {
            encode_frame(m, &mut whole).unwrap();
            batch.push(m).unwrap();
        }
        assert_eq!(batch.borrowed.len(), 3);
        assert_eq!(batch.len(), whole.len());
        let mut out = Trickle::default();
        batch.write_to(&mut out).await.unwrap();
        assert_eq!(out.0, whole);
        // Reused: a cleared batch holds nothing of the last one.
        batch.clear();
        batch.push(&msgs[4]).unwrap();
        let mut out = Trickle::default();
        batch.write_to(&mut out).await.unwrap();
        let mut one = Vec::new();
        encode_frame(&msgs[4], &mut one).unwrap();
        assert_eq!(out.0, one);
    }
}
