//! SAM end to end: the real supervisor (`totem-sam run`) and a real application
//! (`sam-test-app`, which uses the client library), as separate processes.
//!
//! Each test runs one supervisor in its own directory; the application logs what it does
//! with wall-clock milliseconds, and the test judges the log, the exit status and the state
//! file. Intervals are 300 ms; timing bounds are generous at the top (a busy 2-core machine)
//! and tight at the bottom (a warning must never come early).
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const T: u128 = 300;
const INTERVAL: &str = "300ms";
/// How early an event may seem in the application's log (it logs just after acting).
const EARLY: u128 = 40;
/// How late an event may be on a loaded machine.
const LATE: u128 = 600;

const SUPERVISOR: &str = env!("CARGO_BIN_EXE_totem-sam");
const APP: &str = env!("CARGO_BIN_EXE_sam-test-app");

struct Case {
    dir: PathBuf,
    log: PathBuf,
}

impl Case {
    fn new(name: &str) -> Case {
        let dir = std::env::temp_dir().join(format!("totem-sam-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("app.log");
        Case { dir, log }
    }

    /// `totem-sam run --dir D <sup> -- sam-test-app --log L <app>`.
    fn spawn(&self, sup: &[&str], app: &[&str]) -> Child {
        let mut cmd = Command::new(SUPERVISOR);
        cmd.arg("run").arg("--dir").arg(&self.dir).args(sup);
        cmd.arg("--").arg(APP).arg("--log").arg(&self.log).args(app);
        // The supervisor's progress lines go to a file that failure messages show.
        let err = std::fs::File::create(self.dir.join("supervisor.err")).unwrap();
        cmd.stdin(Stdio::null()).stderr(err).spawn().unwrap()
    }

    fn run(&self, sup: &[&str], app: &[&str]) -> (ExitStatus, Log) {
        let mut child = self.spawn(sup, app);
        let status = wait(&mut child, Duration::from_secs(20));
        (status, self.log())
    }

    fn log(&self) -> Log {
        let mut log = Log::read(&self.log);
        log.1 = std::fs::read_to_string(self.dir.join("supervisor.err")).unwrap_or_default();
        log
    }

    /// Wait until the log has `event` from `instance`; its time.
    fn wait_for(&self, instance: u32, event: &str) -> u128 {
        let start = Instant::now();
        loop {
            if let Some(t) = self.log().time(instance, event) {
                return t;
            }
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "no `{event}` from instance {instance}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The only state file in the directory.
    fn state(&self) -> serde_json::Value {
        let files: Vec<_> = std::fs::read_dir(&self.dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
            .collect();
        assert_eq!(files.len(), 1, "state files: {files:?}");
        serde_json::from_slice(&std::fs::read(&files[0]).unwrap()).unwrap()
    }

    fn state_files(&self) -> usize {
        std::fs::read_dir(&self.dir)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "json"))
            .count()
    }
}

impl Drop for Case {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn wait(child: &mut Child, limit: Duration) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("the supervisor did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[derive(Clone, Debug)]
struct Entry {
    t: u128,
    instance: u32,
    pid: u32,
    event: String,
}

/// The application's log, and the supervisor's stderr.
struct Log(Vec<Entry>, String);

impl std::fmt::Display for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t0 = self.0.first().map_or(0, |e| e.t);
        for e in &self.0 {
            writeln!(f, "+{:>5}ms  #{} pid {}  {}", e.t - t0, e.instance, e.pid, e.event)?;
        }
        write!(f, "supervisor:\n{}", self.1)
    }
}

impl Log {
    fn read(path: &Path) -> Log {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        Log(
            text.lines()
                .filter_map(|l| {
                    let mut it = l.splitn(4, ' ');
                    Some(Entry {
                        t: it.next()?.parse().ok()?,
                        instance: it.next()?.parse().ok()?,
                        pid: it.next()?.parse().ok()?,
                        event: it.next()?.to_string(),
                    })
                })
                .collect(),
            String::new(),
        )
    }

    fn all(&self, instance: u32, event: &str) -> Vec<u128> {
        self.0.iter().filter(|e| e.instance == instance && e.event == event).map(|e| e.t).collect()
    }

    fn time(&self, instance: u32, event: &str) -> Option<u128> {
        self.all(instance, event).first().copied()
    }

    fn last(&self, instance: u32, event: &str) -> u128 {
        *self.all(instance, event).last().unwrap_or_else(|| panic!("no `{event}` from #{instance}:\n{self}"))
    }

    fn first(&self, instance: u32, event: &str) -> u128 {
        self.time(instance, event).unwrap_or_else(|| panic!("no `{event}` from #{instance}:\n{self}"))
    }

    fn has(&self, instance: u32, event: &str) -> bool {
        self.time(instance, event).is_some()
    }

    fn instances(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self.0.iter().map(|e| e.instance).collect();
        v.dedup();
        v
    }

    fn errors(&self) -> Vec<&Entry> {
        self.0.iter().filter(|e| e.event.starts_with("error")).collect()
    }
}

fn within(what: &str, delta: u128, lo: u128, hi: u128, log: &Log) {
    assert!(delta >= lo && delta <= hi, "{what}: {delta} ms, expected {lo}..={hi} ms\n{log}");
}

fn code(s: ExitStatus) -> i32 {
    s.code().unwrap_or(-1)
}

/// Goal: SAM-2 with the restart policy. A child that stops sending health checks gets the
/// warn signal one interval after its last check, SIGKILL one interval later, and a new
/// instance starts right after. Method: instance 1 sends three checks and hangs (logging and
/// ignoring SIGTERM); instance 2 ends cleanly.
#[test]
fn sam_hung_child_is_warned_killed_and_restarted() {
    let c = Case::new("hung");
    let (st, log) = c.run(
        &["--interval", INTERVAL, "--policy", "restart"],
        &["--script", "1=register,start,hb:3:50,hang", "--script", "2=register,start,stop,exit:0"],
    );
    assert_eq!(code(st), 0, "{log}");
    let last_hb = log.last(1, "hb");
    let warned = log.first(1, "signal SIGTERM");
    let next = log.first(2, "begin");
    within("warning after the last check", warned - last_hb, T - EARLY, T + LATE, &log);
    within("kill after the warning", next - warned, T - EARLY, T + LATE, &log);
    within("restart after the last check", next - last_hb, 2 * T - EARLY, 2 * T + LATE, &log);
    assert!(log.has(2, "registered 2"), "{log}");
    assert_eq!(log.instances(), [1, 2]);
    assert!(log.errors().is_empty(), "{log}");
    assert_eq!(c.state_files(), 0, "a clean quit removes the state file");
}

/// Goal: a crashed child (abort while checked) is restarted.
#[test]
fn sam_crashed_child_is_restarted() {
    let c = Case::new("crash");
    let (st, log) = c.run(
        &["--interval", INTERVAL, "--policy", "restart"],
        &["--script", "1=register,start,hb:1:0,abort", "--script", "2=register,start,stop,exit:0"],
    );
    assert_eq!(code(st), 0, "{log}");
    assert!(log.has(1, "abort") && log.has(2, "registered 2"), "{log}");
    within("restart after the crash", log.first(2, "begin") - log.first(1, "abort"), 0, LATE, &log);
}

/// Goal: SAM-4. Data stored by one instance comes back byte-exact in every later one,
/// across a clean failure exit and a crash; clearing empties it (size 0). Method: 1 MB of
/// a pattern covering every byte value, then 70,001 bytes of another, then a clear.
#[test]
fn sam_data_survives_restarts_byte_exact() {
    let c = Case::new("data");
    let (st, log) = c.run(
        &["--interval", INTERVAL, "--policy", "restart"],
        &[
            "--script",
            "1=init,size-check:0,data-store:1000000,size-check:1000000,register,start,exit:3",
            "--script",
            "2=register,data-check:1000000,data-store:70001,start,hb:1:0,abort",
            "--script",
            "3=register,data-check:70001,data-clear,size-check:0,data-check:0,exit:0",
        ],
    );
    assert_eq!(code(st), 0, "{log}");
    assert!(log.has(2, "data-ok") && log.has(3, "data-ok") && log.has(3, "size-ok"), "{log}");
    assert!(log.errors().is_empty(), "{log}");
}

/// Goal: SAM-2 with the quit policy: the supervisor exits with the child's status, and
/// leaves the state "failed". Method: a child that exits 42 while checked; a hung child
/// (killed: 128 + 9); a child that exits 7 on the warning (before the kill).
#[test]
fn sam_quit_policy_propagates_the_exit_status() {
    let c = Case::new("quit");
    let (st, log) =
        c.run(&["--interval", INTERVAL, "--policy", "quit"], &["--default", "register,start,exit:42"]);
    assert_eq!(code(st), 42, "{log}");
    let state = c.state();
    assert_eq!(state["state"], "failed");
    assert_eq!(state["last_exit"], "exit 42");
    assert_eq!(state["recovery"], "quit");

    let c = Case::new("quit-hung");
    let start = Instant::now();
    let (st, log) =
        c.run(&["--interval", INTERVAL, "--policy", "quit"], &["--default", "register,start,hang"]);
    assert_eq!(code(st), 128 + 9, "{log}");
    assert!(start.elapsed() >= Duration::from_millis(2 * T as u64), "killed too early");
    assert_eq!(log.instances(), [1]);
    assert_eq!(c.state()["last_exit"], "signal 9 (SIGKILL)");

    let c = Case::new("quit-term");
    let (st, log) = c.run(
        &["--interval", INTERVAL, "--policy", "quit"],
        &["--default", "term-exits:7,register,start,hb:1:0,hang"],
    );
    assert_eq!(code(st), 7, "{log}");
    within("warning", log.first(1, "signal SIGTERM") - log.first(1, "hb"), T - EARLY, T + LATE, &log);
}

/// Goal: SAM-3. A child exiting while checking is off ends the supervisor with its
/// status, whatever the policy: never started, stopped (and silent for longer than two
/// intervals without being warned), or not using the library at all.
#[test]
fn sam_exit_while_stopped_ends_the_supervisor() {
    let c = Case::new("stopped");
    let (st, log) =
        c.run(&["--interval", INTERVAL, "--policy", "restart"], &["--default", "register,exit:5"]);
    assert_eq!(code(st), 5, "{log}");
    assert_eq!(log.instances(), [1]);

    let c = Case::new("stopped2");
    let (st, log) = c.run(
        &["--interval", INTERVAL, "--policy", "restart"],
        &["--default", "register,start,hb:2:50,stop,sleep:800,exit:6"],
    );
    assert_eq!(code(st), 6, "{log}");
    assert!(!log.has(1, "signal SIGTERM"), "warned while stopped:\n{log}");
    assert_eq!(log.instances(), [1]);

    let c = Case::new("nolib");
    let (st, log) =
        c.run(&["--interval", INTERVAL, "--policy", "restart"], &["--default", "sleep:100,exit:4"]);
    assert_eq!(code(st), 4, "{log}");
}

/// Goal: SAM-1. The instance id is 1 for the first child and grows by exactly 1 per
/// restart; `--max-restarts` gives up after that many restarts with the state "failed".
#[test]
fn sam_instance_ids_count_restarts() {
    let c = Case::new("ids");
    let (st, log) = c.run(
        &["--interval", INTERVAL, "--policy", "restart"],
        &["--default", "register,start,exit:1", "--script", "4=register,exit:0"],
    );
    assert_eq!(code(st), 0, "{log}");
    for i in 1..=4 {
        assert!(log.has(i, &format!("registered {i}")), "{log}");
    }
    assert_eq!(log.instances(), [1, 2, 3, 4]);

    let c = Case::new("max");
    let (st, log) = c.run(
        &["--interval", INTERVAL, "--policy", "restart", "--max-restarts", "2"],
        &["--default", "register,start,exit:9"],
    );
    assert_eq!(code(st), 9, "{log}");
    assert_eq!(log.instances(), [1, 2, 3]);
    let state = c.state();
    assert_eq!(state["state"], "failed");
    assert_eq!(state["restarts"], 2);
    assert_eq!(state["instance_id"], 3);
}

/// Goal: SAM-5 with a fake quorum source (a file). Start returns only once quorate;
/// losing quorum while running warns, kills one interval later and restarts; the new
/// instance waits for quorum again ("waiting for quorum" in the state file meanwhile).
#[test]
fn sam_quorum_policy_with_a_fake_source() {
    let c = Case::new("quorum");
    let qfile = c.dir.join("quorate");
    std::fs::write(&qfile, "0").unwrap();
    let mut sup = c.spawn(
        &[
            "--interval",
            INTERVAL,
            "--policy",
            "restart",
            "--quorum-file",
            qfile.to_str().unwrap(),
            "--quorum-poll",
            "50ms",
        ],
        &["--script", "1=register,cb:1000000,start,hang", "--script", "2=register,start,stop,exit:0"],
    );
    c.wait_for(1, "starting");
    std::thread::sleep(Duration::from_millis(400));
    assert!(!c.log().has(1, "started"), "start returned without quorum:\n{}", c.log());
    assert_eq!(c.state()["state"], "waiting for quorum");

    let quorate_at = now_ms();
    std::fs::write(&qfile, "1").unwrap();
    let started = c.wait_for(1, "started");
    assert!(started >= quorate_at, "{}", c.log());
    within("start after quorum", started - quorate_at, 0, 50 + LATE, &c.log());
    // Running with quorum and event-driven checks: no warning for several intervals.
    std::thread::sleep(Duration::from_millis(3 * T as u64));
    assert!(!c.log().has(1, "signal SIGTERM"), "{}", c.log());
    assert_eq!(c.state()["state"], "running");

    let lost_at = now_ms();
    std::fs::write(&qfile, "0").unwrap();
    let warned = c.wait_for(1, "signal SIGTERM");
    within("warning after quorum loss", warned - lost_at, 0, 50 + LATE, &c.log());
    let next = c.wait_for(2, "starting");
    within("kill after the warning", next - warned, T - EARLY, T + LATE, &c.log());
    std::thread::sleep(Duration::from_millis(300));
    assert!(!c.log().has(2, "started"), "{}", c.log());
    let state = c.state();
    assert_eq!(
        (state["state"].as_str(), state["instance_id"].as_u64()),
        (Some("waiting for quorum"), Some(2))
    );

    std::fs::write(&qfile, "1").unwrap();
    let st = wait(&mut sup, Duration::from_secs(10));
    let log = c.log();
    assert_eq!(code(st), 0, "{log}");
    assert!(log.has(2, "started") && log.errors().is_empty(), "{log}");
}

/// Goal: SAM-6. mark_failed kills the child at once with SIGKILL, the state is "failed" and
/// there is no restart even with the restart policy.
#[test]
fn sam_mark_failed_kills_without_restart() {
    let c = Case::new("failed");
    let start = Instant::now();
    let (st, log) = c.run(
        &["--interval", "5s", "--policy", "restart"],
        &["--default", "register,start,hb:1:0,mark-failed"],
    );
    assert_eq!(code(st), 128 + 9, "{log}");
    assert!(start.elapsed() < Duration::from_secs(4), "not immediate: {:?}", start.elapsed());
    assert_eq!(log.instances(), [1]);
    assert!(log.errors().is_empty(), "mark_failed returned:\n{log}");
    let state = c.state();
    assert_eq!(state["state"], "failed");
    assert_eq!(state["restarts"], 0);
}

/// Goal: SAM-7 against the real supervisor. Every call outside its states fails with
/// BadHandle and changes nothing (the stored data keeps its size, the state stays
/// "stopped"); after finalize every call fails and the supervisor refuses a second channel.
#[test]
fn sam_api_state_machine_with_the_real_supervisor() {
    let c = Case::new("api");
    let mut sup = c.spawn(
        &["--interval", INTERVAL, "--policy", "restart"],
        &["--default", "api,reinit,sleep:1500,exit:0"],
    );
    c.wait_for(1, "reinit-refused");
    std::thread::sleep(Duration::from_millis(100));
    let state = c.state();
    assert_eq!(state["data_size"], 4, "{state}");
    assert_eq!(state["state"], "stopped");
    assert_eq!(state["registered"], true);
    let st = wait(&mut sup, Duration::from_secs(10));
    let log = c.log();
    assert_eq!(code(st), 0, "{log}");
    assert!(log.has(1, "api-ok") && log.errors().is_empty(), "{log}");
}

/// Goal: SAM-8. With event-driven checking the callback runs about once per interval;
/// when it fails the heartbeats stop, the warning comes one interval after the last one
/// and the kill one interval later, then a restart.
#[test]
fn sam_event_driven_callback_failure_recovers() {
    let c = Case::new("callback");
    let (st, log) = c.run(
        &["--interval", INTERVAL, "--policy", "restart"],
        &["--script", "1=register,cb:3,start,hang", "--script", "2=register,exit:0"],
    );
    assert_eq!(code(st), 0, "{log}");
    let cb: Vec<u128> = (1..=3).map(|n| log.first(1, &format!("cb {n}"))).collect();
    within("first callback after start", cb[0] - log.first(1, "started"), T - EARLY, T + LATE, &log);
    within("callback period", cb[1] - cb[0], T - EARLY, T + LATE, &log);
    within("callback period", cb[2] - cb[1], T - EARLY, T + LATE, &log);
    let warned = log.first(1, "signal SIGTERM");
    within("warning after the failed callback", warned - cb[2], T - EARLY, T + LATE, &log);
    within("kill after the warning", log.first(2, "begin") - warned, T - EARLY, T + LATE, &log);
    assert!(!log.has(1, "cb 4"), "{log}");
}

/// Goal: with interval 0 only death is detected: a started child silent for three
/// "intervals" is left alone; its exit while started is a failure (restart).
#[test]
fn sam_interval_zero_watches_only_death() {
    let c = Case::new("zero");
    let (st, log) = c.run(
        &["--interval", "0", "--policy", "restart"],
        &["--script", "1=register,start,sleep:900,exit:3", "--script", "2=register,exit:0"],
    );
    assert_eq!(code(st), 0, "{log}");
    assert!(!log.has(1, "signal SIGTERM"), "{log}");
    assert!(log.first(1, "exit 3") - log.first(1, "started") >= 900);
    assert_eq!(log.instances(), [1, 2]);
}

/// Goal: the warn signal comes from `--warn-signal`, an instance may change it with
/// warn_signal_set, and the change outlives the instance (it is the supervisor's).
#[test]
fn sam_warn_signal_is_configurable() {
    let c = Case::new("warnsig");
    let (st, log) = c.run(
        &["--interval", INTERVAL, "--policy", "restart", "--warn-signal", "USR2"],
        &[
            "--script",
            "1=register,start,hang",
            "--script",
            "2=register,warn:SIGUSR1,start,hang",
            "--script",
            "3=register,start,hang",
            "--script",
            "4=register,exit:0",
        ],
    );
    assert_eq!(code(st), 0, "{log}");
    assert!(log.has(1, "signal SIGUSR2") && !log.has(1, "signal SIGTERM"), "{log}");
    assert!(log.has(2, "signal SIGUSR1"), "{log}");
    assert!(log.has(3, "signal SIGUSR1"), "{log}");
}

/// Goal: `sam status` shows a running supervisor (JSON and table) and a SIGTERM to the
/// supervisor is passed to the child and ends supervision cleanly (state file removed).
#[test]
fn sam_status_lists_supervisors() {
    let c = Case::new("status");
    let mut sup = c.spawn(
        &["--interval", INTERVAL, "--policy", "restart"],
        &["--default", "term-exits:0,register,data-store:10,cb:1000000,start,hang"],
    );
    c.wait_for(1, "started");
    std::thread::sleep(Duration::from_millis(200));
    let out = Command::new(SUPERVISOR).args(["status", "--json", "--dir"]).arg(&c.dir).output().unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let s = &v[0];
    let app_pid = c.log().0[0].pid;
    assert_eq!(s["supervisor_pid"], sup.id());
    assert_eq!(s["state"], "running");
    assert_eq!(s["instance_id"], 1);
    assert_eq!(s["pid"], app_pid);
    assert_eq!(s["recovery"], "restart");
    assert_eq!(s["poll_period"], 300);
    assert_eq!(s["data_size"], 10);
    assert_eq!(s["supervisor_alive"], true);
    let age = now_ms() as i64 - s["last_health_check"].as_i64().unwrap();
    assert!((0..1000).contains(&age), "last health check {age} ms ago");

    let out = Command::new(SUPERVISOR).args(["status", "--dir"]).arg(&c.dir).output().unwrap();
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.contains("running") && table.contains("sam-test-app"), "{table}");

    nix::sys::signal::kill(nix::unistd::Pid::from_raw(sup.id() as i32), nix::sys::signal::Signal::SIGTERM)
        .unwrap();
    let st = wait(&mut sup, Duration::from_secs(10));
    assert_eq!(code(st), 0, "{}", c.log());
    assert_eq!(c.state_files(), 0);
    let out = Command::new(SUPERVISOR).args(["status", "--dir"]).arg(&c.dir).output().unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "no SAM supervisors\n");
}

/// Goal: a wrapper (`sh -c`) between the supervisor and the application works, and a
/// failed instance leaves nothing behind. Method: the shell (not exec'ing) runs the
/// application, which connects from a grandchild pid; it hangs; the warning ends the shell,
/// the recovery kills the rest of the process group, instance 2 starts.
#[test]
fn sam_wrapped_application_and_process_group() {
    let c = Case::new("wrapper");
    let script = format!(
        "{APP} --log {} --script 1=register,start,hang --script 2=register,exit:0; echo done",
        c.log.display()
    );
    let mut cmd = Command::new(SUPERVISOR);
    cmd.args(["run", "--interval", INTERVAL, "--policy", "restart", "--dir"]).arg(&c.dir);
    cmd.args(["--", "sh", "-c", &script]);
    cmd.stderr(std::fs::File::create(c.dir.join("supervisor.err")).unwrap());
    let st = wait(&mut cmd.spawn().unwrap(), Duration::from_secs(20));
    let log = c.log();
    assert_eq!(code(st), 0, "{log}");
    assert!(log.has(1, "registered 1") && log.has(2, "registered 2"), "{log}");
    let first_app = log.0[0].pid;
    std::thread::sleep(Duration::from_millis(100));
    assert!(!running(first_app), "instance 1's application survived its recovery\n{log}");
}

/// Whether `pid` is a live process (a zombie waiting for its reaper is not).
fn running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit(')').next().and_then(|r| r.split_whitespace().next()) != Some("Z"),
        Err(_) => false,
    }
}

fn now_ms() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()
}

mod daemon {
    //! The real quorum source: the daemon's `status` over IPC.
    use super::*;
    use std::collections::BTreeMap;
    use totem_core::{Config, NodeId};
    use totem_node::ipc::{Access, Server};
    use totem_node::protect::PacketCrypto;
    use totem_node::runtime::{Runtime, RuntimeConfig};
    use totem_node::sam::quorum::{DaemonQuorum, QuorumSource};
    use totem_node::store::MemStore;

    /// A one-node daemon whose nodelist has `nodes` entries (the others never answer).
    async fn daemon(dir: &Path, nodes: u32) -> PathBuf {
        let socket = totem_node::transport::bind_udp("127.0.0.1:0".parse().unwrap(), 1 << 20).unwrap();
        let addr = socket.local_addr().unwrap();
        let mut nodelist = BTreeMap::from([(NodeId(1), addr)]);
        for n in 2..=nodes {
            nodelist.insert(NodeId(n), format!("127.0.0.1:{}", 9 + n).parse().unwrap());
        }
        let cfg = RuntimeConfig {
            node_id: NodeId(1),
            core: Config::default(),
            nodelist,
            window: totem_node::window::WindowSize::DEFAULT,
        };
        let (rt, handle) =
            Runtime::new(cfg, socket, MemStore::default(), PacketCrypto::cleartext(NodeId(1))).unwrap();
        tokio::spawn(async move { rt.run().await.unwrap() });
        let path = dir.join("totem.sock");
        let server = Server::bind(&path).unwrap();
        tokio::spawn(server.serve(
            handle.clone(),
            Access::default(),
            totem_node::events::QueueLimit::events(64),
        ));
        for _ in 0..400 {
            let s = handle.status().await.unwrap();
            if s.state == "operational" && !s.syncing {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        path
    }

    /// Goal: SAM-5 with the real source. Method: a one-node daemon with a nodelist of one
    /// is quorate, so `start` returns; with a nodelist of three it is not (1 of 3), so the
    /// child waits for quorum; an absent daemon is "unknown" (an error, not quorate).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sam_quorum_from_the_daemon() {
        let c = Case::new("daemon");
        let socket = daemon(&c.dir, 1).await;
        let mut q = DaemonQuorum::new(socket.clone());
        assert_eq!(q.quorate().await, Ok(true));
        assert!(DaemonQuorum::new(c.dir.join("absent.sock")).quorate().await.is_err());

        let sam_dir = c.dir.join("sam");
        let mut sup = tokio::process::Command::new(SUPERVISOR)
            .arg("--socket")
            .arg(&socket)
            .args([
                "run",
                "--interval",
                INTERVAL,
                "--policy",
                "quit",
                "--quorum",
                "--quorum-poll",
                "50ms",
                "--dir",
            ])
            .arg(&sam_dir)
            .arg("--")
            .arg(APP)
            .arg("--log")
            .arg(&c.log)
            .args(["--default", "register,start,stop,exit:0"])
            .stderr(std::fs::File::create(c.dir.join("supervisor.err")).unwrap())
            .spawn()
            .unwrap();
        let st = tokio::time::timeout(Duration::from_secs(15), sup.wait()).await.unwrap().unwrap();
        assert_eq!(st.code(), Some(0), "{}", c.log());
        assert!(c.log().has(1, "started"), "{}", c.log());

        let c3 = Case::new("daemon3");
        let socket3 = daemon(&c3.dir, 3).await;
        assert_eq!(DaemonQuorum::new(socket3.clone()).quorate().await, Ok(false));
        let mut sup = tokio::process::Command::new(SUPERVISOR)
            .env("TOTEM_SOCKET", &socket3)
            .args([
                "run",
                "--interval",
                INTERVAL,
                "--policy",
                "quit",
                "--quorum",
                "--quorum-poll",
                "50ms",
                "--dir",
            ])
            .arg(&c3.dir)
            .arg("--")
            .arg(APP)
            .arg("--log")
            .arg(&c3.log)
            .args(["--default", "term-exits:0,register,start,stop,exit:3"])
            .stderr(std::fs::File::create(c3.dir.join("supervisor.err")).unwrap())
            .spawn()
            .unwrap();
        let c3_ref = &c3;
        tokio::task::block_in_place(|| c3_ref.wait_for(1, "starting"));
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!c3.log().has(1, "started"), "started without quorum:\n{}", c3.log());
        assert_eq!(c3.state()["state"], "waiting for quorum");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(sup.id().unwrap() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let st = tokio::time::timeout(Duration::from_secs(10), sup.wait()).await.unwrap().unwrap();
        assert_eq!(st.code(), Some(0), "{}", c3.log());
    }
}
