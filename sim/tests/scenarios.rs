//! Named scenarios: scripted fault sequences, each judged by every safety property of the
//! spec and, where the scenario ends healed, by convergence (LIVE-1: every running node in
//! the same regular configuration with exactly the running nodes as members, within the
//! convergence bound of `sim::run` after the last action) and delivery (LIVE-2).
//!
//! The `sNN_` tests reproduce, as closely as the simulator's actions allow, the historical
//! Corosync bugs of research/peers.md §4.3 (item NN). The others cover the basic fault
//! kinds. Each runs a few seeds (the seed draws the packet latencies, so the interleavings
//! differ). A failure prints the scenario script, the seed and the violations; rerun one
//! test with `cargo test -p sim --test scenarios NAME -- --nocapture`.
//!
//! Timing is Corosync's default (token 3000 ms plus 650 ms per node above two, consensus
//! 1.2 x token) unless a test says otherwise; times below are derived from it.

use sim::scenario::{Action, Scenario, ScenarioReport};
use spec::trace::{ConfKind, EventKind};

const SEEDS: std::ops::RangeInclusive<u64> = 1..=3;

fn token_ms(s: &Scenario) -> u64 {
    s.config().token.as_millis() as u64
}

fn consensus_ms(s: &Scenario) -> u64 {
    s.config().consensus.as_millis() as u64
}

/// No configuration lists a node as both joined and left (research/peers.md §4.3 item 9).
fn assert_no_node_joined_and_left(r: &ScenarioReport) {
    let Some(w) = &r.world else { return };
    for (i, e) in w.trace.events.iter().enumerate() {
        if let EventKind::Config { joined, left, .. } = &e.kind {
            let both: Vec<u32> = joined.iter().copied().filter(|n| left.contains(n)).collect();
            assert!(
                both.is_empty(),
                "event {i} at node {}: {both:?} both joined and left\n{}",
                e.node,
                r.describe()
            );
        }
    }
}

/// Regular configurations `node` installed at or after `after_ms`.
fn regs_after(r: &ScenarioReport, node: u32, after_ms: u64) -> usize {
    r.configs(node)
        .iter()
        .filter(|c| c.2 == ConfKind::Regular && c.0 >= totem_core::Time::from_millis(after_ms))
        .count()
}

// ------------------------------------------------------------------ basic fault kinds

// Goal: the four survivors of a crash in a 5-node ring reform without it.
#[test]
fn crash_one_of_five() {
    let s = Scenario::new(5).named("crash one of five").at(2000, Action::Crash(3)).expect_converged();
    for r in s.check_seeds(SEEDS) {
        assert_eq!(r.live, vec![1, 2, 4, 5]);
    }
}

// Goal: a clean leave is noticed and the others reform without the leaver.
#[test]
fn clean_leave() {
    let s = Scenario::new(5).named("clean leave").at(2000, Action::Leave(2)).expect_converged();
    for r in s.check_seeds(SEEDS) {
        assert_eq!(r.live, vec![1, 3, 4, 5]);
    }
}

// Goal: a clean leave is faster than a crash: the LEAVE spares the token-loss timeout.
#[test]
fn clean_leave_is_faster_than_token_loss() {
    let s = Scenario::new(5).named("leave is fast").at(2000, Action::Leave(2));
    let token = token_ms(&s);
    let s = s.expect_converged_within(token);
    s.check_seeds(SEEDS);
}

// Goal: both sides of a partition form their own ring, and merge back after the heal.
#[test]
fn partition_and_merge() {
    let s = Scenario::new(5).named("partition and merge");
    let heal = 2000 + s.bound_ms();
    let s = s
        .at(2000, Action::Partition(vec![vec![1, 2], vec![3, 4, 5]]))
        .at(heal, Action::Heal)
        .expect_converged();
    for r in s.check_seeds(SEEDS) {
        for (n, side) in [(1, vec![1, 2]), (2, vec![1, 2]), (3, vec![3, 4, 5]), (5, vec![3, 4, 5])] {
            let t = r.first_reg(n, &side, 2000);
            assert!(
                t.is_some_and(|t| t < totem_core::Time::from_millis(heal)),
                "node {n} formed {side:?}: {t:?}"
            );
        }
    }
}

// Goal: five nodes started together from nothing form one ring.
#[test]
fn cold_start_of_five() {
    let s = Scenario::new(5).named("cold start of five").cold_start().expect_converged();
    s.check_seeds(SEEDS);
}

// Goal: a node started late joins the running ring (formed and cold-started rings).
#[test]
fn late_joiner() {
    for cold in [false, true] {
        let mut s = Scenario::new(4).named(if cold { "late joiner, cold" } else { "late joiner, formed" });
        if cold {
            s = s.cold_start();
        }
        let start = 2000 + if cold { s.bound_ms() } else { 0 };
        let s = s.at(start, Action::Start(4)).expect_converged();
        for r in s.check_seeds(SEEDS) {
            assert_eq!(r.live, vec![1, 2, 3, 4]);
        }
    }
}

// Goal: a crashed node restarted with its persisted ring sequence rejoins, and never
// reuses a ring id (EVS-2c is checked across incarnations that kept their state).
#[test]
fn restart_with_state() {
    let s = Scenario::new(3).named("restart with state");
    let back = 2000 + s.epoch_ms();
    let s = s
        .at(2000, Action::Crash(2))
        .at(back, Action::Restart { node: 2, keep_state: true })
        .expect_converged();
    for r in s.check_seeds(SEEDS) {
        assert_eq!(r.live, vec![1, 2, 3]);
    }
}

// Goal: a node that lost its disk rejoins too (recorded StateLost, then Start).
#[test]
fn restart_without_state() {
    let s = Scenario::new(3).named("restart without state");
    let back = 2000 + s.epoch_ms();
    let s = s
        .at(2000, Action::Crash(2))
        .at(back, Action::Restart { node: 2, keep_state: false })
        .expect_converged();
    for r in s.check_seeds(SEEDS) {
        assert_eq!(r.live, vec![1, 2, 3]);
        assert_eq!(r.stats.state_wipes, 1);
    }
}

// Goal: a representative that lost its disk never gives a new ring the id of one it formed
// before (cluster seeds 470 and 517 of `sim cluster --duration 20` before the fix: EVS-2d,
// TOT-1, TOT-7). Method: cold start (ring sequences from scratch); once the ring formed,
// 2 and 3 pause while node 1 forms a ring of its own, crashes and comes back without its
// ring sequence; 2 and 3 resume still in the old ring, whose older sequence their JOINs
// carry. Every safety property, then convergence. Six seeds: the old numbering reused the
// singleton's id whenever the wiped node's fresh base fell below that sequence.
#[test]
fn wiped_representative_reuses_no_ring_id() {
    let s = Scenario::new(3).named("wiped representative reuses no ring id").cold_start();
    let (t, epoch, token) = (2000 + s.bound_ms(), s.epoch_ms(), token_ms(&s));
    let s = s
        .at(t, Action::Pause(2, 3 * epoch))
        .at(t, Action::Pause(3, 3 * epoch))
        .at(t + 2 * epoch, Action::Crash(1))
        .at(t + 2 * epoch + token / 5, Action::Restart { node: 1, keep_state: false })
        .expect_converged();
    for r in s.check_seeds(1..=6) {
        assert_eq!(r.live, vec![1, 2, 3]);
        assert_eq!(r.stats.state_wipes, 1);
    }
}

// Goal: a node killed and restarted at once (faster than anyone's token timeout) rejoins.
#[test]
fn instant_restart() {
    let s = Scenario::new(3)
        .named("instant restart")
        .at(2000, Action::Restart { node: 3, keep_state: true })
        .expect_converged();
    s.check_seeds(SEEDS);
}

// Goal: a pause shorter than the token timeout changes nothing visible.
#[test]
fn short_pause_is_harmless() {
    let s = Scenario::new(3).named("short pause");
    let short = token_ms(&s) / 3;
    let s = s.at(2000, Action::Pause(2, short)).expect_converged();
    s.check_seeds(SEEDS);
}

// ------------------------------------------------------------------ peers.md §4.3

// Item 1 (corosync#663, #736): a node paused for longer than the token while the others
// reform and keep sending, then resumed. Its old messages and the ones sent meanwhile must
// be delivered consistently (no loss, no corruption, no foreign origin).
#[test]
fn s01_pause_unpause_while_others_reform() {
    let s = Scenario::new(5).named("s01 pause/unpause while others reform");
    let pause = 2 * token_ms(&s) + consensus_ms(&s);
    let during = 2000 + token_ms(&s) + consensus_ms(&s) / 2;
    let s = s
        .at(1900, Action::Send { node: 3, count: 30 })
        .at(2000, Action::Pause(3, pause))
        .at(during, Action::Send { node: 1, count: 50 })
        .at(during, Action::Send { node: 4, count: 50 })
        .at(2000 + pause, Action::Send { node: 3, count: 20 })
        .expect_converged();
    s.check_seeds(SEEDS);
}

// Item 1, second reproducer (corosync#736, cpgverify with a restart loop): one node is
// restarted over and over while everyone sends.
#[test]
fn s01_restart_loop_under_traffic() {
    let mut s = Scenario::new(4).named("s01 restart loop").traffic(10, 4);
    let step = token_ms(&s) / 2;
    for k in 0..6u64 {
        s = s.at(2000 + k * step, Action::Restart { node: 2, keep_state: k % 2 == 0 });
    }
    let s = s.expect_converged();
    s.check_seeds(SEEDS);
}

// Item 2 (corosync#347): a paused node must learn that it was removed: after it resumes it
// delivers a transitional configuration without the nodes that moved on to another ring.
#[test]
fn s02_paused_node_learns_it_was_removed() {
    let s = Scenario::new(3).named("s02 paused node learns it was removed");
    let pause = 2 * (token_ms(&s) + consensus_ms(&s)) + 2000;
    let resume = 2000 + pause;
    // Convergence is due a bound after the resume.
    let s = s.at(2000, Action::Pause(3, pause)).expect_converged();
    for r in s.check_seeds(SEEDS) {
        assert!(r.first_reg(1, &[1, 2], 2000).is_some(), "{}", r.describe());
        let told = r.configs(3).iter().any(|(t, _, kind, _, members)| {
            *t >= totem_core::Time::from_millis(resume)
                && *kind == ConfKind::Transitional
                && !members.contains(&1)
                && !members.contains(&2)
        });
        assert!(
            told,
            "node 3 never delivered a transitional configuration without 1 and 2\n{}",
            r.describe()
        );
    }
}

// Item 4 (corosync#622): large packets held by a middlebox for longer than the token, no
// loss. Safety throughout; once the delay stops, the ring is whole again.
#[test]
fn s04_large_packets_delayed_beyond_token() {
    let s = Scenario::new(3).named("s04 large packets delayed beyond token");
    let extra = token_ms(&s) + 500;
    let off = 1000 + 2 * s.epoch_ms();
    let s = s
        .at(1000, Action::SlowLarge { min_bytes: 1000, extra_ms: extra })
        .at(1500, Action::SendLarge { node: 1, count: 5, bytes: 200_000 })
        .at(1500, Action::SendLarge { node: 2, count: 5, bytes: 100_000 })
        .at(off, Action::SlowLarge { min_bytes: 1000, extra_ms: 0 })
        .expect_converged();
    s.check_seeds(SEEDS);
}

// Item 5 (corosync#445): recovery with messages missing at some members, under loss: the
// old ring's messages must be recovered and the aru must converge (no retransmit storm
// that never ends).
#[test]
fn s05_recovery_with_missing_messages_converges() {
    let s = Scenario::new(4).named("s05 recovery under loss").loss(0.2).traffic(5, 8);
    let heal = 3000 + s.epoch_ms();
    let loss_off = heal + s.epoch_ms();
    let s = s
        .at(3000, Action::Partition(vec![vec![1, 2], vec![3, 4]]))
        .at(heal, Action::Heal)
        .at(loss_off, Action::Loss(0.0))
        .expect_converged();
    s.check_seeds(SEEDS);
}

// Item 6 (corosync#371, #4): flaky links (heavy loss, a one-way cut) while a second node
// starts under a large backlog: retransmit ranges must stay bounded and the ring must form.
#[test]
fn s06_retransmit_ranges_under_flaky_links_and_second_start() {
    let s = Scenario::new(3).named("s06 flaky links and second start").cold_start().loss(0.3);
    let join = 2000 + s.bound_ms();
    let fix = join + 2 * s.epoch_ms();
    let s = s
        .at(1000, Action::SendLarge { node: 1, count: 20, bytes: 300_000 })
        .at(join, Action::Start(2))
        .at(join, Action::OneWay { from: 1, to: 3 })
        .at(join + 100, Action::Start(3))
        .at(join + 200, Action::SendLarge { node: 2, count: 10, bytes: 200_000 })
        .at(fix, Action::Heal)
        .at(fix, Action::Loss(0.0))
        .expect_converged();
    s.check_seeds(SEEDS);
}

// Item 7 (corosync#35): the commit token of a large ring, with the membership changing
// while it circulates (crashes and a partition during the gather).
#[test]
fn s07_commit_token_with_many_members() {
    let s = Scenario::new(12).named("s07 commit token of a 12-node ring").cold_start().traffic(100, 2);
    let t0 = s.bound_ms();
    let j = s.config().join.as_millis() as u64;
    // The partition, second crash and heal land while the survivors gather after the
    // first crash's token loss.
    let g = t0 + token_ms(&s);
    let s = s
        .at(t0, Action::Crash(5))
        .at(g + 2 * j, Action::Partition(vec![(1..=6).collect(), (7..=12).collect()]))
        .at(g + 4 * j, Action::Crash(9))
        .at(g + 6 * j, Action::Heal)
        .at(g + 8 * j, Action::Restart { node: 5, keep_state: true })
        .expect_converged();
    for r in s.check_seeds(1..=2) {
        assert_eq!(r.live.len(), 11);
    }
}

// Item 9 (corosync#351, PR #468, #755): merging after a partition delivers consistent
// configurations: nobody is both joined and left, and each node reaches the merged ring in
// at most two regular configurations.
#[test]
fn s09_merge_after_partition_consistent_configs() {
    let s = Scenario::new(5).named("s09 merge after partition");
    let heal = 2000 + s.bound_ms();
    let s = s
        .at(2000, Action::Partition(vec![vec![1, 2], vec![3, 4, 5]]))
        .at(heal, Action::Heal)
        .expect_converged();
    for r in s.check_seeds(SEEDS) {
        assert_no_node_joined_and_left(&r);
        for n in 1..=5 {
            let regs = regs_after(&r, n, heal);
            assert!(
                (1..=2).contains(&regs),
                "node {n} installed {regs} regular configurations after the heal"
            );
        }
    }
}

// Item 10 (corosync#659, #750, #760): A and B cannot talk, both reach C. Corosync flaps;
// we only require safety while the cut lasts.
#[test]
fn s10_asymmetric_cut_with_third_reachable() {
    let s = Scenario::new(3).named("s10 A-B cut, C reaches both");
    let end = 2000 + 3 * s.bound_ms();
    let s = s.at(2000, Action::Cut(1, 2)).run_for(end);
    s.check_seeds(SEEDS);
}

// Item 10, one-way variant: A's packets do not reach B, B's reach A; C reaches both.
#[test]
fn s10_one_way_cut_with_third_reachable() {
    let s = Scenario::new(3).named("s10 one-way cut");
    let end = 2000 + 3 * s.bound_ms();
    let s = s.at(2000, Action::OneWay { from: 1, to: 2 }).run_for(end);
    s.check_seeds(SEEDS);
}

// Item 10, then healed: whatever state the flapping left, the ring becomes whole.
#[test]
fn s10_asymmetric_cut_then_heal_converges() {
    let s = Scenario::new(3).named("s10 cut then heal");
    let heal = 2000 + 2 * s.bound_ms();
    let s = s.at(2000, Action::Cut(1, 2)).at(heal, Action::Heal).expect_converged();
    s.check_seeds(SEEDS);
}

// Item 13 (corosync#182): after a split the minority must form its ring within the same
// bound as the majority (a slow minority means two owners of the same resources).
#[test]
fn s13_minority_forms_as_fast_as_majority() {
    let s = Scenario::new(5).named("s13 minority and majority form");
    let bound = s.bound_ms();
    let heal = 2000 + bound + 1000;
    let s = s
        .at(2000, Action::Partition(vec![vec![1, 2], vec![3, 4, 5]]))
        .at(heal, Action::Heal)
        .expect_converged();
    for r in s.check_seeds(SEEDS) {
        let by = totem_core::Time::from_millis(2000 + bound);
        for n in [1, 2] {
            let t = r.first_reg(n, &[1, 2], 2000);
            assert!(
                t.is_some_and(|t| t <= by),
                "minority node {n} formed at {t:?}, bound {by}\n{}",
                r.describe()
            );
        }
        for n in [3, 4, 5] {
            let t = r.first_reg(n, &[3, 4, 5], 2000);
            assert!(
                t.is_some_and(|t| t <= by),
                "majority node {n} formed at {t:?}, bound {by}\n{}",
                r.describe()
            );
        }
    }
}

// Item 21 (kronosnet#218, PR corosync#466): all nodes cold-start together. They must form
// one ring without a storm of configurations (at most three regular configurations each).
#[test]
fn s21_cold_start_storm() {
    let s = Scenario::new(8).named("s21 cold start storm").cold_start().expect_converged();
    for r in s.check_seeds(SEEDS) {
        for n in 1..=8 {
            let regs = r.reg_count(n);
            assert!(regs <= 3, "node {n} installed {regs} regular configurations\n{}", r.describe());
        }
    }
}

// Item 24 (corosync#6): stopping one node (clean leave), then another shortly after, must
// not split the rest into several rings that keep re-forming.
#[test]
fn s24_no_split_after_clean_stops() {
    let s = Scenario::new(6).named("s24 stops do not split the cluster");
    let second = 2000 + s.config().join.as_millis() as u64 * 3;
    let s = s.at(2000, Action::Leave(3)).at(second, Action::Leave(5)).expect_converged();
    for r in s.check_seeds(SEEDS) {
        assert_eq!(r.live, vec![1, 2, 4, 6]);
        for n in [1, 2, 4, 6] {
            let regs = regs_after(&r, n, 2000);
            assert!(regs <= 3, "node {n} installed {regs} regular configurations after the stops");
        }
    }
}

// ------------------------------------------------------------------ harness checks

// Goal: the harness itself: a formed ring with traffic and no fault passes every check,
// converged from the start, with everything delivered.
#[test]
fn formed_ring_without_faults_passes() {
    let s = Scenario::new(4).named("formed ring, no faults").run_for(5000).expect_converged_within(1000);
    for r in s.check_seeds(SEEDS) {
        assert!(r.converged.is_some());
        assert!(r.stats.messages_delivered > 100);
    }
}

// Goal: the script prints one line per action, in the scenario language.
#[test]
fn script_is_one_line_per_action() {
    let s = Scenario::new(3)
        .named("script")
        .cold_start()
        .at(2000, Action::Partition(vec![vec![1, 2], vec![3]]))
        .at(4000, Action::Heal)
        .at(5000, Action::Restart { node: 3, keep_state: false })
        .expect_converged_within(20_000);
    let script = s.script();
    assert!(script.contains("start cold\n"), "{script}");
    assert!(script.contains("at 2000ms partition 1,2 | 3\n"), "{script}");
    assert!(script.contains("at 4000ms heal\n"), "{script}");
    assert!(script.contains("at 5000ms restart 3 wipe\n"), "{script}");
    assert!(script.contains("expect converged within 20000ms"), "{script}");
}
