//! Configuration: corosync.conf syntax mapped onto what a Totem node needs.
//!
//! Two steps. [`parse()`] turns text into a tree of sections and `key: value` lines (Corosync's
//! syntax, see [`mod@parse`]). [`NodeConfig::from_conf`] then reads the sections Totem
//! knows — `totem`, `nodelist`, `logging`, `quorum`, `system` — applies Corosync's defaults
//! and derivation rules (study §3) through [`totem_core::Config::for_cluster`], validates,
//! and returns the node's settings together with a list of [`Warning`]s.
//!
//! Nothing in a file is ignored silently. A key Totem acts on is mapped; a key Corosync 3
//! accepts but Totem has no use for (knet tuning, quorum, per-subsystem logging, ...) gives
//! a [`WarningKind::NotActedOn`] warning; anything else gives [`WarningKind::UnknownKey`]
//! (a typo, most likely). Every error and warning names the file, the line and the key, as
//! in `corosync.conf:12: totem.token: "abc" is not a number`.
//!
//! Totem-specific conventions, all documented in `examples/totem.conf`:
//! - `crypto_cipher` defaults to `aes256` (Corosync 3's current default), so a key file is
//!   needed unless the file says `crypto_cipher: none` (and `crypto_hash: none`).
//! - This node's id comes from a command-line override, else `totem.nodeid`, else the
//!   runtime matches the nodelist against the host ([`NodeConfig::resolve_local_node`]).
//! - A `ring0_addr` may carry a port (`127.0.0.2:5406`, `[::1]:5406`), so that several nodes
//!   can run side by side on one machine; without one, the port is `mcastport` (5405).
//! - The `system` section's `state_dir` and `run_dir` (Corosync 3 has both) hold the
//!   persisted ring sequence and boot id, and the IPC socket.

mod node;
pub mod parse;
#[cfg(test)]
mod tests;

pub use node::{
    CryptoConfig, DEFAULT_PORT, DEFAULT_RUN_DIR, DEFAULT_STATE_DIR, DebugLevel, InlineKey, IpVersion,
    KeySource, LoggingConfig, NodeAddr, NodeConfig, NodeEntry, Overrides, SystemConfig, Timestamp,
    TimingExtras, Transport,
};
pub use parse::{ConfFile, Item, KeyValue, Section, parse, parse_file};

use std::fmt;

/// What kind of problem a [`ConfError`] is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ConfErrorKind {
    /// The file could not be read.
    Io,
    /// The text is not corosync.conf syntax.
    Syntax,
    /// A value is malformed or out of range.
    Value,
    /// Something required is missing.
    Missing,
    /// Two settings contradict each other.
    Conflict,
}

/// A configuration that cannot be used. Displayed as `file:line: key: message`, leaving out
/// what is unknown (an error about a missing section has no line).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ConfError {
    pub file: String,
    pub line: Option<usize>,
    /// The dotted key, e.g. `totem.token` or `nodelist.node.ring0_addr`.
    pub key: Option<String>,
    pub kind: ConfErrorKind,
    pub message: String,
}

impl fmt::Display for ConfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_location(f, &self.file, self.line, self.key.as_deref())?;
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfError {}

/// What kind of remark a [`Warning`] is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum WarningKind {
    /// Neither Totem nor Corosync 3 knows this key or section.
    UnknownKey,
    /// Corosync 3 accepts it; Totem reads it and does nothing with it.
    NotActedOn,
    /// The setting is honoured in a different way than Corosync would (e.g. `aes192`).
    Adjusted,
    /// A key given twice in one section; the last one counts.
    Duplicate,
    /// A line that is not part of the syntax was skipped.
    Ignored,
    /// A valid but risky choice (cleartext traffic).
    Insecure,
}

/// Something in the configuration the operator should know about, but that does not stop
/// the node.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Warning {
    pub file: String,
    pub line: Option<usize>,
    pub key: Option<String>,
    pub kind: WarningKind,
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_location(f, &self.file, self.line, self.key.as_deref())?;
        f.write_str(&self.message)
    }
}

fn write_location(
    f: &mut fmt::Formatter<'_>,
    file: &str,
    line: Option<usize>,
    key: Option<&str>,
) -> fmt::Result {
    match line {
        Some(line) => write!(f, "{file}:{line}: ")?,
        None => write!(f, "{file}: ")?,
    }
    if let Some(key) = key {
        write!(f, "{key}: ")?;
    }
    Ok(())
}
