//! The checkers on large, correct traces: they must accept them, and in time close to
//! linear in the number of events.

use spec::{
    LivenessWindow, Params, Ring, Slot, TokenVisit, Trace, TraceBuilder, check_liveness, check_safety,
};
use std::time::Instant;

/// A correct run of `nodes` nodes: `rings` successive rings (each a token-loss reform of
/// the same members, recorded with state and commit probes), each carrying `per_ring`
/// slots of traffic with packing, safe messages, token visits and buffer releases.
fn synthetic(nodes: u32, rings: u32, per_ring: u32) -> Trace {
    let members: Vec<u32> = (1..=nodes).collect();
    let mut b = TraceBuilder::new();
    for &n in &members {
        b.start(n);
    }
    let mut token_seq = 0;
    for k in 0..rings {
        let ring = Ring::new(1, 4 * u64::from(k + 1));
        b.install(ring, &members);
        for s in 1..=per_ring {
            let origin = members[(s as usize) % members.len()];
            let slot = Slot::new(ring, s);
            let safe = s % 7 == 0;
            let packed = if s % 5 == 0 { 2 } else { 1 };
            let msgs: Vec<_> =
                (0..packed).map(|_| if safe { b.send_safe(origin) } else { b.send(origin) }).collect();
            b.broadcast(origin, slot, &members);
            for &n in &members {
                for &m in &msgs {
                    if safe {
                        b.deliver_safe(n, m, slot);
                    } else {
                        b.deliver(n, m, slot);
                    }
                }
            }
            token_seq += 1;
            b.token(origin, TokenVisit::new(ring, token_seq, s, s).sent(1, 0));
            if s % 16 == 0 {
                b.release(origin, ring, s);
            }
        }
    }
    b.build()
}

// Goal: a correct trace of a few hundred thousand events passes every checker.
// Method: generate one and run the safety and liveness checks.
#[test]
fn large_correct_trace_passes() {
    let trace = synthetic(5, 20, 2_000);
    assert!(trace.len() > 300_000, "{}", trace.len());
    let params = Params { max_messages: 17, window_size: 50 };
    let violations = check_safety(&trace, &params);
    assert!(violations.is_empty(), "{:#?}", &violations[..violations.len().min(5)]);
    let window = LivenessWindow { healed_at: 0, deadline: u64::MAX, live: vec![1, 2, 3, 4, 5] };
    let violations = check_liveness(&trace, &params, &window);
    assert!(violations.is_empty(), "{:#?}", &violations[..violations.len().min(5)]);
}

// Goal: the checkers stay near-linear on multi-million-event traces.
// Method: time a ~3 million event trace (run with `cargo test -p spec -- --ignored`).
#[test]
#[ignore = "timing run, a few seconds"]
fn timing_three_million_events() {
    let trace = synthetic(5, 100, 4_000);
    let start = Instant::now();
    let violations = check_safety(&trace, &Params::default());
    eprintln!("{} events checked in {:?}", trace.len(), start.elapsed());
    assert!(violations.is_empty(), "{:#?}", &violations[..violations.len().min(5)]);
}

/// A correct CPG run of `nodes` nodes with two group members each: `rings` successive
/// rings (each with its totem confchgs and a leave and a re-join), each carrying `per_ring`
/// CPG multicasts delivered to every member.
fn synthetic_cpg(nodes: u32, rings: u32, per_ring: u32) -> Trace {
    let members: Vec<u32> = (1..=nodes).collect();
    let mut b = TraceBuilder::new();
    for &n in &members {
        b.start(n);
    }
    for k in 0..rings {
        let ring = Ring::new(1, 4 * u64::from(k + 1));
        b.form(ring, &members);
        b.cpg_totem(ring, &members);
        if k == 0 {
            for &n in &members {
                b.cpg_join_group(n, 1, b"g", 10);
                b.cpg_join_group(n, 2, b"g", 20);
            }
        } else {
            let n = members[(k as usize) % members.len()];
            b.cpg_leave_group(n, 2);
            b.cpg_join_group(n, 2, b"g", 20);
        }
        for s in 0..per_ring {
            let n = members[(s as usize) % members.len()];
            b.cpg_send(n, 1 + s % 2);
        }
    }
    b.build()
}

// Goal: a correct CPG trace of a few hundred thousand events passes every checker, in
// time close to linear.
// Method: generate one and run the safety and liveness checks.
#[test]
fn large_correct_cpg_trace_passes() {
    let trace = synthetic_cpg(5, 20, 2_500);
    assert!(trace.len() > 250_000, "{}", trace.len());
    let params = Params::default();
    let start = Instant::now();
    let violations = check_safety(&trace, &params);
    eprintln!("{} CPG events checked in {:?}", trace.len(), start.elapsed());
    assert!(violations.is_empty(), "{:#?}", &violations[..violations.len().min(5)]);
    let window = LivenessWindow { healed_at: 0, deadline: u64::MAX, live: vec![1, 2, 3, 4, 5] };
    let violations = check_liveness(&trace, &params, &window);
    assert!(violations.is_empty(), "{:#?}", &violations[..violations.len().min(5)]);
}

// Goal: the CPG checkers stay near-linear on multi-million-event traces.
// Method: time a ~3 million event CPG trace (run with `cargo test -p spec -- --ignored`).
#[test]
#[ignore = "timing run, a few seconds"]
fn timing_three_million_cpg_events() {
    let trace = synthetic_cpg(5, 100, 5_000);
    let start = Instant::now();
    let violations = check_safety(&trace, &Params::default());
    eprintln!("{} CPG events checked in {:?}", trace.len(), start.elapsed());
    assert!(violations.is_empty(), "{:#?}", &violations[..violations.len().min(5)]);
}
