//! Goal: on a formed ring of 2-7 nodes with up to 30 % loss, duplication and reordering,
//! every submitted message is delivered at every node and every property holds.
//! Method: a seeded sweep of swarm-drawn runs, each judged by the spec.

use sim::{Limits, Options};

fn sweep(limits: &Limits, seeds: std::ops::Range<u64>) {
    let mut failures = Vec::new();
    let mut delivered = 0;
    for seed in seeds.clone() {
        let report = sim::run(Options::draw(seed, limits)).expect("run");
        delivered += report.stats.messages_delivered;
        if report.quiesced_at.is_none() || !report.passed() {
            failures.push(format!(
                "seed {seed}: {:?}",
                report.violations.iter().map(|v| v.to_string()).collect::<Vec<_>>()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} seeds failed:\n{}",
        failures.len(),
        seeds.count(),
        failures.join("\n")
    );
    assert!(delivered > 0);
}

#[test]
fn swarm_sweep_default_limits() {
    sweep(&Limits { safety_secs: 3, ..Limits::formed_no_faults() }, 1..1001);
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
