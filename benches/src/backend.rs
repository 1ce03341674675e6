//! What the workload needs of a CPG implementation, and the events it sees.

use std::time::Duration;

/// The benchmark header at the start of every message (the rest is filler).
pub const HEADER: usize = 32;

/// Why a member left a group: the CPG reasons both implementations share (Corosync's
/// `Undefined` is `None`).
pub use totem_core::cpg::Reason;

/// A callback, with the CLOCK_MONOTONIC time the application got it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A group message: its sender, length and the first [`HEADER`] bytes.
    Deliver { at: u64, node: u32, pid: u32, len: usize, head: [u8; HEADER] },
    /// A group view change: members after it (node, pid) and who left (node, pid, reason).
    Confchg { at: u64, members: Vec<(u32, u32)>, left: Vec<(u32, u32, Option<Reason>)> },
    /// A Totem view change: the nodes of the new ring.
    Totem { at: u64, members: Vec<u32> },
}

impl Event {
    /// Copy the header of a delivered message.
    pub fn deliver(at: u64, node: u32, pid: u32, msg: &[u8]) -> Event {
        let mut head = [0u8; HEADER];
        let n = msg.len().min(HEADER);
        head[..n].copy_from_slice(&msg[..n]);
        Event::Deliver { at, node, pid, len: msg.len(), head }
    }
}

/// One CPG connection (one group), the calls the workload makes. Both back ends give
/// `mcast` the same meaning as `cpg_mcast_joined`: either the message is accepted (it will
/// be delivered in Agreed order) or it is refused for flow control and nothing was sent.
/// Neither waits for the daemon per message: libcpg writes the request to its IPC ring and
/// reads the daemon's answer, which says only whether it was queued; Totem's client library
/// writes while its send window has room, and the daemon hands back credit.
pub trait Cpg: Sized {
    /// Connect to the local daemon (`socket`: Totem's IPC socket; Corosync finds its own).
    fn open(socket: Option<&std::path::Path>) -> anyhow::Result<Self>;
    /// Join `group` as this process.
    fn join(&mut self, group: &str) -> anyhow::Result<()>;
    /// The local node id.
    fn local_node(&self) -> anyhow::Result<u32>;
    /// Multicast `msg` to the joined group: `Ok(true)` sent, `Ok(false)` flow controlled
    /// (nothing sent, retry later).
    fn mcast(&mut self, msg: &[u8]) -> anyhow::Result<bool>;
    /// Wait up to `wait` for a callback, then append every pending one to `out`.
    /// An error means the connection is gone.
    fn poll(&mut self, wait: Duration, out: &mut Vec<Event>) -> anyhow::Result<()>;
}
