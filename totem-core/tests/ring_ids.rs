//! Directed regression tests: a ring id names one ring, also when a node comes back without
//! its persisted ring sequence.
//!
//! A node that lost its disk does not know which ring sequences it used as representative.
//! It adopts the highest sequence it hears in JOINs; if every node that knew its last rings
//! is gone or was paused since, that is a sequence from before them, and the next ring it
//! forms used to get an id its earlier incarnation had already given to another ring (the
//! cluster simulator found it: seed 470 of `sim cluster --duration 20`, EVS-2d, and seed 517,
//! TOT-7, with the code before the fix). Every incarnation now proposes ring sequences only
//! in a residue class of its own (see `totem_core::srp`), so the two cannot meet.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use totem_core::loopback::Loopback;
use totem_core::{Config, ConfigKind, Node, NodeId, RingId};

/// Far above any ring sequence base a node without persisted state drew before the fix
/// (below 2^40), so that the old code failed for every seed, not by chance.
const HIGH_SEQ: u64 = 1 << 41;

fn config(seed: u64) -> Config {
    Config { probes: true, rng_seed: seed, ..Config::default() }
}

/// Nodes 1..=n on ring (1, HIGH_SEQ), each with its own generator seed.
fn ring_of(n: u32, seed: u64) -> Loopback {
    let members: Vec<NodeId> = (1..=n).map(NodeId).collect();
    let ring = RingId::new(NodeId(1), HIGH_SEQ);
    let nodes = members
        .iter()
        .map(|&id| {
            Node::new_on_ring(config(seed.wrapping_mul(31).wrapping_add(u64::from(id.0))), id, ring, &members)
        })
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    Loopback::from_nodes(nodes, true).unwrap()
}

/// Every ring id that was committed to or delivered as a regular configuration, by any
/// incarnation of any node, names one member set.
fn assert_ring_ids_name_one_ring(lb: &Loopback) {
    let mut seen: BTreeMap<RingId, (Vec<NodeId>, String)> = BTreeMap::new();
    let regular = lb.configs.iter().enumerate().flat_map(|(i, cs)| {
        cs.iter()
            .filter(|c| c.kind == ConfigKind::Regular)
            .map(move |c| (c.ring_id, c.members.clone(), format!("REG at node index {i}")))
    });
    let commits = lb.commits.iter().enumerate().flat_map(|(i, cs)| {
        cs.iter().map(move |(r, m)| (*r, m.clone(), format!("commit at node index {i}")))
    });
    for (ring, members, what) in regular.chain(commits) {
        if let Some((earlier, where_)) = seen.get(&ring) {
            assert_eq!(earlier, &members, "ring {ring:?}: {where_} has {earlier:?}, {what} has {members:?}");
        } else {
            seen.insert(ring, (members, what));
        }
    }
}

/// Restart node index `i` without its persisted ring sequence, with a fresh generator
/// seed (as a runtime seeds every start).
fn restart_wiped(lb: &mut Loopback, i: usize, seed: u64) {
    let id = lb.nodes[i].id();
    lb.restart(i, Node::new(config(seed), id, None).unwrap());
}

// Goal: the shape of cluster seed 470. Node 1, the representative, forms a ring of its own
// while its ring-mates are paused, loses its disk, and comes back to them: they still
// believe in the old ring and their JOINs carry its (older) sequence. The ring the three
// then form must not get the id of node 1's singleton ring. Method: for 20 seeds, pause 2
// and 3, let 1 form its singleton, wipe and restart 1, resume 2 and 3, converge; every ring
// id names one member set.
#[test]
fn wiped_representative_does_not_reuse_its_singleton_ring_id() {
    for seed in 1..=20u64 {
        let mut lb = ring_of(3, seed);
        lb.alive[1] = false;
        lb.alive[2] = false;
        assert!(lb.run_until_converged(1_000_000), "seed {seed}: node 1 forms a ring of its own");
        let singleton = lb.configs[0].last().unwrap().clone();
        assert_eq!(singleton.members, vec![NodeId(1)]);
        assert!(singleton.ring_id.seq > HIGH_SEQ);
        restart_wiped(&mut lb, 0, 1000 + seed);
        lb.alive[1] = true;
        lb.alive[2] = true;
        assert!(lb.run_until_converged(1_000_000), "seed {seed}: the three converge");
        let last = lb.configs[1].last().unwrap();
        assert_eq!(last.members, vec![NodeId(1), NodeId(2), NodeId(3)]);
        assert_eq!(last.ring_id.rep, NodeId(1));
        assert_ring_ids_name_one_ring(&lb);
    }
}

// Goal: the shape of cluster seed 517. The representative creates a commit token for a
// ring that is never installed (its only other member crashes), then loses its disk and
// forms a ring with a ring-mate that was paused: that ring's id must differ from the
// abandoned commit's (a late copy of the old commit token could still reach a node).
// Method: for 20 seeds, pause 3; step until node 1 commits to a ring of {1, 2}; crash 2
// and 1 at once; restart 1 wiped; resume 3; converge; every ring id (committed or
// delivered) names one member set.
#[test]
fn wiped_representative_does_not_reuse_an_abandoned_commit_ring_id() {
    for seed in 1..=20u64 {
        let mut lb = ring_of(3, seed);
        lb.alive[2] = false;
        let mut steps = 0u32;
        while !lb.commits[0].iter().any(|(_, m)| m == &vec![NodeId(1), NodeId(2)]) {
            assert!(lb.step() && steps < 1_000_000, "seed {seed}: node 1 never commits to {{1, 2}}");
            steps += 1;
        }
        lb.crash(1);
        restart_wiped(&mut lb, 0, 1000 + seed);
        lb.alive[2] = true;
        assert!(lb.run_until_converged(1_000_000), "seed {seed}: 1 and 3 converge");
        assert_eq!(lb.configs[2].last().unwrap().members, vec![NodeId(1), NodeId(3)]);
        assert_ring_ids_name_one_ring(&lb);
    }
}

// Goal: a restart that keeps the persisted ring sequence never goes back, whatever the new
// incarnation's seed: its first ring, and every later one, has a higher sequence than any
// ring it was in before. Method: a lone node forms rings across 10 restarts with the
// persisted value, each with a new seed; the regular ring sequences strictly increase.
#[test]
fn restarts_with_the_persisted_sequence_keep_ring_ids_increasing() {
    let mut lb = Loopback::cold(1, config(7), true).unwrap();
    assert!(lb.run_until_converged(100_000));
    for restart in 0..10u64 {
        let persisted = lb.nodes[0].status().ring_id.seq;
        lb.crash(0);
        lb.restart(0, Node::new(config(100 + restart), NodeId(1), Some(persisted)).unwrap());
        assert!(lb.run_until_converged(100_000));
    }
    let seqs: Vec<u64> =
        lb.configs[0].iter().filter(|c| c.kind == ConfigKind::Regular).map(|c| c.ring_id.seq).collect();
    assert_eq!(seqs.len(), 11);
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
}
