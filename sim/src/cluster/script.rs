//! Scenario files: a small line-based language for scripted cluster runs, so that a
//! scenario can be written and run without recompiling (`sim scenario FILE`).
//!
//! # Format
//!
//! One statement per line; `#` starts a comment; blank lines are ignored. Header lines
//! (any order, each at most once, before or after the actions):
//!
//! ```text
//! name crash one of five         a title for reports
//! nodes 5                        hosts n1..n5, node ids 1..5 (default 3)
//! token 1000ms                   Corosync's base token (default 3000ms); the others derive
//! start formed                   formed (default): time 0 is when all nodes first formed
//!                                one ring; cold: time 0 is the simulation's start
//! latency 1ms 5ms                packet latency range (default: drawn from the seed)
//! loss 0.05 | dup 0.01 | corrupt 0.001    per-packet rates at time 0 (default 0)
//! apps 2                         CPG application processes per host (default 2)
//! groups 2                       groups they join, g0.. (default 2)
//! traffic 20ms x3                a burst of up to 3 messages every 20 ms on average per
//!                                process (default); `traffic off`: scripted sends only
//! safe 0.2                       fraction of Safe messages (default 0.2)
//! churn on                       processes leave, exit and come back (default off)
//! tick 1ms                       turmoil's step (default 1ms)
//! ```
//!
//! Actions, `at TIME ACTION` (actions at the same time happen in file order):
//!
//! ```text
//! at 2s start 4                  late joiner (a node with a start action waits for it)
//! at 2s crash 2                  the host dies (runtime, apps, socket); its disk survives
//! at 2s restart 2                new incarnation with the persisted ring sequence
//! at 2s restart 2 wipe           ... without it (the disk is lost)
//! at 2s pause 3 for 6s           SIGSTOP for 6 s, then it resumes
//! at 2s resume 3
//! at 2s leave 1                  clean shutdown (LEAVE)
//! at 2s partition 1,2 | 3        only links within a group work (unlisted: one more group)
//! at 2s heal                     every link up, held packets delivered
//! at 2s oneway 1 -> 2            packets from 1 to 2 are lost
//! at 2s cut 1 2 | mend 1 2       link down / up both ways
//! at 2s hold 1 2 | release 1 2   packets between 1 and 2 held / delivered
//! at 2s loss 0.2 | dup 0.05 | corrupt 0.01
//! at 2s latency 1ms 20ms
//! at 2s send 2 x10               node 2's first joined process sends 10 small messages
//! at 2s send 2 x3 200000B        ... 3 messages of 200000 bytes
//! at 2s traffic off | on         background traffic
//! at 2s churn on | off
//! ```
//!
//! Expectations:
//!
//! ```text
//! expect converged within 10s    LIVE-1/LIVE-2 (and CPG-7/CPG-11) over the window from the
//!                                last action (a pause: its end) to that time later
//! expect live 1,2,4,5            the nodes running at the end
//! run for 30s                    run at least until then
//! ```
//!
//! Every safety property is always checked. A TIME is a sum of terms joined by `+`: a
//! number with a unit (`ns`, `us`, `ms`, `s`), or a multiple of one of the run's derived
//! timeouts (`token`, `consensus`, `join`, `epoch` = token + consensus, `bound` = the
//! convergence bound B): `at 2s + token + 0.5consensus crash 3`, `pause 3 for 2token +
//! consensus`, `expect converged within bound`.
//!
//! A run: the hosts start cold (the node runtime has no "formed" start); sends go on until
//! the convergence deadline (or one epoch before the end without one); the run ends one
//! epoch after the deadline (or after the last action), or at `run for` if later.

use super::plan::{Act, Apps, ClusterOptions, Net, Timed, fmt_ns};
use crate::rng::Rng;
use std::fmt::Write as _;
use totem_core::broken::Bug;

/// A parsed scenario.
#[derive(Clone, Debug, PartialEq)]
pub struct Script {
    pub name: String,
    pub nodes: usize,
    pub token_ms: u64,
    /// Time 0 is when every node first formed one ring.
    pub formed: bool,
    /// Latency range; None: drawn from the seed.
    pub latency_ns: Option<(u64, u64)>,
    pub loss: f64,
    pub dup: f64,
    pub corrupt: f64,
    pub apps: Apps,
    pub tick_ns: u64,
    pub actions: Vec<Timed>,
    pub converge_within_ns: Option<u64>,
    pub expect_live: Option<Vec<u32>>,
    pub run_for_ns: Option<u64>,
    pub bug: Option<Bug>,
}

/// A line that could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for ParseError {}

impl Default for Script {
    fn default() -> Self {
        Script {
            name: "scenario".into(),
            nodes: 3,
            token_ms: 3000,
            formed: true,
            latency_ns: None,
            loss: 0.0,
            dup: 0.0,
            corrupt: 0.0,
            apps: Apps::light(),
            tick_ns: 1_000_000,
            actions: Vec::new(),
            converge_within_ns: None,
            expect_live: None,
            run_for_ns: None,
            bug: None,
        }
    }
}

/// The run's derived timeouts, for TIME terms.
#[derive(Clone, Copy, Debug)]
struct Units {
    token: u64,
    consensus: u64,
    join: u64,
    bound: u64,
}

fn unit_ns(unit: &str, u: &Units) -> Option<f64> {
    Some(match unit {
        "ns" => 1.0,
        "us" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        "token" => u.token as f64,
        "consensus" => u.consensus as f64,
        "join" => u.join as f64,
        "epoch" => (u.token + u.consensus) as f64,
        "bound" => u.bound as f64,
        _ => return None,
    })
}

/// One term: `2s`, `0.5consensus`, `token`.
fn term(s: &str, u: &Units) -> Option<u64> {
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let k: f64 = if num.is_empty() { 1.0 } else { num.parse().ok()? };
    let unit = if unit.is_empty() { return None } else { unit };
    let ns = k * unit_ns(unit, u)?;
    (ns.is_finite() && ns >= 0.0).then_some(ns.round() as u64)
}

/// Split `+` into tokens of their own.
fn tokens(line: &str) -> Vec<String> {
    line.replace('+', " + ").replace("->", " -> ").split_whitespace().map(str::to_string).collect()
}

/// Read a TIME from `toks[i..]`: terms joined by `+`. Returns the value and the index
/// after it.
fn time(toks: &[String], mut i: usize, u: &Units) -> Result<(u64, usize), String> {
    let mut total = 0u64;
    loop {
        let t = toks.get(i).ok_or("expected a time")?;
        total = total.saturating_add(term(t, u).ok_or_else(|| format!("not a time: '{t}'"))?);
        i += 1;
        if toks.get(i).map(String::as_str) == Some("+") {
            i += 1;
        } else {
            return Ok((total, i));
        }
    }
}

fn node(t: Option<&String>, nodes: usize) -> Result<u32, String> {
    let t = t.ok_or("expected a node id")?;
    let n: u32 = t.parse().map_err(|_| format!("not a node id: '{t}'"))?;
    if n == 0 || n as usize > nodes {
        return Err(format!("node {n} is not one of 1..={nodes}"));
    }
    Ok(n)
}

fn prob(t: Option<&String>) -> Result<f64, String> {
    let t = t.ok_or("expected a probability")?;
    let p: f64 = t.parse().map_err(|_| format!("not a probability: '{t}'"))?;
    if !(0.0..=1.0).contains(&p) {
        return Err(format!("probability {p} is not within [0, 1]"));
    }
    Ok(p)
}

fn on_off(t: Option<&String>) -> Result<bool, String> {
    match t.map(String::as_str) {
        Some("on") => Ok(true),
        Some("off") => Ok(false),
        other => Err(format!("expected on or off, got {other:?}")),
    }
}

fn count(t: Option<&String>, what: &str) -> Result<u64, String> {
    let t = t.ok_or_else(|| format!("expected {what}"))?;
    t.parse().map_err(|_| format!("not a number: '{t}'"))
}

/// `1,2 | 3,4` (however the spaces fall) as groups.
fn groups(rest: &[String], nodes: usize) -> Result<Vec<Vec<u32>>, String> {
    let text = rest.join(" ");
    let mut out = Vec::new();
    for g in text.split('|') {
        let mut group = Vec::new();
        for n in g.split([',', ' ']).filter(|s| !s.is_empty()) {
            group.push(node(Some(&n.to_string()), nodes)?);
        }
        if group.is_empty() {
            return Err("empty group in partition".into());
        }
        out.push(group);
    }
    Ok(out)
}

fn node_list(rest: &[String], nodes: usize) -> Result<Vec<u32>, String> {
    let mut v = Vec::new();
    for n in rest.join(" ").split([',', ' ']).filter(|s| !s.is_empty()) {
        v.push(node(Some(&n.to_string()), nodes)?);
    }
    v.sort_unstable();
    v.dedup();
    Ok(v)
}

/// Parse an action from `toks` (the words after the TIME).
fn action(toks: &[String], s: &Script, u: &Units) -> Result<Act, String> {
    let word = toks.first().map(String::as_str).ok_or("expected an action")?;
    let arg = |i: usize| toks.get(i);
    let n = s.nodes;
    let act = match word {
        "start" => Act::Start(node(arg(1), n)?),
        "crash" => Act::Crash(node(arg(1), n)?),
        "restart" => {
            let keep_state = match arg(2).map(String::as_str) {
                None => true,
                Some("wipe") => false,
                Some(other) => return Err(format!("expected 'wipe' after restart N, got '{other}'")),
            };
            Act::Restart { node: node(arg(1), n)?, keep_state }
        }
        "pause" => {
            if arg(2).map(String::as_str) != Some("for") {
                return Err("expected 'pause N for TIME'".into());
            }
            let (ns, end) = time(toks, 3, u)?;
            if end != toks.len() {
                return Err(format!("unexpected '{}'", toks[end]));
            }
            return Ok(Act::Pause { node: node(arg(1), n)?, ns });
        }
        "resume" => Act::Resume(node(arg(1), n)?),
        "leave" => Act::Leave(node(arg(1), n)?),
        "partition" => return Ok(Act::Partition(groups(&toks[1..], n)?)),
        "heal" => Act::Heal,
        "oneway" => {
            if arg(2).map(String::as_str) != Some("->") {
                return Err("expected 'oneway A -> B'".into());
            }
            Act::OneWay { from: node(arg(1), n)?, to: node(arg(3), n)? }
        }
        "cut" | "mend" | "hold" | "release" => {
            let (a, b) = (node(arg(1), n)?, node(arg(2), n)?);
            if a == b {
                return Err(format!("{word} needs two different nodes"));
            }
            match word {
                "cut" => Act::Cut(a, b),
                "mend" => Act::Mend(a, b),
                "hold" => Act::Hold(a, b),
                _ => Act::Release(a, b),
            }
        }
        "loss" => Act::Loss(prob(arg(1))?),
        "dup" => Act::Dup(prob(arg(1))?),
        "corrupt" => Act::Corrupt(prob(arg(1))?),
        "latency" => {
            let (min_ns, i) = time(toks, 1, u)?;
            let (max_ns, end) = time(toks, i, u)?;
            if end != toks.len() {
                return Err(format!("unexpected '{}'", toks[end]));
            }
            return Ok(Act::Latency { min_ns, max_ns: max_ns.max(min_ns) });
        }
        "send" => {
            let node = node(arg(1), n)?;
            let k = arg(2).and_then(|t| t.strip_prefix('x')).ok_or("expected 'send N xCOUNT [SIZE B]'")?;
            let count = k.parse().map_err(|_| format!("not a count: '{k}'"))?;
            let bytes = match arg(3) {
                None => 64,
                Some(b) => {
                    let b = b.strip_suffix('B').ok_or("a size ends in B: '200000B'")?;
                    b.parse().map_err(|_| format!("not a size: '{b}'"))?
                }
            };
            if toks.len() > 4 {
                return Err(format!("unexpected '{}'", toks[4]));
            }
            return Ok(Act::Send { node, count, bytes });
        }
        "traffic" => Act::Traffic(on_off(arg(1))?),
        "churn" => Act::Churn(on_off(arg(1))?),
        other => return Err(format!("unknown action '{other}'")),
    };
    let used = match act {
        Act::Heal => 1,
        Act::Restart { keep_state: false, .. }
        | Act::Cut(..)
        | Act::Mend(..)
        | Act::Hold(..)
        | Act::Release(..) => 3,
        Act::OneWay { .. } => 4,
        _ => 2,
    };
    if toks.len() > used {
        return Err(format!("unexpected '{}'", toks[used]));
    }
    Ok(act)
}

impl Script {
    /// Parse a scenario file's text.
    pub fn parse(text: &str) -> Result<Script, ParseError> {
        let mut s = Script::default();
        let lines: Vec<(usize, Vec<String>, &str)> = text
            .lines()
            .enumerate()
            .map(|(i, l)| {
                let l = l.split('#').next().unwrap_or("").trim();
                (i + 1, tokens(l), l)
            })
            .filter(|(_, t, _)| !t.is_empty())
            .collect();
        let err = |line: usize, message: String| ParseError { line, message };
        // Pass 1: the header (the timeouts that TIME terms use depend on it).
        for (line, toks, raw) in &lines {
            let line = *line;
            let arg = |i: usize| toks.get(i);
            let plain = Units { token: 1, consensus: 1, join: 1, bound: 1 };
            let r: Result<(), String> = match toks[0].as_str() {
                "name" => {
                    s.name = raw.trim_start_matches("name").trim().to_string();
                    Ok(())
                }
                "nodes" => count(arg(1), "a node count").and_then(|k| {
                    if k == 0 || k > 64 {
                        return Err(format!("{k} nodes: between 1 and 64"));
                    }
                    s.nodes = k as usize;
                    Ok(())
                }),
                "token" => time(toks, 1, &plain).map(|(ns, _)| s.token_ms = (ns / 1_000_000).max(1)),
                "tick" => time(toks, 1, &plain).map(|(ns, _)| s.tick_ns = ns.max(1000)),
                "start" => match arg(1).map(String::as_str) {
                    Some("formed") => {
                        s.formed = true;
                        Ok(())
                    }
                    Some("cold") => {
                        s.formed = false;
                        Ok(())
                    }
                    other => Err(format!("expected 'start formed' or 'start cold', got {other:?}")),
                },
                "latency" => time(toks, 1, &plain).and_then(|(min, i)| {
                    time(toks, i, &plain).map(|(max, _)| s.latency_ns = Some((min, max.max(min))))
                }),
                "loss" => prob(arg(1)).map(|p| s.loss = p),
                "dup" => prob(arg(1)).map(|p| s.dup = p),
                "corrupt" => prob(arg(1)).map(|p| s.corrupt = p),
                "apps" => {
                    count(arg(1), "a process count").map(|k| s.apps.processes = (k as usize).clamp(1, 16))
                }
                "groups" => count(arg(1), "a group count").map(|k| s.apps.groups = (k as usize).clamp(1, 16)),
                "safe" => prob(arg(1)).map(|p| s.apps.safe_fraction = p),
                "churn" => on_off(arg(1)).map(|on| {
                    s.apps.churn = on;
                    if on {
                        s.apps.leave_p = 0.01;
                        s.apps.exit_p = 0.005;
                    }
                }),
                "traffic" => match arg(1).map(String::as_str) {
                    Some("off") => {
                        s.apps.traffic = false;
                        Ok(())
                    }
                    Some("on") => {
                        s.apps.traffic = true;
                        Ok(())
                    }
                    _ => time(toks, 1, &plain).and_then(|(every, i)| {
                        let burst = arg(i)
                            .and_then(|b| b.strip_prefix('x'))
                            .ok_or("expected 'traffic EVERY xBURST'")?;
                        s.apps.burst_max = burst.parse().map_err(|_| format!("not a burst: '{burst}'"))?;
                        s.apps.interval_mean_ns = every.max(1);
                        s.apps.traffic = true;
                        Ok(())
                    }),
                },
                "at" | "expect" | "run" => Ok(()),
                other => Err(format!("unknown statement '{other}'")),
            };
            r.map_err(|m| err(line, m))?;
        }
        // Pass 2: actions and expectations.
        let units = s.units();
        for (line, toks, _) in &lines {
            let line = *line;
            let r: Result<(), String> = match toks[0].as_str() {
                "at" => time(toks, 1, &units).and_then(|(at_ns, i)| {
                    let act = action(&toks[i..], &s, &units)?;
                    s.actions.push(Timed { at_ns, act });
                    Ok(())
                }),
                "expect" => match toks.get(1).map(String::as_str) {
                    Some("converged") => {
                        if toks.get(2).map(String::as_str) != Some("within") {
                            Err("expected 'expect converged within TIME'".into())
                        } else {
                            time(toks, 3, &units).map(|(ns, _)| s.converge_within_ns = Some(ns))
                        }
                    }
                    Some("live") => node_list(&toks[2..], s.nodes).map(|v| s.expect_live = Some(v)),
                    other => Err(format!("unknown expectation {other:?}")),
                },
                "run" => {
                    if toks.get(1).map(String::as_str) != Some("for") {
                        Err("expected 'run for TIME'".into())
                    } else {
                        time(toks, 2, &units).map(|(ns, _)| s.run_for_ns = Some(ns))
                    }
                }
                _ => Ok(()),
            };
            r.map_err(|m| err(line, m))?;
        }
        s.actions.sort_by_key(|t| t.at_ns);
        Ok(s)
    }

    /// The derived timeouts and the bound, for this script's size and token.
    fn units(&self) -> Units {
        let o = self.options(0);
        let c = o.core_config();
        Units {
            token: c.token.as_nanos() as u64,
            consensus: c.consensus.as_nanos() as u64,
            join: c.join.as_nanos() as u64,
            bound: o.bound_ns(),
        }
    }

    /// The convergence bound B for this script.
    pub fn bound_ns(&self) -> u64 {
        self.options(0).bound_ns()
    }

    /// When the last action takes effect (a pause: when it ends).
    pub fn last_fault_end_ns(&self) -> u64 {
        self.actions
            .iter()
            .map(|t| match t.act {
                Act::Pause { ns, .. } => t.at_ns.saturating_add(ns),
                _ => t.at_ns,
            })
            .max()
            .unwrap_or(0)
    }

    /// The run's options for `seed` (the seed draws the latency unless the script fixes
    /// it, and every random choice of the applications and the fault layer).
    pub fn options(&self, seed: u64) -> ClusterOptions {
        let mut rng = Rng::new(seed).fork(45);
        let (min, max) = self.latency_ns.unwrap_or_else(|| {
            let min = rng.range(0, 1) * 1_000_000;
            (min, min + rng.range(0, 3) * 1_000_000)
        });
        ClusterOptions {
            seed,
            nodes: self.nodes,
            token_ms: self.token_ms,
            netmtu: super::plan::netmtu_udpu(),
            tick_ns: self.tick_ns,
            net: Net {
                latency_min_ns: min,
                latency_max_ns: max,
                loss: self.loss,
                dup: self.dup,
                corrupt: self.corrupt,
                udp_capacity: 1024,
            },
            apps: self.apps.clone(),
            schedule: self.actions.clone(),
            safety_ns: 0,
            liveness_restart: false,
            liveness_keep_state: true,
            liveness_send_ns: 0,
            mix: Vec::new(),
            bug: self.bug,
        }
    }

    /// The scenario as text (header and one line per action), parseable again.
    pub fn text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "name {}", self.name);
        let _ = writeln!(s, "nodes {}", self.nodes);
        let _ = writeln!(s, "token {}ms", self.token_ms);
        let _ = writeln!(s, "start {}", if self.formed { "formed" } else { "cold" });
        if let Some((a, b)) = self.latency_ns {
            let _ = writeln!(s, "latency {} {}", fmt_ns(a), fmt_ns(b));
        }
        for (k, p) in [("loss", self.loss), ("dup", self.dup), ("corrupt", self.corrupt)] {
            if p > 0.0 {
                let _ = writeln!(s, "{k} {p}");
            }
        }
        let _ = writeln!(s, "apps {}", self.apps.processes);
        let _ = writeln!(s, "groups {}", self.apps.groups);
        if self.apps.traffic {
            let _ = writeln!(s, "traffic {} x{}", fmt_ns(self.apps.interval_mean_ns), self.apps.burst_max);
        } else {
            let _ = writeln!(s, "traffic off");
        }
        let _ = writeln!(s, "safe {}", self.apps.safe_fraction);
        if self.apps.churn {
            let _ = writeln!(s, "churn on");
        }
        for t in &self.actions {
            let _ = writeln!(s, "{t}");
        }
        if let Some(ns) = self.converge_within_ns {
            let _ = writeln!(s, "expect converged within {}", fmt_ns(ns));
        }
        if let Some(v) = &self.expect_live {
            let list: Vec<String> = v.iter().map(u32::to_string).collect();
            let _ = writeln!(s, "expect live {}", list.join(","));
        }
        if let Some(ns) = self.run_for_ns {
            let _ = writeln!(s, "run for {}", fmt_ns(ns));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_statements() {
        let text = "\
# a comment
name crash and merge
nodes 5
token 1000ms
start cold
latency 1ms 4ms
traffic 10ms x2
at 2s partition 1,2 | 3   # inline comment
at 2s + token + 0.5consensus crash 2
at 5s pause 3 for 2token + consensus
at 6s heal
at 6s oneway 1 -> 2
at 6s hold 1 2
at 7s restart 2 wipe
at 7s send 1 x3 2000B
at 8s latency 1ms 30ms
expect converged within bound
expect live 1,2,3,4,5
run for 40s
";
        let s = Script::parse(text).expect("parses");
        assert_eq!(s.name, "crash and merge");
        assert_eq!(s.nodes, 5);
        assert!(!s.formed);
        let c = s.options(0).core_config();
        let (token, consensus) = (c.token.as_nanos() as u64, c.consensus.as_nanos() as u64);
        assert_eq!(
            s.actions[0],
            Timed { at_ns: 2_000_000_000, act: Act::Partition(vec![vec![1, 2], vec![3]]) }
        );
        assert_eq!(s.actions[1].at_ns, 2_000_000_000 + token + consensus / 2);
        assert_eq!(s.actions[2].act, Act::Pause { node: 3, ns: 2 * token + consensus });
        assert!(s.actions.iter().any(|t| t.act == Act::OneWay { from: 1, to: 2 }));
        assert!(s.actions.iter().any(|t| t.act == Act::Restart { node: 2, keep_state: false }));
        assert!(s.actions.iter().any(|t| t.act == Act::Send { node: 1, count: 3, bytes: 2000 }));
        assert_eq!(s.converge_within_ns, Some(s.bound_ns()));
        assert_eq!(s.expect_live, Some(vec![1, 2, 3, 4, 5]));
        assert_eq!(s.run_for_ns, Some(40_000_000_000));
        // The printed form parses back to the same scenario.
        assert_eq!(Script::parse(&s.text()).expect("round trip"), s);
    }

    #[test]
    fn errors_name_the_line() {
        let e = Script::parse("nodes 3\nat 2s crash 9\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("node 9"), "{e}");
        let e = Script::parse("at soon crash 1").unwrap_err();
        assert!(e.message.contains("not a time"), "{e}");
        let e = Script::parse("at 1s explode 1").unwrap_err();
        assert!(e.message.contains("unknown action"), "{e}");
        let e = Script::parse("at 1s crash 1 2").unwrap_err();
        assert!(e.message.contains("unexpected"), "{e}");
        assert!(Script::parse("frobnicate").is_err());
    }
}
