//! The supervisor's published state: one JSON file per supervisor in the SAM directory,
//! replaced atomically (write a temporary file, then rename) so a reader never sees half a
//! file. `totemctl sam status` lists them.
//!
//! This stands in for Corosync's cmap keys `resources.process.<pid>.*` (`recovery`,
//! `poll_period`, `last_updated`, `state`), which its watchdog service reads: the file is
//! named after the supervisor's pid and carries the same facts under the same names, plus
//! the instance id, the child's pid, the restart count and the stored data's size.

use crate::sam::proto::Policy;
use serde::{Deserialize, Serialize};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// The environment variable that overrides the SAM directory.
pub const DIR_ENV: &str = "TOTEM_SAM_DIR";

/// The SAM directory: `explicit`, else `$TOTEM_SAM_DIR`, else `sam/` beside the daemon's
/// socket (the run directory: `/run/totem/sam` by default, following `--socket` and
/// `$TOTEM_SOCKET`).
pub fn sam_dir(explicit: Option<&Path>, daemon_socket: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    if let Some(p) = std::env::var_os(DIR_ENV) {
        return PathBuf::from(p);
    }
    let socket = crate::client::socket_path(daemon_socket);
    socket.parent().unwrap_or_else(|| Path::new("/run/totem")).join("sam")
}

/// What the supervisor is doing with its current instance (Corosync's cmap `state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunState {
    /// Health checking is off (not started yet, or stopped).
    #[serde(rename = "stopped")]
    Stopped,
    /// The child asked to start and the supervisor waits for quorum.
    #[serde(rename = "waiting for quorum")]
    WaitingForQuorum,
    /// Health checking is on.
    #[serde(rename = "running")]
    Running,
    /// The supervisor gave up (recovery with the quit policy, mark_failed, too many
    /// restarts); final.
    #[serde(rename = "failed")]
    Failed,
}

impl RunState {
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Stopped => "stopped",
            RunState::WaitingForQuorum => "waiting for quorum",
            RunState::Running => "running",
            RunState::Failed => "failed",
        }
    }
}

/// The content of one state file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SupervisorStatus {
    /// The supervisor's pid (the file is `<supervisor_pid>.json`).
    pub supervisor_pid: u32,
    pub command: Vec<String>,
    /// Corosync's `recovery`.
    pub recovery: Policy,
    pub quorum: bool,
    /// Corosync's `poll_period`: the health-check interval in ms (0: death only).
    pub poll_period: u64,
    pub warn_signal: String,
    pub state: RunState,
    /// Whether the current instance has registered.
    pub registered: bool,
    /// 1 for the first child, +1 per restart.
    pub instance_id: u32,
    /// The current child's pid (none once it has been reaped for good).
    pub pid: Option<u32>,
    pub restarts: u32,
    pub max_restarts: Option<u32>,
    /// Corosync's `last_updated`: the time of the last message from the child, in ms since
    /// the Unix epoch (every message counts as a health check).
    pub last_updated: Option<u64>,
    /// The time of the last health check proper (`hc_send` or the callback thread's).
    pub last_health_check: Option<u64>,
    /// Whether the current instance has been sent the warn signal.
    pub warned: bool,
    /// Bytes of application data the supervisor keeps.
    pub data_size: u64,
    /// How the previous instance ended, e.g. "exit 3" or "signal 9 (SIGKILL)".
    pub last_exit: Option<String>,
    /// When the supervisor started and when this file was written, ms since the epoch.
    pub started_at: u64,
    pub updated_at: u64,
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The state file of the supervisor with pid `pid` in `dir`.
pub fn state_path(dir: &Path, pid: u32) -> PathBuf {
    dir.join(format!("{pid}.json"))
}

/// Write `status` to `path` atomically: a temporary file in the same directory, renamed over
/// the old one.
pub fn write_atomic(path: &Path, status: &SupervisorStatus) -> io::Result<()> {
    let body = serde_json::to_vec_pretty(status).map_err(io::Error::other)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("state.json");
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    std::fs::write(&tmp, body)?;
    std::fs::rename(&tmp, path)
}

/// One supervisor as `sam status` shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Listed {
    #[serde(flatten)]
    pub status: SupervisorStatus,
    /// Whether a process with the supervisor's pid still exists (a file left by a supervisor
    /// that was killed shows `false`).
    pub supervisor_alive: bool,
}

/// Every state file in `dir`, sorted by supervisor pid, and a note for every file that
/// could not be read. A missing directory is an empty list.
pub fn list(dir: &Path) -> io::Result<(Vec<Listed>, Vec<String>)> {
    let mut found = Vec::new();
    let mut problems = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((found, problems)),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let path = entry?.path();
        let is_state = path.extension().is_some_and(|x| x == "json")
            && !path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'));
        if !is_state {
            continue;
        }
        let parsed = std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<SupervisorStatus>(&b).map_err(|e| e.to_string()));
        match parsed {
            Ok(status) => {
                let supervisor_alive = process_alive(status.supervisor_pid);
                found.push(Listed { status, supervisor_alive });
            }
            // Vanished between listing and reading: its supervisor just exited.
            Err(e) if !path.exists() => drop(e),
            Err(e) => problems.push(format!("{}: {e}", path.display())),
        }
    }
    found.sort_by_key(|l| l.status.supervisor_pid);
    Ok((found, problems))
}

/// Whether a process with this pid exists (signal 0; EPERM means it exists but is not ours).
pub fn process_alive(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else { return false };
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), None) {
        Ok(()) => true,
        Err(e) => e == nix::errno::Errno::EPERM,
    }
}
