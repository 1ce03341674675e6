//! The SAM client library: what a supervised application links to.
//!
//! Blocking (plain `std`), because the applications SAM keeps alive need not use tokio.
//! Every method takes `&self`; a [`Sam`] may be shared between threads (`Arc<Sam>`), and
//! calls are serialized internally.
//!
//! ```no_run
//! use totem_node::sam::{Sam, SamError};
//!
//! fn main() -> Result<(), SamError> {
//!     let sam = Sam::initialize()?; // the channel named by TOTEM_SAM_SOCKET
//!     let instance = sam.register()?; // 1 for the first run, +1 per restart
//!     let saved = sam.data_restore()?; // whatever an earlier instance stored
//!     sam.start()?; // from now on a missed health check is a failure
//!     loop {
//!         // ... do one piece of work ...
//!         sam.hc_send()?;
//!         # break;
//!     }
//!     sam.stop()?;
//!     # let _ = (instance, saved);
//!     Ok(())
//! }
//! ```
//!
//! # States
//!
//! | call | valid in | effect |
//! |---|---|---|
//! | [`Sam::initialize`] / [`Sam::connect`] | - | opens the channel -> `Initialized` |
//! | [`Sam::register`] | `Initialized` | returns the instance id -> `Registered` |
//! | [`Sam::start`] | `Registered` | health checking on (quorum policy: waits for quorum) -> `Started` |
//! | [`Sam::stop`] | `Started` | health checking off -> `Registered` |
//! | [`Sam::hc_send`] | `Started` | one health check |
//! | [`Sam::hc_callback_register`] | `Registered` | event-driven checking (see there) |
//! | [`Sam::warn_signal_set`] | `Initialized`, `Registered`, `Started` | first signal of the recovery sequence |
//! | [`Sam::data_store`], [`Sam::data_clear`], [`Sam::data_restore`], [`Sam::data_restore_into`], [`Sam::data_getsize`] | `Initialized`, `Registered`, `Started` | the data the supervisor keeps across restarts |
//! | [`Sam::mark_failed`] | `Registered`, `Started` | immediate SIGKILL, no restart |
//! | [`Sam::finalize`] | `Initialized`, `Registered`, `Started` | stops checking if started, closes the channel -> `Finalized` |
//!
//! A call outside its states returns [`SamError::BadHandle`] (Corosync's `CS_ERR_BAD_HANDLE`)
//! and changes nothing: the state check happens before anything is sent. After
//! [`Sam::finalize`] every call returns `BadHandle`, and the supervisor accepts no second
//! channel from the same instance.

use crate::sam::proto::{
    self, ChildMsg, DATA_MAX, PROTOCOL_VERSION, Policy, ProtoError, SOCKET_ENV, SupervisorMsg,
};
use bytes::Bytes;
use nix::sys::signal::Signal;
use std::convert::Infallible;
use std::fmt;
use std::io;
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Where a [`Sam`] handle is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SamState {
    /// Connected to the supervisor, not registered yet.
    Initialized,
    /// Registered; health checking is off.
    Registered,
    /// Health checking is on: send a health check at least once per interval.
    Started,
    /// Finalized (or marked failed): every call fails.
    Finalized,
}

impl fmt::Display for SamState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SamState::Initialized => "initialized",
            SamState::Registered => "registered",
            SamState::Started => "started",
            SamState::Finalized => "finalized",
        })
    }
}

/// Errors of the SAM client library.
#[derive(Debug, thiserror::Error)]
pub enum SamError {
    /// The call is not valid in the handle's state (Corosync's `CS_ERR_BAD_HANDLE`). Nothing
    /// was sent and nothing changed.
    #[error("{call} is not valid in state {state}")]
    BadHandle { call: &'static str, state: SamState },
    /// A parameter is not acceptable (Corosync's `CS_ERR_INVALID_PARAM`). Nothing changed.
    #[error("invalid parameter: {0}")]
    InvalidParam(String),
    /// The data is larger than the supervisor keeps (Corosync's `CS_ERR_TOO_BIG`).
    #[error("data of {size} bytes is over the limit of {max} bytes")]
    TooBig { size: usize, max: usize },
    /// The process was not started by a SAM supervisor.
    #[error("not supervised: {SOCKET_ENV} is not set (start the application with `totemctl sam run`)")]
    NotSupervised,
    #[error("cannot reach the SAM supervisor at {path}: {source}")]
    Connect { path: PathBuf, source: io::Error },
    /// The supervisor refused the request.
    #[error("the SAM supervisor refused: {0}")]
    Refused(ProtoError),
    /// The channel to the supervisor broke (it died, or closed the channel).
    #[error("the channel to the SAM supervisor failed: {0}")]
    Io(#[from] io::Error),
    /// The supervisor answered something this library does not expect.
    #[error("unexpected reply from the SAM supervisor")]
    Protocol,
}

/// What the supervisor said about itself when the channel opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Supervision {
    /// The instance id the supervisor gave this process (returned by [`Sam::register`]).
    pub instance_id: u32,
    /// The health-check interval (zero: only the process's death is watched).
    pub interval: Duration,
    pub policy: Policy,
    /// Whether [`Sam::start`] waits for quorum and losing quorum is a failure.
    pub quorum: bool,
}

type Callback = Box<dyn FnMut() -> Result<(), String> + Send>;

/// Commands to the event-driven checking thread (Corosync's `cb_rpipe`).
enum CbCmd {
    Start,
    Stop,
    Quit,
}

struct CbThread {
    commands: mpsc::Sender<CbCmd>,
    callback: Arc<Mutex<Callback>>,
}

/// The part shared with the checking thread: only the channel.
#[derive(Debug)]
struct Channel {
    stream: Mutex<UnixStream>,
}

impl Channel {
    fn lock(&self) -> MutexGuard<'_, UnixStream> {
        // A panic while holding the lock leaves the stream usable: recover it.
        self.stream.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn send(&self, msg: &ChildMsg) -> Result<(), SamError> {
        proto::write_blocking(&mut *self.lock(), msg)?;
        Ok(())
    }

    /// One request, one reply, under one lock so that replies cannot be mixed up.
    fn call(&self, msg: &ChildMsg) -> Result<SupervisorMsg, SamError> {
        let mut stream = self.lock();
        if let Err(e) = proto::write_blocking(&mut *stream, msg) {
            // A supervisor that answered and closed (a refusal) may still have left its
            // answer to read; that says more than the broken pipe.
            return match proto::read_blocking(&mut *stream) {
                Ok(Some(frame)) => Ok(proto::decode(&frame)?),
                _ => Err(e.into()),
            };
        }
        let frame = proto::read_blocking(&mut *stream)?.ok_or_else(|| {
            io::Error::new(io::ErrorKind::UnexpectedEof, "the supervisor closed the channel")
        })?;
        Ok(proto::decode(&frame)?)
    }
}

struct Local {
    state: SamState,
    cb: Option<CbThread>,
}

/// A handle on the SAM supervisor of this process.
///
/// Dropping a started handle without [`Sam::stop`] closes the channel, so health checks stop
/// arriving and the supervisor recovers (warning, then SIGKILL): a handle that goes away
/// by accident is treated like a hung application, not like a clean stop.
pub struct Sam {
    channel: Arc<Channel>,
    supervision: Supervision,
    /// Held for the whole of each call: calls are serialized and a state check cannot be
    /// overtaken by another thread's transition.
    local: Mutex<Local>,
}

impl fmt::Debug for Sam {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sam").field("supervision", &self.supervision).field("state", &self.state()).finish()
    }
}

fn expect_ok(reply: SupervisorMsg) -> Result<(), SamError> {
    match reply {
        SupervisorMsg::Ok => Ok(()),
        SupervisorMsg::Error(e) => Err(SamError::Refused(e)),
        _ => Err(SamError::Protocol),
    }
}

impl Sam {
    /// Open the channel the supervisor named in `TOTEM_SAM_SOCKET`.
    pub fn initialize() -> Result<Sam, SamError> {
        let path = std::env::var_os(SOCKET_ENV).ok_or(SamError::NotSupervised)?;
        Sam::connect(Path::new(&path))
    }

    /// Open the channel at an explicit path (what [`Sam::initialize`] does with the
    /// environment's path).
    pub fn connect(path: &Path) -> Result<Sam, SamError> {
        let stream = UnixStream::connect(path)
            .map_err(|source| SamError::Connect { path: path.to_path_buf(), source })?;
        Sam::from_stream(stream)
    }

    /// Say hello on an already connected stream.
    fn from_stream(stream: UnixStream) -> Result<Sam, SamError> {
        let channel = Channel { stream: Mutex::new(stream) };
        let hello = ChildMsg::Hello { version: PROTOCOL_VERSION, pid: std::process::id() };
        let supervision = match channel.call(&hello)? {
            SupervisorMsg::Welcome { instance_id, interval_ms, policy, quorum } => {
                Supervision { instance_id, interval: Duration::from_millis(interval_ms), policy, quorum }
            }
            SupervisorMsg::Error(e) => return Err(SamError::Refused(e)),
            _ => return Err(SamError::Protocol),
        };
        Ok(Sam {
            channel: Arc::new(channel),
            supervision,
            local: Mutex::new(Local { state: SamState::Initialized, cb: None }),
        })
    }

    fn local(&self) -> MutexGuard<'_, Local> {
        self.local.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Lock the local state and check that `call` is valid in it.
    fn enter(&self, call: &'static str, valid: &[SamState]) -> Result<MutexGuard<'_, Local>, SamError> {
        let local = self.local();
        if valid.contains(&local.state) {
            Ok(local)
        } else {
            Err(SamError::BadHandle { call, state: local.state })
        }
    }

    /// The handle's state.
    pub fn state(&self) -> SamState {
        self.local().state
    }

    /// The supervisor's settings, as it announced them when the channel opened.
    pub fn supervision(&self) -> Supervision {
        self.supervision
    }

    /// Take part in supervision; returns the instance id (1 for the first child, +1 for
    /// each restart). Valid in `Initialized`.
    pub fn register(&self) -> Result<u32, SamError> {
        let mut local = self.enter("register", &[SamState::Initialized])?;
        match self.channel.call(&ChildMsg::Register)? {
            SupervisorMsg::Registered { instance_id } => {
                local.state = SamState::Registered;
                Ok(instance_id)
            }
            SupervisorMsg::Error(e) => Err(SamError::Refused(e)),
            _ => Err(SamError::Protocol),
        }
    }

    /// Start health checking. With the quorum policy this blocks until the local node is
    /// quorate. Valid in `Registered`.
    pub fn start(&self) -> Result<(), SamError> {
        let mut local = self.enter("start", &[SamState::Registered])?;
        expect_ok(self.channel.call(&ChildMsg::Start)?)?;
        local.state = SamState::Started;
        if let Some(cb) = &local.cb {
            let _ = cb.commands.send(CbCmd::Start);
        }
        Ok(())
    }

    /// Stop health checking. Valid in `Started`.
    pub fn stop(&self) -> Result<(), SamError> {
        let mut local = self.enter("stop", &[SamState::Started])?;
        // Quiet the checking thread first, so that it sends nothing after the Stop.
        if let Some(cb) = &local.cb {
            let _ = cb.commands.send(CbCmd::Stop);
        }
        expect_ok(self.channel.call(&ChildMsg::Stop)?)?;
        local.state = SamState::Registered;
        Ok(())
    }

    /// Send one health check. Valid in `Started`.
    pub fn hc_send(&self) -> Result<(), SamError> {
        let _local = self.enter("hc_send", &[SamState::Started])?;
        self.channel.send(&ChildMsg::Heartbeat)
    }

    /// Switch to event-driven checking: a thread of this library sends a health check every
    /// interval/4 while started and calls `callback` after every 4th successful one (so about
    /// once per interval). The first `Err` from the callback stops the heartbeats for good,
    /// so the supervisor's recovery sequence follows (warning after one interval, SIGKILL
    /// after two). A later call replaces the callback. Valid in `Registered`;
    /// `InvalidParam` if the interval is zero (there is nothing to time).
    pub fn hc_callback_register<F, E>(&self, mut callback: F) -> Result<(), SamError>
    where
        F: FnMut() -> Result<(), E> + Send + 'static,
        E: fmt::Display,
    {
        let mut local = self.enter("hc_callback_register", &[SamState::Registered])?;
        if self.supervision.interval.is_zero() {
            return Err(SamError::InvalidParam("event-driven checking needs a non-zero interval".into()));
        }
        let boxed: Callback = Box::new(move || callback().map_err(|e| e.to_string()));
        if let Some(cb) = &local.cb {
            *cb.callback.lock().unwrap_or_else(|e| e.into_inner()) = boxed;
            return Ok(());
        }
        let callback = Arc::new(Mutex::new(boxed));
        let (commands, rx) = mpsc::channel();
        let period = (self.supervision.interval / 4).max(Duration::from_millis(1));
        let channel = self.channel.clone();
        let cb = callback.clone();
        std::thread::Builder::new()
            .name("sam-hc".into())
            .spawn(move || checking_thread(channel, cb, rx, period))
            .map_err(SamError::Io)?;
        local.cb = Some(CbThread { commands, callback });
        Ok(())
    }

    /// Set the signal the supervisor sends first when it recovers from a failure (default
    /// SIGTERM; SIGKILL means no warning). Valid in `Initialized`, `Registered`, `Started`.
    pub fn warn_signal_set(&self, signal: Signal) -> Result<(), SamError> {
        let _local = self.enter("warn_signal_set", &ANY_LIVE)?;
        expect_ok(self.channel.call(&ChildMsg::WarnSignalSet(signal as i32))?)
    }

    /// Hand the supervisor a copy of `data`, replacing what it kept; later instances get it
    /// back byte for byte with [`Sam::data_restore`]. Empty data deletes. Valid in
    /// `Initialized`, `Registered`, `Started`. `TooBig` over [`DATA_MAX`] bytes.
    pub fn data_store(&self, data: &[u8]) -> Result<(), SamError> {
        let _local = self.enter("data_store", &ANY_LIVE)?;
        if data.len() > DATA_MAX {
            return Err(SamError::TooBig { size: data.len(), max: DATA_MAX });
        }
        expect_ok(self.channel.call(&ChildMsg::DataStore(Bytes::copy_from_slice(data)))?)
    }

    /// Delete the stored data (Corosync: `sam_data_store(NULL, 0)`).
    pub fn data_clear(&self) -> Result<(), SamError> {
        let _local = self.enter("data_clear", &ANY_LIVE)?;
        expect_ok(self.channel.call(&ChildMsg::DataStore(Bytes::new()))?)
    }

    /// The size of the stored data (0 if none).
    pub fn data_getsize(&self) -> Result<usize, SamError> {
        let _local = self.enter("data_getsize", &ANY_LIVE)?;
        match self.channel.call(&ChildMsg::DataSize)? {
            SupervisorMsg::Size(n) => usize::try_from(n).map_err(|_| SamError::Protocol),
            SupervisorMsg::Error(e) => Err(SamError::Refused(e)),
            _ => Err(SamError::Protocol),
        }
    }

    /// A copy of the stored data (empty if none).
    pub fn data_restore(&self) -> Result<Vec<u8>, SamError> {
        let _local = self.enter("data_restore", &ANY_LIVE)?;
        self.fetch_data()
    }

    /// Copy the stored data into `buf`; returns its length. `InvalidParam` (and `buf`
    /// untouched) if `buf` is shorter than the data, as Corosync's `sam_data_restore`.
    pub fn data_restore_into(&self, buf: &mut [u8]) -> Result<usize, SamError> {
        let _local = self.enter("data_restore_into", &ANY_LIVE)?;
        let data = self.fetch_data()?;
        let have = buf.len();
        let dst = buf.get_mut(..data.len()).ok_or_else(|| {
            SamError::InvalidParam(format!("buffer of {have} bytes for {} bytes of data", data.len()))
        })?;
        dst.copy_from_slice(&data);
        Ok(data.len())
    }

    fn fetch_data(&self) -> Result<Vec<u8>, SamError> {
        match self.channel.call(&ChildMsg::DataGet)? {
            SupervisorMsg::Data(d) => Ok(d.to_vec()),
            SupervisorMsg::Error(e) => Err(SamError::Refused(e)),
            _ => Err(SamError::Protocol),
        }
    }

    /// Report this instance as failed: the supervisor kills it with SIGKILL at once, marks
    /// its state "failed" and quits instead of restarting, whatever the policy. Valid in
    /// `Registered` and `Started`. On success this never returns (the process dies); it
    /// returns an error if the request could not be sent or the supervisor closed the channel
    /// without killing this process.
    pub fn mark_failed(&self) -> Result<Infallible, SamError> {
        let mut local = self.enter("mark_failed", &[SamState::Registered, SamState::Started])?;
        if let Some(cb) = local.cb.take() {
            let _ = cb.commands.send(CbCmd::Quit);
        }
        local.state = SamState::Finalized;
        let mut stream = self.channel.lock();
        proto::write_blocking(&mut *stream, &ChildMsg::MarkFailed)?;
        // Wait for the SIGKILL: the supervisor answers nothing, so this read ends only if the
        // channel closes with this process still alive.
        loop {
            if proto::read_blocking(&mut *stream)?.is_none() {
                return Err(SamError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the supervisor closed the channel instead of killing this process",
                )));
            }
        }
    }

    /// Leave supervision: stop checking if started, close the channel. The supervisor then
    /// only waits for this process to exit, and exits with its status. Every later call
    /// returns `BadHandle`.
    pub fn finalize(&self) -> Result<(), SamError> {
        let mut local = self.enter("finalize", &ANY_LIVE)?;
        if let Some(cb) = local.cb.take() {
            let _ = cb.commands.send(CbCmd::Quit);
        }
        let stopped = if local.state == SamState::Started {
            self.channel.call(&ChildMsg::Stop).and_then(expect_ok)
        } else {
            Ok(())
        };
        local.state = SamState::Finalized;
        let _ = self.channel.lock().shutdown(Shutdown::Both);
        stopped
    }
}

impl Drop for Sam {
    fn drop(&mut self) {
        // The checking thread holds the channel: tell it to end, or it would keep the
        // connection (and the heartbeats) alive after the handle is gone.
        if let Some(cb) = self.local().cb.take() {
            let _ = cb.commands.send(CbCmd::Quit);
        }
    }
}

const ANY_LIVE: [SamState; 3] = [SamState::Initialized, SamState::Registered, SamState::Started];

/// The event-driven checking thread (Corosync's `hc_callback_thread`): heartbeats every
/// `period` while started, the callback after every 4th successful one; after the callback
/// fails it sends nothing more, for good.
fn checking_thread(
    channel: Arc<Channel>,
    callback: Arc<Mutex<Callback>>,
    commands: mpsc::Receiver<CbCmd>,
    period: Duration,
) {
    let mut started = false;
    let mut failed = false;
    let mut sent = 0u32;
    loop {
        let cmd = if started && !failed {
            commands.recv_timeout(period)
        } else {
            commands.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected)
        };
        match cmd {
            Ok(CbCmd::Start) => started = true,
            Ok(CbCmd::Stop) => started = false,
            Ok(CbCmd::Quit) | Err(mpsc::RecvTimeoutError::Disconnected) => return,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if channel.send(&ChildMsg::Heartbeat).is_ok() {
                    sent += 1;
                }
                if sent >= 4 {
                    sent = 0;
                    let mut cb = callback.lock().unwrap_or_else(|e| e.into_inner());
                    if let Err(why) = (*cb)() {
                        tracing::warn!("SAM health-check callback failed ({why}): heartbeats stop");
                        failed = true;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The client's state machine against a fake supervisor on a socket pair: every call
    //! outside its states fails with BadHandle and puts nothing on the wire (SAM-7).
    use super::*;
    use std::sync::mpsc::Receiver;

    /// A fake supervisor: answers every request like the real one would and reports each
    /// message it received.
    fn fake(interval_ms: u64) -> Result<(Sam, Receiver<ChildMsg>), SamError> {
        let (ours, theirs) = UnixStream::pair()?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut s = theirs;
            let mut data = Bytes::new();
            while let Ok(Some(frame)) = proto::read_blocking(&mut s) {
                let Ok(msg) = proto::decode::<ChildMsg>(&frame) else { return };
                let reply = match &msg {
                    ChildMsg::Hello { .. } => Some(SupervisorMsg::Welcome {
                        instance_id: 1,
                        interval_ms,
                        policy: Policy::Restart,
                        quorum: false,
                    }),
                    ChildMsg::Register => Some(SupervisorMsg::Registered { instance_id: 1 }),
                    ChildMsg::DataStore(d) => {
                        data = d.clone();
                        Some(SupervisorMsg::Ok)
                    }
                    ChildMsg::DataGet => Some(SupervisorMsg::Data(data.clone())),
                    ChildMsg::DataSize => Some(SupervisorMsg::Size(data.len() as u64)),
                    ChildMsg::Heartbeat | ChildMsg::MarkFailed => None,
                    _ => Some(SupervisorMsg::Ok),
                };
                let _ = tx.send(msg);
                if let Some(r) = reply
                    && proto::write_blocking(&mut s, &r).is_err()
                {
                    return;
                }
            }
        });
        let sam = Sam::from_stream(ours)?;
        Ok((sam, rx))
    }

    /// Goal: a refusal that arrives (and the channel closes) before the hello is written
    /// reads as the refusal, not as a broken pipe.
    #[test]
    fn sam_refusal_before_hello_is_a_refusal() -> Result<(), SamError> {
        let (ours, mut theirs) = UnixStream::pair()?;
        proto::write_blocking(&mut theirs, &SupervisorMsg::Error(ProtoError::Refused("second".into())))?;
        drop(theirs);
        match Sam::from_stream(ours) {
            Err(SamError::Refused(ProtoError::Refused(why))) => assert_eq!(why, "second"),
            other => panic!("not a refusal: {other:?}"),
        }
        Ok(())
    }

    fn bad(r: Result<impl fmt::Debug, SamError>) -> bool {
        matches!(r, Err(SamError::BadHandle { .. }))
    }

    /// Goal: SAM-7 on the client side. Method: walk every state, make every invalid call,
    /// and check it fails with BadHandle, leaves the state as it was and sends nothing (the
    /// fake supervisor's log has only the valid calls).
    #[test]
    fn sam_api_state_machine() -> Result<(), SamError> {
        let (sam, log) = fake(100)?;
        assert!(matches!(log.recv(), Ok(ChildMsg::Hello { .. })));
        assert_eq!(sam.state(), SamState::Initialized);
        assert!(bad(sam.start()));
        assert!(bad(sam.stop()));
        assert!(bad(sam.hc_send()));
        assert!(bad(sam.mark_failed()));
        assert!(bad(sam.hc_callback_register(|| Ok::<(), String>(()))));
        assert_eq!(sam.state(), SamState::Initialized);
        sam.data_store(b"abc")?;
        assert_eq!(sam.data_getsize()?, 3);

        assert_eq!(sam.register()?, 1);
        assert!(bad(sam.register()));
        assert!(bad(sam.stop()));
        assert!(bad(sam.hc_send()));
        assert_eq!(sam.state(), SamState::Registered);
        let mut small = [0u8; 2];
        assert!(matches!(sam.data_restore_into(&mut small), Err(SamError::InvalidParam(_))));
        assert_eq!(small, [0, 0]);

        sam.start()?;
        assert!(bad(sam.start()));
        assert!(bad(sam.register()));
        assert!(bad(sam.hc_callback_register(|| Ok::<(), String>(()))));
        sam.hc_send()?;
        sam.stop()?;
        sam.warn_signal_set(Signal::SIGUSR1)?;
        sam.finalize()?;
        assert_eq!(sam.state(), SamState::Finalized);
        assert!(bad(sam.register()));
        assert!(bad(sam.start()));
        assert!(bad(sam.stop()));
        assert!(bad(sam.hc_send()));
        assert!(bad(sam.data_store(b"x")));
        assert!(bad(sam.data_clear()));
        assert!(bad(sam.data_restore()));
        assert!(bad(sam.data_getsize()));
        assert!(bad(sam.warn_signal_set(Signal::SIGTERM)));
        assert!(bad(sam.mark_failed()));
        assert!(bad(sam.finalize()));

        let got: Vec<ChildMsg> = log.try_iter().collect();
        let names: Vec<&str> = got
            .iter()
            .map(|m| match m {
                ChildMsg::DataStore(_) => "store",
                ChildMsg::DataSize => "size",
                ChildMsg::DataGet => "get",
                ChildMsg::Register => "register",
                ChildMsg::Start => "start",
                ChildMsg::Heartbeat => "hb",
                ChildMsg::Stop => "stop",
                ChildMsg::WarnSignalSet(_) => "warn",
                _ => "other",
            })
            .collect();
        assert_eq!(names, ["store", "size", "register", "get", "start", "hb", "stop", "warn"]);
        Ok(())
    }

    /// Goal: event-driven checking needs an interval; a TooBig store sends nothing.
    #[test]
    fn sam_invalid_params() -> Result<(), SamError> {
        let (sam, log) = fake(0)?;
        sam.register()?;
        assert!(matches!(sam.hc_callback_register(|| Ok::<(), String>(())), Err(SamError::InvalidParam(_))));
        let huge = vec![0u8; DATA_MAX + 1];
        assert!(matches!(sam.data_store(&huge), Err(SamError::TooBig { .. })));
        sam.finalize()?;
        let got: Vec<ChildMsg> = log.try_iter().collect();
        assert_eq!(got.len(), 2, "hello and register only: {got:?}");
        Ok(())
    }

    /// Goal: the checking thread sends heartbeats every interval/4 while started, calls the
    /// callback every 4th, and stops for good once the callback fails.
    #[test]
    fn sam_callback_thread_rhythm() -> Result<(), SamError> {
        let (sam, log) = fake(80)?;
        sam.register()?;
        let calls = Arc::new(Mutex::new(0u32));
        let c = calls.clone();
        sam.hc_callback_register(move || {
            let mut n = c.lock().unwrap_or_else(|e| e.into_inner());
            *n += 1;
            if *n >= 2 { Err("unhealthy") } else { Ok(()) }
        })?;
        sam.start()?;
        std::thread::sleep(Duration::from_millis(600));
        let beats = log.try_iter().filter(|m| *m == ChildMsg::Heartbeat).count();
        assert_eq!(beats, 8, "two callbacks, four heartbeats each, then silence");
        assert_eq!(*calls.lock().unwrap_or_else(|e| e.into_inner()), 2);
        sam.stop()?;
        Ok(())
    }
}
