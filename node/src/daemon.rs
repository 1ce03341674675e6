//! `totemd`'s life: from a checked configuration to a running node, its IPC socket, and a
//! clean leave on SIGTERM.

use crate::conf::{NodeAddr, NodeConfig};
use crate::crypto::BootId;
use crate::ipc::{Access, Server};
use crate::journal::JournalWriter;
use crate::protect::PacketCrypto;
use crate::runtime::{Handle, Runtime, RuntimeConfig, RuntimeStats};
use crate::store::FileStore;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use totem_core::NodeId;

/// The IPC socket's file name inside `run_dir`.
pub const SOCKET_NAME: &str = "totem.sock";
/// Kernel socket buffer size asked for (the kernel may cap it).
pub const SOCKET_BUFFER: usize = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("{0}")]
    Config(String),
    #[error("cannot bind {addr}: {source} (is another totemd or corosync using this address and port?)")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error(transparent)]
    Runtime(#[from] crate::runtime::RuntimeError),
}

/// Where a node's nodelist entry points: literal, or resolved now.
fn resolve(addr: &NodeAddr) -> Result<SocketAddr, DaemonError> {
    match addr {
        NodeAddr::Socket(s) => Ok(*s),
        NodeAddr::Host { name, port } => (name.as_str(), *port)
            .to_socket_addrs()
            .map_err(|e| DaemonError::Config(format!("cannot resolve nodelist host {name}: {e}")))?
            .next()
            .ok_or_else(|| DaemonError::Config(format!("nodelist host {name} has no address"))),
    }
}

/// This node's id: configured, or the one nodelist address this host can bind.
pub fn local_node(config: &NodeConfig) -> Result<NodeId, DaemonError> {
    if let Some(id) = config.local_nodeid {
        return Ok(id);
    }
    let mut local: Vec<IpAddr> = Vec::new();
    for node in &config.nodes {
        if let Ok(addr) = resolve(&node.addr)
            && std::net::UdpSocket::bind(SocketAddr::new(addr.ip(), 0)).is_ok()
        {
            local.push(addr.ip());
        }
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").ok();
    config.resolve_local_node(&local, host.as_deref().map(str::trim)).map_err(|e| {
        DaemonError::Config(format!("{e} (several nodes on one host: give each --nodeid or totem.nodeid)"))
    })
}

/// A node ready to run: bound, keyed, with its IPC socket.
#[derive(Debug)]
pub struct Daemon {
    pub me: NodeId,
    pub socket_path: PathBuf,
    pub handle: Handle,
    runtime: Runtime<tokio::net::UdpSocket, FileStore, PacketCrypto>,
    server: Server,
    access: Access,
}

/// Choices made on the command line rather than in the configuration.
#[derive(Clone, Debug, Default)]
pub struct DaemonOptions {
    /// Journal everything the node does to this file ([`crate::journal`]); also turns on
    /// the core's internal probes.
    pub trace_file: Option<PathBuf>,
}

impl Daemon {
    /// Bind, load the key, read the persisted state. Must run inside a tokio runtime.
    pub fn prepare(config: &NodeConfig) -> Result<Daemon, DaemonError> {
        Daemon::prepare_with(config, &DaemonOptions::default())
    }

    /// [`Daemon::prepare`] with command-line options.
    pub fn prepare_with(config: &NodeConfig, options: &DaemonOptions) -> Result<Daemon, DaemonError> {
        let me = local_node(config)?;
        let mut nodelist = BTreeMap::new();
        for node in &config.nodes {
            nodelist.insert(node.id, resolve(&node.addr)?);
        }
        let Some(&bind) = nodelist.get(&me) else {
            return Err(DaemonError::Config(format!("node {me} is not in the nodelist")));
        };
        let keys = config.crypto.protection().map_err(|e| DaemonError::Config(e.to_string()))?;
        let state_dir = &config.system.state_dir;
        std::fs::create_dir_all(state_dir).map_err(|source| DaemonError::Io {
            what: format!("creating {}", state_dir.display()),
            source,
        })?;
        let boot = BootId::advance_file(&state_dir.join("bootid"))
            .map_err(|e| DaemonError::Config(e.to_string()))?;
        let store = FileStore::open(state_dir)
            .map_err(|source| DaemonError::Io { what: format!("opening {}", state_dir.display()), source })?;
        let socket = crate::transport::bind_udp(bind, SOCKET_BUFFER)
            .map_err(|source| DaemonError::Bind { addr: bind, source })?;
        // The seed of the core's generator (the residue class of the ring sequences this
        // incarnation creates, jitter): from the boot id, which is fresh for every start.
        let core = totem_core::Config {
            rng_seed: boot.0 ^ u64::from(me.0).rotate_left(32),
            probes: config.core.probes || options.trace_file.is_some(),
            ..config.core.clone()
        };
        let rc = RuntimeConfig { node_id: me, core, nodelist, window: crate::window::WindowSize::DEFAULT };
        let (mut runtime, handle) = Runtime::new(rc, socket, store, PacketCrypto::new(keys, me, boot))
            .map_err(DaemonError::Config)?;
        if let Some(path) = &options.trace_file {
            let journal = JournalWriter::create(path, me).map_err(|source| DaemonError::Io {
                what: format!("creating the trace journal {}", path.display()),
                source,
            })?;
            runtime = runtime.with_observer(journal.into_observer());
        }
        let socket_path = config.system.run_dir.join(SOCKET_NAME);
        let server = Server::bind(&socket_path).map_err(|source| DaemonError::Io {
            what: format!("binding {}", socket_path.display()),
            source,
        })?;
        Ok(Daemon {
            me,
            socket_path,
            handle,
            runtime,
            server,
            access: Access { allowed_gid: config.system.ipc_gid },
        })
    }

    /// Reload requests made over IPC (`totemctl reload`) arrive here; whoever holds the
    /// receiver reloads, as on SIGHUP. Until this is called, the socket refuses reloads.
    pub fn reload_requests(&mut self) -> tokio::sync::mpsc::Receiver<()> {
        // One pending request is enough: a reload reads the newest file anyway.
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        self.server.set_reload(tx);
        rx
    }

    /// Serve until SIGTERM / SIGINT (a clean leave) or a fatal error.
    pub async fn run(self) -> Result<RuntimeStats, DaemonError> {
        let Daemon { handle, runtime, server, socket_path, me, access } = self;
        tracing::info!("node {me} starting; clients connect to {}", socket_path.display());
        let serve = tokio::spawn(server.serve(handle.clone(), access, crate::events::QueueLimit::DEFAULT));
        let signals = tokio::spawn(watch_signals(handle.clone()));
        let result = runtime.run().await;
        serve.abort();
        signals.abort();
        let _ = std::fs::remove_file(&socket_path);
        let stats = result?;
        tracing::info!("node {me} left the ring cleanly");
        Ok(stats)
    }
}

/// SIGTERM and SIGINT: leave the ring cleanly. SIGHUP is handled by the binary (reload).
async fn watch_signals(handle: Handle) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        tracing::warn!("cannot install signal handlers: stop totemd with totemctl or SIGKILL");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: leaving the ring"),
        _ = int.recv() => tracing::info!("SIGINT: leaving the ring"),
    }
    handle.shutdown().await;
}
