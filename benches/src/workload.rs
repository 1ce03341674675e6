//! The workload, written once for both back ends: throughput (flood) and latency (paced)
//! workers, and the membership monitor of the failure/join measurement.

use crate::backend::{Cpg, Event, HEADER, Reason};
use crate::mono_ns;
use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

const KIND_DATA: u8 = 1;
const KIND_END: u8 = 2;
/// Senders run a non-blocking dispatch after this many sends (as the anchor's cpgperf).
const DISPATCH_EVERY: u64 = 64;
/// How long a flow-controlled sender waits for callbacks before retrying.
const TRY_AGAIN_WAIT: Duration = Duration::from_millis(1);

/// How the sender sends.
#[derive(Copy, Clone, Debug, PartialEq)]
pub enum Mode {
    /// As fast as the daemon accepts, for this long.
    Flood(Duration),
    /// `count` messages at `rate` per second (absolute-time pacing).
    Paced { rate: f64, count: u64 },
}

/// One worker's part of a run.
#[derive(Clone, Debug)]
pub struct Plan {
    pub group: String,
    /// Processes in the group before sending starts (one per node).
    pub members: usize,
    /// Whether this worker sends.
    pub send: bool,
    /// How many workers send (END messages to wait for).
    pub senders: usize,
    /// Message size in bytes, header included (at least [`HEADER`]).
    pub size: usize,
    pub mode: Mode,
    /// The whole run gives up after this long.
    pub timeout: Duration,
    /// Where to write one line per data message delivered here (`--deliveries-log`).
    pub deliveries_log: Option<std::path::PathBuf>,
}

/// What one worker saw: printed as one JSON line, combined by the orchestrator.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerReport {
    pub node: u32,
    pub pid: u32,
    pub sent: u64,
    pub try_again: u64,
    pub delivered: u64,
    pub bytes: u64,
    /// Sum of the senders' END counts: what every member must deliver.
    pub expected: u64,
    pub first_ns: u64,
    pub last_ns: u64,
    pub send_start_ns: u64,
    pub send_end_ns: u64,
    /// FNV-1a over (node, pid, seq) of every delivery in order: equal on all members iff
    /// they delivered the same messages in the same order.
    pub order_hash: u64,
    /// Every sender's sequence numbers arrived gap-free and in order.
    pub fifo_ok: bool,
    pub complete: bool,
    /// Delivery minus send time, microseconds.
    pub lat_p50_us: u64,
    pub lat_p99_us: u64,
    pub lat_p999_us: u64,
    pub lat_max_us: u64,
}

fn encode(buf: &mut [u8], kind: u8, node: u32, pid: u32, seq: u64) {
    buf[0] = kind;
    buf[4..8].copy_from_slice(&node.to_le_bytes());
    buf[8..12].copy_from_slice(&pid.to_le_bytes());
    buf[16..24].copy_from_slice(&seq.to_le_bytes());
    buf[24..32].copy_from_slice(&mono_ns().to_le_bytes());
}

fn field(head: &[u8; HEADER], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&head[at..at + 8]);
    u64::from_le_bytes(b)
}

fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The receiving side of a worker.
struct Receiver {
    members: usize,
    delivered: u64,
    bytes: u64,
    first_ns: u64,
    last_ns: u64,
    hash: u64,
    next_seq: BTreeMap<(u32, u32), u64>,
    fifo_ok: bool,
    ends: BTreeMap<(u32, u32), u64>,
    hist: Histogram<u64>,
    /// One line per delivered data message: sender node and pid, its sequence number, when
    /// it was sent and when it was delivered here (ns of CLOCK_MONOTONIC, shared by the
    /// workers of one machine). Late deliveries that every receiver sees at the same moment
    /// point at the sender's side; one receiver's alone, at its own.
    log: Option<std::io::BufWriter<std::fs::File>>,
    /// Why the log stopped early, if it did.
    log_error: Option<std::io::Error>,
}

impl Receiver {
    fn new(log: Option<&std::path::Path>) -> anyhow::Result<Receiver> {
        let log = match log {
            Some(path) => Some(std::io::BufWriter::new(
                std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
            )),
            None => None,
        };
        Ok(Receiver {
            log,
            log_error: None,
            members: 0,
            delivered: 0,
            bytes: 0,
            first_ns: 0,
            last_ns: 0,
            hash: 0xcbf2_9ce4_8422_2325,
            next_seq: BTreeMap::new(),
            fifo_ok: true,
            ends: BTreeMap::new(),
            hist: Histogram::new_with_bounds(1, 600_000_000, 3)?,
        })
    }

    fn handle(&mut self, e: &Event) {
        match e {
            Event::Confchg { members, .. } => self.members = members.len(),
            Event::Totem { .. } => {}
            Event::Deliver { at, node, pid, len, head } => {
                let seq = field(head, 16);
                match head[0] {
                    KIND_DATA => {
                        if self.delivered == 0 {
                            self.first_ns = *at;
                        }
                        self.last_ns = *at;
                        self.delivered += 1;
                        self.bytes += *len as u64;
                        let expect = self.next_seq.entry((*node, *pid)).or_insert(0);
                        if *expect != seq {
                            self.fifo_ok = false;
                        }
                        *expect = seq.wrapping_add(1);
                        let mut h = fnv(self.hash, &node.to_le_bytes());
                        h = fnv(h, &pid.to_le_bytes());
                        self.hash = fnv(h, &seq.to_le_bytes());
                        let sent = field(head, 24);
                        let lat_us = at.saturating_sub(sent) / 1000;
                        self.hist.saturating_record(lat_us.max(1));
                        if let Some(log) = &mut self.log
                            && let Err(e) = writeln!(log, "{node} {pid} {seq} {sent} {at}")
                        {
                            // A full disk ends the log, not the measurement; said at the end.
                            self.log = None;
                            self.log_error = Some(e);
                        }
                    }
                    KIND_END => {
                        self.ends.insert((*node, *pid), seq);
                    }
                    _ => {}
                }
            }
        }
    }

    fn done(&self, senders: usize) -> bool {
        self.ends.len() >= senders && self.delivered >= self.ends.values().sum::<u64>()
    }
}

fn past(deadline: u64) -> bool {
    mono_ns() >= deadline
}

/// A worker's connection with its receiving side.
struct Session<'a, B: Cpg> {
    b: &'a mut B,
    rx: Receiver,
    events: Vec<Event>,
}

impl<B: Cpg> Session<'_, B> {
    /// Poll once and feed what came to the receiver.
    fn pump(&mut self, wait: Duration) -> anyhow::Result<()> {
        self.events.clear();
        self.b.poll(wait, &mut self.events)?;
        for e in &self.events {
            self.rx.handle(e);
        }
        Ok(())
    }

    /// Send one message, waiting out flow control (bounded by `deadline`); returns how
    /// often the daemon said "try again".
    fn send_one(
        &mut self,
        buf: &mut [u8],
        kind: u8,
        id: (u32, u32),
        seq: u64,
        deadline: u64,
    ) -> anyhow::Result<u64> {
        let mut try_again = 0;
        loop {
            encode(buf, kind, id.0, id.1, seq);
            if self.b.mcast(buf)? {
                return Ok(try_again);
            }
            try_again += 1;
            if past(deadline) {
                bail!("flow controlled until the run's time limit");
            }
            self.pump(TRY_AGAIN_WAIT)?;
        }
    }
}

/// Run one worker: join, wait for the group, send (if a sender), receive until every
/// sender's END, and report.
pub fn run_worker<B: Cpg>(b: &mut B, plan: &Plan) -> anyhow::Result<WorkerReport> {
    if plan.size < HEADER {
        bail!("message size {} is below the {HEADER}-byte header", plan.size);
    }
    let deadline = mono_ns() + plan.timeout.as_nanos() as u64;
    let node = b.local_node()?;
    let pid = std::process::id();
    b.join(&plan.group)?;
    let mut s = Session { b, rx: Receiver::new(plan.deliveries_log.as_deref())?, events: Vec::new() };
    while s.rx.members < plan.members {
        if past(deadline) {
            bail!("the group never reached {} members (saw {})", plan.members, s.rx.members);
        }
        s.pump(Duration::from_millis(100))?;
    }
    let mut report = WorkerReport { node, pid, ..WorkerReport::default() };
    let mut buf = vec![0xa5u8; plan.size];
    if plan.send {
        report.send_start_ns = mono_ns();
        let mut seq = 0u64;
        match plan.mode {
            Mode::Flood(dur) => {
                let stop = report.send_start_ns + dur.as_nanos() as u64;
                while !past(stop) {
                    report.try_again += s.send_one(&mut buf, KIND_DATA, (node, pid), seq, deadline)?;
                    seq += 1;
                    if seq.is_multiple_of(DISPATCH_EVERY) {
                        s.pump(Duration::ZERO)?;
                    }
                }
            }
            Mode::Paced { rate, count } => {
                let interval = 1e9 / rate.max(1e-3);
                for i in 0..count {
                    let due = report.send_start_ns + (i as f64 * interval) as u64;
                    loop {
                        let now = mono_ns();
                        if now >= due {
                            break;
                        }
                        if past(deadline) {
                            bail!("paced sending ran past the run's time limit");
                        }
                        s.pump(Duration::from_nanos(due - now))?;
                    }
                    report.try_again += s.send_one(&mut buf, KIND_DATA, (node, pid), seq, deadline)?;
                    seq += 1;
                }
            }
        }
        report.send_end_ns = mono_ns();
        report.sent = seq;
        s.send_one(&mut buf[..HEADER], KIND_END, (node, pid), seq, deadline)?;
    }
    while !s.rx.done(plan.senders) && !past(deadline) {
        s.pump(Duration::from_millis(100))?;
    }
    if let Some(Err(e)) = s.rx.log.as_mut().map(Write::flush) {
        s.rx.log_error = Some(e);
    }
    if let Some(e) = &s.rx.log_error {
        eprintln!("cpgbench: the deliveries log is incomplete: {e}");
    }
    let rx = &s.rx;
    report.complete = rx.done(plan.senders);
    report.delivered = rx.delivered;
    report.bytes = rx.bytes;
    report.expected = rx.ends.values().sum();
    report.first_ns = rx.first_ns;
    report.last_ns = rx.last_ns;
    report.order_hash = rx.hash;
    report.fifo_ok = rx.fifo_ok;
    report.lat_p50_us = rx.hist.value_at_quantile(0.5);
    report.lat_p99_us = rx.hist.value_at_quantile(0.99);
    report.lat_p999_us = rx.hist.value_at_quantile(0.999);
    report.lat_max_us = rx.hist.max();
    Ok(report)
}

/// One line of the membership monitor's output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "ev", rename_all = "snake_case")]
pub enum MonLine {
    /// Connected and joined (the daemon accepted the client).
    Ready { t: u64, node: u32 },
    /// A group view change: the member nodes after it, and the nodes that left for
    /// NODEDOWN.
    Confchg { t: u64, nodes: Vec<u32>, nodedown: Vec<u32> },
    /// A Totem view change.
    Totem { t: u64, nodes: Vec<u32> },
    /// The daemon went away.
    Lost { t: u64 },
}

/// The monitor: connect (retrying until the daemon accepts, for a restarted node), join
/// `group`, and print every view change as a JSON line until the daemon goes away or
/// `max` passes.
pub fn monitor<B: Cpg>(socket: Option<&std::path::Path>, group: &str, max: Duration) -> anyhow::Result<()> {
    let deadline = mono_ns() + max.as_nanos() as u64;
    let mut out = std::io::stdout().lock();
    let mut b = loop {
        match B::open(socket).and_then(|mut b| b.join(group).map(|()| b)) {
            Ok(b) => break b,
            Err(e) if past(deadline) => return Err(e).context("the daemon never accepted the monitor"),
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    };
    let mut line = |l: MonLine| -> anyhow::Result<()> {
        serde_json::to_writer(&mut out, &l)?;
        out.write_all(b"\n")?;
        out.flush()?;
        Ok(())
    };
    line(MonLine::Ready { t: mono_ns(), node: b.local_node()? })?;
    let mut events = Vec::new();
    while !past(deadline) {
        events.clear();
        let r = b.poll(Duration::from_millis(100), &mut events);
        for e in &events {
            match e {
                Event::Confchg { at, members, left } => {
                    let mut nodes: Vec<u32> = members.iter().map(|m| m.0).collect();
                    nodes.sort_unstable();
                    nodes.dedup();
                    let nodedown =
                        left.iter().filter(|l| l.2 == Some(Reason::NodeDown)).map(|l| l.0).collect();
                    line(MonLine::Confchg { t: *at, nodes, nodedown })?;
                }
                Event::Totem { at, members } => {
                    let mut nodes = members.clone();
                    nodes.sort_unstable();
                    line(MonLine::Totem { t: *at, nodes })?;
                }
                Event::Deliver { .. } => {}
            }
        }
        if r.is_err() {
            line(MonLine::Lost { t: mono_ns() })?;
            return Ok(());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: the deliveries log holds one line per data message, with the sender, its
    /// sequence number, the send time carried in the message and the delivery time, and
    /// nothing for END messages.
    #[test]
    fn deliveries_log_has_a_line_per_data_message() {
        let path = std::env::temp_dir().join(format!("cpgbench-deliveries-{}.txt", std::process::id()));
        let mut rx = Receiver::new(Some(&path)).unwrap();
        let mut buf = [0u8; HEADER];
        encode(&mut buf, KIND_DATA, 7, 4242, 5);
        let sent = u64::from_le_bytes(buf[24..32].try_into().unwrap());
        rx.handle(&Event::deliver(sent + 1500, 7, 4242, &buf));
        encode(&mut buf, KIND_END, 7, 4242, 6);
        rx.handle(&Event::deliver(sent + 2000, 7, 4242, &buf));
        rx.log.as_mut().unwrap().flush().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert_eq!(text, format!("7 4242 5 {sent} {}\n", sent + 1500));
    }

    /// Goal: a log that cannot be written (a full disk) stops, with the reason kept, and the
    /// measurement goes on.
    #[test]
    fn a_full_disk_ends_the_log_not_the_run() {
        let full = std::path::Path::new("/dev/full");
        if !full.exists() {
            return;
        }
        let mut rx = Receiver::new(Some(full)).unwrap();
        let mut buf = [0u8; HEADER];
        for seq in 0..2000 {
            encode(&mut buf, KIND_DATA, 1, 1, seq);
            rx.handle(&Event::deliver(mono_ns(), 1, 1, &buf));
        }
        assert_eq!(rx.delivered, 2000);
        assert!(rx.log.is_none());
        assert!(rx.log_error.is_some());
    }
}
