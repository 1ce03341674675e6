//! Cost of packet protection: seal, open, and seal+open of 64 B, 1 KiB and 16 KiB payloads
//! with every `crypto_cipher`: AES-256-SIV (the default), AES-128-SIV and AES-256-GCM-SIV
//! (the faster choice for large messages), plus the per-sender key derivation a receiver
//! pays once per sender incarnation.
//!
//! Compare with the per-message cost of the protocol in `totem-core`'s throughput
//! benchmark; `cargo bench -p node --bench crypto -- --quick` gives a rough picture in
//! under a minute.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use totem_core::NodeId;
use totem_node::crypto::{BootId, Cipher, Keyring, Opener, Protection, Sealer};

const SIZES: [usize; 3] = [64, 1024, 16 * 1024];

fn protection(cipher: Cipher) -> Protection {
    let key: Vec<u8> = (0..256u32).map(|i| i as u8).collect();
    Protection::Keyed(Keyring::from_authkey_with(&key, cipher).expect("a 256-byte key is valid"))
}

fn bench(c: &mut Criterion) {
    for cipher in Cipher::ALL {
        let p = protection(cipher);
        let mut g = c.benchmark_group(format!("crypto/{cipher}"));
        g.warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
        for size in SIZES {
            let payload = vec![0x5au8; size];
            g.throughput(Throughput::Bytes(size as u64));

            let mut sealer = Sealer::new(&p, NodeId(1), BootId(1));
            let mut out = Vec::with_capacity(size + 64);
            g.bench_with_input(BenchmarkId::new("seal", size), &size, |b, _| {
                b.iter(|| sealer.seal_into(black_box(&payload), &mut out).expect("counter not exhausted"))
            });

            // Open needs a fresh counter each time (the replay window rejects repeats), so
            // the packets are sealed in the untimed setup.
            let mut sealer = Sealer::new(&p, NodeId(2), BootId(1));
            let mut opener = Opener::new(p.clone());
            g.bench_with_input(BenchmarkId::new("open", size), &size, |b, _| {
                b.iter_batched_ref(
                    || sealer.seal(&payload).expect("counter not exhausted"),
                    |packet| opener.open_in_place(black_box(packet)).expect("authentic"),
                    BatchSize::SmallInput,
                )
            });

            let mut sealer = Sealer::new(&p, NodeId(3), BootId(1));
            let mut opener = Opener::new(p.clone());
            g.bench_with_input(BenchmarkId::new("seal+open", size), &size, |b, _| {
                b.iter(|| {
                    sealer.seal_into(black_box(&payload), &mut out).expect("counter not exhausted");
                    opener.open_in_place(&mut out).expect("authentic").payload.len()
                })
            });
        }
        g.finish();
    }

    // A token visit's worth of frames: sealed one by one, and as one batch (AES-SIV's MAC
    // chains side by side, `totem_node::siv_batch`); the same bytes either way. Also a small
    // visit: one multicast and the token.
    for (count, size) in [(16usize, 16 * 1024usize), (2, 100)] {
        batches(c, count, size);
    }

    // A new sender incarnation: key derivation plus one open.
    for cipher in [Cipher::Aes256Siv, Cipher::Aes256GcmSiv] {
        let p = protection(cipher);
        c.bench_function(&format!("crypto/{cipher}/first packet of a new sender"), |b| {
            let mut boot = 0u64;
            b.iter_batched(
                || {
                    boot += 1;
                    Sealer::new(&p, NodeId(4), BootId(boot)).seal(&[0u8; 64]).expect("counter not exhausted")
                },
                |packet| Opener::new(p.clone()).open(black_box(&packet)).expect("authentic"),
                BatchSize::SmallInput,
            )
        });
    }
}

fn batches(c: &mut Criterion, count: usize, size: usize) {
    let p = protection(Cipher::Aes256Siv);
    let mut g = c.benchmark_group(format!("crypto/aes256-siv/{count} frames of {size} B"));
    g.warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    g.throughput(Throughput::Bytes((count * size) as u64));
    let mut sealer = Sealer::new(&p, NodeId(5), BootId(1));
    let room = sealer.overhead();
    let frames: Vec<Vec<u8>> = (0..count).map(|i| [vec![0; room], vec![i as u8; size]].concat()).collect();
    g.bench_function("seal one by one", |b| {
        b.iter_batched_ref(
            || frames.clone(),
            |frames| {
                for f in frames.iter_mut() {
                    sealer.seal_into(black_box(&f[room..]), &mut Vec::new()).expect("counter not exhausted");
                }
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("seal as a batch", |b| {
        b.iter_batched_ref(
            || frames.clone(),
            |frames| sealer.seal_batch(black_box(frames)).expect("counter not exhausted"),
            BatchSize::SmallInput,
        )
    });
    let mut opener = Opener::new(p.clone());
    g.bench_function("open as a batch", |b| {
        b.iter_batched_ref(
            || {
                let mut f = frames.clone();
                sealer.seal_batch(&mut f).expect("counter not exhausted");
                f
            },
            |frames| opener.open_batch(black_box(frames)).len(),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
