//! The runtime sends the token ahead of the multicasts of the same step (see the
//! `outgoing` field of `Runtime`): a two-node ring on loopback, with a transport that
//! records the message kinds of every batch it is handed.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use totem_core::cpg::ConnFlags;
use totem_core::{Config, Guarantee, NodeId};
use totem_node::crypto::HEADER_LEN;
use totem_node::events::QueueLimit;
use totem_node::protect::PacketCrypto;
use totem_node::runtime::{Handle, Runtime, RuntimeConfig};
use totem_node::store::MemStore;
use totem_node::transport::{RecvBurst, Transport};
use totem_node::window::WindowSize;

/// Message kinds on the wire (`totem_core::wire`): byte 3 of a frame.
const TOKEN: u8 = 0;
const MCAST: u8 = 1;

/// A UDP socket that records the kinds of every batch it sends (cleartext packets).
struct Recording {
    socket: tokio::net::UdpSocket,
    batches: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Transport for Recording {
    fn send_to(&self, buf: &[u8], to: SocketAddr) -> impl Future<Output = io::Result<usize>> {
        self.batches.lock().unwrap_or_else(|e| e.into_inner()).push(vec![buf[HEADER_LEN + 3]]);
        self.socket.send_to(buf, to)
    }

    fn recv_from(&self, buf: &mut [u8]) -> impl Future<Output = io::Result<(usize, SocketAddr)>> {
        self.socket.recv_from(buf)
    }

    async fn send_batch(&self, batch: &[(&[u8], SocketAddr)]) -> Vec<io::Result<usize>> {
        self.batches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(batch.iter().map(|(d, _)| d[HEADER_LEN + 3]).collect());
        Transport::send_batch(&self.socket, batch).await
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
            core: Config::default(),
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
    let (conn, _rx) = h.connect(ConnFlags::default(), QueueLimit::DEFAULT).await.unwrap();
    h.join(conn, b"g", 1).await.unwrap().unwrap();
    for k in 0..300u32 {
        let payload = Bytes::from(vec![k as u8; 4096]);
        h.mcast(conn, Guarantee::Agreed, payload).await.unwrap().unwrap();
    }

    let mut mixed = 0;
    for log in &logs {
        for batch in log.lock().unwrap().iter() {
            let last_token = batch.iter().rposition(|&k| k == TOKEN);
            let first_mcast = batch.iter().position(|&k| k == MCAST);
            if let (Some(t), Some(m)) = (last_token, first_mcast) {
                assert!(t < m, "a token behind a multicast in one batch: {batch:?}");
                mixed += 1;
            }
        }
    }
    assert!(mixed > 0, "no batch held both a token and multicasts");
}
