//! The checkers never panic, whatever the trace: random garbage is judged, not crashed on.

use spec::{
    ConfKind, EventKind, Guarantee, LivenessWindow, MsgId, Params, ProtoState, Ring, Slot, TimingBounds,
    Trace, check_liveness, check_safety, tot10_timing,
};

/// A small deterministic generator (xorshift64*), so the test needs no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn nodes(&mut self) -> Vec<u32> {
        (0..self.below(4)).map(|_| self.below(4) as u32).collect()
    }

    fn ring(&mut self) -> Ring {
        Ring::new(self.below(4) as u32, self.below(4))
    }

    fn slot(&mut self) -> Slot {
        Slot::new(self.ring(), if self.below(10) == 0 { u32::MAX } else { self.below(5) as u32 })
    }

    fn state(&mut self) -> ProtoState {
        [ProtoState::Operational, ProtoState::Gather, ProtoState::Commit, ProtoState::Recovery]
            [self.below(4) as usize]
    }

    fn small(&mut self) -> u32 {
        if self.below(20) == 0 { u32::MAX } else { self.below(6) as u32 }
    }
}

fn random_trace(rng: &mut Rng, len: usize) -> Trace {
    let mut t = Trace::new();
    for _ in 0..len {
        let node = rng.below(4) as u32;
        let incarnation = rng.below(3) as u32;
        let guarantee = if rng.below(2) == 0 { Guarantee::Agreed } else { Guarantee::Safe };
        let msg = MsgId::new(rng.below(4) as u32, rng.below(3) as u32, rng.below(4));
        let kind = match rng.below(13) {
            0 => EventKind::Start,
            1 => EventKind::Crash,
            2 => EventKind::Send { msg, guarantee },
            3 => EventKind::Config {
                kind: if rng.below(2) == 0 { ConfKind::Transitional } else { ConfKind::Regular },
                ring: rng.ring(),
                prev_ring: if rng.below(2) == 0 { None } else { Some(rng.ring()) },
                members: rng.nodes(),
                left: rng.nodes(),
                joined: rng.nodes(),
            },
            4 => EventKind::Deliver { msg, slot: rng.slot(), guarantee },
            5 => EventKind::Assign { slot: rng.slot() },
            6 => EventKind::Receive { slot: rng.slot() },
            7 => EventKind::Release { ring: rng.ring(), up_to: rng.small() },
            8 => EventKind::StateLost,
            9 => EventKind::Leave,
            10 => EventKind::State { from: rng.state(), to: rng.state() },
            11 => EventKind::Commit {
                ring: rng.ring(),
                members: rng.nodes(),
                proc_minus_failed: rng.nodes(),
                via_consensus: rng.below(2) == 0,
                agreed: rng.nodes(),
            },
            _ => EventKind::Token {
                ring: rng.ring(),
                token_seq: rng.small(),
                seq: rng.small(),
                aru: rng.small(),
                aru_addr: rng.below(4) as u32,
                rtr: (0..rng.below(40)).map(|_| rng.slot()).collect(),
                sent_new: rng.small(),
                retransmitted: rng.small(),
            },
        };
        let time = rng.below(1000);
        t.push(time, node, incarnation, kind);
    }
    t
}

// Goal: no checker panics on arbitrary traces (every event kind, including the state,
// commit, leave and state-loss probes), and output is deterministic.
// Method: 300 random traces of up to 300 events over tiny id spaces (so that every
// collision and edge value, including u32::MAX, occurs); run everything twice.
#[test]
fn random_traces_do_not_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let params = Params { max_messages: 3, window_size: 4 };
    let mut flagged = 0;
    for _ in 0..300 {
        let len = rng.below(300) as usize;
        let trace = random_trace(&mut rng, len);
        let window =
            LivenessWindow { healed_at: rng.below(1000), deadline: rng.below(1000), live: rng.nodes() };
        let a = check_safety(&trace, &params);
        let b = check_safety(&trace, &params);
        assert_eq!(a, b);
        let c = check_liveness(&trace, &params, &window);
        assert_eq!(c, check_liveness(&trace, &params, &window));
        let bounds =
            TimingBounds { crash_to_regular_ns: rng.below(300), leave_to_regular_ns: rng.below(300) };
        let d = tot10_timing::check(&trace, &bounds);
        assert_eq!(d, tot10_timing::check(&trace, &bounds));
        for v in c.iter().chain(&d) {
            assert!(v.events.iter().all(|&e| e < trace.len()), "{v}");
        }
        flagged += usize::from(!a.is_empty());
        for v in &a {
            assert!(v.events.iter().all(|&e| e < trace.len()), "{v}");
        }
    }
    assert!(flagged > 250);
}
