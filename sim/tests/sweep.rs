//! Goal: on a formed ring of 2-7 nodes with up to 30 % loss, duplication and reordering,
//! every submitted message is delivered at every node and every property holds.
//! Method: a seeded sweep of swarm-drawn runs, each judged by the spec.

use sim::{Limits, Options};

fn sweep(limits: &Limits, seeds: std::ops::Range<u64>) {
    // The seeds are independent: share them out over the cores, each thread taking every
    // `threads`-th seed (the result does not depend on how they are shared).
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 8) as u64;
    let per_thread: Vec<(Vec<String>, u64)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let seeds = seeds.clone();
                scope.spawn(move || {
                    let (mut failures, mut delivered) = (Vec::new(), 0);
                    for seed in seeds.filter(|s| s % threads == t) {
                        let report = sim::run(Options::draw(seed, limits)).expect("run");
                        delivered += report.stats.messages_delivered;
                        if report.quiesced_at.is_none() || !report.passed() {
                            let violations: Vec<String> =
                                report.violations.iter().map(|v| v.to_string()).collect();
                            failures.push(format!("seed {seed}: {violations:?}"));
                        }
                    }
                    (failures, delivered)
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("a sweep thread panicked")).collect()
    });
    let failures: Vec<String> = per_thread.iter().flat_map(|(f, _)| f.clone()).collect();
    let delivered: u64 = per_thread.iter().map(|(_, d)| *d).sum();
    assert!(
        failures.is_empty(),
        "{} of {} seeds failed:\n{}",
        failures.len(),
        seeds.count(),
        failures.join("\n")
    );
    assert!(delivered > 0);
}

// 500 seeds keep CI well inside its 30 minutes; `sim run --seeds 100000` (README) is the
// long sweep.
#[test]
fn swarm_sweep_default_limits() {
    sweep(&Limits { safety_secs: 3, ..Limits::formed_no_faults() }, 1..501);
}

#[test]
fn heavy_loss_every_node_count() {
    for nodes in 2..=7 {
        let limits = Limits {
            nodes_min: nodes,
            nodes_max: nodes,
            fixed_loss: Some(0.3),
            safety_secs: 3,
            ..Limits::formed_no_faults()
        };
        sweep(&limits, 5000..5040);
    }
}

#[test]
fn large_messages_under_loss() {
    let limits = Limits {
        message_max: 1024 * 1024,
        fixed_loss: Some(0.1),
        safety_secs: 5,
        ..Limits::formed_no_faults()
    };
    sweep(&limits, 9000..9030);
}
