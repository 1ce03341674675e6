//! A program written for Corosync's Rust bindings (`rust-corosync`'s `cpg` module), ported
//! to Totem by changing one import:
//!
//! ```text
//! - extern crate rust_corosync as corosync;
//! + use totem_node::corosync;
//!   use corosync::{cpg, NodeId};
//! ```
//!
//! It joins a group, prints what it knows, multicasts one message and then prints every
//! callback until the daemon goes away or `--count N` messages were delivered.
//!
//! ```sh
//! TOTEM_SOCKET=/tmp/totem/n1/run/totem.sock cargo run -p node --example corosync_compat -- TEST "hello"
//! ```

use totem_node::corosync;

use corosync::{NodeId, cpg};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Deliveries so far. Callbacks are plain `fn`s, so state lives in statics or behind the
/// handle's context.
static DELIVERED: AtomicUsize = AtomicUsize::new(0);

fn deliver_fn(
    _handle: &cpg::Handle,
    group_name: String,
    nodeid: NodeId,
    pid: u32,
    msg: &[u8],
    msg_len: usize,
) {
    DELIVERED.fetch_add(1, Ordering::Relaxed);
    println!("deliver_fn: {group_name} from {nodeid}/{pid}, {msg_len} bytes");
    match std::str::from_utf8(msg) {
        Ok(s) => println!("  {s}"),
        Err(_) => println!("  {msg:02x?}"),
    }
}

fn confchg_fn(
    _handle: &cpg::Handle,
    group_name: &str,
    member_list: Vec<cpg::Address>,
    left_list: Vec<cpg::Address>,
    joined_list: Vec<cpg::Address>,
) {
    println!("confchg_fn: {group_name}");
    println!("  members: {member_list:?}");
    println!("  left:    {left_list:?}");
    println!("  joined:  {joined_list:?}");
}

fn totem_confchg_fn(_handle: &cpg::Handle, ring_id: cpg::RingId, member_list: Vec<NodeId>) {
    println!("totem_confchg_fn: ring {}/{}", ring_id.nodeid, ring_id.seq);
    println!("  members: {member_list:?}");
}

fn main() {
    // Usage: corosync_compat [GROUP] [MESSAGE] [--count N]
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut count = None;
    if let Some(i) = args.iter().position(|a| a == "--count") {
        count = args.get(i + 1).and_then(|n| n.parse::<usize>().ok());
        args.drain(i..(i + 2).min(args.len()));
    }
    let group = args.first().cloned().unwrap_or_else(|| "TEST".to_owned());
    let message = args.get(1).cloned().unwrap_or_else(|| "This is a test".to_owned());

    let md = cpg::ModelData::ModelV1(cpg::Model1Data {
        flags: cpg::Model1Flags::None,
        deliver_fn: Some(deliver_fn),
        confchg_fn: Some(confchg_fn),
        totem_confchg_fn: Some(totem_confchg_fn),
    });

    let handle = match cpg::initialize(&md, 99_u64) {
        Ok(h) => h,
        Err(e) => {
            println!("Error in CPG init: {e} (is totemd running? set TOTEM_SOCKET)");
            return;
        }
    };

    if let Err(e) = cpg::join(&handle, &group) {
        println!("Error in CPG join: {e}");
        return;
    }

    match cpg::local_get(&handle) {
        Ok(n) => println!("Local nodeid is {n}"),
        Err(e) => println!("Error in CPG local_get: {e}"),
    }

    match cpg::membership_get(&handle, &group) {
        Ok(m) => println!("  members: {m:?}"),
        Err(e) => println!("Error in CPG membership_get: {e}"),
    }

    match cpg::CpgIterStart::new(&handle, "", cpg::CpgIterType::All) {
        Ok(cpg_iter) => {
            for i in cpg_iter {
                println!("ITER: {i:?}");
            }
        }
        Err(e) => println!("Error in CPG iter start: {e}"),
    }

    // Descriptor for an event loop: poll it for reading, then dispatch.
    if let Ok(fd) = cpg::fd_get(&handle) {
        println!("poll fd {fd} for reading, then call dispatch");
    }

    // Right after joining, the cluster may still be synchronizing: TryAgain means nothing
    // was sent, so wait and retry (dispatching meanwhile, as a real event loop would).
    loop {
        match cpg::mcast_joined(&handle, cpg::Guarantee::TypeAgreed, message.as_bytes()) {
            Ok(()) => break,
            Err(corosync::CsError::CsErrTryAgain) => {
                let _ = cpg::dispatch(&handle, corosync::DispatchFlags::All);
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) => {
                println!("Error in CPG mcast_joined: {e}");
                break;
            }
        }
    }

    // Wait for events: we receive our own message too.
    loop {
        if let Err(e) = cpg::dispatch(&handle, corosync::DispatchFlags::One) {
            println!("dispatch: {e}: totemd went away");
            break;
        }
        if count.is_some_and(|n| DELIVERED.load(Ordering::Relaxed) >= n) {
            let _ = cpg::leave(&handle, &group);
            break;
        }
    }
    // Dropping the handle finalizes it.
}
