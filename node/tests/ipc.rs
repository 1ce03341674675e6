//! The IPC server and client library against a one-node runtime: CPG calls work, a client
//! that sends garbage or stops reading is disconnected and hurts nobody else.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::time::timeout;
use totem_core::Guarantee;
use totem_core::cpg::{CpgError, EventKind, Reason};
use totem_node::client::{Client, ClientError};
use totem_node::ipc::{Access, ClientMsg, Request, Server, write_frame};
use totem_node::runtime::Handle;

async fn one_node(dir: &std::path::Path, client_queue: usize) -> (Handle, std::path::PathBuf) {
    one_node_with(dir, client_queue, None).await
}

async fn one_node_with(
    dir: &std::path::Path,
    client_queue: usize,
    reload: Option<tokio::sync::mpsc::Sender<()>>,
) -> (Handle, std::path::PathBuf) {
    let handle = common::one_node_runtime().await;
    let path = dir.join("totem.sock");
    let mut server = Server::bind(&path).unwrap();
    if let Some(tx) = reload {
        server.set_reload(tx);
    }
    let h = handle.clone();
    tokio::spawn(server.serve(h, Access::default(), totem_node::events::QueueLimit::events(client_queue)));
    (handle, path)
}

async fn next_deliver(c: &mut Client) -> Vec<u8> {
    loop {
        match timeout(Duration::from_secs(10), c.next_event()).await.unwrap().unwrap() {
            EventKind::Deliver { payload, .. } => return payload.to_vec(),
            _ => continue,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpg_over_ipc_and_misbehaving_clients() {
    let dir = tempdir();
    let (_handle, path) = one_node(&dir, 64).await;

    let mut a = Client::connect(&path).await.unwrap();
    assert_eq!(a.local_node_id(), 1);
    a.join(b"g", 10).await.unwrap();
    assert!(matches!(a.join(b"g", 10).await, Err(ClientError::Cpg(CpgError::Exist))));
    assert!(matches!(a.join(&[0; 129], 10).await, Err(ClientError::Cpg(CpgError::NameTooLong { .. }))));
    let mut b = Client::connect(&path).await.unwrap();
    b.join(b"g", 11).await.unwrap();
    a.send_retrying(Guarantee::Agreed, b"one".to_vec()).await.unwrap();
    // `send` returns once the message is on its way; `flush` once the daemon has taken it
    // (so that b's message is ordered after it).
    a.flush().await.unwrap();
    b.send_retrying(Guarantee::Safe, b"two".to_vec()).await.unwrap();
    assert_eq!(next_deliver(&mut a).await, b"one");
    assert_eq!(next_deliver(&mut a).await, b"two");
    assert_eq!(next_deliver(&mut b).await, b"one");
    assert_eq!(next_deliver(&mut b).await, b"two");
    assert_eq!(b.membership(b"g").await.unwrap().len(), 2);

    // Garbage: an oversized frame header, then random bytes. The daemon drops the client.
    let mut raw = tokio::net::UnixStream::connect(&path).await.unwrap();
    raw.write_all(&u32::MAX.to_le_bytes()).await.unwrap();
    let mut raw2 = tokio::net::UnixStream::connect(&path).await.unwrap();
    raw2.write_all(&[5, 0, 0, 0, 0xff, 0xfe, 0xfd, 0xfc, 0xfb]).await.unwrap();

    // A stalled client: joins, then never reads its socket while traffic flows.
    let mut stalled = tokio::net::UnixStream::connect(&path).await.unwrap();
    let hello = ClientMsg { id: 1, request: Request::Hello { flags: Default::default() } };
    write_frame(&mut stalled, &hello).await.unwrap();
    write_frame(&mut stalled, &ClientMsg { id: 2, request: Request::Join { group: b"g".to_vec(), pid: 12 } })
        .await
        .unwrap();
    for _ in 0..200 {
        if a.membership(b"g").await.unwrap().len() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(a.membership(b"g").await.unwrap().len(), 3);
    for k in 0..400u32 {
        a.send_retrying(
            Guarantee::Agreed,
            vec![0u8; 16 * 1024].into_iter().chain(k.to_le_bytes()).collect::<Vec<u8>>(),
        )
        .await
        .unwrap();
        // Keep `a` and `b` drained so only `stalled` falls behind.
        let _ = next_deliver(&mut a).await;
        let _ = next_deliver(&mut b).await;
    }
    // The stalled process was removed from the group with PROCDOWN, seen by `b`.
    let mut saw = false;
    for _ in 0..200 {
        let m = b.membership(b"g").await.unwrap();
        if m.len() == 2 {
            saw = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(saw, "stalled client removed: {:?}", b.membership(b"g").await.unwrap());
    let status = b.status().await.unwrap();
    assert!(status.runtime.clients_stalled >= 1);
    // The others still work.
    b.send_retrying(Guarantee::Agreed, b"still here".to_vec()).await.unwrap();
    loop {
        let e = timeout(Duration::from_secs(10), a.next_event()).await.unwrap().unwrap();
        match e {
            EventKind::Deliver { payload, .. } if &payload[..] == b"still here" => break,
            EventKind::Confchg { left, .. } => assert!(left.iter().all(|(_, r)| *r == Reason::ProcDown)),
            _ => {}
        }
    }
    drop(stalled);
    let _ = std::fs::remove_dir_all(&dir);
}

// Goal: a reload request over the socket reaches the daemon's reload channel (repeated
// requests coalesce while one is pending), and a server without one refuses, saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_over_ipc() {
    let dir = tempdir().join("reload");
    std::fs::create_dir_all(&dir).unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel(1);
    let (_handle, path) = one_node_with(&dir, 64, Some(tx)).await;
    let admin = Client::admin(&path).await.unwrap();
    admin.reload().await.unwrap();
    admin.reload().await.unwrap();
    timeout(Duration::from_secs(5), rx.recv()).await.unwrap().unwrap();
    assert!(rx.try_recv().is_err(), "two requests while one was pending make one reload");

    let dir2 = dir.join("plain");
    std::fs::create_dir_all(&dir2).unwrap();
    let (_handle2, path2) = one_node(&dir2, 64).await;
    let admin2 = Client::admin(&path2).await.unwrap();
    match admin2.reload().await {
        Err(ClientError::Refused(why)) => assert!(why.contains("cannot reload"), "{why}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempdir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!(
        "totem-ipc-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}
