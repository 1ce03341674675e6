//! The command line of SAM: `totemctl sam run ...` and `totemctl sam status`, also exposed
//! by the standalone `totem-sam` binary.

use crate::sam::proto::Policy;
use crate::sam::quorum::{DaemonQuorum, FileQuorum, QuorumSource};
use crate::sam::state::{self, Listed, RunState};
use crate::sam::supervisor::{self, SupervisorConfig};
use clap::{Args, Subcommand, ValueEnum};
use nix::sys::signal::Signal;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// `sam`: the Simple Availability Manager.
#[derive(Clone, Debug, Args)]
pub struct SamRunArgs {
    #[command(subcommand)]
    pub command: SamCommand,
    /// The daemon's socket (for the quorum policy and the default SAM directory). Not a flag
    /// of its own: the caller fills it from its global `--socket`; `None` means
    /// `$TOTEM_SOCKET` or the default.
    #[arg(skip)]
    pub socket: Option<PathBuf>,
}

#[derive(Clone, Debug, Subcommand)]
pub enum SamCommand {
    /// Run an application, restart or quit when it fails its health checks or dies.
    ///
    /// The application finds its channel in $TOTEM_SAM_SOCKET and talks to it with the SAM
    /// client library (`totem_node::sam::Sam`). Exits with the application's status (128 +
    /// signal if it was killed).
    Run(RunArgs),
    /// List the SAM supervisors of this node and their state.
    Status(StatusArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PolicyArg {
    /// Start a new instance of the application (instance id + 1).
    Restart,
    /// Exit with the application's status.
    Quit,
}

#[derive(Clone, Debug, Args)]
pub struct RunArgs {
    /// Health-check interval, e.g. 2s or 500ms; 0 watches only for the application's death.
    #[arg(long, value_parser = parse_duration)]
    pub interval: Duration,
    /// What to do when the application fails.
    #[arg(long, value_enum)]
    pub policy: PolicyArg,
    /// Start waits until the local node is quorate; losing quorum while running is a failure.
    #[arg(long)]
    pub quorum: bool,
    /// Read quorum from this file instead of the daemon (quorate while it holds 1, true, yes
    /// or quorate): for tests and external arbiters. Implies --quorum.
    #[arg(long, value_name = "PATH")]
    pub quorum_file: Option<PathBuf>,
    /// How often the quorum source is asked.
    #[arg(long, value_parser = parse_duration, default_value = "500ms")]
    pub quorum_poll: Duration,
    /// The signal that warns the application before SIGKILL (KILL: no warning).
    #[arg(long, value_parser = parse_signal, default_value = "TERM")]
    pub warn_signal: Signal,
    /// Give up (like --policy quit) once this many restarts have been made.
    #[arg(long, value_name = "N")]
    pub max_restarts: Option<u32>,
    /// The SAM directory (channel sockets and state files). Default: $TOTEM_SAM_DIR, else
    /// sam/ beside the daemon's socket (/run/totem/sam).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// No progress lines on stderr.
    #[arg(long, short)]
    pub quiet: bool,
    /// The application and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

#[derive(Clone, Debug, Args)]
pub struct StatusArgs {
    /// Print JSON (an array with one object per supervisor). Set from the caller's global
    /// `--json`.
    #[arg(skip)]
    pub json: bool,
    /// The SAM directory (default as for `run`).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// Parse `2s`, `500ms`, `1.5s`, `2m`, or `0`. A bare number other than 0 is refused: seconds
/// or milliseconds would be a guess.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num.parse().map_err(|_| format!("`{text}` is not a duration (e.g. 2s, 500ms)"))?;
    let scale = match unit.trim() {
        "ms" => 0.001,
        "s" => 1.0,
        "m" | "min" => 60.0,
        "" => return Err(format!("`{text}` needs a unit: ms, s or m")),
        u => return Err(format!("unknown unit `{u}` in `{text}` (ms, s or m)")),
    };
    Duration::try_from_secs_f64(value * scale).map_err(|e| format!("`{text}`: {e}"))
}

/// Parse a signal name (`TERM`, `SIGTERM`, `term`) or number (`15`).
pub fn parse_signal(text: &str) -> Result<Signal, String> {
    let t = text.trim();
    if let Ok(n) = t.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| format!("no signal number {n}"));
    }
    let upper = t.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") { upper } else { format!("SIG{upper}") };
    name.parse().map_err(|_| format!("unknown signal `{text}`"))
}

/// Entry point of `totemctl sam ...` (and `totem-sam ...`).
pub fn sam_cli_main(args: SamRunArgs) -> ExitCode {
    match args.command {
        SamCommand::Run(run) => run_main(run, args.socket),
        SamCommand::Status(st) => status_main(st, args.socket),
    }
}

fn run_main(run: RunArgs, socket: Option<PathBuf>) -> ExitCode {
    let dir = state::sam_dir(run.dir.as_deref(), socket.as_deref());
    let quorum = run.quorum || run.quorum_file.is_some();
    let source: Option<Box<dyn QuorumSource>> = match (&run.quorum_file, quorum) {
        (Some(f), _) => Some(Box::new(FileQuorum::new(f.clone()))),
        (None, true) => Some(Box::new(DaemonQuorum::new(crate::client::socket_path(socket.as_deref())))),
        (None, false) => None,
    };
    let cfg = SupervisorConfig {
        command: run.command,
        interval: run.interval,
        policy: match run.policy {
            PolicyArg::Restart => Policy::Restart,
            PolicyArg::Quit => Policy::Quit,
        },
        quorum,
        quorum_poll: run.quorum_poll.max(Duration::from_millis(10)),
        warn_signal: run.warn_signal,
        max_restarts: run.max_restarts,
        dir,
        quiet: run.quiet,
    };
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("totem-sam: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(supervisor::run(cfg, source)) {
        Ok(outcome) => ExitCode::from(outcome.exit_code),
        Err(e) => {
            eprintln!("totem-sam: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn status_main(st: StatusArgs, socket: Option<PathBuf>) -> ExitCode {
    let dir = state::sam_dir(st.dir.as_deref(), socket.as_deref());
    let (listed, problems) = match state::list(&dir) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("totem-sam: cannot read {}: {e}", dir.display());
            return ExitCode::FAILURE;
        }
    };
    for p in &problems {
        eprintln!("totem-sam: skipped {p}");
    }
    if st.json {
        match serde_json::to_string_pretty(&listed) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("totem-sam: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        print!("{}", render_table(&listed, state::now_ms()));
    }
    ExitCode::SUCCESS
}

/// The human view of `sam status`.
pub fn render_table(listed: &[Listed], now_ms: u64) -> String {
    if listed.is_empty() {
        return "no SAM supervisors\n".into();
    }
    let mut out = format!(
        "{:<10} {:<27} {:>8} {:>8} {:>8} {:<8} {:>9} {:>11}  {}\n",
        "SUPERVISOR", "STATE", "INSTANCE", "PID", "RESTARTS", "RECOVERY", "INTERVAL", "LAST CHECK", "COMMAND"
    );
    for l in listed {
        let s = &l.status;
        let mut st = s.state.as_str().to_string();
        if s.state == RunState::Running && s.warned {
            st.push_str(" (warned)");
        }
        if !l.supervisor_alive && s.state != RunState::Failed {
            st.push_str(" (supervisor gone)");
        }
        let pid = s.pid.map_or("-".to_string(), |p| p.to_string());
        let check = s
            .last_health_check
            .or(s.last_updated)
            .map_or("-".to_string(), |t| format!("{:.1}s ago", now_ms.saturating_sub(t) as f64 / 1000.0));
        let interval = if s.poll_period == 0 { "death".to_string() } else { format!("{}ms", s.poll_period) };
        let quorum = if s.quorum { "+quorum" } else { "" };
        out.push_str(&format!(
            "{:<10} {:<27} {:>8} {:>8} {:>8} {:<8} {:>9} {:>11}  {}\n",
            s.supervisor_pid,
            st,
            s.instance_id,
            pid,
            s.restarts,
            format!("{}{quorum}", s.recovery.as_str()),
            interval,
            check,
            s.command.join(" ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: durations and signals parse the way the help text promises.
    #[test]
    fn sam_cli_parsers() {
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("2").is_err());
        assert!(parse_duration("2h").is_err());
        assert!(parse_duration("-1s").is_err());
        assert_eq!(parse_signal("TERM"), Ok(Signal::SIGTERM));
        assert_eq!(parse_signal("sigusr1"), Ok(Signal::SIGUSR1));
        assert_eq!(parse_signal("9"), Ok(Signal::SIGKILL));
        assert!(parse_signal("NOPE").is_err());
    }
}
