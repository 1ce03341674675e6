//! Directed tests of the CPG service on a small lossless network of [`CpgNode`]s with
//! crashes and partitions. (The simulator judges random runs with the spec; these pin the
//! behaviour of named situations.)

#![allow(clippy::unwrap_used, clippy::needless_range_loop, clippy::type_complexity)]

use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;
use totem_core::cpg::{ConnFlags, ConnId, CpgError, CpgNode, Event, EventKind, Process, Reason};
use totem_core::message::McastBody;
use totem_core::srp::State;
use totem_core::{Config, ConfigKind, Guarantee, Message, NodeId, Output, Time, node::Dest};

struct Net {
    nodes: Vec<CpgNode>,
    alive: Vec<bool>,
    now: Time,
    flight: VecDeque<(NodeId, NodeId, Message)>,
    /// Every CPG event per node, in order.
    events: Vec<Vec<Event>>,
    /// Every output per node (for the determinism test).
    log: Vec<Vec<Output>>,
    /// Pairs (from, to) that cannot talk.
    cut: BTreeSet<(u32, u32)>,
    /// Pairs (origin, to): frames originated by `origin` never reach `to`, whoever sends
    /// them (retransmissions included; recovery wrappers pass).
    drop_frames: BTreeSet<(u32, u32)>,
    /// Pairs (origin, to): recovery wrappers originated by `origin` (whoever retransmits
    /// them) never reach `to`.
    drop_recovered: BTreeSet<(u32, u32)>,
    /// Pairs (origin, to) of recovery wrappers delivered so far.
    recovered_seen: BTreeSet<(u32, u32)>,
}

impl Net {
    fn new(n: u32) -> Net {
        let nodes: Vec<CpgNode> =
            (1..=n).map(|i| CpgNode::fresh(Config::default(), NodeId(i), None).unwrap()).collect();
        let mut net = Net {
            alive: vec![true; nodes.len()],
            events: vec![Vec::new(); nodes.len()],
            log: vec![Vec::new(); nodes.len()],
            nodes,
            now: Time::ZERO,
            flight: VecDeque::new(),
            cut: BTreeSet::new(),
            drop_frames: BTreeSet::new(),
            drop_recovered: BTreeSet::new(),
            recovered_seen: BTreeSet::new(),
        };
        for i in 0..net.nodes.len() {
            let mut out = Vec::new();
            net.nodes[i].start(net.now, &mut out);
            net.apply(i, out);
        }
        net
    }

    fn apply(&mut self, i: usize, out: Vec<Output>) {
        let me = self.nodes[i].id();
        let mut persist = Vec::new();
        for o in out {
            self.log[i].push(o.clone());
            match o {
                Output::Send { dest: Dest::All, msg } => {
                    for n in &self.nodes {
                        if n.id() != me {
                            self.flight.push_back((me, n.id(), msg.clone()));
                        }
                    }
                }
                Output::Send { dest: Dest::Node(to), msg } => self.flight.push_back((me, to, msg)),
                Output::Cpg(e) => self.events[i].push(e),
                Output::PersistRingSeq(s) => persist.push(s),
                _ => {}
            }
        }
        for s in persist {
            let mut out = Vec::new();
            self.nodes[i].ring_seq_persisted(self.now, s, &mut out);
            self.apply(i, out);
        }
    }

    fn step(&mut self) -> bool {
        if let Some((from, to, msg)) = self.flight.pop_front() {
            let i = (to.0 - 1) as usize;
            let dropped = match &msg {
                Message::Mcast(m) => match m.body {
                    McastBody::Frame(_) => self.drop_frames.contains(&(m.origin.0, to.0)),
                    McastBody::Recovered(_) => self.drop_recovered.contains(&(m.origin.0, to.0)),
                },
                _ => false,
            };
            if self.alive[i] && !self.cut.contains(&(from.0, to.0)) && !dropped {
                if let Message::Mcast(m) = &msg
                    && matches!(m.body, McastBody::Recovered(_))
                {
                    self.recovered_seen.insert((m.origin.0, to.0));
                }
                let mut out = Vec::new();
                self.nodes[i].handle_message(self.now, from, msg, &mut out);
                self.apply(i, out);
            }
            return true;
        }
        let next = (0..self.nodes.len())
            .filter(|&i| self.alive[i])
            .filter_map(|i| self.nodes[i].poll_timeout().map(|(t, k)| (t, i, k)))
            .min_by_key(|&(t, i, _)| (t, i));
        let Some((t, i, kind)) = next else { return false };
        self.now = self.now.max(t);
        let mut out = Vec::new();
        self.nodes[i].handle_timeout(self.now, kind, &mut out);
        self.apply(i, out);
        true
    }

    /// Run for `d` of simulated time (bounded in steps too).
    fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        for _ in 0..5_000_000 {
            if self.now >= until || !self.step() {
                return;
            }
        }
        panic!("step budget exhausted");
    }

    /// Step until `done` holds (false if the network went quiet or the budget ran out).
    fn step_until(&mut self, done: impl Fn(&Net) -> bool) -> bool {
        for _ in 0..5_000_000 {
            if done(self) {
                return true;
            }
            if !self.step() {
                return false;
            }
        }
        false
    }

    /// The members of the last regular configuration node `i` delivered.
    fn regular(&self, i: usize) -> Option<Vec<u32>> {
        self.log[i].iter().rev().find_map(|o| match o {
            Output::Config(c) if c.kind == ConfigKind::Regular => {
                Some(c.members.iter().map(|n| n.0).collect())
            }
            _ => None,
        })
    }

    /// The members of the last ring whose synchronization completed at node `i`.
    fn synced(&self, i: usize) -> Option<Vec<u32>> {
        self.nodes[i].synced_ring().map(|(_, m)| m.iter().map(|n| n.0).collect())
    }

    fn with<R>(&mut self, i: usize, f: impl FnOnce(&mut CpgNode, Time, &mut Vec<Output>) -> R) -> R {
        let mut out = Vec::new();
        let now = self.now;
        let r = f(&mut self.nodes[i], now, &mut out);
        self.apply(i, out);
        r
    }

    fn join(&mut self, i: usize, group: &[u8], pid: u32) -> Result<ConnId, CpgError> {
        self.with(i, |n, now, out| {
            let c = n.connect(ConnFlags::default());
            n.join(now, c, group, pid, out).map(|()| c)
        })
    }

    fn mcast(&mut self, i: usize, c: ConnId, payload: &[u8]) -> Result<(), CpgError> {
        self.with(i, |n, now, out| n.mcast(now, c, Guarantee::Agreed, payload, out))
    }

    fn crash(&mut self, i: usize) {
        self.alive[i] = false;
    }

    fn partition(&mut self, sides: &[&[u32]]) {
        self.cut.clear();
        for a in sides {
            for b in sides {
                if a != b {
                    for &x in *a {
                        for &y in *b {
                            self.cut.insert((x, y));
                        }
                    }
                }
            }
        }
    }

    /// The events of one connection.
    fn of(&self, i: usize, c: ConnId) -> Vec<&EventKind> {
        self.events[i].iter().filter(|e| e.conn == c).map(|e| &e.kind).collect()
    }

    /// One connection's view changes as (left, joined).
    fn confchgs(&self, i: usize, c: ConnId) -> Vec<(Vec<(Process, Reason)>, Vec<(Process, Reason)>)> {
        self.of(i, c)
            .into_iter()
            .filter_map(|k| match k {
                EventKind::Confchg { left, joined, .. } => Some((left.clone(), joined.clone())),
                _ => None,
            })
            .collect()
    }

    fn delivered(&self, i: usize, c: ConnId) -> Vec<Vec<u8>> {
        self.of(i, c)
            .into_iter()
            .filter_map(|k| match k {
                EventKind::Deliver { payload, .. } => Some(payload.to_vec()),
                _ => None,
            })
            .collect()
    }
}

fn p(node: u32, pid: u32) -> Process {
    Process { node: NodeId(node), pid }
}

const SETTLE: Duration = Duration::from_secs(10);

/// Three nodes formed, each with one process in group "g".
fn three_joined() -> (Net, Vec<ConnId>) {
    let mut net = Net::new(3);
    net.run_for(SETTLE);
    let conns: Vec<ConnId> = (0..3).map(|i| net.join(i, b"g", 100 + i as u32).unwrap()).collect();
    net.run_for(Duration::from_secs(1));
    for i in 0..3 {
        assert_eq!(net.nodes[i].membership(b"g").unwrap(), vec![p(1, 100), p(2, 101), p(3, 102)]);
    }
    (net, conns)
}

// Goal: joins, view changes and messages reach every member identically (CPG-1, CPG-2,
// CPG-4, CPG-6).
#[test]
fn members_see_the_same_views_and_messages() {
    let (mut net, conns) = three_joined();
    for round in 0..5u8 {
        for i in 0..3 {
            net.mcast(i, conns[i], &[i as u8, round]).unwrap();
        }
    }
    net.run_for(Duration::from_secs(1));
    let order = net.delivered(0, conns[0]);
    assert_eq!(order.len(), 15);
    for i in 1..3 {
        assert_eq!(net.delivered(i, conns[i]), order, "node {} order", i + 1);
    }
    // Each sender's messages in its own order.
    for s in 0..3u8 {
        let mine: Vec<u8> = order.iter().filter(|m| m[0] == s).map(|m| m[1]).collect();
        assert_eq!(mine, vec![0, 1, 2, 3, 4]);
    }
    // Each joiner's first view change has itself in joined and in members; later view
    // changes are the same at every member (the connections joined at different points of
    // the one total order, so compare the common suffix).
    let seqs: Vec<_> = (0..3).map(|i| net.confchgs(i, conns[i])).collect();
    for i in 0..3 {
        let me = p(i as u32 + 1, 100 + i as u32);
        assert_eq!(seqs[i][0], (vec![], vec![(me, Reason::Join)]));
        let EventKind::Confchg { members, .. } = net.of(i, conns[i])[0] else { panic!("first event") };
        assert!(members.contains(&me));
    }
    let shortest = seqs.iter().map(Vec::len).min().unwrap();
    for s in &seqs {
        assert_eq!(s[s.len() - shortest..], seqs[0][seqs[0].len() - shortest..]);
    }
    assert_eq!(seqs.iter().map(Vec::len).sum::<usize>(), 3 + 2 + 1, "three joins seen by 3, 2 and 1");
}

// Goal: after its own LEAVE view change a connection gets nothing more for the group and
// can join again (CPG-3; Corosync's handle stays joined).
#[test]
fn leave_ends_membership_and_rejoin_works() {
    let (mut net, conns) = three_joined();
    net.with(1, |n, now, out| n.leave(now, conns[1], b"g", out)).unwrap();
    assert_eq!(net.with(1, |n, now, out| n.leave(now, conns[1], b"g", out)), Err(CpgError::NotExist));
    net.run_for(Duration::from_secs(1));
    let before = net.of(1, conns[1]).len();
    let last = net.of(1, conns[1]).last().cloned().cloned();
    assert!(
        matches!(&last, Some(EventKind::Confchg { left, .. }) if left == &vec![(p(2, 101), Reason::Leave)]),
        "{last:?}"
    );
    net.mcast(0, conns[0], b"after the leave").unwrap();
    net.run_for(Duration::from_secs(1));
    assert_eq!(net.of(1, conns[1]).len(), before, "nothing more after the leave");
    assert_eq!(net.delivered(2, conns[2]).last().unwrap(), b"after the leave");
    // Join again on the same connection.
    net.with(1, |n, now, out| n.join(now, conns[1], b"g", 101, out)).unwrap();
    net.run_for(Duration::from_secs(1));
    assert_eq!(net.confchgs(1, conns[1]).last().unwrap().1, vec![(p(2, 101), Reason::Join)]);
    assert_eq!(net.nodes[0].membership(b"g").unwrap(), vec![p(1, 100), p(2, 101), p(3, 102)]);
}

// Goal: a node crash removes its processes with exactly one NODEDOWN view change per group,
// after the crashed node's messages, followed by a Totem view change (CPG-9, CPG-10).
#[test]
fn crash_gives_one_nodedown_per_group() {
    let (mut net, mut conns) = three_joined();
    // A second process of node 3 in "g" and one in "h".
    conns.push(net.join(2, b"g", 200).unwrap());
    let h = net.join(0, b"h", 300).unwrap();
    net.join(2, b"h", 301).unwrap();
    net.run_for(Duration::from_secs(1));
    net.mcast(2, conns[2], b"last words").unwrap();
    net.run_for(Duration::from_millis(50));
    net.crash(2);
    net.run_for(SETTLE);
    for i in 0..2 {
        let evs = net.of(i, conns[i]);
        let last_words = evs
            .iter()
            .position(|k| matches!(k, EventKind::Deliver { payload, .. } if &payload[..] == b"last words"))
            .expect("delivered");
        let downs: Vec<usize> = evs
            .iter()
            .enumerate()
            .filter(|(_, k)| matches!(k, EventKind::Confchg { left, .. } if left.iter().any(|(_, r)| *r == Reason::NodeDown)))
            .map(|(j, _)| j)
            .collect();
        assert_eq!(downs.len(), 1, "one NODEDOWN view change for g at node {}", i + 1);
        assert!(downs[0] > last_words);
        let EventKind::Confchg { left, members, .. } = evs[downs[0]] else { unreachable!() };
        assert_eq!(left, &vec![(p(3, 102), Reason::NodeDown), (p(3, 200), Reason::NodeDown)]);
        assert_eq!(members, &vec![p(1, 100), p(2, 101)]);
        assert!(
            matches!(evs[downs[0] + 1], EventKind::TotemConfchg { members, .. } if members == &vec![NodeId(1), NodeId(2)])
        );
    }
    let h_downs = net.confchgs(0, h).into_iter().filter(|(l, _)| !l.is_empty()).count();
    assert_eq!(h_downs, 1);
    assert_eq!(net.nodes[0].membership(b"h").unwrap(), vec![p(1, 300)]);
}

// Goal: after a partition heals, each side learns the other's processes with one NODEUP
// view change per group, and all views agree again (CPG-8, CPG-11).
#[test]
fn merge_gives_one_nodeup_per_group_and_views_agree() {
    let (mut net, conns) = three_joined();
    net.partition(&[&[1, 2], &[3]]);
    net.run_for(SETTLE);
    assert_eq!(net.nodes[2].membership(b"g").unwrap(), vec![p(3, 102)]);
    assert_eq!(net.nodes[0].membership(b"g").unwrap(), vec![p(1, 100), p(2, 101)]);
    // Node 3's side gets a new member while apart.
    let late = net.join(2, b"g", 500).unwrap();
    net.run_for(Duration::from_secs(1));
    net.partition(&[]);
    net.run_for(Duration::from_secs(20));
    let all = vec![p(1, 100), p(2, 101), p(3, 102), p(3, 500)];
    for i in 0..3 {
        assert_eq!(net.nodes[i].membership(b"g").unwrap(), all, "node {}", i + 1);
    }
    let ups: Vec<_> = net
        .confchgs(0, conns[0])
        .into_iter()
        .filter(|(_, j)| j.iter().any(|(_, r)| *r == Reason::NodeUp))
        .collect();
    assert_eq!(ups, vec![(vec![], vec![(p(3, 102), Reason::NodeUp), (p(3, 500), Reason::NodeUp)])]);
    let ups3: Vec<_> = net
        .confchgs(2, late)
        .into_iter()
        .filter(|(_, j)| j.iter().any(|(_, r)| *r == Reason::NodeUp))
        .collect();
    assert_eq!(ups3, vec![(vec![], vec![(p(1, 100), Reason::NodeUp), (p(2, 101), Reason::NodeUp)])]);
}

// Goal: a process that exits without leaving is removed with PROCDOWN everywhere; a
// disconnected connection gets nothing more (CPG-8).
#[test]
fn exit_gives_procdown() {
    let (mut net, conns) = three_joined();
    net.with(1, |n, now, out| n.disconnect(now, conns[1], out));
    net.run_for(Duration::from_secs(1));
    assert_eq!(net.confchgs(0, conns[0]).last().unwrap().0, vec![(p(2, 101), Reason::ProcDown)]);
    assert_eq!(net.nodes[2].membership(b"g").unwrap(), vec![p(1, 100), p(3, 102)]);
    assert_eq!(net.mcast(1, conns[1], b"x"), Err(CpgError::BadHandle));
}

// Goal: mcast is refused with TryAgain during a synchronization, and traffic sent just
// before a membership change is delivered after that change's view change (CPG-12, §4.4).
#[test]
fn traffic_is_held_across_a_sync() {
    let (mut net, conns) = three_joined();
    net.crash(2);
    // Not yet noticed: sending works, but the token is lost, so these wait.
    let mut sent = 0;
    for k in 0..20u8 {
        if net.mcast(0, conns[0], &[k]).is_ok() {
            sent += 1;
        }
    }
    assert_eq!(sent, 20);
    let mut saw_try_again = false;
    for _ in 0..2_000_000 {
        if !net.step() {
            break;
        }
        if net.nodes[0].is_syncing() {
            saw_try_again |= net.mcast(0, conns[0], b"during") == Err(CpgError::TryAgain);
        }
        if net.now > Time::ZERO + Duration::from_secs(40) {
            break;
        }
    }
    assert!(saw_try_again, "mcast refused while the sync ran");
    for i in 0..2 {
        let evs = net.of(i, conns[i]);
        let down = evs
            .iter()
            .position(|k| matches!(k, EventKind::Confchg { left, .. } if !left.is_empty()))
            .expect("NODEDOWN");
        let first_held = evs
            .iter()
            .position(|k| matches!(k, EventKind::Deliver { payload, .. } if payload.len() == 1))
            .expect("held traffic delivered");
        assert!(first_held > down, "held traffic after the view change at node {}", i + 1);
        assert_eq!(net.delivered(i, conns[i]).len(), 20);
    }
}

// Goal: names are (length, bytes); 128 bytes accepted, 129 rejected (CPG-15).
#[test]
fn group_names() {
    let mut net = Net::new(1);
    net.run_for(SETTLE);
    assert_eq!(net.join(0, &[b'x'; 129], 1), Err(CpgError::NameTooLong { len: 129 }));
    let a = net.join(0, &[b'x'; 128], 1).unwrap();
    let b = net.join(0, b"ab", 1).unwrap();
    let c = net.join(0, b"ab\0", 1).unwrap();
    net.run_for(Duration::from_secs(1));
    assert_eq!(net.nodes[0].groups().len(), 3);
    assert_eq!(net.nodes[0].membership(b"ab").unwrap(), vec![p(1, 1)]);
    // The same (pid, group) twice is refused; the same connection twice too.
    assert!(matches!(net.join(0, b"ab", 1), Err(CpgError::Exist)));
    assert_eq!(net.with(0, |n, now, out| n.join(now, b, b"zz", 2, out)), Err(CpgError::Exist));
    let _ = (a, c);
}

// Goal: a 1 MiB message arrives whole and byte-identical (CPG-13).
#[test]
fn one_mib_message_arrives_whole() {
    let (mut net, conns) = three_joined();
    let big: Vec<u8> = (0..1024 * 1024).map(|i| (i * 7 % 251) as u8).collect();
    net.mcast(1, conns[1], &big).unwrap();
    assert!(matches!(net.mcast(1, conns[1], &vec![0; 1024 * 1024 + 1]), Err(CpgError::TooBig { .. })));
    net.run_for(Duration::from_secs(5));
    for i in 0..3 {
        assert_eq!(net.delivered(i, conns[i]), vec![big.clone()]);
    }
}

// Goal: the service is a pure function of its inputs: the same run twice gives the same
// outputs, byte for byte.
#[test]
fn deterministic() {
    let run = || {
        let (mut net, conns) = three_joined();
        net.mcast(0, conns[0], b"a").unwrap();
        net.crash(1);
        net.run_for(SETTLE);
        net.log
    };
    assert_eq!(run(), run());
}

// Goal: a synchronization round that completes only while the node installs the next ring
// (its missing joinlist recovered among the old ring's messages) does not release the new
// ring's application traffic: a join held at that node is still ordered after the new
// ring's round, so every member applies it in the same view (found by the simulator: the
// stale release sent the held join ahead of the other members' joinlists, they applied it
// before their round and then dropped the process as a zombie, a permanent view split).
#[test]
fn round_completed_by_recovery_keeps_the_new_ring_held() {
    let mut net = Net::new(4);
    net.run_for(SETTLE);
    let c3 = net.join(2, b"g", 300).unwrap();
    net.run_for(Duration::from_secs(1));
    // Node 3's frames never reach node 2. In the ring 1 -> 2 -> 3 node 3 is the first to see
    // node 2's retransmit requests and answers them itself, so node 2 stays without them.
    net.drop_frames.insert((3, 2));
    net.crash(3);
    assert!(net.step_until(|n| n.synced(0) == Some(vec![1, 2, 3])), "nodes 1 and 3 complete the round");
    assert_eq!(net.regular(1), Some(vec![1, 2, 3]));
    assert!(net.nodes[1].is_syncing(), "node 2 misses node 3's joinlist");
    // A join at node 2 during its round: accepted, held.
    let c2 = net.join(1, b"g", 200).unwrap();
    // Node 1 dies; {2, 3} recover the old ring's messages (node 3's joinlist among them,
    // re-sent in recovery wrappers, which the filter lets through). The filter stays until
    // the old ring is dead.
    net.crash(0);
    assert!(net.step_until(|n| n.nodes[1].node().status().state == State::Recovery));
    net.drop_frames.clear();
    net.run_for(SETTLE);
    assert_eq!(net.synced(1), Some(vec![2, 3]));
    assert_eq!(net.synced(2), Some(vec![2, 3]));
    let view = vec![p(2, 200), p(3, 300)];
    assert_eq!(net.nodes[1].membership(b"g").unwrap(), view);
    assert_eq!(net.nodes[2].membership(b"g").unwrap(), view);
    // At node 3 the join comes after the totem confchg of {2, 3}.
    let evs = net.of(2, c3);
    let totem = evs
        .iter()
        .position(|k| matches!(k, EventKind::TotemConfchg { members, .. } if members == &vec![NodeId(2), NodeId(3)]))
        .expect("totem confchg of {2, 3}");
    let join = evs
        .iter()
        .position(
            |k| matches!(k, EventKind::Confchg { joined, .. } if joined == &vec![(p(2, 200), Reason::Join)]),
        )
        .expect("the join of 2:200");
    assert!(join > totem, "join at {join}, totem confchg at {totem}: {evs:#?}");
    assert_eq!(net.confchgs(1, c2)[0].1, vec![(p(2, 200), Reason::Join)]);
}

// Goal: a node that left in a transition whose round was aborted, and is back in the
// transitional configuration of the next completed round, is still reported down (then up):
// its messages of the other side were never delivered here, so its processes must leave
// the views in between (found by the simulator: without this, a member missed a sender's
// messages while the sender stayed in its view; Corosync computes the downlist from the
// last transitional configuration only and has the same gap).
#[test]
fn node_gone_in_an_aborted_transition_is_reported_down() {
    let mut net = Net::new(5);
    net.run_for(SETTLE);
    let conns: Vec<ConnId> = (0..5).map(|i| net.join(i, b"g", 100 + i as u32).unwrap()).collect();
    net.run_for(Duration::from_secs(1));
    // Node 4 is cut off and sends alone; the others reform, but node 5 dies as they install
    // their ring, before sending its joinlist: that round is aborted.
    net.partition(&[&[1, 2, 3, 5], &[4]]);
    assert!(net.step_until(|n| n.regular(0) == Some(vec![1, 2, 3, 5])));
    net.crash(4);
    assert!(net.step_until(|n| n.synced(3) == Some(vec![4])), "node 4 synchronizes alone");
    net.mcast(3, conns[3], b"alone").unwrap();
    net.run_for(Duration::from_secs(1));
    // Node 4 comes back into {1, 2, 3, 4}, whose round is aborted too: node 3 dies as the
    // last member (node 4) installs it, before anyone sends a joinlist. {1, 2, 4} then
    // complete theirs, node 4 in their transitional configuration.
    net.partition(&[]);
    assert!(net.step_until(|n| n.regular(3) == Some(vec![1, 2, 3, 4])));
    net.crash(2);
    net.run_for(SETTLE);
    assert_eq!(net.synced(0), Some(vec![1, 2, 4]));
    assert_eq!(net.synced(3), Some(vec![1, 2, 4]));
    let view = vec![p(1, 100), p(2, 101), p(4, 103)];
    for i in [0, 1, 3] {
        assert_eq!(net.nodes[i].membership(b"g").unwrap(), view, "node {}", i + 1);
    }
    // Node 1 saw 4:103 go (NODEDOWN) and come back (NODEUP), and never got "alone".
    let changes = net.confchgs(0, conns[0]);
    let down =
        changes.iter().position(|(l, _)| l.contains(&(p(4, 103), Reason::NodeDown))).expect("NODEDOWN");
    let up = changes.iter().position(|(_, j)| j.contains(&(p(4, 103), Reason::NodeUp))).expect("NODEUP");
    assert!(down < up);
    assert!(!net.delivered(0, conns[0]).contains(&b"alone".to_vec()));
    assert!(net.delivered(3, conns[3]).contains(&b"alone".to_vec()));
}

// Goal: a recorder can tell from `messages_sent` whether a call multicast something: a
// disconnect of a joined connection announces a PROCDOWN, one of an unjoined does not.
#[test]
fn messages_sent_counts_what_the_service_multicasts() {
    let (mut net, conns) = three_joined();
    let before = net.nodes[0].stats().messages_sent;
    let idle = net.with(0, |n, _, _| n.connect(ConnFlags::default()));
    net.with(0, |n, now, out| n.disconnect(now, idle, out));
    assert_eq!(net.nodes[0].stats().messages_sent, before);
    net.with(0, |n, now, out| n.disconnect(now, conns[0], out));
    assert_eq!(net.nodes[0].stats().messages_sent, before + 1);
    assert!(net.mcast(1, conns[1], b"x").is_ok());
    assert_eq!(net.mcast(0, conns[0], b"x"), Err(CpgError::BadHandle));
}

// Goal: an old-ring message a node received (wrapped) during a recovery that is then
// abandoned stays with that node: it re-sends it in the next attempt, so the message
// survives its sender's crash (found by the simulator: the wrappers were dropped with the
// abandoned ring while the node's Receive probe had announced the message, and TOT-8 saw a
// member install the next ring without a message another member had held).
#[test]
fn message_recovered_in_an_abandoned_recovery_is_kept() {
    let mut net = Net::new(4);
    net.run_for(SETTLE);
    let conns: Vec<ConnId> = (0..3).map(|i| net.join(i, b"g", 100 + i as u32).unwrap()).collect();
    net.run_for(Duration::from_secs(1));
    // Node 3's next message reaches nobody, and node 4 dies as soon as it is sent: the token
    // is lost and {1, 2, 3} recover.
    net.drop_frames.extend([(3, 1), (3, 2), (3, 4)]);
    let frames_sent = |n: &Net| {
        n.log[2].iter().filter(|o| matches!(o, Output::Send { msg: Message::Mcast(_), .. })).count()
    };
    let before = frames_sent(&net);
    net.mcast(2, conns[2], b"only node 3 has it").unwrap();
    assert!(net.step_until(|n| frames_sent(n) > before));
    net.crash(3);
    // Node 3 re-sends it in recovery; its wrappers reach node 1, never node 2, so that
    // recovery cannot finish. Node 3 dies once node 1 has the message: the recovery is
    // abandoned, and {1, 2} recover again.
    net.drop_recovered.insert((3, 2));
    assert!(net.step_until(|n| n.recovered_seen.contains(&(3, 1))), "node 3 re-sends in recovery");
    net.crash(2);
    net.run_for(SETTLE);
    assert_eq!(net.synced(0), Some(vec![1, 2]));
    for i in 0..2 {
        assert!(
            net.delivered(i, conns[i]).contains(&b"only node 3 has it".to_vec()),
            "node {} delivers the message node 1 recovered",
            i + 1
        );
    }
}
