//! From daemon journals to a judged spec trace.
//!
//! Each start of a daemon writes its own journal (`totemd --trace-file`); each journal is
//! one incarnation of its node. The journals' records carry the host's monotonic clock, so
//! the records of all daemons of one machine merge into one trace in real order. A
//! record's time is taken when the daemon reports it, before it acts on it (a send is
//! journaled before the packet leaves, a delivery before the client hears of it), so the
//! merged order respects causality between daemons.
//!
//! The mapping of records into spec events is the cluster simulator's recorder
//! ([`sim::cluster::record`]): applications must send payloads made by [`sim::payload`],
//! whose message id names the sending node and the incarnation (journal) it sent from.

use std::io;
use std::path::PathBuf;

use sim::cluster::record::Recorder;
use spec::trace::{EventKind, Trace};
use totem_node::journal::{self, Entry};

/// How an incarnation ended, as the test knows it (a journal cannot say it was killed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// Still running when the trace was taken.
    Running,
    /// Killed (SIGKILL): the trace gets a `Crash` after its last record.
    Crashed,
}

/// One daemon start: node, incarnation number, its journal, and how it ended.
#[derive(Clone, Debug)]
pub struct Incarnation {
    pub node: u32,
    pub incarnation: u32,
    pub journal: PathBuf,
    pub end: End,
}

/// The merged trace, and what the mapping noticed.
#[derive(Debug)]
pub struct Judged {
    pub trace: Trace,
    /// Deliveries whose payload differs from what was sent (must be 0).
    pub corrupt_payloads: u64,
    /// Journals whose last line was torn by a kill.
    pub torn_tails: usize,
}

/// Merge the journals of `incarnations` into one trace.
pub fn assemble(incarnations: &[Incarnation]) -> io::Result<Judged> {
    // (time, journal, line): sorting keeps every journal in its own order (its times never
    // decrease) and interleaves the journals by time.
    let mut items: Vec<(u64, usize, usize, Item)> = Vec::new();
    let mut torn_tails = 0;
    for (j, inc) in incarnations.iter().enumerate() {
        let read = journal::read(&inc.journal)?;
        torn_tails += usize::from(read.torn_tail);
        let mut last = 0;
        for (line, record) in read.records.into_iter().enumerate() {
            last = record.time_ns;
            items.push((record.time_ns, j, line, Item::Record(record.entry)));
        }
        if inc.end == End::Crashed {
            items.push((last, j, usize::MAX, Item::Crash));
        }
    }
    items.sort_by_key(|&(time, j, line, _)| (time, j, line));
    let mut rec = Recorder::default();
    for (time, j, _, item) in items {
        let inc = &incarnations[j];
        match item {
            Item::Record(Entry::Start { .. }) => {
                rec.push_at(time, inc.node, inc.incarnation, EventKind::Start)
            }
            Item::Record(entry) => {
                if let Some(observed) = entry.as_observed() {
                    rec.observe_at(time, inc.node, inc.incarnation, observed);
                }
            }
            Item::Crash => rec.push_at(time, inc.node, inc.incarnation, EventKind::Crash),
        }
    }
    Ok(Judged { corrupt_payloads: rec.counts.corrupt_payloads, trace: rec.trace, torn_tails })
}

enum Item {
    Record(Entry),
    Crash,
}
