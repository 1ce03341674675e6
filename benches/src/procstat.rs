//! CPU accounting from /proc: processes' user+system time, and the whole host's busy time.

/// Clock ticks per second of /proc's counters.
pub fn ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// utime + stime of a process (all its threads), in ticks; None if it is gone.
pub fn process_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; the fields after its ')' are plain.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': field 3 (state) is index 0, so utime (14) is 11 and stime (15) is 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Sum over `pids` (a vanished process counts 0).
pub fn processes_ticks(pids: &[u32]) -> u64 {
    pids.iter().filter_map(|p| process_ticks(*p)).sum()
}

/// The host's busy ticks over all CPUs (user, nice, system, irq, softirq, steal).
pub fn host_busy_ticks() -> u64 {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else { return 0 };
    let Some(cpu) = stat.lines().next() else { return 0 };
    let v: Vec<u64> = cpu.split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal
    [0usize, 1, 2, 5, 6, 7].iter().filter_map(|i| v.get(*i)).sum()
}

/// One CPU sample at a CLOCK_MONOTONIC time.
#[derive(Copy, Clone, Debug, Default, PartialEq)]
pub struct Sample {
    pub t: u64,
    pub daemons: u64,
    pub workers: u64,
    pub host: u64,
}

impl Sample {
    pub fn take(daemons: &[u32], workers: &[u32]) -> Sample {
        Sample {
            t: crate::mono_ns(),
            daemons: processes_ticks(daemons),
            workers: processes_ticks(workers),
            host: host_busy_ticks(),
        }
    }
}

/// CPU seconds used in [from, to] (CLOCK_MONOTONIC ns), by linear interpolation between
/// the samples around each end: (daemons, workers, host).
pub fn window(samples: &[Sample], from: u64, to: u64) -> Option<(f64, f64, f64)> {
    let at = |t: u64| -> Option<(f64, f64, f64)> {
        let i = samples.iter().position(|s| s.t >= t)?;
        let b = samples[i];
        let a = if i == 0 { b } else { samples[i - 1] };
        let f = if b.t > a.t { (t.saturating_sub(a.t)) as f64 / (b.t - a.t) as f64 } else { 1.0 };
        let lerp = |x: u64, y: u64| x as f64 + (y as f64 - x as f64) * f.clamp(0.0, 1.0);
        Some((lerp(a.daemons, b.daemons), lerp(a.workers, b.workers), lerp(a.host, b.host)))
    };
    let (d0, w0, h0) = at(from)?;
    let (d1, w1, h1) = at(to)?;
    let tps = ticks_per_sec();
    Some(((d1 - d0) / tps, (w1 - w0) / tps, (h1 - h0) / tps))
}
