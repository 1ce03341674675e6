//! cpgbench: the CPG benchmark with two back ends (Totem; Corosync with `--features
//! corosync`). `benches/compare-corosync.sh` drives it; see the README's "Benchmark: Totem
//! next to Corosync".

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;
use totem_bench::backend::Cpg;
use totem_bench::orchestrate::{self, Cluster, Load, Restart};
use totem_bench::report::{self, Record};
use totem_bench::workload::{self, Mode, Plan};
use totem_bench::{totem::TotemCpg, udp};

#[derive(Debug, Parser)]
#[command(name = "cpgbench", about = "CPG benchmark: Totem and Corosync, same workload")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Args)]
struct Conn {
    /// totem or corosync.
    #[arg(long, default_value = "totem")]
    backend: String,
    /// Totem's client socket (default: $TOTEM_SOCKET, else /run/totem/totem.sock).
    #[arg(long)]
    socket: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct ClusterArgs {
    /// totem or corosync.
    #[arg(long, default_value = "totem")]
    backend: String,
    /// The row's variant (Corosync's sched_rr: yes or no); `-` for Totem.
    #[arg(long, default_value = "-")]
    variant: String,
    /// Network namespace of each node, comma-separated (`-` = this one).
    #[arg(long, value_delimiter = ',', required = true)]
    netns: Vec<String>,
    /// Totem's client socket of each node, comma-separated.
    #[arg(long, value_delimiter = ',')]
    sockets: Vec<PathBuf>,
    /// The daemons' pids, comma-separated (for their CPU; node order).
    #[arg(long, value_delimiter = ',')]
    daemon_pids: Vec<u32>,
    /// Append the record to this file (and print it).
    #[arg(long)]
    out: Option<PathBuf>,
}

impl ClusterArgs {
    fn cluster(&self) -> Cluster {
        Cluster {
            backend: self.backend.clone(),
            variant: self.variant.clone(),
            namespaces: self.netns.clone(),
            sockets: (0..self.netns.len()).map(|i| self.sockets.get(i).cloned()).collect(),
            daemon_pids: self.daemon_pids.clone(),
        }
    }
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// One node's worker (started by `load`): join, send, receive, print a JSON report.
    Worker {
        #[command(flatten)]
        conn: Conn,
        #[arg(long)]
        group: String,
        #[arg(long)]
        members: usize,
        #[arg(long)]
        senders: usize,
        #[arg(long)]
        size: usize,
        #[arg(long)]
        send: bool,
        /// Flood for this many seconds.
        #[arg(long, default_value_t = 5.0)]
        dur: f64,
        /// Paced instead: this many msgs/s ...
        #[arg(long)]
        rate: Option<f64>,
        /// ... for this many messages.
        #[arg(long, default_value_t = 5000)]
        count: u64,
        #[arg(long, default_value_t = 120.0)]
        timeout: f64,
        /// Write one line per data message delivered here to this file: sender node, pid,
        /// sequence number, sent and delivered (ns, CLOCK_MONOTONIC).
        #[arg(long)]
        deliveries_log: Option<PathBuf>,
    },
    /// Membership monitor (started by `fail`): prints view changes as JSON lines.
    Mon {
        #[command(flatten)]
        conn: Conn,
        #[arg(long)]
        group: String,
        #[arg(long, default_value_t = 120)]
        max_secs: u64,
    },
    /// Throughput (flood) or, with --rate, latency (paced, node 1 sends) across the cluster.
    Load {
        #[command(flatten)]
        cluster: ClusterArgs,
        #[arg(long)]
        size: usize,
        #[arg(long, default_value_t = 1)]
        senders: usize,
        #[arg(long, default_value_t = 5.0)]
        dur: f64,
        #[arg(long)]
        rate: Option<f64>,
        /// Paced runs send for this many seconds (count = rate x secs).
        #[arg(long, default_value_t = 5.0)]
        lat_secs: f64,
        /// A run is clean if other work used at most this % of one core.
        #[arg(long, default_value_t = 20.0)]
        foreign_max: f64,
        /// Have every worker log its deliveries (see `worker --deliveries-log`) to
        /// DIR/n<node>.txt (a repeated run overwrites them).
        #[arg(long)]
        deliveries_log: Option<PathBuf>,
    },
    /// kill -9 the last node's daemon, then restart it with the command after `--`.
    Fail {
        #[command(flatten)]
        cluster: ClusterArgs,
        /// The token setting, for the row label.
        #[arg(long)]
        token: String,
        #[arg(long)]
        restart_log: PathBuf,
        #[arg(long)]
        restart_pidfile: PathBuf,
        #[arg(last = true, required = true)]
        restart: Vec<String>,
    },
    /// Raw UDP ceiling from the first namespace to the second.
    Udp {
        #[arg(long, value_delimiter = ',', required = true)]
        netns: Vec<String>,
        /// Node 2's address and a free port.
        #[arg(long)]
        to: std::net::SocketAddr,
        #[arg(long)]
        size: usize,
        #[arg(long, default_value_t = 3.0)]
        secs: f64,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// UDP sender (started by `udp`).
    UdpBlast {
        #[arg(long)]
        to: std::net::SocketAddr,
        #[arg(long)]
        size: usize,
        #[arg(long)]
        secs: f64,
    },
    /// UDP receiver (started by `udp`).
    UdpSink {
        #[arg(long)]
        bind: std::net::SocketAddr,
        #[arg(long)]
        size: usize,
        #[arg(long)]
        secs: f64,
    },
    /// Print the table of medians from a file of records.
    Report { raw: PathBuf },
}

fn with_backend<R>(
    backend: &str,
    totem: impl FnOnce() -> anyhow::Result<R>,
    #[allow(unused_variables)] corosync: impl FnOnce() -> anyhow::Result<R>,
) -> anyhow::Result<R> {
    match backend {
        "totem" => totem(),
        #[cfg(feature = "corosync")]
        "corosync" => corosync(),
        #[cfg(not(feature = "corosync"))]
        "corosync" => bail!("this cpgbench was built without the `corosync` feature"),
        other => bail!("unknown back end {other:?} (totem or corosync)"),
    }
}

fn worker<B: Cpg>(socket: Option<&Path>, plan: &Plan) -> anyhow::Result<()> {
    let mut b = B::open(socket)?;
    let report = workload::run_worker(&mut b, plan)?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

fn emit(record: &Record, out: Option<&Path>) -> anyhow::Result<()> {
    let line = serde_json::to_string(record)?;
    println!("{line}");
    if let Some(path) = out {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        writeln!(f, "{line}")?;
    }
    Ok(())
}

#[cfg(feature = "corosync")]
type Corosync = totem_bench::corosync::CorosyncCpg;
#[cfg(not(feature = "corosync"))]
type Corosync = TotemCpg;

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Cmd::Worker {
            conn,
            group,
            members,
            senders,
            size,
            send,
            dur,
            rate,
            count,
            timeout,
            deliveries_log,
        } => {
            let mode = match rate {
                Some(rate) => Mode::Paced { rate, count },
                None => Mode::Flood(Duration::from_secs_f64(dur)),
            };
            let timeout = Duration::from_secs_f64(timeout);
            let plan = Plan { group, members, send, senders, size, mode, timeout, deliveries_log };
            let s = conn.socket.as_deref();
            with_backend(&conn.backend, || worker::<TotemCpg>(s, &plan), || worker::<Corosync>(s, &plan))
        }
        Cmd::Mon { conn, group, max_secs } => {
            let s = conn.socket.as_deref();
            let max = Duration::from_secs(max_secs);
            with_backend(
                &conn.backend,
                || workload::monitor::<TotemCpg>(s, &group, max),
                || workload::monitor::<Corosync>(s, &group, max),
            )
        }
        Cmd::Load { cluster, size, senders, dur, rate, lat_secs, foreign_max, deliveries_log } => {
            let count = rate.map_or(0, |r| (r * lat_secs).round() as u64);
            let load = Load {
                size,
                senders: if rate.is_some() { 1 } else { senders },
                dur: Duration::from_secs_f64(dur),
                rate,
                count,
                deliveries_log,
            };
            let record = orchestrate::load(&cluster.cluster(), &load, foreign_max)?;
            emit(&record, cluster.out.as_deref())
        }
        Cmd::Fail { cluster, token, restart_log, restart_pidfile, restart } => {
            let r = Restart { argv: restart, log: restart_log, pidfile: restart_pidfile };
            let record = orchestrate::fail(&cluster.cluster(), &token, &r)?;
            emit(&record, cluster.out.as_deref())
        }
        Cmd::Udp { netns, to, size, secs, out } => {
            let record = orchestrate::udp(&netns, to, size, secs)?;
            emit(&record, out.as_deref())
        }
        Cmd::UdpBlast { to, size, secs } => {
            println!("{}", udp::blast(to, size, secs)?);
            Ok(())
        }
        Cmd::UdpSink { bind, size, secs } => {
            println!("{}", serde_json::to_string(&udp::sink(bind, size, secs)?)?);
            Ok(())
        }
        Cmd::Report { raw } => {
            let text = std::fs::read_to_string(&raw).with_context(|| format!("reading {}", raw.display()))?;
            print!("{}", report::table(&report::parse(&text)));
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cpgbench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
