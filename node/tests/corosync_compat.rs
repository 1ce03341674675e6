//! The rust-corosync-shaped CPG API (`totem_node::corosync::cpg`) against a one-node runtime
//! in this process, driven as a ported Corosync program drives it: blocking calls, plain `fn`
//! callbacks that find their state through the context, dispatch, and a pollable fd.
#![allow(clippy::unwrap_used)] // Test helpers: a failure here is a test failure.

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use totem_core::{Config, NodeId as CoreNodeId};
use totem_node::client::Client;
use totem_node::corosync::cpg::{self, Address, Guarantee, Model1Flags, ModelData, Reason};
use totem_node::corosync::{CsError, DispatchFlags, NodeId};
use totem_node::ipc::{Access, Server};
use totem_node::protect::PacketCrypto;
use totem_node::runtime::{Runtime, RuntimeConfig};
use totem_node::store::MemStore;

/// A one-node cluster with its IPC socket, on its own tokio runtime (the compat API blocks,
/// so the tests call it from their own thread).
struct OneNode {
    rt: tokio::runtime::Runtime,
    path: PathBuf,
    _dir: tempfile::TempDir,
}

fn one_node() -> OneNode {
    one_node_with(256)
}

fn one_node_with(client_queue: usize) -> OneNode {
    let client_queue = totem_node::events::QueueLimit::events(client_queue);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("totem.sock");
    let p = path.clone();
    rt.block_on(async move {
        let socket = totem_node::transport::bind_udp("127.0.0.1:0".parse().unwrap(), 1 << 20).unwrap();
        let addr = socket.local_addr().unwrap();
        let cfg = RuntimeConfig {
            node_id: CoreNodeId(1),
            core: Config::default(),
            nodelist: BTreeMap::from([(CoreNodeId(1), addr)]),
            window: totem_node::window::WindowSize::DEFAULT,
        };
        let (node, handle) =
            Runtime::new(cfg, socket, MemStore::default(), PacketCrypto::cleartext(CoreNodeId(1))).unwrap();
        tokio::spawn(async move { node.run().await.unwrap() });
        let server = Server::bind(&p).unwrap();
        tokio::spawn(server.serve(handle.clone(), Access::default(), client_queue));
        for _ in 0..400 {
            let s = handle.status().await.unwrap();
            if s.state == "operational" && !s.syncing {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    });
    OneNode { rt, path, _dir: dir }
}

/// What a callback saw, filed under the handle's context.
#[derive(Clone, Debug, PartialEq)]
enum Seen {
    Deliver { group: String, nodeid: u32, pid: u32, msg: Vec<u8>, local: Result<u32, CsError> },
    Confchg { group: String, members: Vec<Address>, left: Vec<Address>, joined: Vec<Address> },
    Totem { rep: u32, members: Vec<u32> },
}

static SEEN: Mutex<BTreeMap<u64, Vec<Seen>>> = Mutex::new(BTreeMap::new());

fn record(handle: &cpg::Handle, seen: Seen) {
    let context = cpg::context_get(handle).unwrap();
    SEEN.lock().unwrap().entry(context).or_default().push(seen);
}

fn deliver_fn(h: &cpg::Handle, group: String, nodeid: NodeId, pid: u32, msg: &[u8], msg_len: usize) {
    assert_eq!(msg.len(), msg_len);
    // Callbacks may call the API on their own handle.
    let local = cpg::local_get(h).map(u32::from);
    record(h, Seen::Deliver { group, nodeid: nodeid.into(), pid, msg: msg.to_vec(), local });
}

fn confchg_fn(h: &cpg::Handle, group: &str, members: Vec<Address>, left: Vec<Address>, joined: Vec<Address>) {
    record(h, Seen::Confchg { group: group.to_owned(), members, left, joined });
}

fn totem_confchg_fn(h: &cpg::Handle, ring_id: cpg::RingId, members: Vec<NodeId>) {
    record(
        h,
        Seen::Totem { rep: ring_id.nodeid.into(), members: members.into_iter().map(u32::from).collect() },
    );
}

/// Finalizes its own handle when it receives "bye".
fn finalizing_deliver_fn(h: &cpg::Handle, _g: String, _n: NodeId, _p: u32, msg: &[u8], _l: usize) {
    if msg == b"bye" {
        cpg::finalize(h).unwrap();
    }
}

fn model(flags: Model1Flags) -> ModelData {
    ModelData::ModelV1(cpg::Model1Data {
        flags,
        deliver_fn: Some(deliver_fn),
        confchg_fn: Some(confchg_fn),
        totem_confchg_fn: Some(totem_confchg_fn),
    })
}

/// Dispatch (without blocking forever) until a callback for `context` saw something that
/// `want` accepts; returns it, and drops what came before it.
fn dispatch_until(h: &cpg::Handle, context: u64, want: impl Fn(&Seen) -> bool) -> Seen {
    let start = Instant::now();
    loop {
        let found = {
            let mut all = SEEN.lock().unwrap();
            let list = all.entry(context).or_default();
            list.iter().position(&want).map(|i| {
                let s = list[i].clone();
                list.drain(..=i);
                s
            })
        };
        if let Some(s) = found {
            return s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "not seen in time; saw {:?}",
            SEEN.lock().unwrap().get(&context)
        );
        match cpg::dispatch(h, DispatchFlags::OneNonblocking) {
            Ok(()) => {}
            Err(CsError::CsErrTryAgain) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => panic!("dispatch: {e}"),
        }
    }
}

fn mcast(h: &cpg::Handle, g: Guarantee, msg: &[u8]) {
    for _ in 0..2000 {
        match cpg::mcast_joined(h, g, msg) {
            Err(CsError::CsErrTryAgain) => std::thread::sleep(Duration::from_millis(5)),
            r => return r.unwrap(),
        }
    }
    panic!("mcast kept getting TryAgain");
}

fn addr(nodeid: u32, pid: u32, reason: Reason) -> Address {
    Address { nodeid: NodeId::from(nodeid), pid, reason }
}

/// The handle's fd, for tokio's poller.
struct Fd(RawFd);
impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// Whether `fd` becomes readable within `within` (a fresh registration reports the current
/// state, so this is "readable now or soon").
///
/// `fd_get` hands out a raw descriptor, as libcpg does, and tokio deprecated registering
/// raw descriptors for lack of I/O safety. Here it is sound: the handle owns the descriptor
/// and outlives this registration, which is removed before returning.
#[allow(deprecated)]
fn readable(node: &OneNode, fd: RawFd, within: Duration) -> bool {
    node.rt.block_on(async {
        let afd = AsyncFd::with_interest(Fd(fd), Interest::READABLE).unwrap();
        tokio::time::timeout(within, afd.readable()).await.is_ok()
    })
}

// Goal: a program written against rust-corosync's cpg works unchanged: initialize, context,
// join (and its errors), view changes with member lists, the initial Totem view change,
// membership and iteration, mcast delivered to the callback (also to and from a native
// client), leave and rejoin, name and size limits, and finalize making the handle bad.
#[test]
fn cpg_through_the_corosync_api() {
    let node = one_node();
    let me = std::process::id();
    let ctx = 0x1001;
    let h = cpg::initialize_at(&node.path, &model(Model1Flags::DeliverInitialTotemConf), ctx).unwrap();
    assert_eq!(u32::from(cpg::local_get(&h).unwrap()), 1);
    assert_eq!(cpg::context_get(&h).unwrap(), ctx);
    cpg::context_set(&h, 0xabcd_beef_cafe).unwrap();
    assert_eq!(cpg::context_get(&h).unwrap(), 0xabcd_beef_cafe);
    cpg::context_set(&h, ctx).unwrap();
    assert_eq!(cpg::max_atomic_msgsize_get(&h).unwrap(), 1024 * 1024);
    assert!(!cpg::flow_control_state_get(&h).unwrap());
    assert_eq!(cpg::dispatch(&h, DispatchFlags::OneNonblocking), Err(CsError::CsErrTryAgain));
    assert_eq!(cpg::dispatch(&h, DispatchFlags::All), Ok(()));
    assert_eq!(cpg::mcast_joined(&h, Guarantee::TypeAgreed, b"early"), Err(CsError::CsErrNotExist));

    // Join: our own view change, then (DeliverInitialTotemConf) the current ring.
    cpg::join(&h, "compat").unwrap();
    assert_eq!(cpg::join(&h, "compat"), Err(CsError::CsErrExist));
    let fd = cpg::fd_get(&h).unwrap();
    assert!(readable(&node, fd, Duration::from_secs(10)), "the fd signals the pending view change");
    let Seen::Confchg { group, members, left, joined } =
        dispatch_until(&h, ctx, |s| matches!(s, Seen::Confchg { .. }))
    else {
        unreachable!()
    };
    assert_eq!(group, "compat");
    assert_eq!(members, vec![addr(1, me, Reason::Undefined)]);
    assert!(left.is_empty());
    assert_eq!(joined, vec![addr(1, me, Reason::Join)]);
    let totem = dispatch_until(&h, ctx, |s| matches!(s, Seen::Totem { .. }));
    assert_eq!(totem, Seen::Totem { rep: 1, members: vec![1] });
    assert_eq!(cpg::dispatch(&h, DispatchFlags::All), Ok(()));
    assert!(!readable(&node, fd, Duration::from_millis(100)), "nothing pending: fd quiet");

    // A native client joins the same group: both sides see each other.
    let native = node.rt.block_on(async {
        let c = Client::connect(&node.path).await.unwrap();
        c.join(b"compat", 4242).await.unwrap();
        c
    });
    let Seen::Confchg { members, joined, .. } =
        dispatch_until(&h, ctx, |s| matches!(s, Seen::Confchg { .. }))
    else {
        unreachable!()
    };
    let mut expected = vec![addr(1, me, Reason::Undefined), addr(1, 4242, Reason::Undefined)];
    expected.sort_by_key(|a| a.pid);
    let mut members = members;
    members.sort_by_key(|a| a.pid);
    assert_eq!(members, expected);
    assert_eq!(joined, vec![addr(1, 4242, Reason::Join)]);
    let mut got = cpg::membership_get(&h, "compat").unwrap();
    got.sort_by_key(|a| a.pid);
    assert_eq!(got, expected);
    assert!(cpg::membership_get(&h, "nobody-here").unwrap().is_empty());

    // Iteration.
    let all: Vec<_> = cpg::CpgIterStart::new(&h, "", cpg::CpgIterType::All).unwrap().into_iter().collect();
    assert_eq!(all.len(), 2);
    assert!(all.iter().all(|i| i.group == "compat" && u32::from(i.nodeid) == 1));
    let names: Vec<_> = cpg::CpgIterStart::new(&h, "", cpg::CpgIterType::NameOnly)
        .unwrap()
        .into_iter()
        .map(|i| i.group)
        .collect();
    assert_eq!(names, vec!["compat".to_owned()]);
    let one = cpg::CpgIterStart::new(&h, "compat", cpg::CpgIterType::OneGroup).unwrap().into_iter().count();
    assert_eq!(one, 2);
    assert_eq!(
        cpg::CpgIterStart::new(&h, "other", cpg::CpgIterType::OneGroup).unwrap().into_iter().count(),
        0
    );

    // Messages both ways, agreed and safe.
    mcast(&h, Guarantee::TypeAgreed, b"hello");
    let d = dispatch_until(&h, ctx, |s| matches!(s, Seen::Deliver { .. }));
    assert_eq!(
        d,
        Seen::Deliver { group: "compat".into(), nodeid: 1, pid: me, msg: b"hello".to_vec(), local: Ok(1) }
    );
    mcast(&h, Guarantee::TypeSafe, b"safe");
    let d = dispatch_until(&h, ctx, |s| matches!(s, Seen::Deliver { .. }));
    assert!(matches!(d, Seen::Deliver { ref msg, .. } if msg == b"safe"), "{d:?}");
    node.rt.block_on(async {
        let mut seen = Vec::new();
        while seen.len() < 2 {
            let e =
                tokio::time::timeout(Duration::from_secs(10), native.next_event()).await.unwrap().unwrap();
            if let totem_core::cpg::EventKind::Deliver { payload, sender, .. } = e {
                assert_eq!(sender.pid, me);
                seen.push(payload.to_vec());
            }
        }
        assert_eq!(seen, vec![b"hello".to_vec(), b"safe".to_vec()]);
        native.send_retrying(totem_core::Guarantee::Agreed, b"from native".to_vec()).await.unwrap();
    });
    let d = dispatch_until(&h, ctx, |s| matches!(s, Seen::Deliver { .. }));
    assert!(matches!(d, Seen::Deliver { pid: 4242, ref msg, .. } if msg == b"from native"), "{d:?}");
    assert!(!cpg::flow_control_state_get(&h).unwrap());

    // Limits: names over 128 bytes, messages over 1 MiB.
    let long = "x".repeat(129);
    assert_eq!(cpg::join(&h, &long), Err(CsError::CsErrNameTooLong));
    assert_eq!(cpg::leave(&h, &long), Err(CsError::CsErrNameTooLong));
    assert_eq!(cpg::membership_get(&h, &long).map(|_| ()), Err(CsError::CsErrNameTooLong));
    assert_eq!(cpg::join(&h, &"y".repeat(128)), Err(CsError::CsErrExist), "128 bytes is a valid name");
    let big = vec![0u8; 1024 * 1024 + 1];
    assert_eq!(cpg::mcast_joined(&h, Guarantee::TypeAgreed, &big), Err(CsError::CsErrTooBig));

    // Leave, then rejoin.
    assert_eq!(cpg::leave(&h, "other"), Err(CsError::CsErrNotExist));
    cpg::leave(&h, "compat").unwrap();
    let Seen::Confchg { left, .. } = dispatch_until(&h, ctx, |s| matches!(s, Seen::Confchg { .. })) else {
        unreachable!()
    };
    assert_eq!(left, vec![addr(1, me, Reason::Leave)]);
    assert_eq!(cpg::mcast_joined(&h, Guarantee::TypeAgreed, b"gone"), Err(CsError::CsErrNotExist));
    cpg::join(&h, "compat").unwrap();
    let Seen::Confchg { joined, members, .. } =
        dispatch_until(&h, ctx, |s| matches!(s, Seen::Confchg { .. }))
    else {
        unreachable!()
    };
    assert_eq!(joined, vec![addr(1, me, Reason::Join)]);
    assert_eq!(members.len(), 2);

    // Finalize: every copy of the handle is bad; the group sees the process go.
    let copy = h.clone();
    assert!(copy == h);
    cpg::finalize(&h).unwrap();
    assert_eq!(cpg::finalize(&h), Err(CsError::CsErrBadHandle));
    assert_eq!(cpg::join(&copy, "compat"), Err(CsError::CsErrBadHandle));
    assert_eq!(cpg::dispatch(&copy, DispatchFlags::All), Err(CsError::CsErrBadHandle));
    assert_eq!(cpg::fd_get(&copy), Err(CsError::CsErrBadHandle));
    assert_eq!(cpg::local_get(&copy), Err(CsError::CsErrBadHandle));
    assert_eq!(cpg::context_get(&copy), Err(CsError::CsErrBadHandle));
    assert_eq!(cpg::mcast_joined(&copy, Guarantee::TypeAgreed, b"x"), Err(CsError::CsErrBadHandle));
    node.rt.block_on(async {
        loop {
            let e =
                tokio::time::timeout(Duration::from_secs(10), native.next_event()).await.unwrap().unwrap();
            // (It saw the explicit leave above first.)
            if let totem_core::cpg::EventKind::Confchg { left, .. } = e
                && left.iter().any(|(p, r)| p.pid == me && *r == totem_core::cpg::Reason::ProcDown)
            {
                break;
            }
        }
    });
}

// Goal: initialize fails as libcpg does: no model is InvalidParam, no daemon is Library.
#[test]
fn initialize_errors() {
    let dir = tempfile::tempdir().unwrap();
    let nowhere = dir.path().join("no.sock");
    assert_eq!(cpg::initialize_at(&nowhere, &ModelData::ModelNone, 0), Err(CsError::CsErrInvalidParam));
    assert_eq!(cpg::initialize_at(&nowhere, &model(Model1Flags::None), 0), Err(CsError::CsErrLibrary));
}

// Goal: the dispatch modes and the end of a handle: Blocking returns when another thread
// finalizes; a callback may finalize its own handle; dropping the original handle (not a
// clone) finalizes it; when the daemon goes away the fd becomes readable and dispatch says
// CsErrLibrary.
#[test]
fn dispatch_modes_and_endings() {
    let node = one_node();

    // Blocking dispatch, ended by finalize from another thread.
    let h = cpg::initialize_at(&node.path, &model(Model1Flags::None), 0x2001).unwrap();
    let remote = h.clone();
    let stopper = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        cpg::finalize(&remote).unwrap();
    });
    assert_eq!(cpg::dispatch(&h, DispatchFlags::Blocking), Ok(()));
    stopper.join().unwrap();
    assert_eq!(cpg::dispatch(&h, DispatchFlags::One), Err(CsError::CsErrBadHandle));

    // One waits for an event and runs exactly one callback; a callback finalizes its handle.
    let model_bye = ModelData::ModelV1(cpg::Model1Data {
        flags: Model1Flags::None,
        deliver_fn: Some(finalizing_deliver_fn),
        confchg_fn: Some(confchg_fn),
        totem_confchg_fn: None,
    });
    let h = cpg::initialize_at(&node.path, &model_bye, 0x2002).unwrap();
    cpg::join(&h, "modes").unwrap();
    cpg::dispatch(&h, DispatchFlags::One).unwrap();
    assert_eq!(SEEN.lock().unwrap().get(&0x2002).map(Vec::len), Some(1), "exactly one callback");
    mcast(&h, Guarantee::TypeAgreed, b"bye");
    mcast(&h, Guarantee::TypeAgreed, b"after");
    let start = Instant::now();
    while cpg::local_get(&h).is_ok() {
        assert!(start.elapsed() < Duration::from_secs(10));
        match cpg::dispatch(&h, DispatchFlags::All) {
            Ok(()) => {}
            Err(e) => panic!("dispatch: {e}"),
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(cpg::join(&h, "modes"), Err(CsError::CsErrBadHandle));

    // Dropping the original finalizes; dropping a clone does not.
    let original = cpg::initialize_at(&node.path, &model(Model1Flags::None), 0x2003).unwrap();
    let copy = original.clone();
    drop(copy.clone());
    assert!(cpg::local_get(&original).is_ok());
    drop(original);
    assert_eq!(cpg::local_get(&copy), Err(CsError::CsErrBadHandle));

    // The daemon goes away: fd readable, pending events still dispatched, then Library.
    let h = cpg::initialize_at(&node.path, &model(Model1Flags::None), 0x2004).unwrap();
    cpg::join(&h, "ending").unwrap();
    let fd = cpg::fd_get(&h).unwrap();
    assert!(readable(&node, fd, Duration::from_secs(10)));
    let OneNode { rt, path: _, _dir } = node;
    rt.shutdown_timeout(Duration::from_secs(5));
    let start = Instant::now();
    let end = loop {
        assert!(start.elapsed() < Duration::from_secs(10), "dispatch did not report the lost daemon");
        match cpg::dispatch(&h, DispatchFlags::All) {
            Ok(()) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => break e,
        }
    };
    assert_eq!(end, CsError::CsErrLibrary);
    assert!(
        SEEN.lock()
            .unwrap()
            .get(&0x2004)
            .is_some_and(|s| s.iter().any(|e| matches!(e, Seen::Confchg { .. }))),
        "the view change received before the end was dispatched"
    );
    assert_eq!(cpg::join(&h, "again"), Err(CsError::CsErrLibrary));
    cpg::finalize(&h).unwrap();
}

// Goal: the example program's socket resolution is the library's: initialize uses
// $TOTEM_SOCKET or the default path (here: nothing listens there, so Library).
#[test]
fn initialize_without_a_daemon_is_a_library_error() {
    if Path::new(totem_node::client::DEFAULT_SOCKET).exists() || std::env::var_os("TOTEM_SOCKET").is_some() {
        eprintln!("a daemon socket is configured on this machine: skipped");
        return;
    }
    assert_eq!(cpg::initialize(&model(Model1Flags::None), 0).map(|_| ()), Err(CsError::CsErrLibrary));
}

// Goal: a handle whose program stops dispatching during a flood neither hangs its calls
// (replies are not stuck behind undispatched events) nor grows without bound: at
// EVENT_QUEUE_MAX events behind it is disconnected, the group sees PROCDOWN, and dispatch
// runs what was queued, in order, then says CsErrLibrary.
#[test]
fn a_handle_that_stops_dispatching_is_disconnected_not_deadlocked() {
    const FLOOD: u32 = cpg::EVENT_QUEUE_MAX as u32 + 2000;
    let node = one_node_with(4 * FLOOD as usize);
    let me = std::process::id();
    let ctx = 0x3001;
    let h = cpg::initialize_at(&node.path, &model(Model1Flags::None), ctx).unwrap();
    cpg::join(&h, "flood").unwrap();
    dispatch_until(&h, ctx, |s| matches!(s, Seen::Confchg { .. }));

    // Calls keep answering while undispatched events pile up, until the handle is cut off.
    let caller = h.clone();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let calls = std::thread::spawn(move || {
        let end = loop {
            if let Err(e) = cpg::membership_get(&caller, "flood") {
                break e;
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        done_tx.send(end).unwrap();
    });

    let native = node.rt.block_on(async { Client::connect(&node.path).await.unwrap() });
    let saw_procdown = node.rt.block_on(async {
        native.join(b"flood", 4242).await.unwrap();
        let send = async {
            for k in 0..FLOOD {
                native.send_retrying(totem_core::Guarantee::Agreed, k.to_le_bytes().to_vec()).await.unwrap();
            }
        };
        tokio::pin!(send);
        // Keep reading the native client's events until it has sent everything, or its own
        // sends would wait behind them.
        let (mut sent, mut procdown) = (false, false);
        while !(sent && procdown) {
            tokio::select! {
                () = &mut send, if !sent => sent = true,
                e = tokio::time::timeout(Duration::from_secs(30), native.next_event()) => match e {
                    Ok(Some(totem_core::cpg::EventKind::Confchg { left, .. })) => {
                        procdown |= left.iter().any(|(p, r)| p.pid == me && *r == totem_core::cpg::Reason::ProcDown);
                    }
                    Ok(Some(_)) => {}
                    _ => break,
                },
            }
        }
        procdown
    });
    assert!(saw_procdown, "the group saw the stalled process leave with PROCDOWN");
    let end = done_rx.recv_timeout(Duration::from_secs(30)).expect("calls never hung");
    assert_eq!(end, CsError::CsErrLibrary);
    calls.join().unwrap();

    // What was queued is still dispatched, in order, then the end is reported.
    let end = loop {
        match cpg::dispatch(&h, DispatchFlags::All) {
            Ok(()) => {}
            Err(e) => break e,
        }
    };
    assert_eq!(end, CsError::CsErrLibrary);
    let seen = SEEN.lock().unwrap().remove(&ctx).unwrap_or_default();
    let delivered: Vec<u32> = seen
        .iter()
        .filter_map(|s| match s {
            Seen::Deliver { msg, .. } => Some(u32::from_le_bytes(msg[..4].try_into().unwrap())),
            _ => None,
        })
        .collect();
    assert!(
        delivered.len() > cpg::EVENT_QUEUE_MAX / 2 && seen.len() <= cpg::EVENT_QUEUE_MAX,
        "{} events queued, {} deliveries",
        seen.len(),
        delivered.len()
    );
    assert!(delivered.iter().copied().eq(0..delivered.len() as u32), "in order, none lost before the cut");
}
