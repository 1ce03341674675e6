//! The `sim cluster` and `sim scenario` subcommands.

use super::plan::{ClusterFaults, ClusterLimits, ClusterOptions};
use super::run::{ClusterReport, run_script, run_swarm};
use super::script::Script;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use totem_core::broken::Bug;

/// `sim cluster`: swarm runs of whole clusters on the real node runtime.
#[derive(Args, Debug, Clone)]
pub struct ClusterArgs {
    /// Number of seeds to run.
    #[arg(long, default_value_t = 100)]
    pub seeds: u64,
    /// First seed.
    #[arg(long, default_value_t = 1)]
    pub start: u64,
    /// Run only this seed and describe it (the replay command of a failure).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Nodes per cluster.
    #[arg(long, default_value_t = 5)]
    pub nodes: usize,
    /// Simulated seconds of the safety phase (faults on).
    #[arg(long, default_value_t = 20)]
    pub duration: u64,
    /// Base token timeout in ms (default: drawn per seed from 300 and 1000).
    #[arg(long)]
    pub token_ms: Option<u64>,
    /// turmoil's step in microseconds.
    #[arg(long, default_value_t = 1000)]
    pub tick_us: u64,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Print a JSON summary instead of text.
    #[arg(long)]
    pub json: bool,
    /// With --seed: print every trace event.
    #[arg(long)]
    pub trace: bool,
    /// No faults at all (the network stays clean, nothing crashes).
    #[arg(long)]
    pub no_faults: bool,
    #[arg(long)]
    pub no_partition: bool,
    #[arg(long)]
    pub no_one_way: bool,
    #[arg(long)]
    pub no_hold: bool,
    #[arg(long)]
    pub no_crash: bool,
    /// Crashed and departed nodes never come back.
    #[arg(long)]
    pub no_restart: bool,
    /// Restarts always keep the persisted ring sequence.
    #[arg(long)]
    pub no_wipe: bool,
    #[arg(long)]
    pub no_pause: bool,
    #[arg(long)]
    pub no_leave: bool,
    #[arg(long)]
    pub no_latency: bool,
    #[arg(long)]
    pub no_loss: bool,
    #[arg(long)]
    pub no_dup: bool,
    #[arg(long)]
    pub no_corrupt: bool,
    #[arg(long)]
    pub no_churn: bool,
    #[arg(long)]
    pub no_late_join: bool,
    /// Run a deliberately broken variant of the core (needs --features broken).
    #[arg(long, value_parser = parse_bug)]
    pub bug: Option<Bug>,
}

/// `sim scenario`: run scenario files.
#[derive(Args, Debug, Clone)]
pub struct ScenarioArgs {
    /// Scenario files (see `sim::cluster::script` for the format).
    #[arg(required = true)]
    pub files: Vec<std::path::PathBuf>,
    /// Seeds per file (the seed draws latencies and every random choice).
    #[arg(long, default_value_t = 3)]
    pub seeds: u64,
    #[arg(long, default_value_t = 1)]
    pub start: u64,
    /// Run only this seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Print every trace event.
    #[arg(long)]
    pub trace: bool,
    /// Print the membership log (starts, crashes, configurations).
    #[arg(long)]
    pub log: bool,
}

/// `DeliverPastGap` -> `deliver-past-gap`.
pub fn bug_name(bug: Bug) -> String {
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

/// A `--bug` value: one of [`Bug::ALL`] by its [`bug_name`].
pub fn parse_bug(s: &str) -> Result<Bug, String> {
    Bug::ALL.iter().copied().find(|&b| bug_name(b) == s).ok_or_else(|| {
        let names: Vec<String> = Bug::ALL.iter().map(|&b| bug_name(b)).collect();
        format!("unknown bug '{s}'; known: {}", names.join(", "))
    })
}

impl ClusterArgs {
    pub fn limits(&self) -> ClusterLimits {
        let faults = if self.no_faults {
            ClusterFaults::none()
        } else {
            ClusterFaults {
                partition: !self.no_partition,
                one_way: !self.no_one_way,
                hold: !self.no_hold,
                crash: !self.no_crash,
                restart: !self.no_restart,
                wipe: !self.no_wipe,
                pause: !self.no_pause,
                leave: !self.no_leave,
                latency: !self.no_latency,
                loss: !self.no_loss,
                dup: !self.no_dup,
                corrupt: !self.no_corrupt,
                churn: !self.no_churn,
                late_join: !self.no_late_join,
            }
        };
        ClusterLimits {
            nodes: self.nodes.max(1),
            duration_secs: self.duration,
            token_ms: self.token_ms,
            faults,
            bug: self.bug,
            tick_us: self.tick_us.max(1),
        }
    }

    /// The flags that reproduce these limits.
    fn flags(&self) -> String {
        let mut f = format!(" --nodes {} --duration {}", self.nodes, self.duration);
        if let Some(t) = self.token_ms {
            f.push_str(&format!(" --token-ms {t}"));
        }
        if self.tick_us != 1000 {
            f.push_str(&format!(" --tick-us {}", self.tick_us));
        }
        let flags = [
            (self.no_faults, " --no-faults"),
            (self.no_partition, " --no-partition"),
            (self.no_one_way, " --no-one-way"),
            (self.no_hold, " --no-hold"),
            (self.no_crash, " --no-crash"),
            (self.no_restart, " --no-restart"),
            (self.no_wipe, " --no-wipe"),
            (self.no_pause, " --no-pause"),
            (self.no_leave, " --no-leave"),
            (self.no_latency, " --no-latency"),
            (self.no_loss, " --no-loss"),
            (self.no_dup, " --no-dup"),
            (self.no_corrupt, " --no-corrupt"),
            (self.no_churn, " --no-churn"),
            (self.no_late_join, " --no-late-join"),
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

    pub fn replay_command(&self, seed: u64) -> String {
        let features = if self.bug.is_some() { " --features broken" } else { "" };
        format!("cargo run --release -p sim{features} -- cluster --seed {seed}{}", self.flags())
    }
}

fn check_bug(bug: Option<Bug>) -> anyhow::Result<()> {
    if bug.is_some() && !cfg!(feature = "broken") {
        anyhow::bail!("broken variants need the simulator built with --features broken");
    }
    Ok(())
}

/// `sim cluster`.
pub fn cluster(args: &ClusterArgs) -> anyhow::Result<()> {
    check_bug(args.bug)?;
    let limits = args.limits();
    if let Some(seed) = args.seed {
        return replay(seed, &limits, args);
    }
    let jobs =
        args.jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1);
    let seeds = args.seeds;
    let bar = if args.json { ProgressBar::hidden() } else { ProgressBar::new(seeds) };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} seeds  {per_sec}  eta {eta}  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let next = AtomicU64::new(0);
    let sim_ns = AtomicU64::new(0);
    let delivered = AtomicU64::new(0);
    let failures: Mutex<Vec<ClusterReport>> = Mutex::new(Vec::new());
    let began = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= seeds {
                        break;
                    }
                    let mut report = run_swarm(ClusterOptions::draw(args.start + i, &limits));
                    let total = sim_ns.fetch_add(report.sim_ns, Ordering::Relaxed) + report.sim_ns;
                    delivered.fetch_add(report.counts.cpg_deliveries, Ordering::Relaxed);
                    let ratio = total as f64 / 1e9 / began.elapsed().as_secs_f64().max(1e-9);
                    let failed = match failures.lock() {
                        Ok(mut f) => {
                            if !report.passed() {
                                report.trace = Default::default();
                                f.push(report);
                            }
                            f.len()
                        }
                        Err(_) => 0,
                    };
                    bar.set_message(format!("{ratio:.1} simulated s per real s, {failed} failed"));
                    bar.inc(1);
                }
            });
        }
    });
    bar.finish_and_clear();
    let elapsed = began.elapsed().as_secs_f64().max(1e-9);
    let mut failures = failures.into_inner().unwrap_or_default();
    failures.sort_by_key(|r| r.seed);
    let sim_secs = sim_ns.load(Ordering::Relaxed) as f64 / 1e9;
    let passed = seeds - failures.len() as u64;
    if args.json {
        let failed: Vec<String> = failures
            .iter()
            .map(|r| {
                let props: Vec<String> = r.properties().iter().map(|p| format!("\"{p}\"")).collect();
                format!(
                    "{{\"seed\":{},\"properties\":[{}],\"replay\":\"{}\"}}",
                    r.seed,
                    props.join(","),
                    args.replay_command(r.seed)
                )
            })
            .collect();
        println!(
            "{{\"level\":\"cluster\",\"seeds\":{seeds},\"passed\":{passed},\"failed\":{},\"nodes\":{},\"duration\":{},\"seconds\":{elapsed:.3},\"jobs\":{jobs},\"seeds_per_second\":{:.3},\"seeds_per_hour\":{:.0},\"sim_seconds_per_second\":{:.2},\"cpg_deliveries\":{},\"failures\":[{}]}}",
            failures.len(),
            args.nodes,
            args.duration,
            seeds as f64 / elapsed,
            seeds as f64 / elapsed * 3600.0,
            sim_secs / elapsed,
            delivered.load(Ordering::Relaxed),
            failed.join(",")
        );
    } else {
        for r in &failures {
            println!("FAIL seed {}: {:?}", r.seed, r.properties());
            for v in r.violations.iter().take(5) {
                println!("  {v}");
            }
            if r.violations.len() > 5 {
                println!("  ... and {} more", r.violations.len() - 5);
            }
            println!("  replay: {}", args.replay_command(r.seed));
        }
        println!(
            "{seeds} seeds of {} nodes x {} s: {passed} passed, {} failed in {elapsed:.1}s on {jobs} threads ({:.3} seeds/s = {:.0} seeds/hour, {:.1} simulated s per real s, {} CPG deliveries)",
            args.nodes,
            args.duration,
            failures.len(),
            seeds as f64 / elapsed,
            seeds as f64 / elapsed * 3600.0,
            sim_secs / elapsed,
            delivered.load(Ordering::Relaxed),
        );
    }
    if failures.is_empty() { Ok(()) } else { std::process::exit(1) }
}

fn replay(seed: u64, limits: &ClusterLimits, args: &ClusterArgs) -> anyhow::Result<()> {
    let opts = ClusterOptions::draw(seed, limits);
    let mut shown = opts.clone();
    shown.schedule.clear();
    println!("seed {seed}: {shown:#?}");
    println!("core config: {:#?}", opts.core_config());
    println!("convergence bound: {}", super::plan::fmt_ns(opts.bound_ns()));
    println!("schedule ({} actions):", opts.schedule.len());
    for t in &opts.schedule {
        println!("  {t}");
    }
    let report = run_swarm(opts);
    print_report(&report, args.trace, false);
    if report.passed() { Ok(()) } else { std::process::exit(1) }
}

fn print_report(r: &ClusterReport, trace: bool, log: bool) {
    if trace || log {
        for (i, e) in r.trace.events.iter().enumerate() {
            let lifecycle = matches!(
                e.kind,
                spec::EventKind::Start
                    | spec::EventKind::StateLost
                    | spec::EventKind::Crash
                    | spec::EventKind::Leave
                    | spec::EventKind::Config { .. }
            );
            if trace || lifecycle {
                println!(
                    "{i:>8} {:>14} n{}#{} {:?}",
                    totem_core::Time(e.time).to_string(),
                    e.node,
                    e.incarnation,
                    e.kind
                );
            }
        }
    }
    println!("recorded: {:?}", r.counts);
    println!("network fault layer: {:?}", r.net);
    println!(
        "{} trace events, hash {}; {} simulated in {:.2}s real ({:.1}x)",
        r.trace_events,
        r.trace_hash,
        totem_core::Time(r.sim_ns),
        r.real.as_secs_f64(),
        r.sim_ns as f64 / 1e9 / r.real.as_secs_f64().max(1e-9)
    );
    if let (Some(h), Some(d)) = (r.healed_at, r.deadline) {
        println!(
            "liveness: healed at {}, deadline {}, live {:?}, quiesced {:?}, converged on {:?}",
            totem_core::Time(h),
            totem_core::Time(d),
            r.live,
            r.quiesced_at.map(totem_core::Time),
            r.converged
        );
    }
    if r.passed() {
        println!("PASS: every property holds");
    } else {
        for v in &r.violations {
            println!("VIOLATION {v}");
        }
    }
}

/// `sim scenario`.
pub fn scenario(args: &ScenarioArgs) -> anyhow::Result<()> {
    let mut failed = 0;
    let mut total = 0;
    for file in &args.files {
        let text = std::fs::read_to_string(file).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
        let script = Script::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
        check_bug(script.bug)?;
        let seeds: Vec<u64> = match args.seed {
            Some(s) => vec![s],
            None => (args.start..args.start + args.seeds).collect(),
        };
        for seed in seeds {
            total += 1;
            let r = run_script(&script, seed);
            let verdict = if r.passed() { "ok" } else { "FAIL" };
            println!(
                "{verdict:4} {} seed {seed}: live {:?}, converged on {:?}, {} CPG deliveries, {:.2}s real",
                script.name,
                r.live,
                r.converged,
                r.counts.cpg_deliveries,
                r.real.as_secs_f64()
            );
            if args.trace || args.log || args.seed.is_some() {
                print_report(&r, args.trace, args.log);
            }
            if !r.passed() {
                failed += 1;
                for v in r.violations.iter().take(10) {
                    println!("  {v}");
                }
                println!(
                    "  replay: cargo run --release -p sim -- scenario {} --seed {seed} --log",
                    file.display()
                );
            }
        }
    }
    println!("{total} runs: {} passed, {failed} failed", total - failed);
    if failed == 0 { Ok(()) } else { std::process::exit(1) }
}
