//! Back end B: the real Corosync through `rust-corosync` (Corosync's own binding of libcpg).
//!
//! libcpg runs the callbacks inside `cpg_dispatch` on the calling thread; they are plain
//! `fn` pointers, so they hand their events over through a thread-local queue.

use crate::backend::{Cpg, Event, Reason};
use crate::mono_ns;
use anyhow::anyhow;
use rust_corosync::cpg;
use rust_corosync::{CsError, DispatchFlags, NodeId};
use std::cell::RefCell;
use std::path::Path;
use std::time::Duration;

thread_local! {
    static SINK: RefCell<Vec<Event>> = const { RefCell::new(Vec::new()) };
}

fn push(e: Event) {
    SINK.with(|s| s.borrow_mut().push(e));
}

fn deliver(_h: &cpg::Handle, _group: String, nodeid: NodeId, pid: u32, msg: &[u8], _len: usize) {
    push(Event::deliver(mono_ns(), u32::from(nodeid), pid, msg));
}

fn reason(r: cpg::Reason) -> Option<Reason> {
    Some(match r {
        cpg::Reason::Join => Reason::Join,
        cpg::Reason::Leave => Reason::Leave,
        cpg::Reason::NodeDown => Reason::NodeDown,
        cpg::Reason::NodeUp => Reason::NodeUp,
        cpg::Reason::ProcDown => Reason::ProcDown,
        cpg::Reason::Undefined => return None,
    })
}

fn confchg(
    _h: &cpg::Handle,
    _group: &str,
    members: Vec<cpg::Address>,
    left: Vec<cpg::Address>,
    _joined: Vec<cpg::Address>,
) {
    push(Event::Confchg {
        at: mono_ns(),
        members: members.iter().map(|a| (u32::from(a.nodeid), a.pid)).collect(),
        left: left.iter().map(|a| (u32::from(a.nodeid), a.pid, reason(a.reason))).collect(),
    });
}

fn totem_confchg(_h: &cpg::Handle, _ring: cpg::RingId, members: Vec<NodeId>) {
    push(Event::Totem { at: mono_ns(), members: members.into_iter().map(u32::from).collect() });
}

pub struct CorosyncCpg {
    handle: cpg::Handle,
    fd: i32,
}

impl std::fmt::Debug for CorosyncCpg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CorosyncCpg").field("fd", &self.fd).finish_non_exhaustive()
    }
}

fn cs(what: &str, e: CsError) -> anyhow::Error {
    anyhow!("corosync {what}: {e}")
}

impl Cpg for CorosyncCpg {
    fn open(_socket: Option<&Path>) -> anyhow::Result<CorosyncCpg> {
        let model = cpg::ModelData::ModelV1(cpg::Model1Data {
            flags: cpg::Model1Flags::None,
            deliver_fn: Some(deliver),
            confchg_fn: Some(confchg),
            totem_confchg_fn: Some(totem_confchg),
        });
        let handle = cpg::initialize(&model, 0).map_err(|e| cs("initialize", e))?;
        let fd = cpg::fd_get(&handle).map_err(|e| cs("fd_get", e))?;
        Ok(CorosyncCpg { handle, fd })
    }

    fn join(&mut self, group: &str) -> anyhow::Result<()> {
        cpg::join(&self.handle, group).map_err(|e| cs("join", e))
    }

    fn local_node(&self) -> anyhow::Result<u32> {
        cpg::local_get(&self.handle).map(u32::from).map_err(|e| cs("local_get", e))
    }

    fn mcast(&mut self, msg: &[u8]) -> anyhow::Result<bool> {
        match cpg::mcast_joined(&self.handle, cpg::Guarantee::TypeAgreed, msg) {
            Ok(()) => Ok(true),
            Err(CsError::CsErrTryAgain) => Ok(false),
            Err(e) => Err(cs("mcast_joined", e)),
        }
    }

    fn poll(&mut self, wait: Duration, out: &mut Vec<Event>) -> anyhow::Result<()> {
        let pending = SINK.with(|s| !s.borrow().is_empty());
        if !pending && !wait.is_zero() {
            crate::udp::wait_readable(self.fd, wait);
        }
        let r = cpg::dispatch(&self.handle, DispatchFlags::All);
        SINK.with(|s| out.append(&mut s.borrow_mut()));
        match r {
            Ok(()) | Err(CsError::CsErrTryAgain) => Ok(()),
            Err(e) => Err(cs("dispatch", e)),
        }
    }
}
