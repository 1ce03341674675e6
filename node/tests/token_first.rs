//! The runtime sends the token ahead of a big visit's multicasts and behind a small one's (see
//! `Runtime::seal_step`): a two-node ring on loopback, with a transport that
//! records the message kinds of every batch it is handed.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use totem_core::cpg::{ConnFlags, EventKind};
use totem_core::{Config, Guarantee, NodeId};
use totem_node::crypto::HEADER_LEN;
use totem_node::events::QueueLimit;
use totem_node::protect::PacketCrypto;
use totem_node::runtime::{ClientEvent, Handle, Runtime, RuntimeConfig};
use totem_node::store::MemStore;
use totem_node::transport::{RecvBurst, Transport};
use totem_node::window::WindowSize;

/// Message kinds on the wire (`totem_core::wire`): byte 3 of a frame.
const TOKEN: u8 = 0;
const MCAST: u8 = 1;

/// The kind of a datagram: a run of fragments carries a big frame (multicasts only here:
/// tokens are small).
fn kind(datagram: &[u8]) -> u8 {
    if totem_node::fragment::is_fragment(datagram) { MCAST } else { datagram[HEADER_LEN + 3] }
}

/// A UDP socket that records the kinds of every batch it sends (cleartext packets).
struct Recording {
    socket: tokio::net::UdpSocket,
    batches: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Transport for Recording {
    fn send_to(&self, buf: &[u8], to: SocketAddr) -> impl Future<Output = io::Result<usize>> {
        self.batches.lock().unwrap_or_else(|e| e.into_inner()).push(vec![kind(buf)]);
        self.socket.send_to(buf, to)
    }

    fn recv_from(&self, buf: &mut [u8]) -> impl Future<Output = io::Result<(usize, SocketAddr)>> {
        self.socket.recv_from(buf)
    }

    async fn send_batch(&self, batch: &[(&[u8], SocketAddr)], segment: usize) -> Vec<io::Result<usize>> {
        self.batches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(batch.iter().map(|(d, _)| kind(d)).collect());
        Transport::send_batch(&self.socket, batch, segment).await
    }

    async fn recv_burst(&self, burst: &mut RecvBurst) -> io::Result<()> {
        Transport::recv_burst(&self.socket, burst).await
    }

    fn try_recv_burst(&self, burst: &mut RecvBurst) -> Option<io::Result<()>> {
        Transport::try_recv_burst(&self.socket, burst)
    }
}

async fn operational(handle: &Handle, members: usize) {
    for _ in 0..400 {
        let s = handle.status().await.unwrap();
        if s.state == "operational" && !s.syncing && s.members.len() == members {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no {members}-node ring");
}

/// Goal: in every batch, tokens come before multicasts; and the workload makes batches
/// that hold both (so the check is not vacuous).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_leaves_ahead_of_its_visits_multicasts() {
    let sockets: Vec<_> = (0..2)
        .map(|_| totem_node::transport::bind_udp("127.0.0.1:0".parse().unwrap(), 4 << 20).unwrap())
        .collect();
    let nodelist: BTreeMap<_, _> =
        sockets.iter().enumerate().map(|(i, s)| (NodeId(i as u32 + 1), s.local_addr().unwrap())).collect();
    let mut handles = Vec::new();
    let mut logs = Vec::new();
    for (i, socket) in sockets.into_iter().enumerate() {
        let me = NodeId(i as u32 + 1);
        let cfg = RuntimeConfig {
            node_id: me,
            // Frames as with knet (the daemon's default transport), so that a visit of a
            // few 4 KiB messages is past the runtime's threshold.
            core: Config { netmtu: 65_536, ..Config::default() },
            nodelist: nodelist.clone(),
            window: WindowSize::DEFAULT,
        };
        let batches = Arc::new(Mutex::new(Vec::new()));
        logs.push(batches.clone());
        let transport = Recording { socket, batches };
        let (rt, handle) =
            Runtime::new(cfg, transport, MemStore::default(), PacketCrypto::cleartext(me)).unwrap();
        tokio::spawn(async move { rt.run().await.unwrap() });
        handles.push(handle);
    }
    for h in &handles {
        operational(h, 2).await;
    }
    let h = &handles[0];
    let (conn, mut rx) = h.connect(ConnFlags::default(), QueueLimit::DEFAULT).await.unwrap();
    h.join(conn, b"g", 1).await.unwrap().unwrap();
    // One at a time: every visit is small, the token stays behind its multicast.
    for k in 0..50u32 {
        let payload = Bytes::from(vec![k as u8; 1024]);
        h.mcast(conn, Guarantee::Agreed, payload).await.unwrap().unwrap();
    }
    let small = kinds(&logs, &[0, 0]);
    let marks: Vec<usize> = logs.iter().map(|l| l.lock().unwrap_or_else(|e| e.into_inner()).len()).collect();
    // Pipelined within the send window: big visits, the token goes first.
    let msgs: Vec<_> = (0..200u32).map(|k| (Guarantee::Agreed, Bytes::from(vec![k as u8; 4096]))).collect();
    h.send(conn, msgs).await.unwrap();
    let mut delivered = 0;
    while delivered < 200 {
        let event = tokio::time::timeout(Duration::from_secs(20), rx.recv()).await.unwrap().unwrap();
        if let ClientEvent::Cpg(EventKind::Deliver { payload, .. }) = event
            && payload.len() == 4096
        {
            delivered += 1;
        }
    }
    let big = kinds(&logs, &marks);

    let token_then_mcast = |b: &Vec<u8>| {
        let first_token = b.iter().position(|&k| k == TOKEN);
        let last_mcast = b.iter().rposition(|&k| k == MCAST);
        matches!((first_token, last_mcast), (Some(t), Some(m)) if t < m)
    };
    let mcast_then_token = |b: &Vec<u8>| {
        let first_mcast = b.iter().position(|&k| k == MCAST);
        let last_token = b.iter().rposition(|&k| k == TOKEN);
        matches!((first_mcast, last_token), (Some(m), Some(t)) if m < t)
    };
    assert!(small.iter().any(mcast_then_token), "no small visit kept its token behind");
    assert!(!small.iter().any(token_then_mcast), "a small visit sent its token first: {small:?}");
    assert!(big.iter().any(token_then_mcast), "no big visit sent its token first: {big:?}");
    for b in big.iter().filter(|b| b.iter().filter(|&&k| k == MCAST).count() >= 8) {
        assert!(!mcast_then_token(b), "a token behind a big visit's multicasts: {b:?}");
    }
}

/// Every batch recorded after the first `from[i]` batches of node i.
fn kinds(logs: &[Arc<Mutex<Vec<Vec<u8>>>>], from: &[usize]) -> Vec<Vec<u8>> {
    logs.iter()
        .zip(from)
        .flat_map(|(l, &from)| l.lock().unwrap_or_else(|e| e.into_inner())[from..].to_vec())
        .collect()
}
