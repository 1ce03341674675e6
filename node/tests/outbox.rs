//! The runtime's per-connection outbox (multicasts sent without a reply, within a send
//! window): what a connection asks for happens in the order it asked, whatever waits for the
//! core. Sends are delivered before a later leave's view change, and before the PROCDOWN of a
//! client that disconnects with sends still queued; a client that sends past its window is
//! disconnected, but what it sent within the window still goes out first; credit comes back
//! for every message taken.
#![allow(clippy::unwrap_used)]

mod common;

use bytes::Bytes;
use std::time::Duration;
use tokio::time::timeout;
use totem_core::cpg::{ConnFlags, EventKind, Process, Reason};
use totem_core::{Guarantee, NodeId};
use totem_node::events::{EventReceiver, QueueLimit};
use totem_node::runtime::ClientEvent;

async fn next(rx: &mut EventReceiver) -> ClientEvent {
    timeout(Duration::from_secs(20), rx.recv()).await.expect("an event within 20 s").expect("connection open")
}

/// The observer's CPG events up to and including the first view change of "g" in which
/// `who` leaves: the payloads `who` delivered before it, and the reason it left.
async fn deliveries_until_left(rx: &mut EventReceiver, who: Process) -> (Vec<Bytes>, Reason) {
    let mut got = Vec::new();
    for _ in 0..100_000 {
        match next(rx).await {
            ClientEvent::Cpg(EventKind::Deliver { sender, payload, .. }) if sender == who => {
                got.push(payload)
            }
            ClientEvent::Cpg(EventKind::Confchg { left, .. }) => {
                if let Some((_, r)) = left.iter().find(|(p, _)| *p == who) {
                    return (got, *r);
                }
            }
            _ => {}
        }
    }
    panic!("{who:?} never left");
}

fn numbered(from: u32, to: u32, len: usize) -> Vec<(Guarantee, Bytes)> {
    (from..to)
        .map(|k| {
            let mut p = vec![0u8; len.max(4)];
            p[..4].copy_from_slice(&k.to_le_bytes());
            let g = if k % 7 == 0 { Guarantee::Safe } else { Guarantee::Agreed };
            (g, Bytes::from(p))
        })
        .collect()
}

fn numbers(payloads: &[Bytes]) -> Vec<u32> {
    payloads.iter().map(|p| u32::from_le_bytes([p[0], p[1], p[2], p[3]])).collect()
}

/// Sum the credit a connection got until `want` messages are accounted for.
async fn credit(rx: &mut EventReceiver, want: u32) -> (u32, u64) {
    let (mut msgs, mut bytes) = (0, 0);
    while msgs < want {
        if let ClientEvent::Credit { msgs: m, bytes: b, failed } = next(rx).await {
            assert_eq!(failed, None);
            msgs += m;
            bytes += b;
        }
    }
    (msgs, bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_keep_their_order_against_leave_and_disconnect() {
    let handle = common::one_node_runtime().await;
    let window = handle.window();
    let (obs, mut obs_rx) = handle.connect(ConnFlags::default(), QueueLimit::DEFAULT).await.unwrap();
    handle.join(obs, b"g", 1).await.unwrap().unwrap();

    // Sends, then a leave: every send is delivered before the leave's view change, in order.
    let (a, mut a_rx) = handle.connect(ConnFlags::default(), QueueLimit::DEFAULT).await.unwrap();
    handle.join(a, b"g", 2).await.unwrap().unwrap();
    let n = window.msgs - 6;
    for chunk in numbered(0, n, 1000).chunks(50) {
        handle.send(a, chunk.to_vec()).await.unwrap();
    }
    handle.leave(a, b"g").await.unwrap().unwrap();
    let who = Process { node: NodeId(1), pid: 2 };
    let (got, reason) = deliveries_until_left(&mut obs_rx, who).await;
    assert_eq!(numbers(&got), (0..n).collect::<Vec<_>>());
    assert_eq!(reason, Reason::Leave);
    assert_eq!(credit(&mut a_rx, n).await, (n, u64::from(n) * 1000));

    // Sends, then the client goes away: they are delivered, then its PROCDOWN.
    handle.join(a, b"g", 3).await.unwrap().unwrap();
    handle.send(a, numbered(1000, 1000 + n, 3000)).await.unwrap();
    handle.disconnect(a).await;
    let who = Process { node: NodeId(1), pid: 3 };
    let (got, reason) = deliveries_until_left(&mut obs_rx, who).await;
    assert_eq!(numbers(&got), (1000..1000 + n).collect::<Vec<_>>());
    assert_eq!(reason, Reason::ProcDown);
    assert_eq!(handle.status().await.unwrap().runtime.clients_overrun, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sending_past_the_window_disconnects_after_what_fit() {
    let handle = common::one_node_runtime().await;
    let window = handle.window();
    let (obs, mut obs_rx) = handle.connect(ConnFlags::default(), QueueLimit::DEFAULT).await.unwrap();
    handle.join(obs, b"g", 1).await.unwrap().unwrap();
    let (c, mut c_rx) = handle.connect(ConnFlags::default(), QueueLimit::DEFAULT).await.unwrap();
    handle.join(c, b"g", 9).await.unwrap().unwrap();

    // One message more than the window allows, in one go (the daemon may not take any of
    // them before the last arrives): the first `window.msgs` go out, the rest does not.
    handle.send(c, numbered(0, window.msgs + 5, 16)).await.unwrap();
    let who = Process { node: NodeId(1), pid: 9 };
    let (got, reason) = deliveries_until_left(&mut obs_rx, who).await;
    assert_eq!(numbers(&got), (0..window.msgs).collect::<Vec<_>>());
    assert_eq!(reason, Reason::ProcDown);
    assert_eq!(handle.status().await.unwrap().runtime.clients_overrun, 1);
    // The offender's connection is closed (after whatever credit it was owed).
    for _ in 0..10_000 {
        match timeout(Duration::from_secs(20), c_rx.recv()).await.unwrap() {
            None => break,
            Some(_) => continue,
        }
    }
    assert!(c_rx.try_recv().is_none());

    // The bytes limit counts too: a window's worth of bytes plus one, in large messages.
    let (d, _d_rx) = handle.connect(ConnFlags::default(), QueueLimit::DEFAULT).await.unwrap();
    handle.join(d, b"g", 10).await.unwrap().unwrap();
    let big = 64 * 1024;
    let fit = (window.bytes / big as u64) as u32;
    handle.send(d, numbered(0, fit + 1, big)).await.unwrap();
    let who = Process { node: NodeId(1), pid: 10 };
    let (got, reason) = deliveries_until_left(&mut obs_rx, who).await;
    assert_eq!(numbers(&got), (0..fit).collect::<Vec<_>>());
    assert_eq!(reason, Reason::ProcDown);
    assert_eq!(handle.status().await.unwrap().runtime.clients_overrun, 2);
}
