//! Goal: no message a peer can send (decodable, but with arbitrary field values) and no
//! order of timer firings makes a node panic. Method: run small clusters on the loopback
//! driver and inject mutated copies of real in-flight messages into random nodes, across
//! every protocol state (cold start, steady state, crashes and reconfiguration).

use bytes::Bytes;
use totem_core::loopback::Loopback;
use totem_core::message::{CommitMember, McastBody, Message, RtrEntry};
use totem_core::{Config, Guarantee, NodeId, RingId, Seq};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn node(&mut self) -> NodeId {
        NodeId(1 + self.below(5) as u32)
    }
    fn seq_near(&mut self, s: Seq) -> Seq {
        match self.below(4) {
            0 => Seq(self.next() as u32),
            1 => s.add(self.below(20000) as u32),
            2 => Seq(s.0.wrapping_sub(self.below(10) as u32)),
            _ => s.add(1),
        }
    }
    fn ring_near(&mut self, r: RingId) -> RingId {
        match self.below(4) {
            0 => RingId::new(self.node(), self.next()),
            1 => RingId::new(r.rep, r.seq.wrapping_add(self.below(8))),
            2 => RingId::new(self.node(), r.seq),
            _ => r,
        }
    }
    fn set(&mut self) -> Vec<NodeId> {
        let mut v: Vec<NodeId> = (1..=5).filter(|_| self.below(2) == 0).map(NodeId).collect();
        v.dedup();
        v
    }
}

fn mutate(rng: &mut Rng, msg: &Message) -> Message {
    let mut msg = msg.clone();
    match &mut msg {
        Message::Token(t) => {
            t.ring_id = rng.ring_near(t.ring_id);
            t.seq = rng.seq_near(t.seq);
            t.aru = rng.seq_near(t.aru);
            t.aru_addr = if rng.below(3) == 0 { None } else { Some(rng.node()) };
            t.token_seq = t.token_seq.wrapping_add(rng.below(5) as u32);
            t.fcc = rng.next() as u32 % 100;
            t.backlog = rng.next() as u32;
            t.retrans_flag = rng.below(2) == 0;
            for _ in 0..rng.below(30).min(30 - t.rtr.len() as u64) {
                let seq = rng.seq_near(t.seq);
                t.rtr.push(RtrEntry { ring_id: rng.ring_near(t.ring_id), seq });
            }
        }
        Message::Mcast(m) => {
            m.ring_id = rng.ring_near(m.ring_id);
            m.seq = rng.seq_near(m.seq);
            m.origin = rng.node();
            m.guarantee = if rng.below(2) == 0 { Guarantee::Agreed } else { Guarantee::Safe };
            match rng.below(3) {
                0 => m.body = McastBody::Frame(Bytes::from(vec![rng.next() as u8; rng.below(64) as usize])),
                1 => {
                    let inner = m.clone();
                    if let McastBody::Frame(_) = inner.body {
                        m.body = McastBody::Recovered(Box::new(inner));
                    }
                }
                _ => {}
            }
        }
        Message::Join(j) => {
            j.sender = rng.node();
            j.proc_set = rng.set();
            j.failed_set = rng.set();
            j.ring_seq = if rng.below(4) == 0 { rng.next() } else { j.ring_seq.wrapping_add(rng.below(8)) };
            j.leave = rng.below(4) == 0;
        }
        Message::CommitToken(c) => {
            c.ring_id = rng.ring_near(c.ring_id);
            match rng.below(4) {
                0 => c.members.truncate(rng.below(c.members.len() as u64 + 1) as usize),
                1 => c.members.push(CommitMember {
                    node: NodeId(6),
                    old_ring_id: rng.ring_near(c.ring_id),
                    old_aru: Seq(rng.next() as u32),
                    high_delivered: Seq(rng.next() as u32),
                    received_flag: rng.below(2) == 0,
                }),
                2 => {
                    for e in &mut c.members {
                        e.old_aru = rng.seq_near(e.old_aru);
                        e.high_delivered = Seq(rng.next() as u32);
                        e.received_flag = rng.below(2) == 0;
                    }
                }
                _ => {}
            }
            c.memb_index = rng.below(c.members.len() as u64 + 2) as u32;
        }
        Message::MergeDetect(m) => {
            m.sender = rng.node();
            m.ring_id = rng.ring_near(m.ring_id);
        }
        Message::TokenHoldCancel(h) => h.ring_id = rng.ring_near(h.ring_id),
    }
    msg
}

#[test]
fn mutated_messages_never_panic() {
    for seed in 0..150u64 {
        let mut rng = Rng(seed);
        let n = 2 + rng.below(3) as usize;
        let mut lb = if seed % 2 == 0 {
            Loopback::cold(n, Config::default(), false).expect("config")
        } else {
            Loopback::new(n, Config::default(), false).expect("config")
        };
        for step in 0..20_000u32 {
            if rng.below(8) == 0 {
                let _ = lb.submit(rng.below(n as u64) as usize, b"payload", Guarantee::Safe);
            }
            if rng.below(10) == 0 {
                let candidates: Vec<Message> = lb.in_flight().map(|(_, m)| m.clone()).take(8).collect();
                if !candidates.is_empty() {
                    let pick = &candidates[rng.below(candidates.len() as u64) as usize];
                    let forged = mutate(&mut rng, pick);
                    let to = NodeId(1 + rng.below(n as u64) as u32);
                    lb.inject(to, forged);
                }
            }
            if step == 10_000 && n > 2 {
                lb.crash(n - 1);
            }
            if !lb.step() {
                break;
            }
        }
    }
}
