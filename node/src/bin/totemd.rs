//! `totemd`: the Totem daemon.
//!
//! `totemd -t` reads and checks the configuration (corosync.conf syntax, with warnings for
//! everything Totem does not act on) and the key, and exits, as `corosync -t` does. Without
//! `-t` it runs the node in the foreground until SIGTERM (a clean leave). SIGHUP re-reads
//! the configuration: the logging level changes at once; anything else is reported as
//! needing a restart.
#![forbid(unsafe_code)]

use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use totem_core::NodeId;
use totem_node::conf::{self, CryptoConfig, KeySource, NodeConfig, Overrides, Transport, Warning};
use totem_node::crypto::KeyError;

/// Read when `-c` is not given; if it does not exist either, the embedded one-node default
/// is used.
const DEFAULT_CONF_PATH: &str = "/etc/totem/totem.conf";

/// Exit status for a configuration that cannot be used.
const EXIT_CONFIG: u8 = 1;
/// Exit status when the node cannot start or fails while running.
const EXIT_RUNTIME: u8 = 2;

#[derive(Debug, Parser)]
#[command(name = "totemd", version, about = "The Totem cluster engine daemon")]
struct Cli {
    /// Configuration file (corosync.conf syntax). Without it, /etc/totem/totem.conf, or
    /// if that does not exist a one-node cluster on 127.0.0.1.
    #[arg(short = 'c', long = "config")]
    config: Option<PathBuf>,
    /// Check the configuration (and the key file) and exit: 0 if usable, else 1.
    #[arg(short = 't', long = "test")]
    test: bool,
    /// This node's id (overrides totem.nodeid).
    #[arg(long)]
    nodeid: Option<u32>,
    /// The cluster key file (overrides totem.keyfile).
    #[arg(long)]
    key_file: Option<PathBuf>,
    /// Directory for persisted state (overrides system.state_dir).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Directory for the IPC socket (overrides system.run_dir).
    #[arg(long)]
    run_dir: Option<PathBuf>,
    /// Journal everything this node does (configurations, deliveries, CPG requests and
    /// callbacks, internal protocol events) to FILE, one JSON record per line. Costs a
    /// system call per record: for tests and investigations.
    #[arg(long, value_name = "FILE")]
    trace_file: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (config, source) = match load(&cli) {
        Ok(loaded) => loaded,
        Err(message) => {
            eprintln!("totemd: {message}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if cli.test {
        if let Err(e) = check_key(&config.crypto) {
            eprintln!("totemd: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
        print_summary(&config, &source);
        return ExitCode::SUCCESS;
    }
    let reload = match init_logging(&config.logging) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("totemd: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("totemd: cannot start the event loop: {e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    rt.block_on(async move {
        let options = totem_node::daemon::DaemonOptions { trace_file: cli.trace_file.clone() };
        let mut daemon = match totem_node::daemon::Daemon::prepare_with(&config, &options) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!("{e}");
                eprintln!("totemd: {e}");
                return ExitCode::from(EXIT_RUNTIME);
            }
        };
        tracing::info!("configuration: {source}");
        let requests = daemon.reload_requests();
        tokio::spawn(watch_reload(cli, config, reload, requests));
        match daemon.run().await {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("{e}");
                eprintln!("totemd: {e}");
                ExitCode::from(EXIT_RUNTIME)
            }
        }
    })
}

type ReloadHandle =
    tracing_subscriber::reload::Handle<tracing_subscriber::EnvFilter, tracing_subscriber::Registry>;

fn filter_for(logging: &conf::LoggingConfig) -> tracing_subscriber::EnvFilter {
    let level = match logging.debug {
        conf::DebugLevel::Off => "info",
        conf::DebugLevel::On => "debug",
        conf::DebugLevel::Trace => "trace",
    };
    tracing_subscriber::EnvFilter::new(level)
}

/// Logs go to stderr and/or the log file, as the logging section says.
fn init_logging(logging: &conf::LoggingConfig) -> Result<ReloadHandle, String> {
    use tracing_subscriber::prelude::*;
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter_for(logging));
    let stderr = logging.to_stderr.then(|| tracing_subscriber::fmt::layer().with_writer(io::stderr));
    let file = match (&logging.logfile, logging.to_logfile) {
        (Some(path), true) => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| format!("cannot open the log file {}: {e}", path.display()))?;
            Some(tracing_subscriber::fmt::layer().with_ansi(false).with_writer(std::sync::Mutex::new(f)))
        }
        _ => None,
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(stderr)
        .with(file)
        .try_init()
        .map_err(|e| format!("cannot set up logging: {e}"))?;
    Ok(handle)
}

/// SIGHUP or `totemctl reload` (`requests`): re-read the configuration; apply what can
/// change at run time (the logging level) and name everything else that changed as needing
/// a restart.
async fn watch_reload(
    cli: Cli,
    mut current: NodeConfig,
    reload: ReloadHandle,
    mut requests: tokio::sync::mpsc::Receiver<()>,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!("cannot watch SIGHUP ({e}); reload with totemctl reload");
            None
        }
    };
    loop {
        tokio::select! {
            Some(()) = next_signal(&mut hup) => tracing::info!("SIGHUP: reloading the configuration"),
            Some(()) = requests.recv() => tracing::info!("reload requested over IPC"),
            else => return,
        }
        let new = match load(&cli) {
            Ok((c, _)) => c,
            Err(e) => {
                tracing::error!("reload: {e}; keeping the running configuration");
                continue;
            }
        };
        let mut restart = Vec::new();
        if new.core != current.core || new.timing != current.timing {
            restart.push("totem timing and protocol parameters");
        }
        if new.nodes != current.nodes || new.local_nodeid != current.local_nodeid || new.port != current.port
        {
            restart.push("nodelist");
        }
        if new.crypto != current.crypto {
            restart.push("crypto");
        }
        if new.system != current.system {
            restart.push("system paths");
        }
        if new.logging.debug != current.logging.debug {
            match reload.reload(filter_for(&new.logging)) {
                Ok(()) => tracing::info!("reload: logging level is now {:?}", new.logging.debug),
                Err(e) => tracing::warn!("reload: cannot change the logging level: {e}"),
            }
        }
        if new.logging.to_stderr != current.logging.to_stderr
            || new.logging.logfile != current.logging.logfile
            || new.logging.to_logfile != current.logging.to_logfile
        {
            restart.push("logging destinations");
        }
        if restart.is_empty() {
            tracing::info!("reload: done");
        } else {
            tracing::warn!(
                "reload: changed but only applied after a restart of totemd: {}",
                restart.join(", ")
            );
        }
        current.logging.debug = new.logging.debug;
    }
}

/// The next delivery of `signal`; never, without one.
async fn next_signal(signal: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match signal {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

/// Reads the configuration, prints its warnings, and applies the command line.
fn load(cli: &Cli) -> Result<(NodeConfig, String), String> {
    let overrides = Overrides {
        nodeid: match cli.nodeid {
            Some(0) => return Err("--nodeid 0: node ids start at 1".into()),
            other => other.map(NodeId),
        },
        keyfile: cli.key_file.clone(),
        state_dir: cli.state_dir.clone(),
        run_dir: cli.run_dir.clone(),
    };
    let path = match &cli.config {
        Some(path) => Some(path.clone()),
        None if Path::new(DEFAULT_CONF_PATH).exists() => Some(PathBuf::from(DEFAULT_CONF_PATH)),
        None => None,
    };
    let Some(path) = path else {
        return Ok((embedded_default(&overrides)?, "embedded one-node default".to_owned()));
    };
    let parsed = conf::parse_file(&path).map_err(|e| e.to_string())?;
    let (config, warnings) = NodeConfig::from_conf_with(&parsed, &overrides).map_err(|e| e.to_string())?;
    print_warnings(&warnings);
    Ok((config, path.display().to_string()))
}

/// The one-node default with the command line applied. Its node is 1 and it has no key
/// file, so only the paths may be overridden.
fn embedded_default(overrides: &Overrides) -> Result<NodeConfig, String> {
    let mut config = NodeConfig::default_single_node();
    if overrides.nodeid.is_some_and(|id| id != NodeId(1)) {
        return Err(
            "--nodeid: the embedded default has only node 1; give a configuration file with -c".into()
        );
    }
    if let Some(path) = &overrides.keyfile
        && let CryptoConfig::Keyed { key, .. } = &mut config.crypto
    {
        *key = KeySource::File(path.clone());
    }
    if let Some(dir) = &overrides.state_dir {
        config.system.state_dir = dir.clone();
    }
    if let Some(dir) = &overrides.run_dir {
        config.system.run_dir = dir.clone();
    }
    Ok(config)
}

fn print_warnings(warnings: &[Warning]) {
    for w in warnings {
        eprintln!("totemd: warning: {w}");
    }
}

/// Loads the key as the daemon would. A key the checking user may not read (a root-only
/// key checked by an operator) is reported but not fatal: the daemon will run as root.
fn check_key(crypto: &CryptoConfig) -> Result<(), KeyError> {
    match crypto.protection() {
        Ok(_) => Ok(()),
        Err(KeyError::Io { path, source }) if source.kind() == io::ErrorKind::PermissionDenied => {
            eprintln!(
                "totemd: warning: cannot read {} (permission denied); the key was not checked",
                path.display()
            );
            Ok(())
        }
        Err(e) => Err(e),
    }
}

fn print_summary(config: &NodeConfig, source: &str) {
    println!("Configuration {source} is valid.");
    if let Some(name) = &config.cluster_name {
        println!("  cluster name: {name}");
    }
    let transport = match config.transport {
        Transport::Udpu => "udpu (unicast UDP)",
        Transport::Udp => "udp (IP multicast)",
    };
    println!("  transport:    {transport}");
    match config.local_nodeid {
        Some(id) => println!("  this node:    {id}"),
        None => {
            println!("  this node:    not set (found at start-up by host name or address, or use --nodeid)")
        }
    }
    for node in &config.nodes {
        let name = node.name.as_deref().map(|n| format!(" ({n})")).unwrap_or_default();
        println!("  node {}{name}: {}", node.id, node.addr);
    }
    match &config.crypto {
        CryptoConfig::Cleartext => println!("  crypto:       none (cleartext)"),
        CryptoConfig::Keyed { cipher, key } => {
            let key = match key {
                KeySource::File(path) => path.display().to_string(),
                KeySource::Inline(_) => "inline totem.key".to_owned(),
                KeySource::Ephemeral => "ephemeral (in memory, one node only)".to_owned(),
            };
            println!("  crypto:       {cipher} (AES-SIV), key {key}");
        }
    }
    let c = &config.core;
    println!(
        "  timing (ms):  token {} retransmit {} hold {} join {} consensus {} merge {}",
        c.token.as_millis(),
        c.token_retransmit.as_millis(),
        c.hold.as_millis(),
        c.join.as_millis(),
        c.consensus.as_millis(),
        c.merge.as_millis()
    );
    println!("  state_dir:    {}", config.system.state_dir.display());
    println!("  run_dir:      {}", config.system.run_dir.display());
}
