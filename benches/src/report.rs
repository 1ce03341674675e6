//! Records (one JSON line per measured run) and the side-by-side table of medians.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write;

/// One measured run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// tput, lat, fail or udp.
    pub kind: String,
    /// totem, corosync or udp.
    pub backend: String,
    /// Corosync's `sched_rr` (yes / no); `-` for Totem.
    pub variant: String,
    /// The row: "64 B, 3 senders", "64 B at 1000 msgs/s", "token 1000", ...
    pub key: String,
    /// Every member delivered every message, in the same order, FIFO per sender.
    pub ok: bool,
    /// Other work on the host stayed under the limit during the run.
    pub clean: bool,
    #[serde(default)]
    pub note: String,
    pub figures: BTreeMap<String, f64>,
}

/// Whether a higher value of a figure is better.
fn higher_is_better(figure: &str) -> bool {
    figure.contains("per_s") || figure.starts_with("mb_")
}

/// Figures shown per kind, with their labels.
fn shown(kind: &str) -> &'static [(&'static str, &'static str)] {
    match kind {
        "tput" => &[
            ("msgs_per_s", "msgs/s"),
            ("mb_per_s", "MB/s"),
            ("daemon_cpu_s_per_1m", "daemon CPU s / 1M msgs"),
            ("lat_p50_ms", "p50 at saturation (ms)"),
            ("lat_p99_ms", "p99 at saturation (ms)"),
            ("other_load_pct", "other work on the host (% of a core)"),
        ],
        "lat" => &[
            ("local_p50_us", "local p50 (us)"),
            ("local_p99_us", "local p99 (us)"),
            ("local_p999_us", "local p99.9 (us)"),
            ("remote_p50_us", "remote p50 (us, worst node)"),
            ("remote_p99_us", "remote p99 (us, worst node)"),
            ("remote_p999_us", "remote p99.9 (us, worst node)"),
            ("daemon_cpu_s_per_1m", "daemon CPU s / 1M msgs"),
            ("other_load_pct", "other work on the host (% of a core)"),
        ],
        "fail" => &[
            ("kill_to_cpg_confchg_ms", "kill -9 -> survivors' CPG view (ms)"),
            ("kill_to_totem_confchg_ms", "kill -9 -> survivors' Totem view (ms)"),
            ("start_to_ipc_ready_ms", "start -> client accepted (ms)"),
            ("start_to_survivors_ring_ms", "start -> survivors' 3-node ring (ms)"),
            ("start_to_member_ms", "start -> member everywhere (ms)"),
        ],
        _ => &[("packets_per_s", "packets/s"), ("mb_per_s", "MB/s"), ("loss_pct", "loss %")],
    }
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 })
}

fn fmt(x: Option<f64>) -> String {
    match x {
        None => "-".into(),
        Some(x) if x.abs() >= 100.0 => format!("{x:.0}"),
        Some(x) if x.abs() >= 10.0 => format!("{x:.1}"),
        Some(x) => format!("{x:.2}"),
    }
}

/// Sort key of a row: the numbers in it, in order (size, senders, rate, token).
fn row_order(key: &str) -> Vec<u64> {
    key.split(|c: char| !c.is_ascii_digit()).filter_map(|w| w.parse().ok()).collect()
}

/// The runs of one back end on one row.
#[derive(Default)]
struct Cell {
    runs: usize,
    /// Runs that passed the checks with a quiet host.
    clean: Vec<BTreeMap<String, f64>>,
    /// Runs that passed the checks while other work used more CPU than allowed.
    disturbed: Vec<BTreeMap<String, f64>>,
    bad: usize,
}

impl Cell {
    /// The clean runs, or if there are none, the disturbed ones (marked in the table).
    fn used(&self) -> &[BTreeMap<String, f64>] {
        if self.clean.is_empty() { &self.disturbed } else { &self.clean }
    }

    fn median(&self, figure: &str) -> Option<f64> {
        median(self.used().iter().filter_map(|f| f.get(figure).copied()).collect())
    }

    fn runs_label(&self) -> String {
        let bad = if self.bad > 0 { format!(" ({} failed check)", self.bad) } else { String::new() };
        let mark = if self.clean.is_empty() && !self.disturbed.is_empty() { DISTURBED } else { "" };
        format!("{}/{}{mark}{bad}", self.used().len(), self.runs)
    }
}

/// Marks a cell whose runs all had other work on the host.
const DISTURBED: &str = "\u{2020}";

/// The table of medians: per row, Totem, Corosync with each `sched_rr`, and Totem over
/// the better Corosync for that figure.
pub fn table(records: &[Record]) -> String {
    // kind -> row -> column -> cell
    let mut rows: BTreeMap<(usize, Vec<u64>, String), BTreeMap<String, Cell>> = BTreeMap::new();
    let kinds = ["tput", "lat", "fail", "udp"];
    for r in records {
        let k = kinds.iter().position(|k| *k == r.kind).unwrap_or(kinds.len());
        let col = if r.backend == "corosync" {
            format!("corosync sched_rr={}", r.variant)
        } else {
            r.backend.clone()
        };
        let cell = rows.entry((k, row_order(&r.key), r.key.clone())).or_default().entry(col).or_default();
        cell.runs += 1;
        match (r.ok, r.clean) {
            (true, true) => cell.clean.push(r.figures.clone()),
            (true, false) => cell.disturbed.push(r.figures.clone()),
            (false, _) => cell.bad += 1,
        }
    }
    let mut out = String::new();
    let mut last_kind = usize::MAX;
    for ((k, _, key), cols) in &rows {
        let kind = kinds.get(*k).copied().unwrap_or("other");
        if *k != last_kind {
            last_kind = *k;
            let title = match kind {
                "tput" => "Throughput (delivered at every member; order checked)",
                "lat" => "Latency at a fixed offered load (1 sender, node 1)",
                "fail" => "Failure detection and rejoin (node 3)",
                _ => "Raw UDP ceiling, node 1 -> node 2 (same veth path)",
            };
            let _ = writeln!(out, "\n### {title}\n");
            if kind == "udp" {
                let _ = writeln!(out, "| row | figure | value | runs |\n|---|---|---:|---:|");
            } else {
                let _ = writeln!(
                    out,
                    "| row | figure | Totem | Corosync sched_rr=yes | Corosync sched_rr=no | Totem / best Corosync | runs (T / C yes / C no) |\n|---|---|---:|---:|---:|---:|---|"
                );
            }
        }
        let runs = |c: &str| cols.get(c).map_or("-".to_string(), Cell::runs_label);
        for (figure, label) in shown(kind) {
            let get = |c: &str| cols.get(c).and_then(|c| c.median(figure));
            if kind == "udp" {
                let _ = writeln!(out, "| {key} | {label} | {} | {} |", fmt(get("udp")), runs("udp"));
                continue;
            }
            let t = get("totem");
            let (yes, no) = (get("corosync sched_rr=yes"), get("corosync sched_rr=no"));
            let best = match (yes, no) {
                (Some(a), Some(b)) => Some(if higher_is_better(figure) == (a >= b) { a } else { b }),
                (a, b) => a.or(b),
            };
            let ratio = match (t, best) {
                // Not a property of either system: no ratio.
                _ if *figure == "other_load_pct" => "-".into(),
                (Some(t), Some(c)) if c != 0.0 => format!("**{:.2}**", t / c),
                _ => "-".into(),
            };
            let _ = writeln!(
                out,
                "| {key} | {label} | {} | {} | {} | {ratio} | {} / {} / {} |",
                fmt(t),
                fmt(yes),
                fmt(no),
                runs("totem"),
                runs("corosync sched_rr=yes"),
                runs("corosync sched_rr=no")
            );
        }
    }
    if out.contains(DISTURBED) {
        let _ = writeln!(
            out,
            "\n{DISTURBED} no run of this cell had a quiet host (other work above the limit): the median is over the disturbed runs."
        );
    }
    out
}

/// Parse a raw file (one JSON record per line; other lines are ignored).
pub fn parse(text: &str) -> Vec<Record> {
    text.lines().filter_map(|l| serde_json::from_str(l.trim()).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(backend: &str, variant: &str, rate: f64) -> Record {
        Record {
            kind: "tput".into(),
            backend: backend.into(),
            variant: variant.into(),
            key: "64 B, 3 senders".into(),
            ok: true,
            clean: true,
            note: String::new(),
            figures: BTreeMap::from([
                ("msgs_per_s".to_string(), rate),
                ("lat_p99_ms".to_string(), rate / 1000.0),
            ]),
        }
    }

    #[test]
    fn ratio_uses_the_better_corosync_setting_per_figure() {
        let recs = vec![
            rec("totem", "-", 100.0),
            rec("totem", "-", 300.0),
            rec("totem", "-", 200.0),
            rec("corosync", "yes", 50.0),
            rec("corosync", "no", 80.0),
        ];
        let t = table(&recs);
        // msgs/s: 200 (median) against the better (higher) 80.
        assert!(
            t.contains("| 64 B, 3 senders | msgs/s | 200 | 50.0 | 80.0 | **2.50** | 3/3 / 1/1 / 1/1 |"),
            "{t}"
        );
        // p99: lower is better, so against 0.05.
        assert!(t.contains("| p99 at saturation (ms) | 0.20 | 0.05 | 0.08 | **4.00** |"), "{t}");
    }

    #[test]
    fn failed_runs_are_counted_but_not_used() {
        let mut bad = rec("totem", "-", 1e9);
        bad.ok = false;
        let t = table(&[bad, rec("totem", "-", 10.0)]);
        assert!(t.contains("| msgs/s | 10.0 |"), "{t}");
        assert!(t.contains("1/2 (1 failed check)"), "{t}");
    }

    #[test]
    fn disturbed_runs_count_only_without_clean_ones() {
        let mut busy = rec("totem", "-", 50.0);
        busy.clean = false;
        let t = table(&[busy.clone(), rec("totem", "-", 10.0)]);
        assert!(t.contains("| msgs/s | 10.0 |") && t.contains("1/2 /"), "{t}");
        let t = table(&[busy]);
        assert!(
            t.contains("| msgs/s | 50.0 |") && t.contains("1/1\u{2020}") && t.contains("no run of this cell"),
            "{t}"
        );
    }

    #[test]
    fn rows_sort_by_their_numbers() {
        assert!(row_order("1024 B, 3 senders") > row_order("64 B, 3 senders"));
        let line = serde_json::to_string(&rec("totem", "-", 1.0)).unwrap_or_default();
        assert_eq!(parse(&format!("noise\n{line}\n")).len(), 1);
    }
}
