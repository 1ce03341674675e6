//! Directed tests of membership on the lossless loopback driver: failure detection, clean
//! leave and the EVS configuration sequence.

use core::time::Duration;
use totem_core::loopback::Loopback;
use totem_core::{Config, ConfigKind, Guarantee, NodeId};

fn ids(v: &[u32]) -> Vec<NodeId> {
    v.iter().copied().map(NodeId).collect()
}

// Goal: after a crash, the survivors install a transitional configuration without the
// crashed node, then a regular one, within token + consensus (study §1.8.1).
#[test]
fn crash_is_detected_within_token_plus_consensus() {
    let config = Config::default();
    let bound = config.token + config.consensus + Duration::from_millis(500);
    let mut lb = Loopback::new(4, config, true).expect("config");
    for i in 0..4 {
        lb.submit(i, b"before the crash", Guarantee::Agreed).expect("room");
    }
    assert!(lb.run_until_delivered(4, 100_000));
    let crashed_at = lb.now;
    lb.crash(3);
    assert!(lb.run_until_converged(1_000_000), "the survivors form a ring");
    let elapsed = lb.now.saturating_since(crashed_at);
    assert!(elapsed <= bound, "reformed after {elapsed:?}, bound {bound:?}");
    assert!(elapsed >= Duration::from_millis(3000), "not before the token timeout: {elapsed:?}");
    for i in 0..3 {
        let configs = &lb.configs[i];
        let n = configs.len();
        let (trans, reg) = (&configs[n - 2], &configs[n - 1]);
        assert_eq!(trans.kind, ConfigKind::Transitional);
        assert_eq!(trans.members, ids(&[1, 2, 3]));
        assert_eq!(trans.left, ids(&[4]));
        assert_eq!(trans.ring_id, reg.ring_id, "a transitional configuration carries the new ring id");
        assert_eq!(trans.prev_ring_id, configs[0].ring_id.into());
        assert_eq!(reg.kind, ConfigKind::Regular);
        assert_eq!(reg.members, ids(&[1, 2, 3]));
        assert!(reg.joined.is_empty());
        assert!(reg.ring_id.seq > configs[0].ring_id.seq);
        assert_eq!(reg.ring_id.rep, NodeId(1));
    }
    // The new ring orders messages.
    lb.submit(1, b"after", Guarantee::Safe).expect("room");
    assert!(lb.run_until_delivered(5, 100_000) || lb.delivered_count[..3].iter().all(|&c| c >= 5));
}

// Goal: a clean leave reconfigures the others within a few join periods, not a token
// timeout.
#[test]
fn clean_leave_is_fast() {
    let config = Config::default();
    let token = config.token;
    let mut lb = Loopback::new(3, config, true).expect("config");
    assert!(lb.run_until_delivered(0, 1000));
    let left_at = lb.now;
    lb.shutdown(1);
    assert!(lb.run_until_converged(1_000_000));
    let elapsed = lb.now.saturating_since(left_at);
    assert!(elapsed < token, "reformed after {elapsed:?}, a token timeout is {token:?}");
    for i in [0usize, 2] {
        let last = lb.configs[i].last().expect("configs");
        assert_eq!(last.members, ids(&[1, 3]));
    }
}

// Goal: every node delivers the same messages in the old ring and the transitional
// configuration, and messages of the crashed node are never delivered after the
// transitional configuration (EVS failure atomicity and gap rule).
#[test]
fn messages_around_a_crash_are_delivered_consistently() {
    let mut lb = Loopback::new(3, Config::default(), true).expect("config");
    for round in 0..50u32 {
        for i in 0..3 {
            let _ = lb.submit(i, &round.to_le_bytes(), Guarantee::Safe);
        }
        lb.step();
    }
    lb.crash(2);
    assert!(lb.run_until_converged(1_000_000));
    let seen: Vec<Vec<_>> = (0..2)
        .map(|i| lb.delivered[i].iter().map(|d| (d.origin, d.ring_id, d.seq, d.payload.clone())).collect())
        .collect();
    assert_eq!(seen[0], seen[1], "survivors delivered identical sequences");
}

// Goal: with send_join jitter, nodes still form one ring (JOINs are sent from a timer).
#[test]
fn cold_start_with_send_join_jitter() {
    let config = Config { send_join: Duration::from_millis(80), ..Config::default() };
    let mut lb = Loopback::cold(5, config, false).expect("config");
    assert!(lb.run_until_converged(2_000_000));
}
