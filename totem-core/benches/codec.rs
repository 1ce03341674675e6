//! Throughput of the wire codec on the messages the hot path sends: tokens (every hop),
//! mcasts (every application frame), and the membership messages (gather and commit).
//!
//! Run with `cargo bench -p totem-core --bench codec`; add `-- --quick` for a fast look.

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use totem_core::message::{
    CommitMember, CommitToken, Join, Mcast, McastBody, RTR_ENTRIES_MAX, RtrEntry, Token,
};
use totem_core::wire::{decode, decode_bytes, encode};
use totem_core::{Guarantee, Message, NodeId, RingId, Seq};

const RING: RingId = RingId::new(NodeId(1), 1_000);

fn token(rtr: usize) -> Message {
    Message::Token(Token {
        ring_id: RING,
        token_seq: 123_456,
        seq: Seq(1_000_000),
        aru: Seq(999_950),
        aru_addr: Some(NodeId(3)),
        fcc: 40,
        backlog: 12,
        retrans_flag: false,
        rtr: (0..rtr as u32).map(|i| RtrEntry { ring_id: RING, seq: Seq(999_951 + i) }).collect(),
    })
}

fn mcast(frame_len: usize) -> Message {
    Message::Mcast(Mcast {
        ring_id: RING,
        seq: Seq(1_000_001),
        origin: NodeId(2),
        guarantee: Guarantee::Agreed,
        body: McastBody::Frame(Bytes::from(vec![0xa5; frame_len])),
    })
}

fn join(nodes: u32) -> Message {
    Message::Join(Join {
        sender: NodeId(1),
        proc_set: (1..=nodes).map(NodeId).collect(),
        failed_set: Vec::new(),
        ring_seq: 1_000,
        leave: false,
    })
}

fn commit_token(nodes: u32) -> Message {
    Message::CommitToken(CommitToken {
        token_seq: 7,
        ring_id: RingId::new(NodeId(1), 1_004),
        memb_index: nodes,
        members: (1..=nodes)
            .map(|n| CommitMember {
                node: NodeId(n),
                old_ring_id: RING,
                old_aru: Seq(1_000_000),
                high_delivered: Seq(999_990),
                received_flag: true,
            })
            .collect(),
    })
}

fn codec(c: &mut Criterion) {
    let cases = [
        ("token/rtr0", token(0)),
        ("token/rtr30", token(RTR_ENTRIES_MAX)),
        ("mcast/64B", mcast(64)),
        ("mcast/1400B", mcast(1400)),
        ("join/5", join(5)),
        ("commit/5", commit_token(5)),
    ];
    let sender = NodeId(2);

    let mut group = c.benchmark_group("encode");
    group.throughput(Throughput::Elements(1));
    for (name, msg) in &cases {
        // A reused buffer, as the runtime keeps one per socket.
        let mut buf = Vec::with_capacity(2048);
        group.bench_function(*name, |b| {
            b.iter(|| {
                buf.clear();
                encode(sender, black_box(msg), &mut buf);
                black_box(buf.len())
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(1));
    for (name, msg) in &cases {
        let mut buf = Vec::new();
        encode(sender, msg, &mut buf);
        group.bench_function(*name, |b| b.iter(|| decode(black_box(&buf))));
    }
    group.finish();

    let mut group = c.benchmark_group("decode_bytes");
    group.throughput(Throughput::Elements(1));
    for (name, msg) in &cases {
        let mut buf = Vec::new();
        encode(sender, msg, &mut buf);
        let bytes = Bytes::from(buf);
        group.bench_function(*name, |b| b.iter(|| decode_bytes(black_box(&bytes))));
    }
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
