//! Three runtimes in one process over real UDP sockets on loopback: the ring forms, CPG
//! clients agree on views and order, a stopped node is noticed, and junk datagrams change
//! nothing.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::time::timeout;
use totem_core::cpg::{ConnFlags, EventKind, Reason};
use totem_core::{Config, Guarantee, NodeId, TimingBase};
use totem_node::protect::PacketCrypto;
use totem_node::runtime::{ClientEvent, Handle, Runtime, RuntimeConfig};
use totem_node::store::MemStore;

fn fast_config(nodes: usize) -> Config {
    Config::for_cluster(TimingBase { token: Duration::from_millis(300), nodes, ..Default::default() })
}

async fn cluster(n: u32) -> (Vec<Handle>, Vec<tokio::task::JoinHandle<()>>, Vec<SocketAddr>) {
    let mut sockets = Vec::new();
    for _ in 0..n {
        sockets.push(totem_node::transport::bind_udp("127.0.0.1:0".parse().unwrap(), 1 << 20).unwrap());
    }
    let addrs: Vec<SocketAddr> = sockets.iter().map(|s| s.local_addr().unwrap()).collect();
    let nodelist: BTreeMap<NodeId, SocketAddr> =
        addrs.iter().enumerate().map(|(i, a)| (NodeId(i as u32 + 1), *a)).collect();
    let mut handles = Vec::new();
    let mut tasks = Vec::new();
    for (i, socket) in sockets.into_iter().enumerate() {
        let id = NodeId(i as u32 + 1);
        let cfg = RuntimeConfig {
            node_id: id,
            core: Config { rng_seed: u64::from(id.0), ..fast_config(n as usize) },
            nodelist: nodelist.clone(),
            window: totem_node::window::WindowSize::DEFAULT,
        };
        let (rt, h) = Runtime::new(cfg, socket, MemStore::default(), PacketCrypto::cleartext(id)).unwrap();
        tasks.push(tokio::spawn(async move {
            rt.run().await.unwrap();
        }));
        handles.push(h);
    }
    (handles, tasks, addrs)
}

async fn until_members(h: &Handle, want: &[u32]) {
    for _ in 0..200 {
        let s = h.status().await.unwrap();
        if s.members == want && s.state == "operational" && !s.syncing {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("node {} never reached members {want:?}: {:?}", h.node_id().0, h.status().await.unwrap());
}

async fn next_deliver(rx: &mut totem_node::events::EventReceiver) -> Vec<u8> {
    loop {
        match timeout(Duration::from_secs(10), rx.recv()).await.unwrap().unwrap() {
            ClientEvent::Cpg(EventKind::Deliver { payload, .. }) => return payload.to_vec(),
            _ => continue,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_over_udp_agree() {
    let (handles, _tasks, addrs) = cluster(3).await;
    for h in &handles {
        until_members(h, &[1, 2, 3]).await;
    }
    let mut rxs = Vec::new();
    for (i, h) in handles.iter().enumerate() {
        let (conn, rx) =
            h.connect(ConnFlags::default(), totem_node::events::QueueLimit::DEFAULT).await.unwrap();
        h.join(conn, b"chat", 100 + i as u32).await.unwrap().unwrap();
        rxs.push((conn, rx));
    }
    // Wait until everyone sees all three members.
    for h in &handles {
        for _ in 0..100 {
            if h.membership(b"chat").await.unwrap().unwrap().len() == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // Junk and forged datagrams from inside and outside the nodelist change nothing.
    let junk = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for k in 0..200u32 {
        let bytes: Vec<u8> = (0..(k % 90)).map(|j| (j * 31 + k) as u8).collect();
        junk.send_to(&bytes, addrs[(k % 3) as usize]).await.unwrap();
    }
    for round in 0..10u8 {
        for (i, h) in handles.iter().enumerate() {
            let conn = rxs[i].0;
            loop {
                match h.mcast(conn, Guarantee::Agreed, Bytes::from(vec![i as u8, round])).await.unwrap() {
                    Ok(()) => break,
                    Err(totem_core::cpg::CpgError::TryAgain) => {
                        tokio::time::sleep(Duration::from_millis(5)).await
                    }
                    Err(e) => panic!("{e}"),
                }
            }
        }
    }
    let mut orders = Vec::new();
    for (_, rx) in &mut rxs {
        let mut got = Vec::new();
        for _ in 0..30 {
            got.push(next_deliver(rx).await);
        }
        orders.push(got);
    }
    assert_eq!(orders[0], orders[1]);
    assert_eq!(orders[0], orders[2]);
    let s = handles[0].status().await.unwrap();
    assert!(s.runtime.unknown_source >= 60, "junk counted: {:?}", s.runtime);

    // Node 3 leaves cleanly: the others see its process go with NODEDOWN.
    handles[2].shutdown().await;
    until_members(&handles[0], &[1, 2]).await;
    let rx = &mut rxs[0].1;
    let mut saw = false;
    for _ in 0..1000 {
        match timeout(Duration::from_secs(10), rx.recv()).await.unwrap().unwrap() {
            ClientEvent::Cpg(EventKind::Confchg { left, .. })
                if left.iter().any(|(p, r)| p.node == NodeId(3) && *r == Reason::NodeDown) =>
            {
                saw = true;
                break;
            }
            _ => {}
        }
    }
    assert!(saw, "NODEDOWN for node 3's process");
}
