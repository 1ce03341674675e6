//! The SAM supervisor: runs the application, watches its health checks, recovers.
//!
//! One tokio task owns everything (the child, its channel, the timers, the quorum view), so
//! there is no shared state: every input becomes an `Event` and is handled in order.
//!
//! Per instance (Corosync `lib/sam.c`, `sam_parent_handler`):
//! - Health checking is off until the child sends Start ("stopped"). With the quorum policy
//!   Start is answered only once the node is quorate ("waiting for quorum").
//! - While checking ("running"), any message from the child restarts the wait. No message
//!   for one interval: the warn signal; no message for another interval: SIGKILL. The
//!   "warned" mark lasts for the instance's life: once warned, the next missed interval
//!   kills.
//! - Losing quorum while running starts the same sequence (warn now, SIGKILL one interval
//!   later, or [`QUORUM_KILL_GRACE`] later when the interval is 0).
//! - The child exits: if checking was off, the supervisor exits with its status. Otherwise
//!   (crash, kill, or exit while running or waiting for quorum) it recovers: with the
//!   restart policy a new instance starts (instance id + 1), with the quit policy the
//!   supervisor exits with the child's status and leaves the state "failed".
//! - mark_failed: immediate SIGKILL, state "failed", exit: no restart whatever the policy.

use crate::sam::proto::{
    self, ChildMsg, DATA_MAX, PROTOCOL_VERSION, Policy, ProtoError, SOCKET_ENV, SupervisorMsg,
};
use crate::sam::quorum::{self, QuorumSource};
use crate::sam::state::{self, RunState, SupervisorStatus};
use bytes::Bytes;
use nix::sys::signal::Signal;
use std::ffi::OsString;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{UnixListener, UnixStream};
use tokio::process::{Child, Command};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// With interval 0 nothing times the child, so after a quorum-loss warning the supervisor
/// waits this long for the child to exit before it sends SIGKILL. (Corosync would wait
/// forever; a node without quorum must not keep its resources running.)
pub const QUORUM_KILL_GRACE: Duration = Duration::from_secs(1);

/// Replies queued for a child that does not read them before its channel is dropped.
const REPLY_QUEUE: usize = 32;

/// Everything `sam run` decides.
#[derive(Clone, Debug)]
pub struct SupervisorConfig {
    /// The application and its arguments.
    pub command: Vec<OsString>,
    /// The health-check interval; zero watches only for the child's death.
    pub interval: Duration,
    pub policy: Policy,
    /// Start waits for quorum; losing it while running is a failure.
    pub quorum: bool,
    /// How often the quorum source is asked.
    pub quorum_poll: Duration,
    /// The first signal of the recovery sequence (the child may change it).
    pub warn_signal: Signal,
    /// Give up (as with the quit policy) once this many restarts have been made.
    pub max_restarts: Option<u32>,
    /// Where the channel socket and the state file live.
    pub dir: PathBuf,
    /// No progress lines on stderr.
    pub quiet: bool,
}

/// How a supervisor ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The status to exit with: the last child's exit code, or 128 + signal if it was killed
    /// (the shell's convention), or 127 if a restart could not be spawned.
    pub exit_code: u8,
    /// Whether the supervisor gave up on a failure (state "failed"), as opposed to the
    /// application ending while not checked.
    pub failed: bool,
    /// The last instance id.
    pub instance_id: u32,
    pub restarts: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("no command to run")]
    NoCommand,
    #[error("cannot use the SAM directory {path}: {source} (set --dir or TOTEM_SAM_DIR)")]
    Dir { path: PathBuf, source: io::Error },
    #[error("cannot listen on {path}: {source}")]
    Bind { path: PathBuf, source: io::Error },
    #[error("cannot start {command}: {source}")]
    Spawn { command: String, source: io::Error },
    #[error("cannot watch the supervisor's signals: {0}")]
    Signals(io::Error),
}

impl SupervisorError {
    /// The exit status `sam run` uses for this error (the shell's 127/126 for a command
    /// that cannot be found or run).
    pub fn exit_code(&self) -> u8 {
        match self {
            SupervisorError::Spawn { source, .. } if source.kind() == io::ErrorKind::NotFound => 127,
            SupervisorError::Spawn { source, .. } if source.kind() == io::ErrorKind::PermissionDenied => 126,
            _ => 1,
        }
    }
}

/// The exit status a supervisor passes on for a child's status.
pub fn exit_code_of(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(c), _) => (c & 0xff) as u8,
        (None, Some(s)) => (128 + (s & 0x7f)) as u8,
        _ => 1,
    }
}

fn describe_exit(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit {c}"),
        (None, Some(s)) => match Signal::try_from(s) {
            Ok(sig) => format!("signal {s} ({})", sig.as_str()),
            Err(_) => format!("signal {s}"),
        },
        _ => "unknown".into(),
    }
}

/// The channel of the current instance.
#[derive(Debug)]
struct Conn {
    id: u64,
    replies: mpsc::Sender<SupervisorMsg>,
    hello_done: bool,
    tasks: [JoinHandle<()>; 2],
}

impl Drop for Conn {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// One run of the application.
#[derive(Debug)]
struct Instance {
    id: u32,
    child: Child,
    pid: u32,
    conn: Option<Conn>,
    /// A channel was attached once: a second one is refused (one per instance, and none after
    /// finalize).
    had_conn: bool,
    registered: bool,
    phase: RunState,
    /// The last message, or the last warning: the health-check wait runs from here.
    wait_from: Instant,
    warned: bool,
    /// When a quorum-loss warning turns into SIGKILL.
    quorum_kill_at: Option<Instant>,
    /// SIGKILL was sent; nothing to time any more.
    killed: bool,
    /// The exit that follows is a failure to recover from.
    recovery: bool,
    mark_failed: bool,
    last_updated: Option<u64>,
    last_health_check: Option<u64>,
}

enum Event {
    Exited(io::Result<ExitStatus>),
    Accepted(io::Result<UnixStream>),
    Frame(u64, Option<ChildMsg>),
    Timer,
    Quorum(Option<bool>),
    Signal(Signal),
}

struct Supervisor {
    cfg: SupervisorConfig,
    me: u32,
    uid: u32,
    socket_path: PathBuf,
    state_path: PathBuf,
    started_at: u64,
    data: Bytes,
    warn_signal: Signal,
    restarts: u32,
    last_exit: Option<String>,
    quorate: Option<bool>,
    inst: Instance,
    next_conn: u64,
    frames_tx: mpsc::Sender<(u64, Option<ChildMsg>)>,
    last_publish: Option<Instant>,
    publish_error_logged: bool,
    shutting_down: bool,
}

/// Removes the channel socket however the supervisor ends.
struct SocketFile(PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Run the application under supervision until the supervisor quits. `quorum` is the
/// source for the quorum policy (ignored unless `cfg.quorum`).
pub async fn run(
    cfg: SupervisorConfig,
    quorum: Option<Box<dyn QuorumSource>>,
) -> Result<Outcome, SupervisorError> {
    if cfg.command.is_empty() {
        return Err(SupervisorError::NoCommand);
    }
    let me = std::process::id();
    std::fs::create_dir_all(&cfg.dir)
        .map_err(|source| SupervisorError::Dir { path: cfg.dir.clone(), source })?;
    let socket_path = cfg.dir.join(format!("{me}.sock"));
    let listener = bind_private(&socket_path)?;
    let _socket_file = SocketFile(socket_path.clone());

    let mut signals = Signals::new().map_err(SupervisorError::Signals)?;
    let (frames_tx, mut frames_rx) = mpsc::channel(256);
    let mut quorum_rx = None;
    if cfg.quorum {
        let (tx, rx) = watch::channel(None);
        let source = quorum.unwrap_or_else(|| {
            Box::new(quorum::DaemonQuorum::new(crate::client::socket_path(None))) as Box<dyn QuorumSource>
        });
        tokio::spawn(quorum::poll(source, cfg.quorum_poll, tx));
        quorum_rx = Some(rx);
    }

    let child = spawn(&cfg, &socket_path, 1)?;
    let inst = Instance::new(1, child);
    let mut sup = Supervisor {
        warn_signal: cfg.warn_signal,
        state_path: state::state_path(&cfg.dir, me),
        cfg,
        me,
        uid: nix::unistd::getuid().as_raw(),
        socket_path,
        started_at: state::now_ms(),
        data: Bytes::new(),
        restarts: 0,
        last_exit: None,
        quorate: None,
        inst,
        next_conn: 0,
        frames_tx,
        last_publish: None,
        publish_error_logged: false,
        shutting_down: false,
    };
    sup.log(format!("instance 1 started: pid {}", sup.inst.pid));
    sup.publish();
    loop {
        let event = sup.next_event(&listener, &mut frames_rx, &mut quorum_rx, &mut signals).await;
        let outcome = match event {
            Event::Exited(status) => sup.on_exit(status).await,
            Event::Accepted(stream) => {
                sup.on_accept(stream);
                None
            }
            Event::Frame(id, msg) => {
                sup.on_frame(id, msg);
                None
            }
            Event::Timer => {
                sup.on_timer();
                None
            }
            Event::Quorum(q) => {
                sup.on_quorum(q);
                None
            }
            Event::Signal(s) => {
                sup.on_signal(s);
                None
            }
        };
        if let Some(o) = outcome {
            return Ok(o);
        }
    }
}

/// Bind the channel socket so that only this user can connect (the peer check in
/// `on_accept` covers the moment between bind and chmod).
fn bind_private(path: &Path) -> Result<UnixListener, SupervisorError> {
    use std::os::unix::fs::PermissionsExt;
    let err = |source| SupervisorError::Bind { path: path.to_path_buf(), source };
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    let listener = UnixListener::bind(path).map_err(err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    Ok(listener)
}

fn spawn(cfg: &SupervisorConfig, socket: &Path, instance_id: u32) -> Result<Child, SupervisorError> {
    let (program, args) = cfg.command.split_first().ok_or(SupervisorError::NoCommand)?;
    Command::new(program)
        .args(args)
        .env(SOCKET_ENV, socket)
        .env("TOTEM_SAM_INSTANCE", instance_id.to_string())
        // Its own process group, so that SIGKILL reaches everything the instance started
        // (a wrapper such as `sh -c` and the application behind it, its helpers): nothing of
        // a failed instance survives to clash with the next one.
        .process_group(0)
        // If the supervisor itself fails, its child does not outlive it unsupervised.
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| SupervisorError::Spawn { command: program.to_string_lossy().into_owned(), source })
}

impl Instance {
    fn new(id: u32, child: Child) -> Instance {
        Instance {
            id,
            pid: child.id().unwrap_or(0),
            child,
            conn: None,
            had_conn: false,
            registered: false,
            phase: RunState::Stopped,
            wait_from: Instant::now(),
            warned: false,
            quorum_kill_at: None,
            killed: false,
            recovery: false,
            mark_failed: false,
            last_updated: None,
            last_health_check: None,
        }
    }
}

/// The supervisor's own termination signals, forwarded to the child.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> io::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    async fn recv(&mut self) -> Signal {
        tokio::select! {
            _ = self.term.recv() => Signal::SIGTERM,
            _ = self.int.recv() => Signal::SIGINT,
            _ = self.hup.recv() => Signal::SIGHUP,
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// The next quorum answer. If the poller is gone (it only ends when the receiver does, so
/// this means it panicked), quorum is unknown from then on: one `None`, then silence.
async fn quorum_changed(rx: &mut Option<watch::Receiver<Option<bool>>>) -> Option<bool> {
    let Some(r) = rx else { return std::future::pending().await };
    match r.changed().await {
        Ok(()) => *r.borrow_and_update(),
        Err(_) => {
            *rx = None;
            None
        }
    }
}

/// The parent pid of `pid`, from /proc (None if it is gone or unreadable).
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so cut at the last ')'.
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Whether `pid` is `ancestor` or one of its descendants (a wrapper such as `sh -c` may
/// stand between the supervisor and the application).
fn descends_from(mut pid: u32, ancestor: u32) -> bool {
    for _ in 0..64 {
        if pid == ancestor {
            return true;
        }
        if pid <= 1 {
            return false;
        }
        match parent_of(pid) {
            Some(p) => pid = p,
            None => return false,
        }
    }
    false
}

impl Supervisor {
    fn log(&self, msg: impl AsRef<str>) {
        tracing::info!("sam[{}]: {}", self.me, msg.as_ref());
        if !self.cfg.quiet {
            eprintln!("totem-sam[{}]: {}", self.me, msg.as_ref());
        }
    }

    fn deadline(&self) -> Option<Instant> {
        let i = &self.inst;
        if i.killed {
            return None;
        }
        let health = (i.phase == RunState::Running && !self.cfg.interval.is_zero())
            .then(|| i.wait_from + self.cfg.interval);
        match (health, i.quorum_kill_at) {
            (Some(h), Some(q)) => Some(h.min(q)),
            (h, q) => h.or(q),
        }
    }

    async fn next_event(
        &mut self,
        listener: &UnixListener,
        frames: &mut mpsc::Receiver<(u64, Option<ChildMsg>)>,
        quorum: &mut Option<watch::Receiver<Option<bool>>>,
        signals: &mut Signals,
    ) -> Event {
        let deadline = self.deadline();
        let child = &mut self.inst.child;
        tokio::select! {
            biased;
            s = signals.recv() => Event::Signal(s),
            // Messages before the exit: a child's last words (mark_failed, data) count.
            Some((id, msg)) = frames.recv() => Event::Frame(id, msg),
            status = child.wait() => Event::Exited(status),
            q = quorum_changed(quorum) => Event::Quorum(q),
            acc = listener.accept() => Event::Accepted(acc.map(|(s, _)| s)),
            _ = sleep_until(deadline) => Event::Timer,
        }
    }

    /// Send `sig` to the child process only (the warn signal, forwarded signals: the
    /// application decides what its helpers get), or with `group` to its whole process group
    /// (SIGKILL).
    fn signal_child(&self, sig: Signal, group: bool) {
        let Ok(raw) = i32::try_from(self.inst.pid) else { return };
        if raw <= 0 {
            return;
        }
        let pid = nix::unistd::Pid::from_raw(raw);
        let sent = if group { nix::sys::signal::killpg(pid, sig) } else { nix::sys::signal::kill(pid, sig) };
        if let Err(e) = sent {
            // ESRCH: it died meanwhile; its exit is on its way.
            tracing::debug!("signal {sig} to {raw}: {e}");
        }
    }

    /// One step of the recovery sequence: the warn signal the first time, SIGKILL after.
    fn escalate(&mut self, why: &str) {
        let inst_id = self.inst.id;
        if !self.inst.warned {
            self.inst.warned = true;
            self.inst.wait_from = Instant::now();
            let sig = self.warn_signal;
            self.log(format!("instance {inst_id}: {why}; sending {}", sig.as_str()));
            self.signal_child(sig, sig == Signal::SIGKILL);
            if sig == Signal::SIGKILL {
                self.inst.killed = true;
                self.inst.recovery = true;
            }
        } else {
            self.log(format!("instance {inst_id}: {why} after the warning; sending SIGKILL"));
            self.kill();
        }
        self.publish();
    }

    fn kill(&mut self) {
        self.signal_child(Signal::SIGKILL, true);
        self.inst.killed = true;
        self.inst.recovery = true;
    }

    fn on_timer(&mut self) {
        let now = Instant::now();
        if self.inst.quorum_kill_at.is_some_and(|t| t <= now) {
            self.log(format!("instance {}: quorum lost; sending SIGKILL", self.inst.id));
            self.kill();
            self.publish();
        } else if self.deadline().is_some_and(|d| d <= now) {
            self.escalate("no health check for one interval");
        }
    }

    fn on_quorum(&mut self, q: Option<bool>) {
        let before = self.quorate;
        self.quorate = q;
        if before != q {
            self.log(format!("quorum: {}", if q == Some(true) { "quorate" } else { "not quorate" }));
        }
        match (q == Some(true), self.inst.phase) {
            (true, RunState::WaitingForQuorum) => {
                self.inst.phase = RunState::Running;
                self.inst.wait_from = Instant::now();
                self.reply(SupervisorMsg::Ok);
                self.log(format!("instance {}: quorate; health checking started", self.inst.id));
                self.publish();
            }
            (false, RunState::Running) if !self.inst.killed => {
                if self.inst.warned {
                    self.log(format!(
                        "instance {}: quorum lost after the warning; sending SIGKILL",
                        self.inst.id
                    ));
                    self.kill();
                    self.publish();
                } else {
                    let grace =
                        if self.cfg.interval.is_zero() { QUORUM_KILL_GRACE } else { self.cfg.interval };
                    self.inst.quorum_kill_at = Some(Instant::now() + grace);
                    self.escalate("quorum lost");
                }
            }
            _ => {}
        }
    }

    fn on_signal(&mut self, sig: Signal) {
        if self.shutting_down {
            self.log(format!("{} again: sending SIGKILL to instance {}", sig.as_str(), self.inst.id));
            self.signal_child(Signal::SIGKILL, true);
            self.inst.killed = true;
        } else {
            self.log(format!(
                "{}: passing it to instance {}; quitting when it exits",
                sig.as_str(),
                self.inst.id
            ));
            self.shutting_down = true;
            self.signal_child(sig, false);
        }
    }

    fn on_accept(&mut self, stream: io::Result<UnixStream>) {
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("sam: accept failed: {e}");
                return;
            }
        };
        let allowed = match stream.peer_cred() {
            Ok(cred) => {
                let uid_ok = cred.uid() == self.uid || cred.uid() == 0;
                let pid_ok = cred
                    .pid()
                    .and_then(|p| u32::try_from(p).ok())
                    .is_some_and(|p| descends_from(p, self.inst.pid));
                uid_ok && pid_ok
            }
            Err(_) => false,
        };
        if !allowed {
            self.log("refused a channel from a process that is not the current instance");
            return;
        }
        if self.inst.had_conn {
            // Answer (whatever was asked) with a refusal, off the loop.
            tokio::spawn(refuse(stream, "this instance already opened its SAM channel"));
            return;
        }
        self.next_conn += 1;
        let id = self.next_conn;
        let (rd, mut wr) = stream.into_split();
        let (replies, mut rx) = mpsc::channel::<SupervisorMsg>(REPLY_QUEUE);
        let frames = self.frames_tx.clone();
        let reader = tokio::spawn(async move {
            let mut rd = rd;
            loop {
                let msg = match proto::read_async(&mut rd).await {
                    Ok(Some(frame)) => proto::decode::<ChildMsg>(&frame).ok(),
                    _ => None,
                };
                let end = msg.is_none();
                if frames.send((id, msg)).await.is_err() || end {
                    return;
                }
            }
        });
        let writer = tokio::spawn(async move {
            while let Some(msg) = rx.recv().await {
                let Ok(frame) = proto::encode(&msg) else { return };
                if wr.write_all(&frame).await.is_err() {
                    return;
                }
            }
        });
        self.inst.had_conn = true;
        self.inst.conn = Some(Conn { id, replies, hello_done: false, tasks: [reader, writer] });
    }

    fn reply(&mut self, msg: SupervisorMsg) {
        let Some(conn) = &self.inst.conn else { return };
        if conn.replies.try_send(msg).is_err() {
            // The child does not read its replies: drop the channel (health checks stop
            // arriving, so a running instance will be recovered).
            self.log(format!("instance {}: channel stalled; closed", self.inst.id));
            self.inst.conn = None;
        }
    }

    fn on_frame(&mut self, id: u64, msg: Option<ChildMsg>) {
        let first = match &self.inst.conn {
            Some(c) if c.id == id => !c.hello_done,
            _ => return, // a previous instance's channel: stale
        };
        let Some(msg) = msg else {
            // Closed (finalize, exit) or garbage. Only the process's exit matters.
            self.inst.conn = None;
            return;
        };
        if first != matches!(msg, ChildMsg::Hello { .. }) {
            self.log(format!("instance {}: protocol violation; channel closed", self.inst.id));
            self.inst.conn = None;
            return;
        }
        let now = Instant::now();
        self.inst.wait_from = now;
        self.inst.last_updated = Some(state::now_ms());
        let mut important = true;
        match msg {
            ChildMsg::Hello { version, .. } => {
                if version != PROTOCOL_VERSION {
                    self.reply(SupervisorMsg::Error(ProtoError::Refused(format!(
                        "protocol version {version}; this supervisor speaks {PROTOCOL_VERSION}"
                    ))));
                    return;
                }
                if let Some(c) = &mut self.inst.conn {
                    c.hello_done = true;
                }
                let welcome = SupervisorMsg::Welcome {
                    instance_id: self.inst.id,
                    interval_ms: self.cfg.interval.as_millis() as u64,
                    policy: self.cfg.policy,
                    quorum: self.cfg.quorum,
                };
                self.reply(welcome);
            }
            ChildMsg::Register => {
                if self.inst.registered {
                    self.reply(SupervisorMsg::Error(ProtoError::BadState("already registered".into())));
                } else {
                    self.inst.registered = true;
                    self.reply(SupervisorMsg::Registered { instance_id: self.inst.id });
                }
            }
            ChildMsg::Start => self.on_start(),
            ChildMsg::Stop => {
                if self.inst.phase == RunState::WaitingForQuorum {
                    self.reply(SupervisorMsg::Error(ProtoError::BadState("start is still waiting".into())));
                } else {
                    if self.inst.phase == RunState::Running {
                        self.log(format!("instance {}: health checking stopped", self.inst.id));
                    }
                    self.inst.phase = RunState::Stopped;
                    self.reply(SupervisorMsg::Ok);
                }
            }
            ChildMsg::Heartbeat => {
                self.inst.last_health_check = self.inst.last_updated;
                important = false;
            }
            ChildMsg::DataStore(d) => {
                if d.len() > DATA_MAX {
                    let (size, max) = (d.len() as u64, DATA_MAX as u64);
                    self.reply(SupervisorMsg::Error(ProtoError::TooBig { size, max }));
                } else {
                    self.data = d;
                    self.reply(SupervisorMsg::Ok);
                    // Only `data_size` changes: an application that stores at every step
                    // must not mean a file per step either.
                    important = false;
                }
            }
            ChildMsg::DataGet => self.reply(SupervisorMsg::Data(self.data.clone())),
            ChildMsg::DataSize => {
                important = false;
                self.reply(SupervisorMsg::Size(self.data.len() as u64))
            }
            ChildMsg::WarnSignalSet(raw) => match Signal::try_from(raw) {
                Ok(sig) => {
                    self.warn_signal = sig;
                    self.reply(SupervisorMsg::Ok);
                }
                Err(_) => {
                    self.reply(SupervisorMsg::Error(ProtoError::InvalidParam(format!("no signal {raw}"))))
                }
            },
            ChildMsg::MarkFailed => {
                self.log(format!("instance {}: marked itself failed; sending SIGKILL", self.inst.id));
                self.inst.mark_failed = true;
                self.kill();
            }
        }
        self.maybe_publish(important);
    }

    fn on_start(&mut self) {
        match self.inst.phase {
            RunState::Stopped if self.cfg.quorum && self.quorate != Some(true) => {
                self.inst.phase = RunState::WaitingForQuorum;
                self.log(format!("instance {}: waiting for quorum", self.inst.id));
            }
            RunState::Stopped => {
                self.inst.phase = RunState::Running;
                self.log(format!("instance {}: health checking started", self.inst.id));
                self.reply(SupervisorMsg::Ok);
            }
            RunState::Running => self.reply(SupervisorMsg::Ok),
            _ => self.reply(SupervisorMsg::Error(ProtoError::BadState("start is already waiting".into()))),
        }
    }

    /// The child exited: quit, give up, or start the next instance.
    async fn on_exit(&mut self, status: io::Result<ExitStatus>) -> Option<Outcome> {
        // Without a status (wait failed) treat it as a crash of unknown cause.
        let status = status.unwrap_or_else(|_| ExitStatus::from_raw(Signal::SIGKILL as i32));
        let how = describe_exit(status);
        let id = self.inst.id;
        self.last_exit = Some(how.clone());
        let recovery = self.inst.recovery || self.inst.phase != RunState::Stopped;
        let code = exit_code_of(status);
        let outcome = |failed, sup: &Supervisor| Outcome {
            exit_code: code,
            failed,
            instance_id: id,
            restarts: sup.restarts,
        };
        if self.shutting_down || !recovery {
            self.log(format!("instance {id} ended ({how}) with health checking off; quitting"));
            let _ = std::fs::remove_file(&self.state_path);
            return Some(outcome(false, self));
        }
        // A failed instance leaves nothing behind: whatever else is in its process group
        // (helpers, or the application behind a wrapper that died) is killed too.
        self.signal_child(Signal::SIGKILL, true);
        let give_up = if self.inst.mark_failed {
            Some("it marked itself failed".to_string())
        } else if self.cfg.policy == Policy::Quit {
            Some("the policy is quit".to_string())
        } else {
            self.cfg
                .max_restarts
                .filter(|&m| self.restarts >= m)
                .map(|m| format!("{m} restarts were made (--max-restarts)"))
        };
        if let Some(why) = give_up {
            self.log(format!("instance {id} failed ({how}); {why}: giving up"));
            self.fail();
            return Some(outcome(true, self));
        }
        let next = id + 1;
        match spawn(&self.cfg, &self.socket_path, next) {
            Ok(child) => {
                self.restarts += 1;
                self.inst = Instance::new(next, child);
                self.log(format!(
                    "instance {id} failed ({how}); instance {next} started: pid {}",
                    self.inst.pid
                ));
                self.publish();
                None
            }
            Err(e) => {
                self.log(format!("instance {id} failed ({how}); restart impossible: {e}"));
                self.fail();
                Some(Outcome { exit_code: 127, failed: true, instance_id: id, restarts: self.restarts })
            }
        }
    }

    fn fail(&mut self) {
        self.inst.phase = RunState::Failed;
        self.inst.conn = None;
        self.publish_with(None);
    }

    fn maybe_publish(&mut self, important: bool) {
        // Heartbeats only move `last_updated`: write those at most every interval/4 (or
        // every second with interval 0) so that a fast heartbeat does not mean a file per beat.
        let period = if self.cfg.interval.is_zero() {
            Duration::from_secs(1)
        } else {
            (self.cfg.interval / 4).max(Duration::from_millis(20))
        };
        if important || self.last_publish.is_none_or(|t| t.elapsed() >= period) {
            self.publish();
        }
    }

    fn publish(&mut self) {
        let pid = Some(self.inst.pid);
        self.publish_with(pid);
    }

    fn publish_with(&mut self, pid: Option<u32>) {
        let status = SupervisorStatus {
            supervisor_pid: self.me,
            command: self.cfg.command.iter().map(|a| a.to_string_lossy().into_owned()).collect(),
            recovery: self.cfg.policy,
            quorum: self.cfg.quorum,
            poll_period: self.cfg.interval.as_millis() as u64,
            warn_signal: self.warn_signal.as_str().to_string(),
            state: self.inst.phase,
            registered: self.inst.registered,
            instance_id: self.inst.id,
            pid,
            restarts: self.restarts,
            max_restarts: self.cfg.max_restarts,
            last_updated: self.inst.last_updated,
            last_health_check: self.inst.last_health_check,
            warned: self.inst.warned,
            data_size: self.data.len() as u64,
            last_exit: self.last_exit.clone(),
            started_at: self.started_at,
            updated_at: state::now_ms(),
        };
        self.last_publish = Some(Instant::now());
        match state::write_atomic(&self.state_path, &status) {
            Ok(()) => self.publish_error_logged = false,
            Err(e) if !self.publish_error_logged => {
                self.publish_error_logged = true;
                self.log(format!("cannot write {}: {e}", self.state_path.display()));
            }
            Err(_) => {}
        }
    }
}

/// Refuse a second channel: wait for the request (the client writes before it reads, and a
/// close before its write would turn the refusal into a broken pipe), answer it with one
/// error frame, then close.
async fn refuse(mut stream: UnixStream, why: &'static str) {
    let _ = tokio::time::timeout(Duration::from_secs(1), proto::read_async(&mut stream)).await;
    if let Ok(frame) = proto::encode(&SupervisorMsg::Error(ProtoError::Refused(why.into()))) {
        let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(&frame)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: exit statuses map to the shell's convention.
    #[test]
    fn sam_exit_codes() {
        assert_eq!(exit_code_of(ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(exit_code_of(ExitStatus::from_raw(9)), 137);
        assert_eq!(describe_exit(ExitStatus::from_raw(9)), "signal 9 (SIGKILL)");
    }

    /// Goal: the ancestry walk finds this process from itself and stops at init.
    #[test]
    fn sam_descends_from() {
        let me = std::process::id();
        assert!(descends_from(me, me));
        assert!(parent_of(me).is_some_and(|p| descends_from(me, p)));
        assert!(!descends_from(1, me));
    }
}
