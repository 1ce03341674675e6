//! The checkers never panic, whatever the trace: random garbage is judged, not crashed on.

use spec::{
    ConfKind, CpgReason, CpgResult, EventKind, Guarantee, LivenessWindow, MsgId, Params, Process, ProtoState,
    Ring, Slot, TimingBounds, Trace, check_liveness, check_safety, tot10_timing,
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

    /// A group name: mostly "a", "b" or "a\0", sometimes empty, 128 or 129 bytes.
    fn group(&mut self) -> Vec<u8> {
        match self.below(12) {
            0 => Vec::new(),
            1 => vec![b'x'; 128],
            2 => vec![b'x'; 129],
            3 => b"a\0".to_vec(),
            k => vec![b'a' + (k % 2) as u8],
        }
    }

    fn process(&mut self) -> Process {
        Process::new(self.below(4) as u32, self.below(3) as u32)
    }

    fn processes(&mut self) -> Vec<Process> {
        (0..self.below(4)).map(|_| self.process()).collect()
    }

    fn reason(&mut self) -> CpgReason {
        [CpgReason::Join, CpgReason::Leave, CpgReason::NodeDown, CpgReason::NodeUp, CpgReason::ProcDown]
            [self.below(5) as usize]
    }

    fn entries(&mut self) -> Vec<(Process, CpgReason)> {
        (0..self.below(3)).map(|_| (self.process(), self.reason())).collect()
    }

    fn result(&mut self) -> CpgResult {
        if self.below(2) == 0 {
            CpgResult::Ok
        } else {
            [
                CpgResult::TryAgain,
                CpgResult::Exist,
                CpgResult::NotExist,
                CpgResult::NameTooLong,
                CpgResult::Busy,
                CpgResult::Interrupt,
                CpgResult::BadHandle,
                CpgResult::InvalidParam,
            ][self.below(8) as usize]
        }
    }

    /// A CPG event on one of three connections.
    fn cpg(&mut self, msg: MsgId, guarantee: Guarantee) -> EventKind {
        let conn = self.below(3) as u32;
        match self.below(8) {
            0 => EventKind::CpgJoin {
                conn,
                group: self.group(),
                pid: self.below(3) as u32,
                result: self.result(),
            },
            1 => EventKind::CpgLeave { conn, group: self.group(), result: self.result() },
            2 => EventKind::CpgMcast { conn, group: self.group(), msg, guarantee, result: self.result() },
            3 => EventKind::CpgDeliver { conn, group: self.group(), sender: self.process(), msg },
            4 => EventKind::CpgConfchg {
                conn,
                group: self.group(),
                members: self.processes(),
                left: self.entries(),
                joined: self.entries(),
            },
            5 => EventKind::CpgTotemConfchg { conn, ring: self.ring(), members: self.nodes() },
            6 => EventKind::CpgMembership { conn, group: self.group(), members: self.processes() },
            _ => EventKind::CpgExit { conn },
        }
    }
}

fn random_trace(rng: &mut Rng, len: usize) -> Trace {
    let mut t = Trace::new();
    for _ in 0..len {
        let node = rng.below(4) as u32;
        let incarnation = rng.below(3) as u32;
        let guarantee = if rng.below(2) == 0 { Guarantee::Agreed } else { Guarantee::Safe };
        let msg = MsgId::new(rng.below(4) as u32, rng.below(3) as u32, rng.below(4));
        let kind = match rng.below(20) {
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
            13..=18 => rng.cpg(msg, guarantee),
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
// commit, leave and state-loss probes and the CPG events), and output is deterministic.
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

/// A correct CPG run on 3 nodes from random operations with the builder's helpers
/// (joins, multicasts, leaves, exits, crashes and restarts with ring changes and totem
/// confchgs). Each connection uses pid 100 + its number, and is used only while alive.
/// Per node: its alive connections (number, group if joined) and its next number.
type Conns = Vec<(Vec<(u32, Option<&'static [u8]>)>, u32)>;

fn cpg_run(rng: &mut Rng, steps: usize) -> Trace {
    let mut b = spec::TraceBuilder::new();
    let nodes = [1u32, 2, 3];
    let mut conns: Conns = vec![(Vec::new(), 0); 4];
    let open = |b: &mut spec::TraceBuilder, conns: &mut Conns, n: u32| {
        conns[n as usize] = (Vec::new(), 0);
        for _ in 0..3 {
            let c = conns[n as usize].1;
            conns[n as usize].1 += 1;
            conns[n as usize].0.push((c, None));
            b.cpg_connect(n, c);
        }
    };
    for n in nodes {
        b.start(n);
        open(&mut b, &mut conns, n);
    }
    let mut seq = 4;
    let mut alive = vec![1u32, 2, 3];
    b.form(Ring::new(1, seq), &alive);
    b.cpg_totem(Ring::new(1, seq), &alive);
    for _ in 0..steps {
        let n = alive[rng.below(alive.len() as u64) as usize];
        let list = &mut conns[n as usize].0;
        if list.is_empty() {
            continue;
        }
        let k = rng.below(list.len() as u64) as usize;
        let (c, group) = list[k];
        match (rng.below(10), group) {
            (0..=2, None) => {
                let g: &'static [u8] = if rng.below(2) == 0 { b"a" } else { b"b" };
                list[k].1 = Some(g);
                b.cpg_join_group(n, c, g, 100 + c);
            }
            (3..=6, Some(_)) => {
                b.cpg_send(n, c);
            }
            (7, Some(_)) => {
                list[k].1 = None;
                b.cpg_leave_group(n, c);
            }
            (8, _) => {
                list.remove(k);
                b.cpg_exit_group(n, c);
            }
            (9, _) => {
                seq += 4;
                if alive.len() == 3 && rng.below(2) == 0 {
                    b.crash(n);
                    conns[n as usize].0.clear();
                    alive.retain(|&x| x != n);
                    b.form(Ring::new(alive[0], seq), &alive);
                    b.cpg_node_down(&[n]);
                } else if let Some(&down) = nodes.iter().find(|x| !alive.contains(x)) {
                    b.start(down);
                    open(&mut b, &mut conns, down);
                    alive.push(down);
                    alive.sort_unstable();
                    b.form(Ring::new(alive[0], seq), &alive);
                } else {
                    b.form(Ring::new(alive[0], seq), &alive);
                }
                b.cpg_totem(Ring::new(alive[0], seq), &alive);
            }
            _ => {}
        }
    }
    b.build()
}

// Goal: no checker panics on damaged CPG runs, whose sessions, segments and anchors are
// almost right, and output is deterministic.
// Method: 200 random CPG runs of up to 60 operations; each is checked as built (and must
// pass: this also tests the checkers' soundness on varied correct runs), then with random
// events dropped, duplicated, swapped or moved to another connection.
#[test]
fn damaged_cpg_runs_do_not_panic() {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let params = Params::default();
    let mut flagged = 0;
    for _ in 0..200 {
        let steps = rng.below(60) as usize;
        let mut trace = cpg_run(&mut rng, steps);
        // The run as built is correct: no safety violation, and the CPG liveness
        // properties hold at its end (crashed nodes are not survivors).
        let v = check_safety(&trace, &params);
        assert!(v.is_empty(), "correct run flagged: {:#?}", &v[..v.len().min(3)]);
        let window = LivenessWindow { healed_at: 0, deadline: u64::MAX, live: vec![1, 2, 3] };
        let mut v = spec::cpg7_self_delivery::check(&trace, &window);
        v.extend(spec::cpg11_no_ghosts::check(&trace, &window));
        assert!(v.is_empty(), "correct run flagged: {:#?}", &v[..v.len().min(3)]);
        for _ in 0..1 + rng.below(4) {
            let n = trace.events.len() as u64;
            if n < 2 {
                break;
            }
            let i = rng.below(n) as usize;
            let j = rng.below(n) as usize;
            match rng.below(4) {
                0 => {
                    trace.events.remove(i);
                }
                1 => {
                    let e = trace.events[i].clone();
                    trace.events.insert(j, e);
                }
                2 => {
                    let kind = trace.events[i].kind.clone();
                    trace.events[i].kind = trace.events[j].kind.clone();
                    trace.events[j].kind = kind;
                }
                _ => {
                    if let EventKind::CpgDeliver { conn, .. } | EventKind::CpgConfchg { conn, .. } =
                        &mut trace.events[i].kind
                    {
                        *conn = (*conn + 1) % 3;
                    }
                }
            }
        }
        let window = LivenessWindow { healed_at: 0, deadline: rng.below(400), live: vec![1, 2, 3] };
        let a = check_safety(&trace, &params);
        assert_eq!(a, check_safety(&trace, &params));
        let c = check_liveness(&trace, &params, &window);
        assert_eq!(c, check_liveness(&trace, &params, &window));
        for v in a.iter().chain(&c) {
            assert!(v.events.iter().all(|&e| e < trace.len()), "{v}");
        }
        flagged += usize::from(!a.is_empty());
    }
    assert!(flagged > 50, "{flagged}");
}
