//! The trace journal: with `totemd --trace-file PATH`, everything the runtime observes
//! ([`Observed`]) is appended to PATH, one JSON object per line, each stamped with the
//! host's monotonic clock. The end-to-end tests merge the journals of several daemons into
//! one trace and judge it with the spec; an operator can keep one as a flight recorder of
//! a node (configurations, deliveries, CPG requests and callbacks, and the core's internal
//! probes, which tracing turns on).
//!
//! Every record is written with one `write` call and no user-space buffer, so a daemon
//! killed with SIGKILL loses at most the record it was writing; [`read`] drops such a torn
//! last line and says so. This costs a system call per record: tracing is for tests and
//! investigations, not for a node under full load.

use std::fs::File;
use std::io::{self, BufRead, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};
use totem_core::Output;
use totem_core::cpg::{ConnId, CpgError};
use totem_core::{Guarantee, NodeId};

use crate::runtime::{Observed, Observer};

/// One line of the journal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// CLOCK_MONOTONIC in ns: comparable between the processes of one host.
    pub time_ns: u64,
    pub entry: Entry,
}

/// What happened: an owned [`Observed`], or the opening of the journal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Entry {
    /// The first record: node `node` starts (written before the runtime runs).
    Start {
        node: NodeId,
    },
    /// A core output ([`Output::Send`] and [`Output::PersistRingSeq`] are not journaled).
    Output(Output),
    Join {
        conn: ConnId,
        group: Vec<u8>,
        pid: u32,
        result: Result<(), CpgError>,
    },
    Leave {
        conn: ConnId,
        group: Vec<u8>,
        result: Result<(), CpgError>,
    },
    Mcast {
        conn: ConnId,
        group: Option<Vec<u8>>,
        guarantee: Guarantee,
        payload: Vec<u8>,
        result: Result<(), CpgError>,
    },
    Disconnect {
        conn: ConnId,
    },
}

impl Entry {
    /// The owned copy of `what`; None for what is not journaled.
    pub fn of(what: &Observed<'_>) -> Option<Entry> {
        Some(match *what {
            Observed::Output(Output::Send { .. } | Output::PersistRingSeq(_)) => return None,
            Observed::Output(o) => Entry::Output(o.clone()),
            Observed::Join { conn, group, pid, result } => {
                Entry::Join { conn, group: group.to_vec(), pid, result }
            }
            Observed::Leave { conn, group, result } => Entry::Leave { conn, group: group.to_vec(), result },
            Observed::Mcast { conn, group, guarantee, payload, result } => Entry::Mcast {
                conn,
                group: group.map(<[u8]>::to_vec),
                guarantee,
                payload: payload.to_vec(),
                result,
            },
            Observed::Disconnect { conn } => Entry::Disconnect { conn },
        })
    }

    /// The entry as the runtime reported it (None for [`Entry::Start`]), so that a reader
    /// can feed a journal to whatever consumes a live runtime's observations.
    pub fn as_observed(&self) -> Option<Observed<'_>> {
        Some(match self {
            Entry::Start { .. } => return None,
            Entry::Output(o) => Observed::Output(o),
            Entry::Join { conn, group, pid, result } => {
                Observed::Join { conn: *conn, group, pid: *pid, result: *result }
            }
            Entry::Leave { conn, group, result } => Observed::Leave { conn: *conn, group, result: *result },
            Entry::Mcast { conn, group, guarantee, payload, result } => Observed::Mcast {
                conn: *conn,
                group: group.as_deref(),
                guarantee: *guarantee,
                payload,
                result: *result,
            },
            Entry::Disconnect { conn } => Observed::Disconnect { conn: *conn },
        })
    }
}

/// The host's monotonic clock in ns.
pub fn monotonic_ns() -> u64 {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC) {
        Ok(t) => (t.tv_sec() as u64).saturating_mul(1_000_000_000).saturating_add(t.tv_nsec() as u64),
        Err(_) => 0,
    }
}

/// Appends records to a file.
#[derive(Debug)]
pub struct JournalWriter {
    file: File,
    line: Vec<u8>,
}

impl JournalWriter {
    /// Create (or truncate) `path` and write the [`Entry::Start`] record of `node`.
    pub fn create(path: &Path, node: NodeId) -> io::Result<JournalWriter> {
        let mut w = JournalWriter { file: File::create(path)?, line: Vec::new() };
        w.append(&Entry::Start { node })?;
        Ok(w)
    }

    pub fn append(&mut self, entry: &Entry) -> io::Result<()> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, &Record { time_ns: monotonic_ns(), entry: entry.clone() })
            .map_err(io::Error::other)?;
        self.line.push(b'\n');
        self.file.write_all(&self.line)
    }

    /// The runtime observer that journals everything. A write error is logged once and
    /// ends the journal; the node runs on.
    pub fn into_observer(mut self) -> Observer {
        let mut failed = false;
        Box::new(move |what| {
            if failed {
                return;
            }
            if let Some(entry) = Entry::of(&what)
                && let Err(e) = self.append(&entry)
            {
                tracing::error!("trace journal: {e}; journaling stops");
                failed = true;
            }
        })
    }
}

/// A journal read back.
#[derive(Debug, Default)]
pub struct Journal {
    pub records: Vec<Record>,
    /// The last line was torn (the writer was killed mid-write) and was dropped.
    pub torn_tail: bool,
}

/// Read a journal. A malformed line other than the last is an error naming the line.
pub fn read(path: &Path) -> io::Result<Journal> {
    let lines: Vec<String> = io::BufReader::new(File::open(path)?).lines().collect::<Result<_, _>>()?;
    let mut journal = Journal::default();
    for (i, line) in lines.iter().enumerate() {
        match serde_json::from_str(line) {
            Ok(r) => journal.records.push(r),
            Err(_) if i + 1 == lines.len() => journal.torn_tail = true,
            Err(e) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}:{}: {e}", path.display(), i + 1),
                ));
            }
        }
    }
    Ok(journal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.jsonl");
        let mut w = JournalWriter::create(&path, NodeId(2)).unwrap();
        let mcast = Entry::Mcast {
            conn: ConnId(7),
            group: Some(b"g".to_vec()),
            guarantee: Guarantee::Safe,
            payload: vec![1, 2, 3],
            result: Err(CpgError::TryAgain),
        };
        w.append(&mcast).unwrap();
        let j = read(&path).unwrap();
        assert!(!j.torn_tail);
        assert_eq!(j.records.len(), 2);
        assert_eq!(j.records[0].entry, Entry::Start { node: NodeId(2) });
        assert_eq!(j.records[1].entry, mcast);
        assert!(j.records[0].time_ns <= j.records[1].time_ns);
        assert_eq!(Entry::of(&j.records[1].entry.as_observed().unwrap()), Some(mcast));

        // A torn last line is dropped; a torn line in the middle is an error with its line.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(b"{\"time_ns\":5,\"ent");
        std::fs::write(&path, &bytes).unwrap();
        let j = read(&path).unwrap();
        assert!(j.torn_tail);
        assert_eq!(j.records.len(), 2);
        bytes.extend_from_slice(b"\n{\"time_ns\":6,\"entry\":{\"Disconnect\":{\"conn\":1}}}\n");
        std::fs::write(&path, &bytes).unwrap();
        let e = read(&path).unwrap_err();
        assert!(e.to_string().contains(":3:"), "{e}");
    }
}
