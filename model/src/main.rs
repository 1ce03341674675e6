//! `model`: model-check totem-core with stateright.
//!
//! ```text
//! model check --nodes 3 --msgs 2 --drops 1 --dups 0 --crashes 1 --depth 40 [--bfs|--dfs]
//!             [--threads 2] [--max-states N] [--formed|--cold] [--bug NAME]
//!             [--cpg-joins N --cpg-leaves N --cpg-exits N --cpg-groups N]
//! model explore --nodes 2 --msgs 1 --addr 127.0.0.1:3000
//! model properties
//! ```

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use model::run::{self, Options, Search};
use model::{CpgBudgets, Guarantees, Identity, Settings, Start, Timers, TotemModel};
use stateright::Model;
use std::net::SocketAddr;
use std::time::Duration;
use totem_core::NodeId;

#[derive(Parser, Debug)]
#[command(name = "model", about = "Model-check the Totem core (stateright) against the EVS spec", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Explore the state space and judge every property.
    Check(CheckArgs),
    /// Open stateright's web Explorer on the model (loopback addresses only; blocks).
    Explore(ExploreArgs),
    /// List the properties and their statements.
    Properties,
    /// Take one seeded random walk through the model and print every step (a quick look at
    /// what the model does; no exploration).
    Walk(WalkArgs),
}

#[derive(Args, Debug)]
struct WalkArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, default_value_t = 30)]
    steps: usize,
    /// Print the enabled actions before each step.
    #[arg(long)]
    actions: bool,
}

#[derive(Args, Debug, Clone)]
struct ModelArgs {
    /// Number of nodes (ids 1..=N).
    #[arg(long, default_value_t = 2)]
    nodes: usize,
    /// Application messages the model may send in total (with CPG: multicasts).
    #[arg(long, default_value_t = 1)]
    msgs: u32,
    /// Packets the network may lose.
    #[arg(long, default_value_t = 0)]
    drops: u32,
    /// Extra packet copies the network may make.
    #[arg(long, default_value_t = 0)]
    dups: u32,
    /// Crashes (a crashed node may restart at any later step).
    #[arg(long, default_value_t = 0)]
    crashes: u32,
    /// Most accepted token visits (all nodes together); states past it are outside the
    /// model. With --rings this makes the state space finite.
    #[arg(long)]
    visits: Option<u32>,
    /// Most distinct new rings nodes may enter COMMIT for.
    #[arg(long)]
    rings: Option<u32>,
    /// Start on one formed operational ring of all nodes (the default).
    #[arg(long, conflicts_with = "cold")]
    formed: bool,
    /// Start every node alone in GATHER: the ring must form first.
    #[arg(long)]
    cold: bool,
    /// Start partitioned: one formed ring per listed set of nodes, sets separated by '/'
    /// (e.g. "1,3/2"); the rings then detect each other and merge.
    #[arg(long, conflicts_with_all = ["cold", "formed"])]
    partitions: Option<String>,
    /// Delivery guarantees the application may ask for.
    #[arg(long, value_enum, default_value_t = GuaranteeArg::Both)]
    guarantee: GuaranteeArg,
    /// What of each node's own history belongs to a state's identity.
    #[arg(long, value_enum, default_value_t = IdentityArg::App)]
    identity: IdentityArg,
    /// When an armed timer may fire: any step, only when nothing is in flight to its node
    /// (idle), or only when nothing is in flight at all (quiet).
    #[arg(long, value_enum, default_value_t = TimersArg::Any)]
    timers: TimersArg,
    /// Let identical packets pile up in flight instead of coalescing them.
    #[arg(long)]
    no_coalesce: bool,
    /// Keep packets to a crashed node in flight; they may reach its next incarnation.
    #[arg(long)]
    stale: bool,
    /// seqno_unchanged_const: idle token visits before the token is held.
    #[arg(long, default_value_t = 1)]
    idle_visits: u32,
    /// miss_count_const: token visits that must see a hole before it is requested.
    #[arg(long, default_value_t = 1)]
    miss_count: u32,
    /// max_messages: most messages one node sends per token visit (default 17).
    #[arg(long)]
    max_messages: Option<u32>,
    /// window_size: most messages per token rotation (default 50).
    #[arg(long)]
    window: Option<u32>,
    /// A deliberately broken core variant (needs the `broken` feature), e.g. DeliverPastGap.
    #[arg(long)]
    bug: Option<String>,
    /// Run the CPG service on every node, used by client connections (implied by any
    /// --cpg-* budget). Multicasts then count against --msgs; raw Totem sends are off.
    #[arg(long)]
    cpg: bool,
    /// CPG processes already in group "g" at the start, one per listed node (e.g. 1,2,2):
    /// they join in a fault-free prefix that ends when every view is complete.
    #[arg(long, value_delimiter = ',')]
    cpg_members: Vec<u32>,
    /// CPG joins (a new connection, or a re-join after a completed leave), all nodes.
    #[arg(long, default_value_t = 0)]
    cpg_joins: u32,
    /// CPG leaves of joined connections.
    #[arg(long, default_value_t = 0)]
    cpg_leaves: u32,
    /// CPG exits: a connection in a group closes without leaving (PROCDOWN).
    #[arg(long, default_value_t = 0)]
    cpg_exits: u32,
    /// How many groups clients may join (1 to 3: "g", "g\0", "gg").
    #[arg(long, default_value_t = 1)]
    cpg_groups: usize,
}

#[derive(Args, Debug)]
struct CheckArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Expand no state at this depth (number of steps) or deeper.
    #[arg(long)]
    depth: Option<usize>,
    /// Breadth-first search (the default: shortest counterexamples).
    #[arg(long, conflicts_with = "dfs")]
    bfs: bool,
    /// Depth-first search (less memory).
    #[arg(long)]
    dfs: bool,
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Stop after generating this many states.
    #[arg(long)]
    max_states: Option<usize>,
    /// Explore everything even after a violation (default: stop at the first one).
    #[arg(long)]
    keep_going: bool,
    /// Seconds between progress lines on stderr (0: none).
    #[arg(long, default_value_t = 5)]
    progress: u64,
    /// Print every counterexample (default: the first violated property's only).
    #[arg(long)]
    all_counterexamples: bool,
    /// Print a path to each `sometimes` example too.
    #[arg(long)]
    examples: bool,
}

#[derive(Args, Debug)]
struct ExploreArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Address to serve on; must be a loopback address.
    #[arg(long, default_value = "127.0.0.1:3000")]
    addr: String,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum GuaranteeArg {
    Agreed,
    Safe,
    Both,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum TimersArg {
    Any,
    Idle,
    Quiet,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum IdentityArg {
    Core,
    App,
    Full,
}

impl ModelArgs {
    // `Settings` has one more field (the bug) with the `broken` feature.
    #[allow(clippy::needless_update)]
    fn settings(&self) -> anyhow::Result<Settings> {
        let mut s = Settings {
            nodes: self.nodes,
            msgs: self.msgs,
            drops: self.drops,
            dups: self.dups,
            crashes: self.crashes,
            visits: self.visits,
            rings: self.rings,
            start: match &self.partitions {
                Some(p) => Start::Partitioned(parse_partitions(p)?),
                None if self.cold => Start::Cold,
                None => Start::Formed,
            },
            guarantees: match self.guarantee {
                GuaranteeArg::Agreed => Guarantees::Agreed,
                GuaranteeArg::Safe => Guarantees::Safe,
                GuaranteeArg::Both => Guarantees::Both,
            },
            identity: match self.identity {
                IdentityArg::Core => Identity::Core,
                IdentityArg::App => Identity::App,
                IdentityArg::Full => Identity::Full,
            },
            timers: match self.timers {
                TimersArg::Any => Timers::Any,
                TimersArg::Idle => Timers::Idle,
                TimersArg::Quiet => Timers::Quiet,
            },
            coalesce: !self.no_coalesce,
            stale: self.stale,
            idle_visits: self.idle_visits,
            miss_count: self.miss_count,
            max_messages: self.max_messages,
            window_size: self.window,
            cpg: self.cpg_enabled().then(|| CpgBudgets {
                members: self.cpg_members.iter().copied().map(NodeId).collect(),
                joins: self.cpg_joins,
                leaves: self.cpg_leaves,
                exits: self.cpg_exits,
                groups: self.cpg_groups,
            }),
            ..Settings::default()
        };
        let _ = self.formed;
        if let Some(name) = &self.bug {
            set_bug(&mut s, name)?;
        }
        Ok(s)
    }

    fn cpg_enabled(&self) -> bool {
        self.cpg
            || !self.cpg_members.is_empty()
            || self.cpg_joins > 0
            || self.cpg_leaves > 0
            || self.cpg_exits > 0
    }

    fn summary(&self) -> String {
        let cpg = if self.cpg_enabled() {
            format!(
                ", CPG members {:?} joins {} leaves {} exits {} groups {}",
                self.cpg_members, self.cpg_joins, self.cpg_leaves, self.cpg_exits, self.cpg_groups
            )
        } else {
            String::new()
        };
        format!(
            "{} nodes ({}), msgs {}, drops {}, dups {}, crashes {}, visits {}, rings {}, timers {:?}{cpg}{}",
            self.nodes,
            match &self.partitions {
                Some(p) => format!("partitions {p}"),
                None if self.cold => "cold start".to_string(),
                None => "formed ring".to_string(),
            },
            self.msgs,
            self.drops,
            self.dups,
            self.crashes,
            self.visits.map_or("any".into(), |v| v.to_string()),
            self.rings.map_or("any".into(), |v| v.to_string()),
            self.timers,
            self.bug.as_ref().map(|b| format!(", bug {b}")).unwrap_or_default()
        )
    }
}

/// "1,3/2" -> [[1, 3], [2]].
fn parse_partitions(text: &str) -> anyhow::Result<Vec<Vec<NodeId>>> {
    text.split('/')
        .map(|part| {
            part.split(',')
                .map(|n| {
                    n.trim()
                        .parse::<u32>()
                        .map(NodeId)
                        .with_context(|| format!("bad node id {n:?} in {text:?}"))
                })
                .collect()
        })
        .collect()
}

#[cfg(feature = "broken")]
fn set_bug(s: &mut Settings, name: &str) -> anyhow::Result<()> {
    let norm = |x: &str| x.chars().filter(|c| c.is_ascii_alphanumeric()).collect::<String>().to_lowercase();
    let bug = totem_core::broken::Bug::ALL.iter().copied().find(|b| norm(&format!("{b:?}")) == norm(name));
    match bug {
        Some(b) => {
            s.bug = Some(b);
            Ok(())
        }
        None => {
            let names: Vec<String> = totem_core::broken::Bug::ALL.iter().map(|b| format!("{b:?}")).collect();
            bail!("unknown bug {name:?}; known: {}", names.join(", "))
        }
    }
}

#[cfg(not(feature = "broken"))]
fn set_bug(_: &mut Settings, name: &str) -> anyhow::Result<()> {
    bail!("--bug {name} needs the broken variants: build with `--features broken`")
}

/// Say so when the CPG members' prefix did not settle (a broken core, or a start where
/// the joins cannot complete): the initial state is then not the settled one documented.
fn warn_unsettled(m: &TotemModel) {
    if m.init_states().first().is_some_and(|s| !m.settled(s)) {
        eprintln!(
            "warning: the CPG members' prefix did not settle (it stops when nothing is in flight, \
             or after {} steps); the initial state is where it stopped",
            model::cpg::SETTLE_STEPS
        );
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Properties => {
            // With CPG on, so that the CPG properties are listed too.
            let m = TotemModel::new(Settings { cpg: Some(CpgBudgets::default()), ..Settings::default() })?;
            for p in m.properties() {
                println!("{:?} {}: {}", p.expectation, p.name, model::model::statement(p.name).unwrap_or(""));
            }
            Ok(())
        }
        Command::Walk(args) => {
            let m = TotemModel::new(args.model.settings()?)?;
            println!("model: {}", args.model.summary());
            warn_unsettled(&m);
            let walk = run::walk(&m, args.seed, args.steps, args.actions);
            print!("{walk}");
            Ok(())
        }
        Command::Explore(args) => {
            let addr: SocketAddr =
                args.addr.parse().with_context(|| format!("bad address {:?}", args.addr))?;
            if !addr.ip().is_loopback() {
                bail!("the Explorer serves on loopback addresses only (127.0.0.1 or ::1), not {addr}");
            }
            let m = TotemModel::new(args.model.settings()?)?;
            println!("model: {}", args.model.summary());
            println!("Explorer on http://{addr}/ (Ctrl-C to stop)");
            let _ = m.checker().serve(addr);
            Ok(())
        }
        Command::Check(args) => {
            let m = TotemModel::new(args.model.settings()?)?;
            warn_unsettled(&m);
            let opts = Options {
                search: if args.dfs { Search::Dfs } else { Search::Bfs },
                threads: args.threads,
                depth: args.depth,
                max_states: args.max_states,
                stop_on_violation: !args.keep_going,
                progress: (args.progress > 0).then(|| Duration::from_secs(args.progress)),
            };
            println!(
                "model: {}; {} search, {} thread(s), depth {}, state budget {}",
                args.model.summary(),
                if args.dfs { "DFS" } else { "BFS" },
                args.threads,
                args.depth.map_or("unbounded".into(), |d| d.to_string()),
                args.max_states.map_or("none".into(), |n| n.to_string()),
            );
            let outcome = run::check(m.clone(), &opts);
            let mut stdout = std::io::stdout();
            run::report(&m, &outcome, &mut stdout)?;
            let violated = outcome.violated(&m);
            let shown = if args.all_counterexamples { violated.len() } else { violated.len().min(1) };
            for name in violated.iter().take(shown) {
                if let Some(path) = outcome.discoveries.get(name) {
                    println!(
                        "\n=== counterexample for {name}: {} ===",
                        model::model::statement(name).unwrap_or("")
                    );
                    print!("{}", run::counterexample(&m, path));
                }
            }
            if args.examples {
                for p in m.properties().iter().filter(|p| p.expectation == stateright::Expectation::Sometimes)
                {
                    if let Some(path) = outcome.discoveries.get(p.name) {
                        println!("\n=== example for {} ===", p.name);
                        print!("{}", run::counterexample(&m, path));
                    }
                }
            }
            if !violated.is_empty() {
                std::process::exit(1);
            }
            Ok(())
        }
    }
}
