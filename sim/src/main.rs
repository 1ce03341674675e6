//! `sim`: run many seeded simulations and report failures with a replay command, or replay
//! one seed and print its trace.

use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use sim::{Limits, Options, RunReport};
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
}

fn bug_name(bug: Bug) -> String {
    let debug = format!("{bug:?}");
    let mut name = String::new();
    for (i, c) in debug.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            name.push('-');
        }
        name.push(c.to_ascii_lowercase());
    }
    name
}

fn parse_bug(s: &str) -> Result<Bug, String> {
    Bug::ALL.iter().copied().find(|&b| bug_name(b) == s).ok_or_else(|| {
        let names: Vec<String> = Bug::ALL.iter().map(|&b| bug_name(b)).collect();
        format!("unknown bug '{s}'; known: {}", names.join(", "))
    })
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
            "{{\"seeds\":{seeds},\"passed\":{},\"failed\":{},\"errors\":{},\"seconds\":{elapsed:.3},\"seeds_per_second\":{:.2},\"sim_seconds_per_second\":{:.1},\"failures\":[{}]}}",
            seeds - failures.len() as u64 - errors.len() as u64,
            failures.len(),
            errors.len(),
            seeds as f64 / elapsed,
            sim_secs / elapsed,
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
        println!(
            "{} seeds: {} passed, {} failed, {} errors in {:.1}s ({:.1} seeds/s, {:.0} simulated s per real s, {} messages delivered)",
            seeds,
            seeds - failures.len() as u64 - errors.len() as u64,
            failures.len(),
            errors.len(),
            elapsed,
            seeds as f64 / elapsed,
            sim_secs / elapsed,
            messages.load(Ordering::Relaxed),
        );
    }
    if failures.is_empty() && errors.is_empty() { Ok(()) } else { std::process::exit(1) }
}

fn replay(seed: u64, print_trace: bool, args: &LimitArgs) -> anyhow::Result<()> {
    let opts = Options::draw(seed, &args.limits());
    println!("seed {seed}: {opts:#?}");
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
            "node {}: {:?} ring {} members {:?} stats {:?}",
            s.node, s.state, s.ring_id, s.members, s.stats
        );
    }
    println!("world: {:?}", report.stats);
    println!("trace: {} events, hash {}", report.trace_events, report.trace_hash);
    match report.quiesced_at {
        Some(t) => println!("everything delivered everywhere at {t}"),
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
