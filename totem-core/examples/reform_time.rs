//! Simulated time from a crash (or a clean leave) to the survivors' new regular
//! configuration, for a few cluster sizes and base tokens, on the lossless loopback driver.
//! Compare with token + consensus (study §1.8.1).
//!
//! cargo run --release -p totem-core --example reform_time

use totem_core::loopback::Loopback;
use totem_core::{Config, TimingBase};

fn main() {
    println!(
        "{:>5} {:>9} {:>10} {:>11} {:>17} {:>14}",
        "nodes", "token_ms", "token_eff", "consensus", "crash->REG (ms)", "leave->REG (ms)"
    );
    for base_ms in [3000u64, 1000] {
        for nodes in [2usize, 3, 5] {
            let base = TimingBase {
                nodes,
                token: core::time::Duration::from_millis(base_ms),
                ..TimingBase::default()
            };
            let config = Config::for_cluster(base);
            let mut lb = Loopback::new(nodes, config.clone(), false).expect("config");
            lb.run_until_delivered(0, 10);
            let t0 = lb.now;
            lb.crash(nodes - 1);
            assert!(lb.run_until_converged(10_000_000));
            let crash = lb.now.saturating_since(t0).as_millis();
            let mut lb = Loopback::new(nodes, config.clone(), false).expect("config");
            let t0 = lb.now;
            lb.shutdown(nodes - 1);
            assert!(lb.run_until_converged(10_000_000));
            let leave = lb.now.saturating_since(t0).as_millis();
            println!(
                "{nodes:>5} {base_ms:>9} {:>10} {:>11} {crash:>17} {leave:>14}",
                config.token.as_millis(),
                config.consensus.as_millis()
            );
        }
    }
}
