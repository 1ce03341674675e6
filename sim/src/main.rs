//! `sim`: run many seeded simulations and report failures with a replay command, or replay
//! one seed and print its trace.

use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use sim::cluster::cli::{bug_name, parse_bug};
use sim::{FaultKinds, Limits, Options, RunReport, StartChoice};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use totem_core::broken::Bug;

#[derive(Parser, Debug)]
#[command(name = "sim", about = "Deterministic simulation of Totem clusters, judged by the EVS spec")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run many seeds; print every failure with the command that replays it.
    Run {
        /// Number of seeds to run.
        #[arg(long, default_value_t = 200)]
        seeds: u64,
        /// First seed.
        #[arg(long, default_value_t = 1)]
        start: u64,
        /// Worker threads (default: all cores).
        #[arg(long)]
        jobs: Option<usize>,
        /// Print a JSON summary instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Whole clusters on the real node runtime under turmoil (swarm over seeds).
    Cluster(sim::cluster::cli::ClusterArgs),
    /// Run scenario files on the cluster level (format: sim::cluster::script).
    Scenario(sim::cluster::cli::ScenarioArgs),
    /// Run one seed and print what happened.
    Replay {
        #[arg(long)]
        seed: u64,
        /// Print every trace event.
        #[arg(long)]
        trace: bool,
        #[command(flatten)]
        limits: LimitArgs,
    },
}

#[derive(Args, Debug, Clone)]
struct LimitArgs {
    /// Exact number of nodes (overrides --nodes-min/--nodes-max).
    #[arg(long)]
    nodes: Option<usize>,
    #[arg(long, default_value_t = 2)]
    nodes_min: usize,
    #[arg(long, default_value_t = 7)]
    nodes_max: usize,
    /// Exact per-packet loss probability for every run (default: drawn per seed).
    #[arg(long)]
    loss: Option<f64>,
    /// Highest loss probability a seed may draw.
    #[arg(long, default_value_t = 0.3)]
    loss_max: f64,
    /// Highest duplication probability a seed may draw.
    #[arg(long, default_value_t = 0.1)]
    dup_max: f64,
    /// Simulated seconds with faults on.
    #[arg(long, default_value_t = 10)]
    safety_secs: u64,
    /// Simulated seconds allowed, faults off, for everything to be delivered.
    #[arg(long, default_value_t = 30)]
    liveness_secs: u64,
    /// Largest application message in bytes.
    #[arg(long, default_value_t = 262144)]
    message_max: usize,
    /// Pass messages as values instead of encoded bytes.
    #[arg(long)]
    no_wire: bool,
    /// Run a deliberately broken variant of the core (needs --features broken).
    #[arg(long, value_parser = parse_bug)]
    bug: Option<Bug>,
    /// How nodes start: on one formed ring, cold (Node::new, the ring forms by itself), or
    /// drawn per seed.
    #[arg(long, value_enum, default_value_t = Start::Mixed)]
    start_mode: Start,
    /// Shorthand for --start-mode cold.
    #[arg(long)]
    cold: bool,
    /// Base token timeout in ms (default: drawn per seed from 300, 1000, 3000).
    #[arg(long)]
    token_ms: Option<u64>,
    /// No process or link faults at all (loss, duplication and reordering stay).
    #[arg(long)]
    no_faults: bool,
    /// No crashes.
    #[arg(long)]
    no_crash: bool,
    /// Crashed and departed nodes never come back.
    #[arg(long)]
    no_restart: bool,
    /// No pauses (SIGSTOP-like freezes).
    #[arg(long)]
    no_pause: bool,
    /// No clean leaves.
    #[arg(long)]
    no_leave: bool,
    /// No symmetric partitions.
    #[arg(long)]
    no_partition: bool,
    /// No one-way link cuts.
    #[arg(long)]
    no_one_way: bool,
    /// No swizzled partitions.
    #[arg(long)]
    no_swizzle: bool,
    /// No delaying of large packets.
    #[arg(long)]
    no_slow_large: bool,
    /// Every node starts at time zero.
    #[arg(long)]
    no_late_join: bool,
    /// Run the CPG service on every node with simulated client connections (join, leave,
    /// multicast, exit), judged by the CPG properties too.
    #[arg(long)]
    cpg: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Start {
    Formed,
    Cold,
    Mixed,
}

impl LimitArgs {
    fn limits(&self) -> Limits {
        let (nodes_min, nodes_max) = match self.nodes {
            Some(n) => (n, n),
            None => (self.nodes_min, self.nodes_max),
        };
        Limits {
            nodes_min,
            nodes_max,
            loss_max: self.loss_max,
            fixed_loss: self.loss,
            dup_max: self.dup_max,
            safety_secs: self.safety_secs,
            liveness_secs: self.liveness_secs,
            message_max: self.message_max.max(sim::payload::HEADER_LEN),
            wire: !self.no_wire,
            bug: self.bug,
            faults: self.fault_kinds(),
            start: match (self.cold, self.start_mode) {
                (true, _) | (false, Start::Cold) => StartChoice::Cold,
                (false, Start::Formed) => StartChoice::Formed,
                (false, Start::Mixed) => StartChoice::Mixed,
            },
            token_ms: self.token_ms,
            cpg: self.cpg,
        }
    }

    fn fault_kinds(&self) -> FaultKinds {
        if self.no_faults {
            return FaultKinds::none();
        }
        FaultKinds {
            crash: !self.no_crash,
            restart: !self.no_restart,
            pause: !self.no_pause,
            leave: !self.no_leave,
            partition: !self.no_partition,
            one_way: !self.no_one_way,
            swizzle: !self.no_swizzle,
            slow_large: !self.no_slow_large,
            late_join: !self.no_late_join,
        }
    }

    /// The flags that reproduce these limits, for the replay command.
    fn flags(&self) -> String {
        let mut f = String::new();
        match self.nodes {
            Some(n) => f.push_str(&format!(" --nodes {n}")),
            None => f.push_str(&format!(" --nodes-min {} --nodes-max {}", self.nodes_min, self.nodes_max)),
        }
        if let Some(p) = self.loss {
            f.push_str(&format!(" --loss {p}"));
        }
        f.push_str(&format!(
            " --loss-max {} --dup-max {} --safety-secs {} --liveness-secs {} --message-max {}",
            self.loss_max, self.dup_max, self.safety_secs, self.liveness_secs, self.message_max
        ));
        if self.no_wire {
            f.push_str(" --no-wire");
        }
        match (self.cold, self.start_mode) {
            (true, _) | (false, Start::Cold) => f.push_str(" --start-mode cold"),
            (false, Start::Formed) => f.push_str(" --start-mode formed"),
            (false, Start::Mixed) => {}
        }
        if let Some(t) = self.token_ms {
            f.push_str(&format!(" --token-ms {t}"));
        }
        let flags = [
            (self.no_faults, " --no-faults"),
            (self.no_crash, " --no-crash"),
            (self.no_restart, " --no-restart"),
            (self.no_pause, " --no-pause"),
            (self.no_leave, " --no-leave"),
            (self.no_partition, " --no-partition"),
            (self.no_one_way, " --no-one-way"),
            (self.no_swizzle, " --no-swizzle"),
            (self.no_slow_large, " --no-slow-large"),
            (self.no_late_join, " --no-late-join"),
            (self.cpg, " --cpg"),
        ];
        for (on, flag) in flags {
            if on {
                f.push_str(flag);
            }
        }
        if let Some(b) = self.bug {
            f.push_str(&format!(" --bug {}", bug_name(b)));
        }
        f
    }

    fn replay_command(&self, seed: u64) -> String {
        let features = if self.bug.is_some() { " --features broken" } else { "" };
        format!("cargo run --release -p sim{features} -- replay --seed {seed}{}", self.flags())
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { seeds, start, jobs, json, limits } => sweep(seeds, start, jobs, json, &limits),
        Command::Replay { seed, trace, limits } => replay(seed, trace, &limits),
        Command::Cluster(args) => sim::cluster::cli::cluster(&args),
        Command::Scenario(args) => sim::cluster::cli::scenario(&args),
    }
}

fn sweep(seeds: u64, start: u64, jobs: Option<usize>, json: bool, args: &LimitArgs) -> anyhow::Result<()> {
    let limits = args.limits();
    let jobs = jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1);
    let bar = ProgressBar::new(seeds);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} seeds  {per_sec}  eta {eta}  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let next = AtomicU64::new(0);
    let failures: Mutex<Vec<RunReport>> = Mutex::new(Vec::new());
    let errors: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let sim_ns = AtomicU64::new(0);
    let messages = AtomicU64::new(0);
    let faults = Mutex::new(FaultTotals::default());
    let began = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= seeds {
                        break;
                    }
                    let seed = start + i;
                    match sim::run(Options::draw(seed, &limits)) {
                        Ok(report) => {
                            sim_ns.fetch_add(report.sim_time.0, Ordering::Relaxed);
                            messages.fetch_add(report.stats.messages_delivered, Ordering::Relaxed);
                            if let Ok(mut f) = faults.lock() {
                                f.add(&report);
                            }
                            if !report.passed()
                                && let Ok(mut f) = failures.lock()
                            {
                                f.push(report);
                                bar.set_message(format!("{} failed", f.len()));
                            }
                        }
                        Err(e) => {
                            if let Ok(mut errs) = errors.lock() {
                                errs.push(format!("seed {seed}: {e}"));
                            }
                        }
                    }
                    bar.inc(1);
                }
            });
        }
    });
    bar.finish_and_clear();
    let elapsed = began.elapsed().as_secs_f64().max(1e-9);
    let mut failures = failures.into_inner().unwrap_or_default();
    failures.sort_by_key(|r| r.opts.seed);
    let errors = errors.into_inner().unwrap_or_default();
    let sim_secs = sim_ns.load(Ordering::Relaxed) as f64 / 1e9;
    let faults = faults.into_inner().unwrap_or_default();
    if json {
        let failed: Vec<String> = failures
            .iter()
            .map(|r| {
                format!(
                    "{{\"seed\":{},\"properties\":[{}],\"replay\":\"{}\"}}",
                    r.opts.seed,
                    r.violations.iter().map(|v| format!("\"{}\"", v.property)).collect::<Vec<_>>().join(","),
                    args.replay_command(r.opts.seed)
                )
            })
            .collect();
        println!(
            "{{\"seeds\":{seeds},\"passed\":{},\"failed\":{},\"errors\":{},\"seconds\":{elapsed:.3},\"jobs\":{jobs},\"seeds_per_second\":{:.2},\"seeds_per_hour\":{:.0},\"sim_seconds_per_second\":{:.1},\"faults\":{},\"failures\":[{}]}}",
            seeds - failures.len() as u64 - errors.len() as u64,
            failures.len(),
            errors.len(),
            seeds as f64 / elapsed,
            seeds as f64 / elapsed * 3600.0,
            sim_secs / elapsed,
            faults.json(),
            failed.join(",")
        );
    } else {
        for r in &failures {
            println!(
                "FAIL seed {} ({} nodes, loss {:.3}, dup {:.3}):",
                r.opts.seed, r.opts.nodes, r.opts.net.loss, r.opts.net.duplication
            );
            for v in r.violations.iter().take(5) {
                println!("  {v}");
            }
            if r.violations.len() > 5 {
                println!("  ... and {} more", r.violations.len() - 5);
            }
            println!("  replay: {}", args.replay_command(r.opts.seed));
        }
        for e in &errors {
            println!("ERROR {e}");
        }
        if !failures.is_empty() {
            let mut by_property: std::collections::BTreeMap<&str, Vec<u64>> =
                std::collections::BTreeMap::new();
            for r in &failures {
                let mut props: Vec<&str> = r.violations.iter().map(|v| v.property).collect();
                props.sort_unstable();
                props.dedup();
                for p in props {
                    by_property.entry(p).or_default().push(r.opts.seed);
                }
            }
            println!("failing properties:");
            for (p, seeds) in &by_property {
                let shown: Vec<String> = seeds.iter().take(10).map(u64::to_string).collect();
                let more = if seeds.len() > 10 { ", ..." } else { "" };
                println!("  {p}: {} seeds ({}{more})", seeds.len(), shown.join(", "));
            }
        }
        println!(
            "{} seeds: {} passed, {} failed, {} errors in {:.1}s on {jobs} threads ({:.2} seeds/s = {:.0} seeds/hour, {:.0} simulated s per real s, {} messages delivered)",
            seeds,
            seeds - failures.len() as u64 - errors.len() as u64,
            failures.len(),
            errors.len(),
            elapsed,
            seeds as f64 / elapsed,
            seeds as f64 / elapsed * 3600.0,
            sim_secs / elapsed,
            messages.load(Ordering::Relaxed),
        );
        println!("faults: {}", faults.text());
        if limits.cpg {
            let c = &faults.cpg;
            println!(
                "cpg clients: {} connections, {} joins, {} leaves, {} exits, {} multicasts ({} of 64 KiB or more), {} TryAgain, {} refused; {} deliveries, {} confchgs, {} totem confchgs, {} snapshots",
                c.connects,
                c.joins,
                c.leaves,
                c.exits,
                c.mcasts,
                c.large,
                c.try_again,
                c.refused,
                c.delivered,
                c.confchgs,
                c.totem_confchgs,
                c.snapshots
            );
        }
    }
    if failures.is_empty() && errors.is_empty() { Ok(()) } else { std::process::exit(1) }
}

/// Fault counts over a sweep.
#[derive(Default, Debug)]
struct FaultTotals {
    crashes: u64,
    restarts: u64,
    state_wipes: u64,
    pauses: u64,
    leaves: u64,
    late_starts: u64,
    link_changes: u64,
    cold_runs: u64,
    configs: u64,
    /// Highest events per simulated second of any seed, and that seed.
    peak: (u64, u64),
    cpg: sim::world::CpgCounts,
}

impl FaultTotals {
    fn add(&mut self, r: &RunReport) {
        self.crashes += r.stats.crashes;
        self.restarts += r.stats.restarts;
        self.state_wipes += r.stats.state_wipes;
        self.pauses += r.stats.pauses;
        self.leaves += r.stats.leaves;
        self.late_starts += r.stats.late_starts;
        self.link_changes += r.stats.link_changes;
        self.configs += r.stats.configs;
        self.cold_runs += u64::from(r.opts.start == sim::StartMode::Cold);
        self.cpg.add(&r.stats.cpg);
        if r.stats.peak_events_per_sec > self.peak.0 {
            self.peak = (r.stats.peak_events_per_sec, r.opts.seed);
        }
    }

    fn text(&self) -> String {
        format!(
            "{} cold-start runs, {} crashes, {} restarts ({} without state), {} pauses, {} leaves, {} late starts, {} link changes, {} configurations delivered; peak {} events per simulated second (seed {})",
            self.cold_runs,
            self.crashes,
            self.restarts,
            self.state_wipes,
            self.pauses,
            self.leaves,
            self.late_starts,
            self.link_changes,
            self.configs,
            self.peak.0,
            self.peak.1
        )
    }

    fn json(&self) -> String {
        format!(
            "{{\"cold_runs\":{},\"crashes\":{},\"restarts\":{},\"state_wipes\":{},\"pauses\":{},\"leaves\":{},\"late_starts\":{},\"link_changes\":{},\"configs\":{}}}",
            self.cold_runs,
            self.crashes,
            self.restarts,
            self.state_wipes,
            self.pauses,
            self.leaves,
            self.late_starts,
            self.link_changes,
            self.configs
        )
    }
}

fn replay(seed: u64, print_trace: bool, args: &LimitArgs) -> anyhow::Result<()> {
    let opts = Options::draw(seed, &args.limits());
    let mut shown = opts.clone();
    shown.schedule.clear();
    println!("seed {seed}: {shown:#?}");
    println!("core config: {:#?}", opts.core_config());
    println!("convergence bound: {:?}", sim::run::convergence_bound(&opts));
    println!("fault schedule ({} actions):", opts.schedule.len());
    for t in &opts.schedule {
        println!("  {t}");
    }
    let (report, world) = sim::run_world(opts)?;
    if print_trace {
        for (i, e) in world.trace.events.iter().enumerate() {
            println!(
                "{i:>8} {:>14} n{}/{} {:?}",
                format!("{}", totem_core::Time(e.time)),
                e.node,
                e.incarnation,
                e.kind
            );
        }
    }
    for n in &world.nodes {
        let s = n.node.status();
        println!(
            "node {} #{} {:?}: {:?} ring {} members {:?} last config {:?} stats {:?}",
            s.node, n.incarnation, n.life, s.state, s.ring_id, s.members, n.last_config, s.stats
        );
    }
    println!("world: {:?}", report.stats);
    println!(
        "liveness: healed at {}, deadline {}, live set {:?}, converged now: {:?}",
        report.healed_at,
        report.deadline,
        report.live,
        world.converged()
    );
    println!("trace: {} events, hash {}", report.trace_events, report.trace_hash);
    match report.quiesced_at {
        Some(t) => println!("converged and everything delivered at {t}"),
        None => println!("NOT everything was delivered by {}", report.sim_time),
    }
    if report.passed() {
        println!("PASS: every property holds");
        Ok(())
    } else {
        for v in &report.violations {
            println!("VIOLATION {v}");
        }
        std::process::exit(1)
    }
}
