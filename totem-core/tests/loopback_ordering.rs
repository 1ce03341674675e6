//! Directed tests of ordering on a lossless formed ring, through the loopback driver.

use totem_core::loopback::Loopback;
use totem_core::{Config, Guarantee};

fn payload(node: usize, i: usize, size: usize) -> Vec<u8> {
    let mut v = vec![(node * 31 + i) as u8; size.max(8)];
    v[..4].copy_from_slice(&(node as u32).to_le_bytes());
    v[4..8].copy_from_slice(&(i as u32).to_le_bytes());
    v
}

// Goal: every node delivers every message, byte-identical, in one total order, for sizes
// from 1 byte to 1 MiB and both guarantees. Method: submit a mix from every node of a
// 3-node ring, run to completion, compare the delivery sequences.
#[test]
fn three_nodes_agree_on_one_order() {
    let mut lb = Loopback::new(3, Config::default(), true).expect("config");
    let sizes = [1usize, 8, 64, 1000, 1308, 1309, 5000, 70_000, 1024 * 1024];
    let mut count = 0u64;
    for (i, &size) in sizes.iter().enumerate() {
        for node in 0..3 {
            let g = if (i + node) % 2 == 0 { Guarantee::Agreed } else { Guarantee::Safe };
            let p = if size == 1 { vec![node as u8] } else { payload(node, i, size) };
            while lb.submit(node, &p, g).is_err() {
                lb.step();
            }
            count += 1;
        }
    }
    assert!(lb.run_until_delivered(count, 10_000_000));
    let first: Vec<_> = lb.delivered[0].iter().map(|d| (d.origin, d.seq, d.payload.clone())).collect();
    assert_eq!(first.len() as u64, count);
    for other in &lb.delivered[1..] {
        let seq: Vec<_> = other.iter().map(|d| (d.origin, d.seq, d.payload.clone())).collect();
        assert_eq!(seq, first, "same order, same bytes everywhere");
    }
    // Each sender's messages come out in the order it sent them, byte-identical.
    for node in 0..3u32 {
        let mine: Vec<_> =
            first.iter().filter(|(o, _, _)| o.0 == node + 1).map(|(_, _, p)| p.len()).collect();
        let expected: Vec<usize> = sizes.iter().map(|&s| if s == 1 { 1 } else { s.max(8) }).collect();
        assert_eq!(mine, expected);
    }
}

// Goal: a single node on its own ring delivers its own messages (the token loops to itself).
#[test]
fn singleton_ring_delivers() {
    let mut lb = Loopback::new(1, Config::default(), true).expect("config");
    for i in 0..100 {
        lb.submit(0, &payload(0, i, 100), Guarantee::Safe).expect("room");
    }
    assert!(lb.run_until_delivered(100, 1_000_000));
}

// Goal: an idle ring holds its token, and a new message releases it (token hold cancel).
#[test]
fn idle_ring_holds_token_and_releases_it_on_send() {
    let mut lb = Loopback::new(3, Config::default(), true).expect("config");
    for _ in 0..10_000 {
        lb.step();
    }
    let idle_time = lb.now;
    lb.submit(2, b"wake up", Guarantee::Agreed).expect("room");
    assert!(lb.run_until_delivered(1, 100_000));
    assert_eq!(lb.now, idle_time, "delivered without waiting for the hold timer");
    assert!(idle_time.0 > 0, "the ring idled on hold timers");
}

// Goal: nodes starting from nothing form one ring of all of them, and then order messages.
// Method: cold-start 4 nodes on the lossless loopback driver, run, inspect the last regular
// configuration of each node.
#[test]
fn cold_start_forms_one_ring() {
    let mut lb = Loopback::cold(4, Config::default(), true).expect("config");
    for _ in 0..200_000 {
        if !lb.step() {
            break;
        }
        let all_in_one = lb.nodes.iter().all(|n| {
            n.status().members.len() == 4 && n.status().state == totem_core::srp::State::Operational
        });
        if all_in_one {
            break;
        }
    }
    for (i, n) in lb.nodes.iter().enumerate() {
        let s = n.status();
        assert_eq!(
            s.members.len(),
            4,
            "node {} ended in {:?} ring {:?} with {:?}; configs {:?}",
            i + 1,
            s.state,
            s.ring_id,
            s.members,
            lb.configs[i]
        );
    }
    for i in 0..4 {
        lb.submit(i, format!("hello from {i}").as_bytes(), Guarantee::Safe).expect("room");
    }
    assert!(lb.run_until_delivered(4, 1_000_000));
    let orders: Vec<Vec<_>> =
        lb.delivered.iter().map(|d| d.iter().map(|x| x.payload.clone()).collect()).collect();
    assert!(orders.iter().all(|o| o == &orders[0]));
}
