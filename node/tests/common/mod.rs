//! What several test files share: a one-node runtime on loopback.
#![allow(clippy::unwrap_used, dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;
use totem_core::{Config, NodeId};
use totem_node::protect::PacketCrypto;
use totem_node::runtime::{Handle, Runtime, RuntimeConfig};
use totem_node::store::MemStore;
use totem_node::window::WindowSize;

/// A one-node runtime on 127.0.0.1 (cleartext, state in memory), spawned on the current
/// tokio runtime; returns once its ring is operational and not synchronizing.
pub async fn one_node_runtime() -> Handle {
    let socket = totem_node::transport::bind_udp("127.0.0.1:0".parse().unwrap(), 1 << 20).unwrap();
    let addr = socket.local_addr().unwrap();
    let cfg = RuntimeConfig {
        node_id: NodeId(1),
        core: Config::default(),
        nodelist: BTreeMap::from([(NodeId(1), addr)]),
        window: WindowSize::DEFAULT,
    };
    let (rt, handle) =
        Runtime::new(cfg, socket, MemStore::default(), PacketCrypto::cleartext(NodeId(1))).unwrap();
    tokio::spawn(async move { rt.run().await.unwrap() });
    for _ in 0..400 {
        let s = handle.status().await.unwrap();
        if s.state == "operational" && !s.syncing {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    handle
}
