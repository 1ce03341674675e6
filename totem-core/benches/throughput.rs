//! Core throughput: application messages totally ordered per CPU-second in a 3-node
//! in-memory ring without loss. One thread runs all three cores, so elements per second
//! here is messages per CPU-second with every core's work counted. Target: >= 1,000,000
//! 64-byte messages per CPU-second.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use totem_core::loopback::Loopback;
use totem_core::{Config, Guarantee, SubmitError};

const MESSAGES: u64 = 20_000;

/// Submit `MESSAGES` messages round-robin across the nodes and run until every node has
/// delivered all of them.
fn order(size: usize, guarantee: Guarantee) -> u64 {
    let mut lb = Loopback::new(3, Config::default(), false).expect("valid config");
    let payload = vec![0xA5u8; size];
    let mut submitted = 0u64;
    let mut node = 0;
    let mut steps = 0u64;
    while submitted < MESSAGES {
        match lb.submit(node, &payload, guarantee) {
            Ok(()) => {
                submitted += 1;
                node = (node + 1) % 3;
            }
            Err(SubmitError::TryAgain) => {
                for _ in 0..64 {
                    lb.step();
                    steps += 1;
                }
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(lb.run_until_delivered(MESSAGES, 100_000_000), "everything is delivered");
    black_box(steps)
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("ring3");
    group.sample_size(10);
    group.throughput(Throughput::Elements(MESSAGES));
    for size in [64usize, 1024] {
        group.bench_function(format!("agreed_{size}B"), |b| b.iter(|| order(size, Guarantee::Agreed)));
    }
    group.bench_function("safe_64B", |b| b.iter(|| order(64, Guarantee::Safe)));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
