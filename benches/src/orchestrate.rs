//! Runs one measurement across the cluster: a worker per node in that node's network
//! namespace (`ip netns exec NS cpgbench ...`; `-` runs it here), then combines what they
//! report into one [`Record`].

use crate::mono_ns;
use crate::procstat::{self, Sample};
use crate::report::Record;
use crate::udp::UdpReport;
use crate::workload::{MonLine, WorkerReport};
use anyhow::{Context, anyhow, bail};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The cluster under test, as the orchestrator sees it.
#[derive(Clone, Debug)]
pub struct Cluster {
    /// "totem" or "corosync".
    pub backend: String,
    /// Row variant for the table (Corosync: `sched_rr` yes or no; Totem: `-`).
    pub variant: String,
    /// One network namespace per node (`-`: this one).
    pub namespaces: Vec<String>,
    /// Totem's client socket per node (unused for Corosync).
    pub sockets: Vec<Option<PathBuf>>,
    /// The daemons' pids, for their CPU.
    pub daemon_pids: Vec<u32>,
}

fn exe() -> anyhow::Result<PathBuf> {
    std::env::current_exe().context("finding cpgbench's own path")
}

/// A command running `args` of this program in namespace `ns`.
fn command_in(ns: &str, args: &[String]) -> anyhow::Result<Command> {
    let mut c = if ns == "-" {
        Command::new(exe()?)
    } else {
        let mut c = Command::new("ip");
        c.arg("netns").arg("exec").arg(ns).arg(exe()?);
        c
    };
    c.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit());
    Ok(c)
}

impl Cluster {
    fn node_args(&self, i: usize) -> Vec<String> {
        let mut a = vec!["--backend".to_string(), self.backend.clone()];
        if let Some(Some(s)) = self.sockets.get(i) {
            a.push("--socket".into());
            a.push(s.display().to_string());
        }
        a
    }

    fn spawn(&self, i: usize, sub: &str, extra: &[String]) -> anyhow::Result<Child> {
        let mut args = vec![sub.to_string()];
        args.extend(self.node_args(i));
        args.extend_from_slice(extra);
        command_in(&self.namespaces[i], &args)?
            .spawn()
            .with_context(|| format!("starting the {sub} worker on node {}", i + 1))
    }
}

fn kill_all(children: &mut [Child]) {
    for c in children.iter_mut() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// A unique group name for this run.
fn group_name(prefix: &str) -> String {
    format!("{prefix}{}-{}", std::process::id(), mono_ns() % 1_000_000_000)
}

/// The sending side of a throughput or latency run.
#[derive(Clone, Debug)]
pub struct Load {
    pub size: usize,
    pub senders: usize,
    /// Flood for this long, or (paced) `rate` msgs/s for `count` messages.
    pub dur: Duration,
    pub rate: Option<f64>,
    pub count: u64,
    /// A directory for every worker's deliveries log (`n<node>.txt`), if wanted.
    pub deliveries_log: Option<std::path::PathBuf>,
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

/// Run one throughput (flood) or latency (paced) measurement.
pub fn load(cluster: &Cluster, load: &Load, foreign_max: f64) -> anyhow::Result<Record> {
    let n = cluster.namespaces.len();
    let group = group_name("b");
    let timeout = load.dur.as_secs_f64() + load.rate.map_or(0.0, |r| load.count as f64 / r) + 90.0;
    let mut children = Vec::new();
    for i in 0..n {
        let mut extra = vec![
            "--group".into(),
            group.clone(),
            "--members".into(),
            n.to_string(),
            "--senders".into(),
            load.senders.to_string(),
            "--size".into(),
            load.size.to_string(),
            "--timeout".into(),
            format!("{timeout}"),
        ];
        match load.rate {
            Some(rate) => {
                extra.extend(["--rate".into(), rate.to_string(), "--count".into(), load.count.to_string()])
            }
            None => extra.extend(["--dur".into(), load.dur.as_secs_f64().to_string()]),
        }
        if i < load.senders {
            extra.push("--send".into());
        }
        if let Some(dir) = &load.deliveries_log {
            extra.extend([
                "--deliveries-log".into(),
                dir.join(format!("n{}.txt", i + 1)).display().to_string(),
            ]);
        }
        match cluster.spawn(i, "worker", &extra) {
            Ok(c) => children.push(c),
            Err(e) => {
                kill_all(&mut children);
                return Err(e);
            }
        }
    }
    let worker_pids: Vec<u32> = children.iter().map(Child::id).collect();
    // Read every worker's output on its own thread (no pipe can fill up).
    let outputs: Vec<_> = children
        .iter_mut()
        .map(|c| {
            let mut out = c.stdout.take();
            std::thread::spawn(move || {
                let mut s = String::new();
                if let Some(o) = out.as_mut() {
                    let _ = o.read_to_string(&mut s);
                }
                s
            })
        })
        .collect();
    let stop = mono_ns() + ((timeout + 10.0) * 1e9) as u64;
    let mut samples = Vec::new();
    loop {
        samples.push(Sample::take(&cluster.daemon_pids, &worker_pids));
        let running = children.iter_mut().map(|c| matches!(c.try_wait(), Ok(None))).filter(|r| *r).count();
        if running == 0 {
            break;
        }
        if mono_ns() > stop {
            kill_all(&mut children);
            bail!("the workers did not finish in {timeout:.0} s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    samples.push(Sample::take(&cluster.daemon_pids, &worker_pids));
    let mut reports = Vec::new();
    for (i, (o, c)) in outputs.into_iter().zip(children.iter_mut()).enumerate() {
        let text = o.join().map_err(|_| anyhow!("reader thread"))?;
        let status = c.wait()?;
        let line = text.lines().last().unwrap_or("");
        let r: WorkerReport = serde_json::from_str(line)
            .with_context(|| format!("node {} worker ({status}) printed no report: {text:?}", i + 1))?;
        reports.push(r);
    }
    Ok(combine(cluster, load, &reports, &samples, foreign_max))
}

fn combine(
    cluster: &Cluster,
    load: &Load,
    reports: &[WorkerReport],
    samples: &[Sample],
    foreign_max: f64,
) -> Record {
    let expected = reports.first().map_or(0, |r| r.expected);
    let sent: u64 = reports.iter().map(|r| r.sent).sum();
    let complete = reports.iter().all(|r| r.complete && r.delivered == expected && r.expected == expected);
    let same_order = reports.windows(2).all(|w| w[0].order_hash == w[1].order_hash);
    let fifo = reports.iter().all(|r| r.fifo_ok);
    let mut note = Vec::new();
    if !complete {
        note.push(format!(
            "incomplete: sent {sent}, delivered {:?}",
            reports.iter().map(|r| r.delivered).collect::<Vec<_>>()
        ));
    }
    if !same_order {
        note.push("ORDER DIFFERS".to_string());
    }
    if !fifo {
        note.push("FIFO GAP".to_string());
    }
    let rates: Vec<f64> = reports
        .iter()
        .map(|r| {
            let span = r.last_ns.saturating_sub(r.first_ns) as f64 / 1e9;
            if span > 0.0 { r.delivered.saturating_sub(1) as f64 / span } else { f64::NAN }
        })
        .collect();
    let mut f = BTreeMap::new();
    let rate = median(rates);
    let first = reports.iter().map(|r| r.first_ns).min().unwrap_or(0);
    let last = reports.iter().map(|r| r.last_ns).max().unwrap_or(0);
    let (kind, key) = match load.rate {
        None => {
            f.insert("msgs_per_s".to_string(), rate);
            f.insert("mb_per_s".to_string(), rate * load.size as f64 / 1e6);
            f.insert(
                "lat_p50_ms".to_string(),
                median(reports.iter().map(|r| r.lat_p50_us as f64 / 1e3).collect()),
            );
            f.insert(
                "lat_p99_ms".to_string(),
                median(reports.iter().map(|r| r.lat_p99_us as f64 / 1e3).collect()),
            );
            f.insert("try_again".to_string(), reports.iter().map(|r| r.try_again).sum::<u64>() as f64);
            (
                "tput",
                format!(
                    "{} B, {} sender{}",
                    load.size,
                    load.senders,
                    if load.senders == 1 { "" } else { "s" }
                ),
            )
        }
        Some(r) => {
            // One sender (node 1): its own delivery is local, the others are remote.
            let local = &reports[0];
            let remote = &reports[1..];
            let worst = |g: fn(&WorkerReport) -> u64| remote.iter().map(g).max().unwrap_or(0) as f64;
            f.insert("local_p50_us".to_string(), local.lat_p50_us as f64);
            f.insert("local_p99_us".to_string(), local.lat_p99_us as f64);
            f.insert("local_p999_us".to_string(), local.lat_p999_us as f64);
            f.insert("remote_p50_us".to_string(), worst(|r| r.lat_p50_us));
            f.insert("remote_p99_us".to_string(), worst(|r| r.lat_p99_us));
            f.insert("remote_p999_us".to_string(), worst(|r| r.lat_p999_us));
            f.insert("achieved_per_s".to_string(), rate);
            ("lat", format!("{} B at {} msgs/s", load.size, r))
        }
    };
    let mut clean = true;
    if let Some((daemons, workers, host)) = procstat::window(samples, first, last) {
        let secs = last.saturating_sub(first) as f64 / 1e9;
        let msgs = expected.max(1) as f64;
        f.insert("daemon_cpu_s_per_1m".to_string(), daemons / msgs * 1e6);
        if secs > 0.0 {
            f.insert("daemon_cpu_pct".to_string(), daemons / secs * 100.0);
            f.insert("worker_cpu_pct".to_string(), workers / secs * 100.0);
            let other = ((host - daemons - workers) / secs * 100.0).max(0.0);
            f.insert("other_load_pct".to_string(), other);
            clean = other <= foreign_max;
        }
    }
    Record {
        kind: kind.to_string(),
        backend: cluster.backend.clone(),
        variant: cluster.variant.clone(),
        key,
        ok: complete && same_order && fifo,
        clean,
        note: note.join("; "),
        figures: f,
    }
}

/// A monitor child and the lines it printed so far (read on a thread).
struct Mon {
    child: Child,
    lines: mpsc::Receiver<MonLine>,
    seen: Vec<MonLine>,
}

impl Mon {
    fn start(cluster: &Cluster, i: usize, group: &str, max_secs: u64) -> anyhow::Result<Mon> {
        let mut child = cluster.spawn(
            i,
            "mon",
            &["--group".into(), group.into(), "--max-secs".into(), max_secs.to_string()],
        )?;
        let out = child.stdout.take().ok_or_else(|| anyhow!("monitor stdout"))?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(m) = serde_json::from_str::<MonLine>(&l)
                    && tx.send(m).is_err()
                {
                    break;
                }
            }
        });
        Ok(Mon { child, lines, seen: Vec::new() })
    }

    fn drain(&mut self) {
        while let Ok(l) = self.lines.try_recv() {
            self.seen.push(l);
        }
    }

    /// The time of the first line since index `from` that `pred` accepts.
    fn find(&self, from: usize, pred: impl Fn(&MonLine) -> Option<u64>) -> Option<u64> {
        self.seen.iter().skip(from).find_map(pred)
    }
}

impl Drop for Mon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Wait (bounded) until `done` says every monitor has what it needs.
fn wait_for(
    mons: &mut [Mon],
    secs: u64,
    what: &str,
    mut done: impl FnMut(&[Mon]) -> bool,
) -> anyhow::Result<()> {
    let stop = mono_ns() + secs * 1_000_000_000;
    loop {
        for m in mons.iter_mut() {
            m.drain();
        }
        if done(mons) {
            return Ok(());
        }
        if mono_ns() > stop {
            bail!("timed out after {secs} s waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn confchg_nodes(l: &MonLine, n: usize) -> Option<u64> {
    match l {
        MonLine::Confchg { t, nodes, .. } if nodes.len() == n => Some(*t),
        _ => None,
    }
}

fn totem_nodes(l: &MonLine, n: usize) -> Option<u64> {
    match l {
        MonLine::Totem { t, nodes } if nodes.len() == n => Some(*t),
        _ => None,
    }
}

/// How the failed node is started again: this command, its output to `log`, its pid to
/// `pidfile`.
#[derive(Clone, Debug)]
pub struct Restart {
    pub argv: Vec<String>,
    pub log: PathBuf,
    pub pidfile: PathBuf,
}

/// Kill -9 the last node's daemon, time the survivors' new configuration; 2 s later start
/// it again and time its way back into the membership.
pub fn fail(cluster: &Cluster, token: &str, restart: &Restart) -> anyhow::Result<Record> {
    let n = cluster.namespaces.len();
    let victim = n - 1;
    let group = group_name("m");
    let mut mons = Vec::new();
    for i in 0..n {
        mons.push(Mon::start(cluster, i, &group, 120)?);
    }
    wait_for(&mut mons, 30, "the monitors' group", |ms| {
        ms.iter().all(|m| m.find(0, |l| confchg_nodes(l, n)).is_some())
    })?;
    let marks: Vec<usize> = mons.iter().map(|m| m.seen.len()).collect();
    let pid = *cluster.daemon_pids.get(victim).ok_or_else(|| anyhow!("no daemon pid for node {n}"))?;
    let t_kill = mono_ns();
    // SAFETY: kill(2) on the pid of the daemon this run started.
    if unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) } != 0 {
        bail!("kill -9 {pid}: {}", std::io::Error::last_os_error());
    }
    let survivors = 0..victim;
    let down = |l: &MonLine| match l {
        MonLine::Confchg { t, nodedown, .. } if nodedown.contains(&(victim as u32 + 1)) => Some(*t),
        _ => None,
    };
    wait_for(&mut mons[survivors.clone()], 60, "the survivors' new configuration", |ms| {
        ms.iter().enumerate().all(|(i, m)| {
            m.find(marks[i], down).is_some() && m.find(marks[i], |l| totem_nodes(l, n - 1)).is_some()
        })
    })?;
    let latest = |ms: &[Mon], f: &dyn Fn(&Mon, usize) -> Option<u64>| -> f64 {
        ms.iter().enumerate().filter_map(|(i, m)| f(m, i)).max().unwrap_or(0) as f64
    };
    let cpg_down = latest(&mons[..victim], &|m, i| m.find(marks[i], down)) - t_kill as f64;
    let totem_down =
        latest(&mons[..victim], &|m, i| m.find(marks[i], |l| totem_nodes(l, n - 1))) - t_kill as f64;
    drop(mons.pop());
    std::thread::sleep(Duration::from_secs(2));
    let marks: Vec<usize> = mons.iter().map(|m| m.seen.len()).collect();
    let log =
        std::fs::File::create(&restart.log).with_context(|| format!("creating {}", restart.log.display()))?;
    let (program, args) = restart.argv.split_first().ok_or_else(|| anyhow!("empty restart command"))?;
    let t_start = mono_ns();
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("restarting node {n}: {program}"))?;
    std::fs::write(&restart.pidfile, format!("{}\n", child.id()))?;
    // The daemon outlives this run: the script stops it by the pid written above.
    drop(child);
    mons.push(Mon::start(cluster, victim, &group, 120)?);
    let mut marks = marks;
    marks.push(0);
    wait_for(&mut mons, 90, "the restarted node's membership", |ms| {
        ms[..victim].iter().enumerate().all(|(i, m)| m.find(marks[i], |l| totem_nodes(l, n)).is_some())
            && ms[victim].find(0, |l| confchg_nodes(l, n)).is_some()
    })?;
    let ring = latest(&mons[..victim], &|m, i| m.find(marks[i], |l| totem_nodes(l, n))) - t_start as f64;
    let rejoined = mons[victim].find(0, |l| confchg_nodes(l, n)).unwrap_or(0) as f64 - t_start as f64;
    let ipc = mons[victim]
        .find(0, |l| match l {
            MonLine::Ready { t, .. } => Some(*t),
            _ => None,
        })
        .unwrap_or(0) as f64
        - t_start as f64;
    let mut f = BTreeMap::new();
    f.insert("kill_to_cpg_confchg_ms".to_string(), cpg_down / 1e6);
    f.insert("kill_to_totem_confchg_ms".to_string(), totem_down / 1e6);
    f.insert("start_to_survivors_ring_ms".to_string(), ring / 1e6);
    f.insert("start_to_ipc_ready_ms".to_string(), ipc / 1e6);
    f.insert("start_to_member_ms".to_string(), ring.max(rejoined) / 1e6);
    Ok(Record {
        kind: "fail".into(),
        backend: cluster.backend.clone(),
        variant: cluster.variant.clone(),
        key: format!("token {token}"),
        ok: true,
        clean: true,
        note: String::new(),
        figures: f,
    })
}

/// The raw UDP ceiling from node 1 to node 2 (`to` is node 2's address and a free port).
pub fn udp(
    namespaces: &[String],
    to: std::net::SocketAddr,
    size: usize,
    secs: f64,
) -> anyhow::Result<Record> {
    let (tx_ns, rx_ns) = match namespaces {
        [a, b, ..] => (a, b),
        _ => bail!("the UDP ceiling needs two namespaces"),
    };
    let mut rx = command_in(
        rx_ns,
        &[
            "udp-sink".into(),
            "--bind".into(),
            to.to_string(),
            "--size".into(),
            size.to_string(),
            "--secs".into(),
            secs.to_string(),
        ],
    )?
    .spawn()?;
    std::thread::sleep(Duration::from_millis(300));
    let tx = command_in(
        tx_ns,
        &[
            "udp-blast".into(),
            "--to".into(),
            to.to_string(),
            "--size".into(),
            size.to_string(),
            "--secs".into(),
            secs.to_string(),
        ],
    )?
    .output()?;
    let mut text = String::new();
    if let Some(o) = rx.stdout.as_mut() {
        o.read_to_string(&mut text)?;
    }
    rx.wait()?;
    let r: UdpReport =
        serde_json::from_str(text.trim()).with_context(|| format!("udp-sink printed {text:?}"))?;
    let sent: u64 = String::from_utf8_lossy(&tx.stdout).trim().parse().unwrap_or(0);
    let span = r.last_ns.saturating_sub(r.first_ns) as f64 / 1e9;
    let mut f = BTreeMap::new();
    let pps = if span > 0.0 { r.packets as f64 / span } else { f64::NAN };
    f.insert("packets_per_s".to_string(), pps);
    f.insert("mb_per_s".to_string(), pps * size as f64 / 1e6);
    f.insert(
        "loss_pct".to_string(),
        if sent > 0 { 100.0 * (1.0 - r.packets as f64 / sent as f64) } else { f64::NAN },
    );
    Ok(Record {
        kind: "udp".into(),
        backend: "udp".into(),
        variant: "-".into(),
        key: format!("{size} B"),
        ok: r.packets > 0,
        clean: true,
        note: String::new(),
        figures: f,
    })
}
