//! Tests of the corosync.conf mapping: defaults, Corosync 3 compatibility, errors.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use totem_core::{Config, NodeId, TimingBase};

use super::*;
use crate::crypto::{Cipher, Protection};

fn load(text: &str) -> Result<(NodeConfig, Vec<Warning>), ConfError> {
    NodeConfig::from_conf(&parse("corosync.conf", text)?)
}

fn ok(text: &str) -> (NodeConfig, Vec<Warning>) {
    load(text).unwrap_or_else(|e| panic!("{e}"))
}

fn err(text: &str) -> ConfError {
    load(text).unwrap_err()
}

/// A nodelist of `n` IPv4 nodes, ids 1..=n, on 10.0.0.1..=n.
fn nodelist(n: u32) -> String {
    let mut s = String::from("nodelist {\n");
    for i in 1..=n {
        s += &format!("  node {{\n    nodeid: {i}\n    ring0_addr: 10.0.0.{i}\n  }}\n");
    }
    s + "}\n"
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The (key, kind) pairs of the warnings, for exact comparisons.
fn kinds(warnings: &[Warning]) -> Vec<(String, WarningKind)> {
    warnings.iter().map(|w| (w.key.clone().unwrap_or_default(), w.kind)).collect()
}

// Goal: the documented example file parses without a single warning and says what its
// comments say (effective token for 3 nodes, derived consensus, paths, key file).
#[test]
fn example_file_parses() {
    let text = include_str!("../../examples/totem.conf");
    let (c, warnings) = NodeConfig::from_conf(&parse("totem.conf", text).unwrap()).unwrap();
    assert!(warnings.is_empty(), "{warnings:#?}");
    assert_eq!(c.nodes.len(), 3);
    assert_eq!(c.local_nodeid, Some(NodeId(1)));
    assert_eq!(c.core.token, ms(3650));
    assert_eq!(c.core.token_retransmit, ms(869));
    assert_eq!(c.core.consensus, ms(4380));
    assert_eq!(c.cluster_name.as_deref(), Some("example"));
    assert_eq!(
        c.crypto,
        CryptoConfig::Keyed { cipher: Cipher::Aes256Siv, key: KeySource::File("/etc/totem/authkey".into()) }
    );
    assert_eq!(c.node(NodeId(3)).unwrap().addr.to_string(), "127.0.0.3:5405");
    assert_eq!(c.system.state_dir, PathBuf::from(DEFAULT_STATE_DIR));
    assert_eq!(c.logging.timestamp, Timestamp::On);
}

// Goal: a realistic Corosync 3 configuration (knet, two links, nodelist of 3, votequorum,
// logging with a logger_subsys) is accepted, and every key Totem does not act on gets a
// warning with its line — no more, no fewer.
#[test]
fn corosync3_config_is_accepted_with_warnings() {
    let text = "\
# Please read the corosync.conf.5 manual page
totem {
\tversion: 2
\tcluster_name: hacluster
\ttransport: knet
\tcrypto_cipher: aes256
\tcrypto_hash: sha256
\tlink_mode: passive
\tknet_pmtud_interval: 30
\tinterface {
\t\tlinknumber: 0
\t\tknet_link_priority: 1
\t}
\tinterface {
\t\tlinknumber: 1
\t}
}

nodelist {
\tnode {
\t\tring0_addr: 192.168.122.11
\t\tring1_addr: 10.0.0.11
\t\tname: node1
\t\tnodeid: 1
\t}
\tnode {
\t\tring0_addr: 192.168.122.12
\t\tring1_addr: 10.0.0.12
\t\tname: node2
\t\tnodeid: 2
\t}
\tnode {
\t\tring0_addr: 192.168.122.13
\t\tring1_addr: 10.0.0.13
\t\tname: node3
\t\tnodeid: 3
\t}
}

quorum {
\tprovider: corosync_votequorum
}

logging {
\tto_logfile: yes
\tlogfile: /var/log/cluster/corosync.log
\tto_syslog: yes
\ttimestamp: on
\tlogger_subsys {
\t\tsubsys: QUORUM
\t\tdebug: off
\t}
}
";
    let (c, warnings) = ok(text);
    assert_eq!(c.transport, Transport::Udpu);
    assert_eq!(c.nodes.len(), 3);
    assert_eq!(c.core.token, ms(3650), "coefficient applies to 3 nodes");
    assert_eq!(c.local_nodeid, None, "found at run time by name or address");
    assert!(c.logging.to_logfile);
    let expected = [
        ("totem.transport", WarningKind::Adjusted, 5),
        ("totem.crypto_hash", WarningKind::NotActedOn, 7),
        ("totem.link_mode", WarningKind::NotActedOn, 8),
        ("totem.knet_pmtud_interval", WarningKind::NotActedOn, 9),
        ("totem.interface.knet_link_priority", WarningKind::NotActedOn, 12),
        ("totem.interface", WarningKind::NotActedOn, 14),
        ("nodelist.node.ring1_addr", WarningKind::NotActedOn, 22),
        ("nodelist.node.ring1_addr", WarningKind::NotActedOn, 28),
        ("nodelist.node.ring1_addr", WarningKind::NotActedOn, 34),
        ("quorum.provider", WarningKind::NotActedOn, 41),
        ("logging.to_syslog", WarningKind::NotActedOn, 47),
        ("logging.logger_subsys", WarningKind::NotActedOn, 49),
    ];
    let got: Vec<(String, WarningKind, usize)> =
        warnings.iter().map(|w| (w.key.clone().unwrap(), w.kind, w.line.unwrap())).collect();
    let want: Vec<(String, WarningKind, usize)> =
        expected.iter().map(|(k, w, l)| (k.to_string(), *w, *l)).collect();
    assert_eq!(got, want, "{warnings:#?}");
    let shown = warnings[3].to_string();
    assert_eq!(
        shown,
        "corosync.conf:9: totem.knet_pmtud_interval: accepted but not acted on: Totem does not use knet \
         (its own UDP transport has no knet links)"
    );
}

// Goal: every error that concerns a written key names the file, that key's line and the
// dotted key; the Display form is `file:line: key: message`.
#[test]
fn errors_name_file_line_and_key() {
    let nl = nodelist(2);
    let cases: Vec<(String, usize, &str, &str)> = vec![
        (format!("totem {{\n  version: 2\n  token: abc\n}}\n{nl}"), 3, "totem.token", "\"abc\" is not a number"),
        (format!("totem {{\n  version: 3\n}}\n{nl}"), 2, "totem.version", "must be 2"),
        (format!("totem {{\n  join: -5\n}}\n{nl}"), 2, "totem.join", "negative"),
        (format!("totem {{\n  window_size: 99999999999\n}}\n{nl}"), 2, "totem.window_size", "too large"),
        (format!("totem {{\n  join: 10\n}}\n{nl}"), 2, "totem.join", "at least 30 ms"),
        (format!("totem {{\n  token: 40\n}}\n{nl}"), 2, "totem.token", "token_retransmit"),
        (format!("totem {{\n  token_retransmits_before_loss_const: 0\n}}\n{nl}"), 2, "totem.token_retransmits_before_loss_const", "at least 1"),
        (format!("totem {{\n  max_messages: 80\n}}\n{nl}"), 2, "totem.max_messages", "window_size"),
        (format!("totem {{\n  window_size: 10\n}}\n{nl}"), 2, "totem.window_size", "max_messages = 17"),
        (format!("totem {{\n  join: 500\n  consensus: 400\n}}\n{nl}"), 3, "totem.consensus", "at least join"),
        (format!("totem {{\n  netmtu: 100\n}}\n{nl}"), 2, "totem.netmtu", "netmtu"),
        (format!("totem {{\n  token_warning: 101\n}}\n{nl}"), 2, "totem.token_warning", "percentage"),
        (format!("totem {{\n  downcheck: 5\n}}\n{nl}"), 2, "totem.downcheck", "at least 30 ms"),
        (format!("totem {{\n  cancel_token_hold_on_retransmit: maybe\n}}\n{nl}"), 2, "totem.cancel_token_hold_on_retransmit", "yes or no"),
        (format!("totem {{\n  transport: tcp\n}}\n{nl}"), 2, "totem.transport", "not a transport"),
        (format!("totem {{\n  ip_version: ipv5\n}}\n{nl}"), 2, "totem.ip_version", "not an IP version"),
        (format!("totem {{\n  crypto_cipher: des\n}}\n{nl}"), 2, "totem.crypto_cipher", "not a cipher"),
        (format!("totem {{\n  token: 3000\n  crypto_cipher: aes128-gcm-siv\n}}\n{nl}"), 3, "totem.crypto_cipher", "\"aes128-gcm-siv\" is not a cipher; use aes256, aes128, aes256-gcm-siv or none"),
        (format!("totem {{\n  crypto_hash: crc32\n}}\n{nl}"), 2, "totem.crypto_hash", "not a hash"),
        (format!("totem {{\n  crypto_cipher: none\n  crypto_hash: none\n  keyfile: /k\n}}\n{nl}"), 4, "totem.keyfile", "never sends or accepts cleartext"),
        (format!("totem {{\n  key: short\n}}\n{nl}"), 2, "totem.key", "128 to 4096 bytes"),
        (format!("totem {{\n  keyfile:\n}}\n{nl}"), 2, "totem.keyfile", "empty path"),
        (format!("totem {{\n  nodeid: 9\n}}\n{nl}"), 2, "totem.nodeid", "not in the nodelist"),
        (format!("totem {{\n  nodeid: 0\n}}\n{nl}"), 2, "totem.nodeid", "node ids start at 1"),
        (format!("totem {{\n  interface {{\n    mcastport: 70000\n  }}\n}}\n{nl}"), 3, "totem.interface.mcastport", "not a port"),
        (format!("totem {{\n  interface {{\n    linknumber: x\n  }}\n}}\n{nl}"), 3, "totem.interface.linknumber", "not a number"),
        (format!("totem {{\n  interface {{\n    bindnetaddr: 10.0.0\n  }}\n}}\n{nl}"), 3, "totem.interface.bindnetaddr", "not an IP address"),
        ("nodelist {\n  node {\n    nodeid: 1\n    ring0_addr: bad addr!\n  }\n}\n".into(), 4, "nodelist.node.ring0_addr", "neither an IP address"),
        ("nodelist {\n  node {\n    ring0_addr: 10.0.0.1\n  }\n}\n".into(), 2, "nodelist.node.nodeid", "explicit node id"),
        ("nodelist {\n  node {\n    nodeid: 1\n  }\n}\n".into(), 2, "nodelist.node.ring0_addr", "missing"),
        ("nodelist {\n  node {\n    nodeid: 1\n    ring0_addr: 10.0.0.1\n  }\n  node {\n    nodeid: 1\n    ring0_addr: 10.0.0.2\n  }\n}\n".into(), 7, "nodelist.node.nodeid", "also used on line 3"),
        ("nodelist {\n  node {\n    nodeid: 1\n    ring0_addr: 10.0.0.1\n  }\n  node {\n    nodeid: 2\n    ring0_addr: 10.0.0.1\n  }\n}\n".into(), 8, "nodelist.node.ring0_addr", "also used on line 4"),
        (format!("logging {{\n  to_logfile: yes\n}}\n{nl}"), 2, "logging.to_logfile", "no logfile"),
        (format!("logging {{\n  debug: loud\n}}\n{nl}"), 2, "logging.debug", "on, off or trace"),
        (format!("logging {{\n  timestamp: always\n}}\n{nl}"), 2, "logging.timestamp", "on, off or hires"),
        (format!("logging {{\n  to_stderr: perhaps\n}}\n{nl}"), 2, "logging.to_stderr", "yes or no"),
        (format!("system {{\n  state_dir:\n}}\n{nl}"), 2, "system.state_dir", "empty path"),
        (format!("totem {{\n  transport: udp\n  interface {{\n    mcastaddr: 10.1.1.1\n  }}\n}}\n{nl}"), 4, "totem.interface.mcastaddr", "not a multicast"),
    ];
    for (text, line, key, fragment) in &cases {
        let e = load(text).expect_err(text);
        let shown = e.to_string();
        assert_eq!(e.line, Some(*line), "{shown}\n{text}");
        assert_eq!(e.key.as_deref(), Some(*key), "{shown}");
        assert!(shown.starts_with(&format!("corosync.conf:{line}: {key}: ")), "{shown}");
        assert!(shown.contains(fragment), "{shown} lacks {fragment:?}");
    }
}

// Goal: the brief's example message, exactly.
#[test]
fn error_display_format() {
    let text = format!("totem {{\n{}  token: abc\n}}\n{}", "\n".repeat(10), nodelist(2));
    assert_eq!(err(&text).to_string(), "corosync.conf:12: totem.token: \"abc\" is not a number");
}

// Goal: a derived value that fails validation is reported at the line of the key it is
// derived from, saying which derived value broke which rule.
#[test]
fn derived_validation_points_at_source() {
    let e = err(&format!("totem {{\n  token: 40\n}}\n{}", nodelist(2)));
    assert_eq!(
        e.to_string(),
        "corosync.conf:2: totem.token: \"40\" makes token_retransmit = 9ms, and token_retransmit must be at least 30 ms"
    );
}

// Goal: IPv6 nodelists work (literal addresses, bracketed address with port), and
// mixing families or contradicting ip_version is an error at the offending line.
#[test]
fn ipv6_addresses() {
    let text = "totem {\n  ip_version: ipv6\n}\nnodelist {\n  node {\n    nodeid: 1\n    ring0_addr: fd00::1\n  }\n  node {\n    nodeid: 2\n    ring0_addr: [fd00::2]:5500\n  }\n}\n";
    let (c, warnings) = ok(text);
    assert!(warnings.is_empty());
    assert_eq!(c.ip_version, IpVersion::Ipv6);
    let fd = |last| IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, last));
    assert_eq!(c.nodes[0].addr, NodeAddr::Socket(SocketAddr::new(fd(1), 5405)));
    assert_eq!(c.nodes[1].addr, NodeAddr::Socket(SocketAddr::new(fd(2), 5500)));

    let mixed = "nodelist {\n  node {\n    nodeid: 1\n    ring0_addr: fd00::1\n  }\n  node {\n    nodeid: 2\n    ring0_addr: 10.0.0.2\n  }\n}\n";
    let e = err(mixed);
    assert_eq!((e.line, e.kind), (Some(8), ConfErrorKind::Conflict), "{e}");
    assert!(e.to_string().contains("same IP family"), "{e}");

    let v4_only =
        "totem {\n  ip_version: ipv4\n}\nnodelist {\n  node {\n    nodeid: 1\n    ring0_addr: ::1\n  }\n}\n";
    assert_eq!(err(v4_only).line, Some(7));
}

// Goal: host names are kept for the runtime to resolve, with the default port.
#[test]
fn host_names() {
    let text = "nodelist {\n  node {\n    nodeid: 1\n    ring0_addr: node1.example.com\n  }\n}\n";
    let (c, _) = ok(text);
    assert_eq!(c.nodes[0].addr, NodeAddr::Host { name: "node1.example.com".into(), port: 5405 });
}

// Goal: round trip of defaults. A file that spells out every default gives exactly the
// configuration of a file that says nothing, and that is Corosync's derivation (study §3.1).
#[test]
fn defaults_round_trip() {
    let minimal = ok(&nodelist(2)).0;
    let explicit = format!(
        "totem {{
  version: 2
  transport: udpu
  ip_version: ipv6-4
  token: 3000
  token_coefficient: 650
  token_retransmits_before_loss_const: 4
  token_retransmit: 714
  hold: 561
  join: 50
  consensus: 3600
  merge: 200
  send_join: 0
  downcheck: 1000
  fail_recv_const: 2500
  seqno_unchanged_const: 30
  window_size: 50
  max_messages: 17
  miss_count_const: 5
  cancel_token_hold_on_retransmit: no
  netmtu: 65536
  token_warning: 75
  block_unlisted_ips: yes
  crypto_cipher: aes256
  keyfile: /etc/totem/authkey
  interface {{
    mcastport: 5405
  }}
}}
system {{
  state_dir: /var/lib/totem
  run_dir: /run/totem
}}
logging {{
  to_stderr: yes
  to_logfile: no
  debug: off
  timestamp: off
}}
{}",
        nodelist(2)
    );
    let (spelled, warnings) = ok(&explicit);
    assert!(warnings.is_empty(), "{warnings:#?}");
    assert_eq!(spelled, minimal);
    let mut core = Config::for_cluster(TimingBase::default());
    core.set_netmtu(65536);
    assert_eq!(minimal.core, core);
    assert_eq!(minimal.core.token, ms(3000));
    assert_eq!(
        (minimal.core.token_retransmit, minimal.core.hold, minimal.core.consensus),
        (ms(714), ms(561), ms(3600))
    );

    // The parse tree round-trips through render too.
    let tree = parse("corosync.conf", &explicit).unwrap();
    let again = parse("corosync.conf", &tree.render()).unwrap();
    assert_eq!(NodeConfig::from_conf(&again).unwrap().0, minimal);
}

// Goal: the embedded single-node default is valid and equals what its corosync.conf
// spelling gives, apart from the ephemeral key (which no file can name).
#[test]
fn default_single_node() {
    let d = NodeConfig::default_single_node();
    d.core.validate().unwrap();
    assert_eq!(d.local_nodeid, Some(NodeId(1)));
    assert!(matches!(d.crypto, CryptoConfig::Keyed { key: KeySource::Ephemeral, .. }));
    assert!(matches!(d.crypto.protection().unwrap(), Protection::Keyed(_)));
    let text =
        "totem {\n  nodeid: 1\n}\nnodelist {\n  node {\n    nodeid: 1\n    ring0_addr: 127.0.0.1\n  }\n}\n";
    let (mut parsed, warnings) = ok(text);
    assert!(warnings.is_empty());
    parsed.crypto = CryptoConfig::Keyed { cipher: Cipher::Aes256Siv, key: KeySource::Ephemeral };
    assert_eq!(parsed, d);
}

// Goal: netmtu defaults as Corosync's do per transport: 65536 for knet (its default
// transport, also when none is named), 1500 for udpu and udp written out; an explicit
// value wins; the send queue is sized for the frame size (4 MiB of frames).
#[test]
fn netmtu_follows_the_transport() {
    let nl = nodelist(3);
    for (transport, explicit, want) in [
        ("", "", 65536),
        ("transport: knet\n", "", 65536),
        ("transport: udpu\n", "", 1500),
        ("transport: knet\n", "netmtu: 9000\n", 9000),
        ("", "netmtu: 1500\n", 1500),
    ] {
        let (c, _) = ok(&format!("totem {{\n  {transport}  {explicit}  nodeid: 1\n}}\n{nl}"));
        assert_eq!(c.core.netmtu, want, "{transport:?} {explicit:?}");
        assert_eq!(c.core.pending_queue_max, 4 * totem_core::config::MESSAGE_SIZE_MAX / want);
        c.core.validate().expect("valid");
    }
    assert_eq!(NodeConfig::default_single_node().core.netmtu, 65536);
}

// Goal: the token coefficient applies only beyond two nodes, per study §3.1's table.
#[test]
fn token_coefficient_by_node_count() {
    for (n, token, retransmit, hold, consensus) in [
        (1, 3000, 714, 561, 3600),
        (2, 3000, 714, 561, 3600),
        (3, 3650, 869, 685, 4380),
        (5, 4950, 1178, 932, 5940),
        (16, 12100, 2880, 2294, 14520),
    ] {
        let c = ok(&nodelist(n)).0;
        assert_eq!(
            (c.core.token, c.core.token_retransmit, c.core.hold, c.core.consensus),
            (ms(token), ms(retransmit), ms(hold), ms(consensus)),
            "{n} nodes"
        );
        assert_eq!(c.timing.token_base, ms(3000));
    }
    let off = ok(&format!("totem {{\n  token_coefficient: 0\n}}\n{}", nodelist(5))).0;
    assert_eq!(off.core.token, ms(3000));
}

// Goal: explicit values override derivations; an explicit token_retransmit re-derives
// hold (as Corosync does) unless hold is explicit too.
#[test]
fn explicit_values_override_derivations() {
    let c = ok(&format!(
        "totem {{\n  token: 5000\n  token_retransmit: 1000\n  consensus: 9000\n}}\n{}",
        nodelist(2)
    ))
    .0;
    assert_eq!(
        (c.core.token, c.core.token_retransmit, c.core.hold, c.core.consensus),
        (ms(5000), ms(1000), ms(790), ms(9000))
    );
    let c = ok(&format!("totem {{\n  token_retransmit: 1000\n  hold: 100\n}}\n{}", nodelist(2))).0;
    assert_eq!(c.core.hold, ms(100));
}

// Goal: the crypto settings follow Corosync's keys: cleartext needs both cipher and hash
// none (and warns), secauth is the old shorthand, unusual choices are adjusted loudly.
#[test]
fn crypto_settings() {
    let nl = nodelist(2);
    let keyed = |cipher, path: &str| CryptoConfig::Keyed { cipher, key: KeySource::File(path.into()) };

    let (c, w) = ok(&format!("totem {{\n  crypto_cipher: none\n  crypto_hash: none\n}}\n{nl}"));
    assert_eq!(c.crypto, CryptoConfig::Cleartext);
    assert_eq!(kinds(&w), [("totem.crypto_cipher".into(), WarningKind::Insecure)]);
    assert_eq!(w[0].line, Some(2));

    let (c, _) = ok(&format!("totem {{\n  secauth: off\n}}\n{nl}"));
    assert_eq!(c.crypto, CryptoConfig::Cleartext);
    let (c, w) = ok(&format!("totem {{\n  secauth: on\n}}\n{nl}"));
    assert_eq!(c.crypto, keyed(Cipher::Aes256Siv, "/etc/totem/authkey"));
    assert!(w.is_empty());

    let (c, w) = ok(&format!("totem {{\n  crypto_cipher: none\n  crypto_hash: sha1\n}}\n{nl}"));
    assert_eq!(c.crypto, keyed(Cipher::Aes256Siv, "/etc/totem/authkey"));
    assert_eq!(kinds(&w), [("totem.crypto_hash".into(), WarningKind::Adjusted)]);

    let (c, w) = ok(&format!("totem {{\n  crypto_cipher: aes192\n  keyfile: /k\n}}\n{nl}"));
    assert_eq!(c.crypto, keyed(Cipher::Aes256Siv, "/k"));
    assert_eq!(kinds(&w), [("totem.crypto_cipher".into(), WarningKind::Adjusted)]);

    let (c, _) = ok(&format!("totem {{\n  crypto_cipher: aes128\n}}\n{nl}"));
    assert_eq!(c.crypto, keyed(Cipher::Aes128Siv, "/etc/totem/authkey"));

    // The Totem extension: RFC 8452 AES-GCM-SIV; crypto_hash is still not acted on.
    let (c, w) = ok(&format!("totem {{\n  crypto_cipher: aes256-gcm-siv\n  keyfile: /k\n}}\n{nl}"));
    assert_eq!(c.crypto, keyed(Cipher::Aes256GcmSiv, "/k"));
    assert!(w.is_empty(), "{w:?}");
    let (c, w) = ok(&format!("totem {{\n  crypto_cipher: aes256-gcm-siv\n  crypto_hash: sha256\n}}\n{nl}"));
    assert_eq!(c.crypto, keyed(Cipher::Aes256GcmSiv, "/etc/totem/authkey"));
    assert_eq!(kinds(&w), [("totem.crypto_hash".into(), WarningKind::NotActedOn)]);

    let inline = "k".repeat(200);
    let (c, _) = ok(&format!("totem {{\n  key: {inline}\n}}\n{nl}"));
    let CryptoConfig::Keyed { key: KeySource::Inline(ref k), .. } = c.crypto else {
        panic!("{:?}", c.crypto)
    };
    assert_eq!(k.0.len(), 200);
    assert!(!format!("{c:?}").contains("kkkk"), "inline keys are never printed");
    assert!(matches!(c.crypto.protection().unwrap(), Protection::Keyed(_)));

    let (_, w) = ok(&format!("totem {{\n  keyfile: /k\n  key: {inline}\n}}\n{nl}"));
    assert_eq!(kinds(&w), [("totem.key".into(), WarningKind::NotActedOn)]);

    // The command line's key file wins; with cleartext it is a conflict.
    let conf = parse("corosync.conf", &format!("totem {{\n  keyfile: /k\n}}\n{nl}")).unwrap();
    let over = Overrides { keyfile: Some("/other".into()), ..Overrides::default() };
    assert_eq!(
        NodeConfig::from_conf_with(&conf, &over).unwrap().0.crypto,
        keyed(Cipher::Aes256Siv, "/other")
    );
    let clear =
        parse("corosync.conf", &format!("totem {{\n  crypto_cipher: none\n  crypto_hash: none\n}}\n{nl}"))
            .unwrap();
    let e = NodeConfig::from_conf_with(&clear, &over).unwrap_err();
    assert_eq!(e.kind, ConfErrorKind::Conflict);
    assert!(e.to_string().contains("--key-file"), "{e}");
}

// Goal: the key file named by the configuration is what protection() loads, and a
// missing file is an error naming it.
#[test]
fn protection_loads_the_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("authkey");
    crate::keygen::generate_key(&path, false).unwrap();
    let (c, _) = ok(&format!("totem {{\n  keyfile: {}\n}}\n{}", path.display(), nodelist(2)));
    assert!(
        matches!(c.crypto.protection().unwrap(), Protection::Keyed(k) if k.cipher() == Cipher::Aes256Siv)
    );
    let text = format!(
        "totem {{\n  crypto_cipher: aes256-gcm-siv\n  keyfile: {}\n}}\n{}",
        path.display(),
        nodelist(2)
    );
    let Protection::Keyed(k) = ok(&text).0.crypto.protection().unwrap() else { panic!("keyed") };
    assert_eq!(k.cipher(), Cipher::Aes256GcmSiv);
    let (c, _) = ok(&format!("totem {{\n  keyfile: {}/none\n}}\n{}", dir.path().display(), nodelist(2)));
    assert!(c.crypto.protection().unwrap_err().to_string().contains("none"));
}

// Goal: unknown keys and sections, top-level keys and duplicates are warnings naming
// their lines; the last duplicate counts.
#[test]
fn unknown_and_duplicate_keys_warn() {
    let text = format!(
        "stray: 1\ntotem {{\n  tokn: 3000\n  token: 4000\n  token: 5000\n  gadget {{\n  }}\n}}\nmystery {{\n}}\n{}",
        nodelist(2)
    );
    let (c, w) = ok(&text);
    assert_eq!(c.core.token, ms(5000));
    let got: Vec<(String, WarningKind, Option<usize>)> =
        w.iter().map(|w| (w.key.clone().unwrap(), w.kind, w.line)).collect();
    assert_eq!(
        got,
        [
            ("stray".into(), WarningKind::UnknownKey, Some(1)),
            ("totem.tokn".into(), WarningKind::UnknownKey, Some(3)),
            ("totem.token".into(), WarningKind::Duplicate, Some(5)),
            ("totem.gadget".into(), WarningKind::UnknownKey, Some(6)),
            ("mystery".into(), WarningKind::UnknownKey, Some(9)),
        ]
    );
    assert!(w[1].to_string().starts_with("corosync.conf:3: totem.tokn: unknown key"), "{}", w[4]);
}

// Goal: quorum, uidgid, resources and system keys Corosync knows are "not acted on",
// one warning per key (or per subsection), never silent.
#[test]
fn corosync_sections_not_acted_on() {
    let text = format!(
        "quorum {{\n  provider: corosync_votequorum\n  two_node: 1\n  device {{\n    model: net\n  }}\n}}\n\
         uidgid {{\n  uid: hacluster\n}}\nsystem {{\n  sched_rr: yes\n}}\n{}",
        nodelist(2)
    );
    let (_, w) = ok(&text);
    assert_eq!(
        kinds(&w),
        [
            ("quorum.provider".into(), WarningKind::NotActedOn),
            ("quorum.two_node".into(), WarningKind::NotActedOn),
            ("quorum.device".into(), WarningKind::NotActedOn),
            ("uidgid".into(), WarningKind::NotActedOn),
            ("system.sched_rr".into(), WarningKind::NotActedOn),
        ]
    );
    assert!(w.iter().all(|w| w.to_string().contains("accepted but not acted on")));
}

// Goal: the command line's node id and paths override the file; an override id that
// the nodelist lacks is an error naming --nodeid.
#[test]
fn overrides() {
    let conf = parse(
        "corosync.conf",
        &format!("totem {{\n  nodeid: 1\n}}\nsystem {{\n  run_dir: /tmp/r\n}}\n{}", nodelist(3)),
    )
    .unwrap();
    let over =
        Overrides { nodeid: Some(NodeId(2)), state_dir: Some("/tmp/s".into()), ..Overrides::default() };
    let (c, w) = NodeConfig::from_conf_with(&conf, &over).unwrap();
    assert_eq!(c.local_nodeid, Some(NodeId(2)));
    assert_eq!(
        c.system,
        SystemConfig { state_dir: "/tmp/s".into(), run_dir: "/tmp/r".into(), ipc_gid: None }
    );
    assert_eq!(kinds(&w), [("totem.nodeid".into(), WarningKind::Adjusted)]);
    let bad = Overrides { nodeid: Some(NodeId(7)), ..Overrides::default() };
    let e = NodeConfig::from_conf_with(&conf, &bad).unwrap_err();
    assert_eq!(e.to_string(), "corosync.conf: --nodeid: node id 7 is not in the nodelist");
}

// Goal: without a nodelist, udpu is an error; udp needs the node id and a multicast
// address, and then bindnetaddr is acted on.
#[test]
fn multicast_without_nodelist() {
    let e = err("totem {\n  cluster_name: x\n}\n");
    assert_eq!((e.line, e.kind), (Some(1), ConfErrorKind::Missing));
    let e = err("totem {\n  transport: udp\n  interface {\n    mcastaddr: 239.192.1.1\n  }\n}\n");
    assert_eq!(e.key.as_deref(), Some("totem.nodeid"));
    let e = err("totem {\n  transport: udp\n  nodeid: 4\n}\n");
    assert_eq!(e.key.as_deref(), Some("totem.interface.mcastaddr"));
    let (c, w) = ok(
        "totem {\n  transport: udp\n  nodeid: 4\n  interface {\n    bindnetaddr: 10.0.0.0\n    mcastaddr: 239.192.1.1\n    mcastport: 6000\n  }\n}\n",
    );
    assert!(w.is_empty(), "{w:#?}");
    assert_eq!((c.transport, c.ip_version, c.port), (Transport::Udp, IpVersion::Ipv4, 6000));
    assert_eq!(c.bindnetaddr, Some("10.0.0.0".parse().unwrap()));
    assert_eq!(c.mcastaddr, Some("239.192.1.1".parse().unwrap()));
    assert!(c.nodes.is_empty());
}

// Goal: with a nodelist, bindnetaddr and (for udpu) mcastaddr are not acted on, loudly.
#[test]
fn interface_addresses_with_nodelist_warn() {
    let (_, w) = ok(&format!(
        "totem {{\n  interface {{\n    bindnetaddr: 10.0.0.0\n    mcastaddr: 239.1.1.1\n  }}\n}}\n{}",
        nodelist(2)
    ));
    assert_eq!(
        kinds(&w),
        [
            ("totem.interface.bindnetaddr".into(), WarningKind::NotActedOn),
            ("totem.interface.mcastaddr".into(), WarningKind::NotActedOn)
        ]
    );
}

// Goal: logging settings map; to_logfile needs a logfile.
#[test]
fn logging_settings() {
    let (c, _) = ok(&format!(
        "logging {{\n  to_stderr: off\n  to_logfile: on\n  logfile: /var/log/t.log\n  debug: trace\n  timestamp: hires\n}}\n{}",
        nodelist(2)
    ));
    assert_eq!(
        c.logging,
        LoggingConfig {
            to_stderr: false,
            to_logfile: true,
            logfile: Some("/var/log/t.log".into()),
            debug: DebugLevel::Trace,
            timestamp: Timestamp::Hires
        }
    );
}

// Goal: the local node is found the way Corosync finds it: by name, short name, then
// address; ambiguity and no match are errors that say what to do.
#[test]
fn resolve_local_node() {
    let text = "nodelist {\n  node {\n    nodeid: 1\n    name: alpha.example.com\n    ring0_addr: 10.0.0.1\n  }\n  \
                node {\n    nodeid: 2\n    name: beta\n    ring0_addr: 10.0.0.2\n  }\n}\n";
    let (c, _) = ok(text);
    let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
    assert_eq!(c.resolve_local_node(&[], Some("beta")).unwrap(), NodeId(2));
    assert_eq!(c.resolve_local_node(&[], Some("alpha")).unwrap(), NodeId(1));
    assert_eq!(c.resolve_local_node(&[], Some("beta.example.com")).unwrap(), NodeId(2));
    assert_eq!(c.resolve_local_node(&[ip("127.0.0.1"), ip("10.0.0.2")], Some("gamma")).unwrap(), NodeId(2));
    let e = c.resolve_local_node(&[ip("10.0.0.1"), ip("10.0.0.2")], None).unwrap_err();
    assert!(e.to_string().contains("--nodeid"), "{e}");
    let e = c.resolve_local_node(&[ip("10.9.9.9")], None).unwrap_err();
    assert!(e.to_string().contains("no nodelist entry matches"), "{e}");
    let mut fixed = c.clone();
    fixed.local_nodeid = Some(NodeId(1));
    assert_eq!(fixed.resolve_local_node(&[], None).unwrap(), NodeId(1));
}

// Goal: several nodes on one machine: addresses with ports are accepted and distinct.
#[test]
fn side_by_side_ports() {
    let text = "nodelist {\n  node {\n    nodeid: 1\n    ring0_addr: 127.0.0.1:5405\n  }\n  \
                node {\n    nodeid: 2\n    ring0_addr: 127.0.0.1:5406\n  }\n}\n";
    let (c, _) = ok(text);
    assert_eq!(c.nodes[1].addr.to_string(), "127.0.0.1:5406");
}

// Goal: an unreadable file is an Io error naming it.
#[test]
fn missing_file() {
    let e = parse_file(std::path::Path::new("/nonexistent/corosync.conf")).unwrap_err();
    assert_eq!(e.kind, ConfErrorKind::Io);
    assert!(e.to_string().starts_with("/nonexistent/corosync.conf: cannot read"), "{e}");
}

// Goal: a malformed value is reported before a structural problem (here: no nodelist),
// so the first error an operator sees points at a line.
#[test]
fn value_errors_come_before_structural_ones() {
    let e = err("totem {\n  transport: knet\n  token: abc\n}\n");
    assert_eq!((e.line, e.key.as_deref()), (Some(3), Some("totem.token")), "{e}");
    let e = err("logging {\n  debug: loud\n}\n");
    assert_eq!(e.key.as_deref(), Some("logging.debug"), "{e}");
}

// Goal: `system.ipc_gid` admits a group to the IPC socket; a non-numeric value names its line.
#[test]
fn ipc_gid() {
    let (c, _) = ok(&format!("system {{\n\tipc_gid: 1234\n}}\n{}", nodelist(1)));
    assert_eq!(c.system.ipc_gid, Some(1234));
    let (c, _) = ok(&nodelist(1));
    assert_eq!(c.system.ipc_gid, None);
    let e = err(&format!("system {{\n\tipc_gid: wheel\n}}\n{}", nodelist(1)));
    assert!(e.to_string().contains(":2:"), "{e}");
    assert!(e.to_string().contains("numeric group id"), "{e}");
}
