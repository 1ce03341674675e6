//! From a parsed file to [`NodeConfig`]: Corosync's keys, defaults and rules (study §3).

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use totem_core::{Config, ConfigError, NodeId, TimingBase};
use zeroize::Zeroize;

use super::{ConfError, ConfErrorKind, ConfFile, KeyValue, Section, Warning, WarningKind};
use crate::crypto::{AUTHKEY_LEN_MAX, AUTHKEY_LEN_MIN, Cipher, KeyError, Keyring, Protection};
use crate::keygen::DEFAULT_KEY_PATH;

/// Corosync's default `mcastport`, used for every node whose `ring0_addr` has no port.
pub const DEFAULT_PORT: u16 = 5405;
/// Where the ring sequence and boot id are persisted (Corosync: /var/lib/corosync).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/totem";
/// Where the IPC socket lives (Corosync: /run/corosync).
pub const DEFAULT_RUN_DIR: &str = "/run/totem";

/// The default `netmtu` with knet, Corosync's default transport (and Totem's when none is
/// named): frames of up to 64 KiB. Like knet, Totem cuts a frame into datagrams of one
/// Ethernet MTU itself ([`crate::fragment`]), sent together with UDP GSO.
pub const NETMTU_KNET: usize = 65536;
/// The default `netmtu` with `transport: udpu` or `udp` written out, as in Corosync.
pub const NETMTU_UDP: usize = 1500;

/// How packets travel. Totem has its own UDP transport; Corosync's `knet` is read as
/// unicast UDP with a warning.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Transport {
    /// One unicast datagram per destination node (`udpu`, and `knet` adjusted).
    Udpu,
    /// IP multicast to `mcastaddr` for messages to all (`udp`).
    Udp,
}

/// Which address family to prefer when a node address is a host name (`ip_version`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum IpVersion {
    Ipv4,
    Ipv6,
    /// `ipv4-6`: IPv4 first, then IPv6.
    Ipv4Then6,
    /// `ipv6-4`: IPv6 first, then IPv4 (Corosync's default for knet and udpu).
    Ipv6Then4,
}

/// A node's address on link 0.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum NodeAddr {
    /// A literal address, with `mcastport` or the port written in `ring0_addr`.
    Socket(SocketAddr),
    /// A host name the runtime resolves (preferring the family of `ip_version`).
    Host { name: String, port: u16 },
}

impl NodeAddr {
    /// The IP address, if the address is literal.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            NodeAddr::Socket(s) => Some(s.ip()),
            NodeAddr::Host { .. } => None,
        }
    }
}

impl fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeAddr::Socket(s) => write!(f, "{s}"),
            NodeAddr::Host { name, port } => write!(f, "{name}:{port}"),
        }
    }
}

/// One `nodelist { node { ... } }` entry.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct NodeEntry {
    pub id: NodeId,
    pub name: Option<String>,
    pub addr: NodeAddr,
}

/// Timing settings the node runtime uses besides the core's [`Config`].
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct TimingExtras {
    /// `token` as written (the core's `token` is the coefficient-adjusted one).
    pub token_base: Duration,
    pub token_coefficient: Duration,
    pub token_retransmits_before_loss_const: u32,
    /// Log "token not received" after this percentage of the token timeout (0 = never).
    pub token_warning_percent: u32,
    /// How often to re-check a failed interface.
    pub downcheck: Duration,
}

/// A key written inline as `totem.key` (discouraged, as in Corosync). Never printed, and
/// wiped from memory when dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct InlineKey(pub Vec<u8>);

impl fmt::Debug for InlineKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InlineKey(<{} bytes redacted>)", self.0.len())
    }
}

impl Drop for InlineKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// Where the cluster key comes from.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum KeySource {
    /// `totem.keyfile`, the command-line override, or [`DEFAULT_KEY_PATH`].
    File(PathBuf),
    /// `totem.key`.
    Inline(InlineKey),
    /// A random key made at start-up: only for the one-node default configuration.
    Ephemeral,
}

/// Packet protection as configured.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum CryptoConfig {
    /// `crypto_cipher: none` and `crypto_hash: none`: cleartext, no key.
    Cleartext,
    /// Every packet sealed with `cipher` under the key from `key`.
    Keyed { cipher: Cipher, key: KeySource },
}

impl CryptoConfig {
    /// Loads the key (reads the key file) and returns the protection to hand to the
    /// sealer and opener.
    pub fn protection(&self) -> Result<Protection, KeyError> {
        match self {
            CryptoConfig::Cleartext => Ok(Protection::Cleartext),
            CryptoConfig::Keyed { cipher, key: KeySource::File(path) } => {
                Ok(Protection::Keyed(Keyring::load(path, *cipher)?))
            }
            CryptoConfig::Keyed { cipher, key: KeySource::Inline(bytes) } => {
                Ok(Protection::Keyed(Keyring::from_authkey_with(&bytes.0, *cipher)?))
            }
            CryptoConfig::Keyed { cipher, key: KeySource::Ephemeral } => {
                Ok(Protection::Keyed(Keyring::ephemeral(*cipher)?))
            }
        }
    }
}

/// Per-node paths (`system` section), so that several nodes can run on one machine.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SystemConfig {
    /// Persisted ring sequence and boot id.
    pub state_dir: PathBuf,
    /// The IPC socket.
    pub run_dir: PathBuf,
    /// Besides root and the daemon's own user, members of this group (numeric gid) may use
    /// the IPC socket (`system.ipc_gid`; like Corosync's `uidgid { gid: }`).
    pub ipc_gid: Option<u32>,
}

/// `logging.debug`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DebugLevel {
    Off,
    On,
    Trace,
}

/// `logging.timestamp`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Timestamp {
    Off,
    On,
    /// Microsecond resolution.
    Hires,
}

/// The `logging` settings Totem acts on.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct LoggingConfig {
    pub to_stderr: bool,
    pub to_logfile: bool,
    pub logfile: Option<PathBuf>,
    pub debug: DebugLevel,
    pub timestamp: Timestamp,
}

impl Default for LoggingConfig {
    /// Corosync's defaults, minus syslog (which Totem does not write to).
    fn default() -> Self {
        LoggingConfig {
            to_stderr: true,
            to_logfile: false,
            logfile: None,
            debug: DebugLevel::Off,
            timestamp: Timestamp::Off,
        }
    }
}

/// Command-line settings that take precedence over the file.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Overrides {
    /// This node's id (`totemd --nodeid`).
    pub nodeid: Option<NodeId>,
    /// The key file (`totemd --key-file`).
    pub keyfile: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
    pub run_dir: Option<PathBuf>,
}

/// Everything a Totem node reads from its configuration.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct NodeConfig {
    pub cluster_name: Option<String>,
    /// The protocol's parameters, validated. `rng_seed` is left at 0 for the runtime to set.
    pub core: Config,
    pub timing: TimingExtras,
    pub transport: Transport,
    pub ip_version: IpVersion,
    /// `mcastport`: the port of every node address that does not name its own.
    pub port: u16,
    /// `interface.bindnetaddr`, used only without a nodelist.
    pub bindnetaddr: Option<IpAddr>,
    /// `interface.mcastaddr`, used only with `transport: udp`.
    pub mcastaddr: Option<IpAddr>,
    /// The nodelist, sorted by node id.
    pub nodes: Vec<NodeEntry>,
    /// This node's id, if the configuration or the command line says it.
    pub local_nodeid: Option<NodeId>,
    /// Drop packets from addresses outside the nodelist.
    pub block_unlisted_ips: bool,
    pub crypto: CryptoConfig,
    pub system: SystemConfig,
    pub logging: LoggingConfig,
}

impl NodeConfig {
    /// The embedded default, used when `totemd` runs without a configuration file: a
    /// one-node cluster (node 1) on 127.0.0.1:5405, every packet sealed with an ephemeral
    /// key (no key file needed, and nothing else on the host can inject packets).
    pub fn default_single_node() -> NodeConfig {
        let nodes = vec![NodeEntry {
            id: NodeId(1),
            name: None,
            addr: NodeAddr::Socket(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), DEFAULT_PORT)),
        }];
        let base = TimingBase { nodes: 1, ..TimingBase::default() };
        let mut core = Config::for_cluster(base);
        core.set_netmtu(NETMTU_KNET);
        NodeConfig {
            cluster_name: None,
            core,
            timing: TimingExtras {
                token_base: base.token,
                token_coefficient: base.token_coefficient,
                token_retransmits_before_loss_const: base.token_retransmits_before_loss_const,
                token_warning_percent: 75,
                downcheck: Duration::from_millis(1000),
            },
            transport: Transport::Udpu,
            ip_version: IpVersion::Ipv6Then4,
            port: DEFAULT_PORT,
            bindnetaddr: None,
            mcastaddr: None,
            nodes,
            local_nodeid: Some(NodeId(1)),
            block_unlisted_ips: true,
            crypto: CryptoConfig::Keyed { cipher: Cipher::Aes256Siv, key: KeySource::Ephemeral },
            system: SystemConfig {
                state_dir: DEFAULT_STATE_DIR.into(),
                run_dir: DEFAULT_RUN_DIR.into(),
                ipc_gid: None,
            },
            logging: LoggingConfig::default(),
        }
    }

    /// Reads a parsed file with no command-line overrides.
    pub fn from_conf(conf: &ConfFile) -> Result<(NodeConfig, Vec<Warning>), ConfError> {
        NodeConfig::from_conf_with(conf, &Overrides::default())
    }

    /// Reads a parsed file; `overrides` take precedence. The warnings include the parser's.
    pub fn from_conf_with(
        conf: &ConfFile,
        overrides: &Overrides,
    ) -> Result<(NodeConfig, Vec<Warning>), ConfError> {
        let mut m = Mapper { file: &conf.name, warnings: conf.warnings.clone() };
        let config = m.node_config(&conf.root, overrides)?;
        // In file order, which is how an operator reads them; stable, so remarks about one
        // line keep the order they were found in.
        m.warnings.sort_by_key(|w| w.line.unwrap_or(usize::MAX));
        Ok((config, m.warnings))
    }

    /// The nodelist entry of `id`.
    pub fn node(&self, id: NodeId) -> Option<&NodeEntry> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// This node's id: the configured one, else the one nodelist entry whose `name` is the
    /// host name (or its first label), else the one whose address is among `local_addrs`
    /// (Corosync's order, study §3.2). The runtime supplies the host's name and addresses.
    pub fn resolve_local_node(
        &self,
        local_addrs: &[IpAddr],
        hostname: Option<&str>,
    ) -> Result<NodeId, ConfError> {
        if let Some(id) = self.local_nodeid {
            return Ok(id);
        }
        let error = |message: String| ConfError {
            file: "configuration".to_owned(),
            line: None,
            key: Some("nodelist".to_owned()),
            kind: ConfErrorKind::Missing,
            message,
        };
        let short = |s: &str| s.split('.').next().unwrap_or(s).to_owned();
        let pick = |matches: Vec<NodeId>, how: &str| -> Result<Option<NodeId>, ConfError> {
            match matches.as_slice() {
                [] => Ok(None),
                [one] => Ok(Some(*one)),
                many => Err(error(format!(
                    "nodes {many:?} all match this host by {how}; set totem.nodeid or pass --nodeid"
                ))),
            }
        };
        if let Some(host) = hostname {
            let by_name = |eq: &dyn Fn(&str) -> bool| {
                self.nodes.iter().filter(|n| n.name.as_deref().is_some_and(eq)).map(|n| n.id).collect()
            };
            if let Some(id) = pick(by_name(&|n| n == host), "name")? {
                return Ok(id);
            }
            if let Some(id) = pick(by_name(&|n| short(n) == short(host)), "short name")? {
                return Ok(id);
            }
        }
        let by_addr = self.nodes.iter().filter(|n| n.addr.ip().is_some_and(|ip| local_addrs.contains(&ip)));
        if let Some(id) = pick(by_addr.map(|n| n.id).collect(), "address")? {
            return Ok(id);
        }
        Err(error(
            "no nodelist entry matches this host's name or addresses; set totem.nodeid or pass --nodeid"
                .to_owned(),
        ))
    }
}

/// Reasons given for keys Corosync 3 accepts and Totem does not act on. A pattern ending
/// in `*` matches by prefix.
type Reasons = &'static [(&'static str, &'static str)];

const TOTEM_NOT_ACTED: Reasons = &[
    ("knet_*", "Totem does not use knet (its own UDP transport has no knet links)"),
    ("crypto_model", "Totem's crypto is built in (AES-SIV)"),
    ("link_mode", "Totem uses a single link"),
    ("rrp_*", "Totem uses a single link"),
    ("heartbeat_failures_allowed", "Totem has no heartbeat failure detector"),
    ("max_network_delay", "Totem has no heartbeat failure detector"),
    ("clear_node_high_bit", "Totem needs explicit node ids"),
    ("config_version", "Totem does not reload configurations at run time"),
    ("vsftype", "Totem has no pluggable virtual synchrony filter"),
    ("threads", "Totem sends from one thread"),
    ("ip_dscp", "Totem does not set DSCP bits"),
];
const INTERFACE_NOT_ACTED: Reasons = &[
    ("knet_*", "Totem does not use knet"),
    ("broadcast", "Totem does not send broadcasts"),
    ("ttl", "Totem does not set a multicast TTL"),
];
const NODE_NOT_ACTED: Reasons = &[
    ("ring1_addr", "Totem uses one link (ring0_addr)"),
    ("ring2_addr", "Totem uses one link (ring0_addr)"),
    ("ring3_addr", "Totem uses one link (ring0_addr)"),
    ("ring4_addr", "Totem uses one link (ring0_addr)"),
    ("ring5_addr", "Totem uses one link (ring0_addr)"),
    ("ring6_addr", "Totem uses one link (ring0_addr)"),
    ("ring7_addr", "Totem uses one link (ring0_addr)"),
    ("quorum_votes", "Totem has no quorum service"),
];
const LOGGING_NOT_ACTED: Reasons = &[
    ("to_syslog", "Totem logs to stderr and a log file only"),
    ("syslog_*", "Totem logs to stderr and a log file only"),
    ("logfile_priority", "the level is set with `debug`"),
    ("fileline", "log lines carry the module path instead"),
    ("function_name", "log lines carry the module path instead"),
    ("blackbox", "Totem has no blackbox recorder"),
    ("tags", "Totem has no log tags"),
];
const QUORUM_NOT_ACTED: Reasons = &[
    ("provider", "Totem has no quorum service"),
    ("expected_votes", "Totem has no quorum service"),
    ("expected_votes_tracking", "Totem has no quorum service"),
    ("two_node", "Totem has no quorum service"),
    ("wait_for_all", "Totem has no quorum service"),
    ("last_man_standing", "Totem has no quorum service"),
    ("last_man_standing_window", "Totem has no quorum service"),
    ("auto_tie_breaker", "Totem has no quorum service"),
    ("auto_tie_breaker_node", "Totem has no quorum service"),
    ("allow_downscale", "Totem has no quorum service"),
    ("votes", "Totem has no quorum service"),
];
const SYSTEM_NOT_ACTED: Reasons = &[
    ("sched_rr", "Totem runs with the scheduler it is started with"),
    ("priority", "Totem runs with the priority it is started with"),
    ("qb_ipc_type", "Totem's IPC is its own (a Unix socket)"),
    ("move_to_root_cgroup", "Totem leaves cgroups to the service manager"),
    ("allow_knet_handle_fallback", "Totem does not use knet"),
];

fn reason(reasons: Reasons, key: &str) -> Option<&'static str> {
    reasons.iter().find_map(|(pattern, why)| {
        let hit = match pattern.strip_suffix('*') {
            Some(prefix) => key.starts_with(prefix),
            None => key == *pattern,
        };
        hit.then_some(*why)
    })
}

/// The keys of one section (several occurrences merged), by name; the last one counts.
struct Keys<'f> {
    path: String,
    map: BTreeMap<&'f str, &'f KeyValue>,
}

impl<'f> Keys<'f> {
    fn take(&mut self, name: &str) -> Option<&'f KeyValue> {
        self.map.remove(name)
    }
}

/// Collects warnings while it maps; errors name the file through it.
struct Mapper<'f> {
    file: &'f str,
    warnings: Vec<Warning>,
}

/// A value parser: a message saying what is wrong with the text, if anything.
type ParseFn<T> = fn(&str) -> Result<T, String>;

impl<'f> Mapper<'f> {
    fn error(
        &self,
        line: Option<usize>,
        key: Option<String>,
        kind: ConfErrorKind,
        message: String,
    ) -> ConfError {
        ConfError { file: self.file.to_owned(), line, key, kind, message }
    }

    fn key_error(&self, keys: &Keys<'_>, kv: &KeyValue, kind: ConfErrorKind, message: String) -> ConfError {
        self.error(Some(kv.line), Some(format!("{}.{}", keys.path, kv.key)), kind, message)
    }

    fn warn(&mut self, line: Option<usize>, key: String, kind: WarningKind, message: String) {
        self.warnings.push(Warning { file: self.file.to_owned(), line, key: Some(key), kind, message });
    }

    fn not_acted(&mut self, line: usize, key: String, why: &str) {
        self.warn(Some(line), key, WarningKind::NotActedOn, format!("accepted but not acted on: {why}"));
    }

    /// Merges the key lines of `sections` and warns about the subsections, which the
    /// caller handles itself when it knows them (`known_sections`).
    fn keys(&mut self, path: &str, sections: &[&'f Section]) -> Keys<'f> {
        let mut map: BTreeMap<&'f str, &'f KeyValue> = BTreeMap::new();
        for section in sections {
            for kv in section.keys() {
                if let Some(previous) = map.insert(kv.key.as_str(), kv) {
                    self.warn(
                        Some(kv.line),
                        format!("{path}.{}", kv.key),
                        WarningKind::Duplicate,
                        format!("also set on line {}; the value on line {} counts", previous.line, kv.line),
                    );
                }
            }
        }
        Keys { path: path.to_owned(), map }
    }

    /// Warns about every key nobody took: not acted on if `reasons` knows it, else unknown.
    fn finish(&mut self, keys: Keys<'_>, reasons: Reasons) {
        for (name, kv) in keys.map {
            let key = format!("{}.{name}", keys.path);
            match reason(reasons, name) {
                Some(why) => self.not_acted(kv.line, key, why),
                None => self.warn(
                    Some(kv.line),
                    key,
                    WarningKind::UnknownKey,
                    "unknown key (neither a Totem nor a Corosync 3 setting); check the spelling".to_owned(),
                ),
            }
        }
    }

    fn unknown_section(&mut self, parent: &str, section: &Section) {
        let key = if parent.is_empty() { section.name.clone() } else { format!("{parent}.{}", section.name) };
        self.warn(
            Some(section.line),
            key,
            WarningKind::UnknownKey,
            "unknown section (neither Totem nor Corosync 3 has it); its content is ignored".to_owned(),
        );
    }

    fn value<T>(
        &self,
        keys: &mut Keys<'f>,
        name: &str,
        parse: ParseFn<T>,
    ) -> Result<Option<(T, &'f KeyValue)>, ConfError> {
        let Some(kv) = keys.take(name) else { return Ok(None) };
        match parse(&kv.value) {
            Ok(v) => Ok(Some((v, kv))),
            Err(message) => Err(self.key_error(keys, kv, ConfErrorKind::Value, message)),
        }
    }

    fn node_config(&mut self, root: &'f Section, overrides: &Overrides) -> Result<NodeConfig, ConfError> {
        let mut by_name: BTreeMap<&str, Vec<&'f Section>> = BTreeMap::new();
        for kv in root.keys() {
            self.warn(
                Some(kv.line),
                kv.key.clone(),
                WarningKind::UnknownKey,
                "key outside any section; Corosync has no top-level keys".to_owned(),
            );
        }
        for section in root.sections() {
            match section.name.as_str() {
                "totem" | "nodelist" | "logging" | "quorum" | "system" => {
                    by_name.entry(section.name.as_str()).or_default().push(section);
                }
                "resources" | "qb" | "uidgid" => self.not_acted(
                    section.line,
                    section.name.clone(),
                    match section.name.as_str() {
                        "uidgid" => "Totem's IPC admits root only, not the users and groups listed here",
                        "qb" => "Totem does not use libqb",
                        _ => "Totem has no resource watchdog",
                    },
                ),
                _ => self.unknown_section("", section),
            }
        }
        let sections = |name: &str| by_name.get(name).cloned().unwrap_or_default();
        let totem_sections = sections("totem");
        let totem_line = totem_sections.first().map(|s| s.line);
        let mut totem = self.keys("totem", &totem_sections);

        if let Some((version, kv)) = self.value(&mut totem, "version", parse_u32)?
            && version != 2
        {
            return Err(self.key_error(
                &totem,
                kv,
                ConfErrorKind::Value,
                format!("{version:?} is not supported; it must be 2"),
            ));
        }
        let cluster_name = totem.take("cluster_name").map(|kv| kv.value.clone());
        let (transport, netmtu_default) = self.transport(&mut totem)?;
        let ip_version = match self.value(&mut totem, "ip_version", parse_ip_version)? {
            Some((v, _)) => v,
            None if transport == Transport::Udp => IpVersion::Ipv4,
            None => IpVersion::Ipv6Then4,
        };
        let link0 = self.interfaces(&totem_sections, transport)?;
        let port = link0.port.unwrap_or(DEFAULT_PORT);
        let nodelist_sections = sections("nodelist");
        let nodes = self.nodelist(&nodelist_sections, port, ip_version)?;

        let configured_id = match overrides.nodeid {
            Some(id) => Some((id, None)),
            None => self.value(&mut totem, "nodeid", parse_nodeid)?.map(|(id, kv)| (id, Some(kv))),
        };
        let local_nodeid = match configured_id {
            Some((id, kv)) if !nodes.is_empty() && !nodes.iter().any(|n| n.id == id) => {
                let message = format!("node id {id} is not in the nodelist");
                return Err(match kv {
                    Some(kv) => self.key_error(&totem, kv, ConfErrorKind::Conflict, message),
                    None => self.error(None, Some("--nodeid".to_owned()), ConfErrorKind::Conflict, message),
                });
            }
            other => other.map(|(id, _)| id),
        };
        if let Some(kv) = totem.take("nodeid")
            && overrides.nodeid.is_some()
        {
            self.warn(
                Some(kv.line),
                "totem.nodeid".into(),
                WarningKind::Adjusted,
                "overridden by --nodeid".into(),
            );
        }

        let (core, timing) = self.timing(&mut totem, totem_line, nodes.len(), netmtu_default)?;
        let block_unlisted_ips =
            self.value(&mut totem, "block_unlisted_ips", parse_bool)?.is_none_or(|(b, _)| b);
        let crypto = self.crypto(&mut totem, overrides)?;

        self.finish(totem, TOTEM_NOT_ACTED);

        let logging = self.logging(&sections("logging"))?;
        let system = self.system(&sections("system"), overrides)?;
        self.quorum(&sections("quorum"));

        // Structural checks last, so that a malformed value is reported before a missing section.
        let (mcastaddr, bindnetaddr) = (link0.mcastaddr, link0.bindnetaddr);
        if nodes.is_empty() {
            if transport == Transport::Udpu {
                return Err(self.error(
                    totem_line,
                    Some("nodelist".to_owned()),
                    ConfErrorKind::Missing,
                    "Totem needs a nodelist { node { nodeid: N; ring0_addr: ADDR } } entry for every node \
                     (only transport: udp can do without one)"
                        .to_owned(),
                ));
            }
            if local_nodeid.is_none() {
                return Err(self.error(
                    totem_line,
                    Some("totem.nodeid".to_owned()),
                    ConfErrorKind::Missing,
                    "without a nodelist, this node's id must be set with totem.nodeid or --nodeid".to_owned(),
                ));
            }
        }
        if transport == Transport::Udp && mcastaddr.is_none() {
            return Err(self.error(
                link0.line.or(totem_line),
                Some("totem.interface.mcastaddr".to_owned()),
                ConfErrorKind::Missing,
                "transport udp needs an explicit interface { mcastaddr: ... } (Corosync derives one from \
                 cluster_name; Totem does not)"
                    .to_owned(),
            ));
        }
        if let (Some(line), false) = (link0.mcastaddr_line, transport == Transport::Udp) {
            self.not_acted(line, "totem.interface.mcastaddr".into(), "only transport: udp uses multicast");
        }
        if let (Some(line), false) = (link0.bindnetaddr_line, nodes.is_empty()) {
            self.not_acted(
                line,
                "totem.interface.bindnetaddr".into(),
                "with a nodelist, ring0_addr decides the address",
            );
        }

        Ok(NodeConfig {
            cluster_name,
            core,
            timing,
            transport,
            ip_version,
            port,
            bindnetaddr,
            mcastaddr,
            nodes,
            local_nodeid,
            block_unlisted_ips,
            crypto,
            system,
            logging,
        })
    }

    /// The transport, and the `netmtu` it implies unless one is given (Corosync's default
    /// for that transport: [`NETMTU_KNET`] for knet and when none is named, else
    /// [`NETMTU_UDP`]).
    fn transport(&mut self, totem: &mut Keys<'f>) -> Result<(Transport, usize), ConfError> {
        let Some(kv) = totem.take("transport") else { return Ok((Transport::Udpu, NETMTU_KNET)) };
        match kv.value.as_str() {
            "udpu" => Ok((Transport::Udpu, NETMTU_UDP)),
            "udp" => Ok((Transport::Udp, NETMTU_UDP)),
            "knet" => {
                self.warn(
                    Some(kv.line),
                    "totem.transport".into(),
                    WarningKind::Adjusted,
                    "knet is read as Totem's unicast UDP over one link, sealed with AES-SIV, with knet's \
                     frame size (netmtu 65536, cut into datagrams of one Ethernet MTU as knet does); knet's links, \
                     PMTUD and compression do not apply"
                        .into(),
                );
                Ok((Transport::Udpu, NETMTU_KNET))
            }
            other => Err(self.key_error(
                totem,
                kv,
                ConfErrorKind::Value,
                format!("{other:?} is not a transport; use knet, udpu or udp"),
            )),
        }
    }

    fn interfaces(
        &mut self,
        totem_sections: &[&'f Section],
        transport: Transport,
    ) -> Result<Link0, ConfError> {
        let mut link0_sections = Vec::new();
        for section in totem_sections.iter().flat_map(|s| s.sections()) {
            if section.name != "interface" {
                self.unknown_section("totem", section);
                continue;
            }
            let number = section.keys().filter(|kv| kv.key == "linknumber" || kv.key == "ringnumber").last();
            let link = match number {
                Some(kv) => parse_u32(&kv.value).map_err(|message| {
                    self.error(
                        Some(kv.line),
                        Some(format!("totem.interface.{}", kv.key)),
                        ConfErrorKind::Value,
                        message,
                    )
                })?,
                None => 0,
            };
            if link == 0 {
                link0_sections.push(section);
            } else {
                self.not_acted(
                    section.line,
                    "totem.interface".into(),
                    &format!("Totem uses link 0 only, not link {link}"),
                );
            }
        }
        let mut keys = self.keys("totem.interface", &link0_sections);
        keys.take("linknumber");
        keys.take("ringnumber");
        let port = self.value(&mut keys, "mcastport", parse_port)?;
        let mcastaddr = self.value(&mut keys, "mcastaddr", parse_ip)?;
        if let Some((addr, kv)) = mcastaddr
            && transport == Transport::Udp
            && !addr.is_multicast()
        {
            return Err(self.key_error(
                &keys,
                kv,
                ConfErrorKind::Value,
                format!("{addr} is not a multicast address"),
            ));
        }
        let bindnetaddr = self.value(&mut keys, "bindnetaddr", parse_ip)?;
        for section in &link0_sections {
            for sub in section.sections() {
                self.unknown_section("totem.interface", sub);
            }
        }
        self.finish(keys, INTERFACE_NOT_ACTED);
        Ok(Link0 {
            line: link0_sections.first().map(|s| s.line),
            port: port.map(|(p, _)| p),
            mcastaddr: mcastaddr.map(|(a, _)| a),
            mcastaddr_line: mcastaddr.map(|(_, kv)| kv.line),
            bindnetaddr: bindnetaddr.map(|(a, _)| a),
            bindnetaddr_line: bindnetaddr.map(|(_, kv)| kv.line),
        })
    }

    fn nodelist(
        &mut self,
        sections: &[&'f Section],
        port: u16,
        ip_version: IpVersion,
    ) -> Result<Vec<NodeEntry>, ConfError> {
        let mut nodes: Vec<(NodeEntry, usize, usize)> = Vec::new(); // entry, nodeid line, address line
        for list in sections {
            let stray = self.keys("nodelist", &[list]);
            self.finish(stray, &[]);
            for section in list.sections() {
                if section.name != "node" {
                    self.unknown_section("nodelist", section);
                    continue;
                }
                for sub in section.sections() {
                    self.unknown_section("nodelist.node", sub);
                }
                let mut keys = self.keys("nodelist.node", &[section]);
                let missing = |what: &str, hint: &str| ConfError {
                    file: self.file.to_owned(),
                    line: Some(section.line),
                    key: Some(format!("nodelist.node.{what}")),
                    kind: ConfErrorKind::Missing,
                    message: format!("missing in this node section; {hint}"),
                };
                let Some((id, id_kv)) = self.value(&mut keys, "nodeid", parse_nodeid)? else {
                    return Err(missing(
                        "nodeid",
                        "Totem needs an explicit node id for every node (Corosync derives one from an IPv4 \
                         address for udpu; add `nodeid: N`)",
                    ));
                };
                let Some(addr_kv) = keys.take("ring0_addr") else {
                    return Err(missing("ring0_addr", "every node needs its link 0 address"));
                };
                let addr = parse_node_addr(&addr_kv.value, port)
                    .map_err(|message| self.key_error(&keys, addr_kv, ConfErrorKind::Value, message))?;
                if let Some(ip) = addr.ip() {
                    let wrong_family = match ip_version {
                        IpVersion::Ipv4 => ip.is_ipv6(),
                        IpVersion::Ipv6 => ip.is_ipv4(),
                        IpVersion::Ipv4Then6 | IpVersion::Ipv6Then4 => false,
                    };
                    if wrong_family {
                        return Err(self.key_error(
                            &keys,
                            addr_kv,
                            ConfErrorKind::Conflict,
                            format!("{ip} does not match ip_version {ip_version:?}"),
                        ));
                    }
                }
                let name = keys.take("name").map(|kv| kv.value.clone());
                for (other, other_id_line, other_addr_line) in &nodes {
                    if other.id == id {
                        return Err(self.key_error(
                            &keys,
                            id_kv,
                            ConfErrorKind::Conflict,
                            format!("node id {id} is also used on line {other_id_line}"),
                        ));
                    }
                    if other.addr == addr {
                        return Err(self.key_error(
                            &keys,
                            addr_kv,
                            ConfErrorKind::Conflict,
                            format!("address {addr} is also used on line {other_addr_line}"),
                        ));
                    }
                    if let (Some(a), Some(b)) = (addr.ip(), other.addr.ip())
                        && a.is_ipv4() != b.is_ipv4()
                    {
                        return Err(self.key_error(
                            &keys,
                            addr_kv,
                            ConfErrorKind::Conflict,
                            format!(
                                "{a} is not of the same IP family as {b} on line {other_addr_line}; all addresses \
                                 of a link must share one family"
                            ),
                        ));
                    }
                }
                self.finish(keys, NODE_NOT_ACTED);
                nodes.push((NodeEntry { id, name, addr }, id_kv.line, addr_kv.line));
            }
        }
        let mut nodes: Vec<NodeEntry> = nodes.into_iter().map(|(n, _, _)| n).collect();
        nodes.sort_by_key(|n| n.id);
        Ok(nodes)
    }

    /// The timing keys: Corosync's derivations from the (coefficient-adjusted) token, then
    /// explicit values, then the core's validation, whose errors point at the line of the
    /// key that caused them.
    fn timing(
        &mut self,
        totem: &mut Keys<'f>,
        totem_line: Option<usize>,
        nodes: usize,
        netmtu_default: usize,
    ) -> Result<(Config, TimingExtras), ConfError> {
        let mut explicit: BTreeMap<&'static str, &'f KeyValue> = BTreeMap::new();
        let mut ms = |m: &mut Self, name: &'static str| -> Result<Option<Duration>, ConfError> {
            Ok(m.value(totem, name, parse_ms)?.map(|(d, kv)| {
                explicit.insert(name, kv);
                d
            }))
        };
        let defaults = TimingBase::default();
        let token = ms(self, "token")?.unwrap_or(defaults.token);
        let token_coefficient = ms(self, "token_coefficient")?.unwrap_or(defaults.token_coefficient);
        let token_retransmit = ms(self, "token_retransmit")?;
        let hold = ms(self, "hold")?;
        let join = ms(self, "join")?;
        let consensus = ms(self, "consensus")?;
        let merge = ms(self, "merge")?;
        let send_join = ms(self, "send_join")?;
        let downcheck = ms(self, "downcheck")?.unwrap_or(Duration::from_millis(1000));
        let mut count = |m: &mut Self, name: &'static str| -> Result<Option<u32>, ConfError> {
            Ok(m.value(totem, name, parse_u32)?.map(|(n, kv)| {
                explicit.insert(name, kv);
                n
            }))
        };
        let retransmits = count(self, "token_retransmits_before_loss_const")?;
        let fail_recv_const = count(self, "fail_recv_const")?;
        let seqno_unchanged_const = count(self, "seqno_unchanged_const")?;
        let window_size = count(self, "window_size")?;
        let max_messages = count(self, "max_messages")?;
        let miss_count_const = count(self, "miss_count_const")?;
        let netmtu = count(self, "netmtu")?;
        let token_warning = count(self, "token_warning")?;
        let cancel_hold = self.value(totem, "cancel_token_hold_on_retransmit", parse_bool)?;

        if let (Some(0), Some(kv)) = (retransmits, explicit.get("token_retransmits_before_loss_const")) {
            return Err(self.key_error(totem, kv, ConfErrorKind::Value, "\"0\": must be at least 1".into()));
        }
        if let (Some(w), Some(kv)) = (token_warning, explicit.get("token_warning"))
            && w > 100
        {
            return Err(self.key_error(
                totem,
                kv,
                ConfErrorKind::Value,
                format!("\"{w}\": must be a percentage, 0 to 100"),
            ));
        }
        if let Some(kv) = explicit.get("downcheck")
            && downcheck < totem_core::config::MINIMUM_TIMEOUT
        {
            return Err(self.key_error(
                totem,
                kv,
                ConfErrorKind::Value,
                format!("{:?}: must be at least 30 ms", kv.value),
            ));
        }

        let base = TimingBase {
            token,
            token_coefficient,
            token_retransmits_before_loss_const: retransmits
                .unwrap_or(defaults.token_retransmits_before_loss_const),
            nodes,
        };
        let mut core = Config::for_cluster(base);
        if let Some(rt) = token_retransmit {
            core.token_retransmit = rt;
            // Corosync derives hold from token_retransmit, explicit or not.
            core.hold = Duration::from_millis((rt.as_millis() as u64 * 8 / 10).saturating_sub(10));
        }
        core.hold = hold.unwrap_or(core.hold);
        core.join = join.unwrap_or(core.join);
        core.consensus = consensus.unwrap_or(core.consensus);
        core.merge = merge.unwrap_or(core.merge);
        core.send_join = send_join.unwrap_or(core.send_join);
        core.fail_recv_const = fail_recv_const.unwrap_or(core.fail_recv_const);
        core.seqno_unchanged_const = seqno_unchanged_const.unwrap_or(core.seqno_unchanged_const);
        core.window_size = window_size.unwrap_or(core.window_size);
        core.max_messages = max_messages.unwrap_or(core.max_messages);
        core.miss_count_const = miss_count_const.unwrap_or(core.miss_count_const);
        core.set_netmtu(netmtu.map_or(netmtu_default, |n| n as usize));
        if let Some((b, kv)) = cancel_hold {
            core.cancel_token_hold_on_retransmit = b;
            explicit.insert("cancel_token_hold_on_retransmit", kv);
        }
        if let Err(e) = core.validate() {
            return Err(self.validation_error(&e, &explicit, totem_line));
        }
        let timing = TimingExtras {
            token_base: token,
            token_coefficient,
            token_retransmits_before_loss_const: base.token_retransmits_before_loss_const,
            token_warning_percent: token_warning.unwrap_or(75),
            downcheck,
        };
        Ok((core, timing))
    }

    /// Points a core validation error at the line of the key responsible: the key itself
    /// if it was written, else the first written key it is derived from.
    fn validation_error(
        &self,
        e: &ConfigError,
        explicit: &BTreeMap<&'static str, &KeyValue>,
        totem_line: Option<usize>,
    ) -> ConfError {
        let sources: &[&str] = match e.key {
            "token" => &["token", "token_coefficient"],
            "token_retransmit" => {
                &["token_retransmit", "token", "token_retransmits_before_loss_const", "token_coefficient"]
            }
            "hold" => &[
                "hold",
                "token_retransmit",
                "token",
                "token_retransmits_before_loss_const",
                "token_coefficient",
            ],
            "consensus" => &["consensus", "join", "token", "token_coefficient"],
            "max_messages" => &["max_messages", "window_size"],
            _ => std::slice::from_ref(&e.key),
        };
        let found = sources.iter().find_map(|s| explicit.get(s).map(|kv| (*s, *kv)));
        match found {
            Some((source, kv)) if source == e.key => self.error(
                Some(kv.line),
                Some(format!("totem.{source}")),
                ConfErrorKind::Value,
                format!("{:?}: {}", kv.value, e.rule),
            ),
            Some((source, kv)) => self.error(
                Some(kv.line),
                Some(format!("totem.{source}")),
                ConfErrorKind::Value,
                format!("{:?} makes {} = {}, and {} {}", kv.value, e.key, e.value, e.key, e.rule),
            ),
            None => self.error(
                totem_line,
                Some(format!("totem.{}", e.key)),
                ConfErrorKind::Value,
                format!("the derived value {} {}", e.value, e.rule),
            ),
        }
    }

    fn crypto(&mut self, totem: &mut Keys<'f>, overrides: &Overrides) -> Result<CryptoConfig, ConfError> {
        let secauth = self.value(totem, "secauth", parse_bool)?;
        let cipher_kv = totem.take("crypto_cipher");
        let hash_kv = totem.take("crypto_hash");
        let keyfile_kv = totem.take("keyfile");
        let key_kv = totem.take("key");
        // `secauth` is Corosync's old shorthand: on = aes256 + sha256, off = none + none;
        // explicit crypto_cipher / crypto_hash override it.
        let (default_cipher, default_hash) = match secauth {
            Some((false, _)) => ("none", "none"),
            _ => ("aes256", "sha256"),
        };
        let cipher_name = cipher_kv.map_or(default_cipher, |kv| kv.value.as_str());
        let hash_name = hash_kv.map_or(default_hash, |kv| kv.value.as_str());
        let cipher = match cipher_name {
            "none" => None,
            "aes256" => Some(Cipher::Aes256Siv),
            "aes128" => Some(Cipher::Aes128Siv),
            // A Totem extension: RFC 8452 AES-GCM-SIV, faster for large messages.
            "aes256-gcm-siv" => Some(Cipher::Aes256GcmSiv),
            "aes192" => {
                if let Some(kv) = cipher_kv {
                    self.warn(
                        Some(kv.line),
                        "totem.crypto_cipher".into(),
                        WarningKind::Adjusted,
                        "AES-SIV has no 192-bit variant here; aes256 is used (every node reading this file agrees)".into(),
                    );
                }
                Some(Cipher::Aes256Siv)
            }
            other => {
                let message =
                    format!("{other:?} is not a cipher; use aes256, aes128, aes256-gcm-siv or none");
                return Err(match cipher_kv {
                    Some(kv) => self.key_error(totem, kv, ConfErrorKind::Value, message),
                    None => {
                        self.error(None, Some("totem.crypto_cipher".into()), ConfErrorKind::Value, message)
                    }
                });
            }
        };
        if !["none", "md5", "sha1", "sha256", "sha384", "sha512"].contains(&hash_name) {
            let message =
                format!("{hash_name:?} is not a hash; use none, md5, sha1, sha256, sha384 or sha512");
            return Err(match hash_kv {
                Some(kv) => self.key_error(totem, kv, ConfErrorKind::Value, message),
                None => self.error(None, Some("totem.crypto_hash".into()), ConfErrorKind::Value, message),
            });
        }
        let cipher = match (cipher, hash_name) {
            (None, "none") => None,
            (None, hash) => {
                if let Some(kv) = hash_kv.or(secauth.map(|(_, kv)| kv)) {
                    self.warn(
                        Some(kv.line),
                        format!("totem.{}", kv.key),
                        WarningKind::Adjusted,
                        format!(
                            "Totem has no authentication-only mode: with crypto_hash {hash}, packets are \
                             encrypted and authenticated with aes256 (AES-SIV)"
                        ),
                    );
                }
                Some(Cipher::Aes256Siv)
            }
            (Some(c), _) => {
                if let Some(kv) = hash_kv {
                    self.not_acted(
                        kv.line,
                        "totem.crypto_hash".into(),
                        "the cipher (AES-SIV or AES-GCM-SIV) authenticates every packet itself",
                    );
                }
                Some(c)
            }
        };
        let Some(cipher) = cipher else {
            let conflict = keyfile_kv.or(key_kv);
            if let Some(kv) = conflict {
                return Err(self.key_error(
                    totem,
                    kv,
                    ConfErrorKind::Conflict,
                    "a key is configured but crypto_cipher is none: a node with a key never sends or accepts \
                     cleartext; remove the key or set crypto_cipher: aes256"
                        .into(),
                ));
            }
            if overrides.keyfile.is_some() {
                return Err(self.error(
                    None,
                    Some("--key-file".into()),
                    ConfErrorKind::Conflict,
                    "a key file is given but crypto_cipher is none; drop --key-file or set crypto_cipher: aes256".into(),
                ));
            }
            let line = cipher_kv.or(secauth.map(|(_, kv)| kv)).map(|kv| kv.line);
            self.warn(
                line,
                "totem.crypto_cipher".into(),
                WarningKind::Insecure,
                "cleartext: packets are neither encrypted nor authenticated, so anyone who can reach the \
                 cluster's port can read them and inject messages"
                    .into(),
            );
            return Ok(CryptoConfig::Cleartext);
        };
        let key = if let Some(path) = &overrides.keyfile {
            KeySource::File(path.clone())
        } else if let Some(kv) = keyfile_kv {
            if kv.value.is_empty() {
                return Err(self.key_error(totem, kv, ConfErrorKind::Value, "empty path".into()));
            }
            KeySource::File(PathBuf::from(&kv.value))
        } else if let Some(kv) = key_kv {
            let len = kv.value.len();
            if !(AUTHKEY_LEN_MIN..=AUTHKEY_LEN_MAX).contains(&len) {
                return Err(self.key_error(
                    totem,
                    kv,
                    ConfErrorKind::Value,
                    format!("an inline key must be {AUTHKEY_LEN_MIN} to {AUTHKEY_LEN_MAX} bytes, not {len}; better, use a keyfile"),
                ));
            }
            KeySource::Inline(InlineKey(kv.value.as_bytes().to_vec()))
        } else {
            KeySource::File(PathBuf::from(DEFAULT_KEY_PATH))
        };
        if let (Some(kv), false) = (key_kv, matches!(key, KeySource::Inline(_))) {
            self.not_acted(kv.line, "totem.key".into(), "the key file takes precedence, as in Corosync");
        }
        Ok(CryptoConfig::Keyed { cipher, key })
    }

    fn logging(&mut self, sections: &[&'f Section]) -> Result<LoggingConfig, ConfError> {
        for section in sections.iter().flat_map(|s| s.sections()) {
            match section.name.as_str() {
                "logger_subsys" => self.not_acted(
                    section.line,
                    "logging.logger_subsys".into(),
                    "Totem has no per-subsystem log settings",
                ),
                _ => self.unknown_section("logging", section),
            }
        }
        let mut keys = self.keys("logging", sections);
        let mut logging = LoggingConfig::default();
        if let Some((b, _)) = self.value(&mut keys, "to_stderr", parse_bool)? {
            logging.to_stderr = b;
        }
        let to_logfile = self.value(&mut keys, "to_logfile", parse_bool)?;
        logging.logfile = keys.take("logfile").map(|kv| PathBuf::from(&kv.value));
        if let Some((d, _)) = self.value(&mut keys, "debug", parse_debug)? {
            logging.debug = d;
        }
        if let Some((t, _)) = self.value(&mut keys, "timestamp", parse_timestamp)? {
            logging.timestamp = t;
        }
        if let Some((true, kv)) = to_logfile {
            if logging.logfile.is_none() {
                return Err(self.key_error(
                    &keys,
                    kv,
                    ConfErrorKind::Missing,
                    "to_logfile is yes but no logfile is set".into(),
                ));
            }
            logging.to_logfile = true;
        }
        self.finish(keys, LOGGING_NOT_ACTED);
        Ok(logging)
    }

    fn system(&mut self, sections: &[&'f Section], overrides: &Overrides) -> Result<SystemConfig, ConfError> {
        for section in sections.iter().flat_map(|s| s.sections()) {
            self.unknown_section("system", section);
        }
        let mut keys = self.keys("system", sections);
        let mut dir =
            |m: &mut Self, name: &str, default: &str, over: &Option<PathBuf>| -> Result<PathBuf, ConfError> {
                let kv = keys.take(name);
                if let Some(kv) = kv
                    && kv.value.is_empty()
                {
                    return Err(m.key_error(&keys, kv, ConfErrorKind::Value, "empty path".into()));
                }
                Ok(over
                    .clone()
                    .or_else(|| kv.map(|kv| PathBuf::from(&kv.value)))
                    .unwrap_or_else(|| default.into()))
            };
        let state_dir = dir(self, "state_dir", DEFAULT_STATE_DIR, &overrides.state_dir)?;
        let run_dir = dir(self, "run_dir", DEFAULT_RUN_DIR, &overrides.run_dir)?;
        let ipc_gid = match keys.take("ipc_gid") {
            None => None,
            Some(kv) => match kv.value.parse::<u32>() {
                Ok(gid) => Some(gid),
                Err(_) => {
                    return Err(self.key_error(
                        &keys,
                        kv,
                        ConfErrorKind::Value,
                        "not a numeric group id".into(),
                    ));
                }
            },
        };
        self.finish(keys, SYSTEM_NOT_ACTED);
        Ok(SystemConfig { state_dir, run_dir, ipc_gid })
    }

    fn quorum(&mut self, sections: &[&'f Section]) {
        for section in sections.iter().flat_map(|s| s.sections()) {
            match section.name.as_str() {
                "device" => {
                    self.not_acted(section.line, "quorum.device".into(), "Totem has no quorum service")
                }
                _ => self.unknown_section("quorum", section),
            }
        }
        let keys = self.keys("quorum", sections);
        self.finish(keys, QUORUM_NOT_ACTED);
    }
}

/// What the link-0 `interface` sections say.
struct Link0 {
    line: Option<usize>,
    port: Option<u16>,
    mcastaddr: Option<IpAddr>,
    mcastaddr_line: Option<usize>,
    bindnetaddr: Option<IpAddr>,
    bindnetaddr_line: Option<usize>,
}

fn parse_u32(v: &str) -> Result<u32, String> {
    if v.is_empty() {
        return Err("empty value; a number is needed".into());
    }
    match v.parse::<u64>() {
        Ok(n) => u32::try_from(n).map_err(|_| format!("{v:?} is too large (at most {})", u32::MAX)),
        Err(_) if v.strip_prefix('-').is_some_and(|d| d.parse::<u64>().is_ok()) => {
            Err(format!("{v:?} is negative"))
        }
        Err(_) if v.bytes().all(|b| b.is_ascii_digit()) => {
            Err(format!("{v:?} is too large (at most {})", u32::MAX))
        }
        Err(_) => Err(format!("{v:?} is not a number")),
    }
}

fn parse_ms(v: &str) -> Result<Duration, String> {
    parse_u32(v).map(|n| Duration::from_millis(u64::from(n)))
}

fn parse_nodeid(v: &str) -> Result<NodeId, String> {
    match parse_u32(v)? {
        0 => Err("\"0\" is not a node id; node ids start at 1".into()),
        n => Ok(NodeId(n)),
    }
}

fn parse_port(v: &str) -> Result<u16, String> {
    match parse_u32(v)? {
        0 => Err("\"0\" is not a port".into()),
        n => u16::try_from(n).map_err(|_| format!("{v:?} is not a port (at most 65535)")),
    }
}

fn parse_bool(v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "yes" | "on" | "true" | "1" => Ok(true),
        "no" | "off" | "false" | "0" => Ok(false),
        _ => Err(format!("{v:?} is not yes or no")),
    }
}

fn parse_ip(v: &str) -> Result<IpAddr, String> {
    v.parse().map_err(|_| format!("{v:?} is not an IP address"))
}

fn parse_ip_version(v: &str) -> Result<IpVersion, String> {
    match v {
        "ipv4" => Ok(IpVersion::Ipv4),
        "ipv6" => Ok(IpVersion::Ipv6),
        "ipv4-6" => Ok(IpVersion::Ipv4Then6),
        "ipv6-4" => Ok(IpVersion::Ipv6Then4),
        _ => Err(format!("{v:?} is not an IP version; use ipv4, ipv6, ipv4-6 or ipv6-4")),
    }
}

fn parse_debug(v: &str) -> Result<DebugLevel, String> {
    match v {
        "trace" => Ok(DebugLevel::Trace),
        _ => match parse_bool(v) {
            Ok(true) => Ok(DebugLevel::On),
            Ok(false) => Ok(DebugLevel::Off),
            Err(_) => Err(format!("{v:?} is not on, off or trace")),
        },
    }
}

fn parse_timestamp(v: &str) -> Result<Timestamp, String> {
    match v {
        "hires" => Ok(Timestamp::Hires),
        _ => match parse_bool(v) {
            Ok(true) => Ok(Timestamp::On),
            Ok(false) => Ok(Timestamp::Off),
            Err(_) => Err(format!("{v:?} is not on, off or hires")),
        },
    }
}

/// `ring0_addr`: an IP address (port `default_port`), an IP address with a port
/// (`10.0.0.1:5406`, `[fe80::1]:5406`, a Totem extension), or a host name.
fn parse_node_addr(v: &str, default_port: u16) -> Result<NodeAddr, String> {
    if let Ok(ip) = v.parse::<IpAddr>() {
        return Ok(NodeAddr::Socket(SocketAddr::new(ip, default_port)));
    }
    if let Ok(sa) = v.parse::<SocketAddr>() {
        if sa.port() == 0 {
            return Err(format!("{v:?}: port 0 is not a port"));
        }
        return Ok(NodeAddr::Socket(sa));
    }
    let hostname_ok = !v.is_empty()
        && v.len() <= 253
        && v.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if hostname_ok {
        Ok(NodeAddr::Host { name: v.to_owned(), port: default_port })
    } else {
        Err(format!("{v:?} is neither an IP address (optionally with :port) nor a host name"))
    }
}
