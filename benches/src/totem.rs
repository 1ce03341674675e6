//! Back end A: Totem through its async client library ([`totem_node::client::Client`]),
//! driven from this thread by a current-thread tokio runtime (no extra thread between the
//! workload and the socket, as with libcpg).

use crate::backend::{Cpg, Event};
use crate::mono_ns;
use anyhow::{Context, anyhow};
use std::path::Path;
use std::time::Duration;
use totem_core::Guarantee;
use totem_node::client::{Client, ClientError, CpgError, Event as TEvent};

/// Events a single poll moves at most (the rest stay queued for the next one).
const POLL_BATCH: usize = 4096;

#[derive(Debug)]
pub struct TotemCpg {
    rt: tokio::runtime::Runtime,
    client: Client,
    /// Events that arrived while a call was in flight.
    backlog: Vec<Event>,
}

fn convert(e: TEvent) -> Event {
    let at = mono_ns();
    match e {
        TEvent::Deliver { sender, payload, .. } => Event::deliver(at, sender.node.0, sender.pid, &payload),
        TEvent::Confchg { members, left, .. } => Event::Confchg {
            at,
            members: members.iter().map(|p| (p.node.0, p.pid)).collect(),
            left: left.iter().map(|(p, r)| (p.node.0, p.pid, Some(*r))).collect(),
        },
        TEvent::TotemConfchg { members, .. } => {
            Event::Totem { at, members: members.iter().map(|n| n.0).collect() }
        }
    }
}

impl Cpg for TotemCpg {
    fn open(socket: Option<&Path>) -> anyhow::Result<TotemCpg> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let path = totem_node::client::socket_path(socket);
        let client =
            rt.block_on(Client::connect(&path)).with_context(|| format!("connect {}", path.display()))?;
        Ok(TotemCpg { rt, client, backlog: Vec::new() })
    }

    fn join(&mut self, group: &str) -> anyhow::Result<()> {
        let r = self.rt.block_on(self.client.join(group.as_bytes(), std::process::id()));
        r.map_err(|e| anyhow!("join {group}: {e}"))
    }

    fn local_node(&self) -> anyhow::Result<u32> {
        Ok(self.client.local_node_id())
    }

    fn mcast(&mut self, msg: &[u8]) -> anyhow::Result<bool> {
        let client = &self.client;
        let backlog = &mut self.backlog;
        let payload = bytes::Bytes::copy_from_slice(msg);
        // Read events while the call is in flight: the daemon's reply can be queued behind
        // them (see the client library's module docs).
        let r = self.rt.block_on(async {
            let send = client.send(Guarantee::Agreed, payload);
            tokio::pin!(send);
            loop {
                tokio::select! {
                    biased;
                    r = &mut send => break r,
                    e = client.next_event() => match e {
                        Some(e) => backlog.push(convert(e)),
                        None => break Err(ClientError::Closed),
                    },
                }
            }
        });
        match r {
            Ok(()) => Ok(true),
            Err(ClientError::Cpg(CpgError::TryAgain)) => Ok(false),
            Err(e) => Err(anyhow!("mcast: {e}")),
        }
    }

    fn poll(&mut self, wait: Duration, out: &mut Vec<Event>) -> anyhow::Result<()> {
        let client = &self.client;
        let wait = if self.backlog.is_empty() { wait } else { Duration::ZERO };
        out.append(&mut self.backlog);
        let closed = self.rt.block_on(async {
            match tokio::time::timeout(wait, client.next_event()).await {
                Ok(Some(e)) => out.push(convert(e)),
                Ok(None) => return true,
                Err(_) => return false,
            }
            // Whatever the reader task has queued by now, without waiting further; one
            // yield lets it move what the socket already holds.
            for round in 0..2 {
                while out.len() < POLL_BATCH {
                    let Some(e) = client.try_next_event() else { break };
                    out.push(convert(e));
                }
                if round == 0 {
                    tokio::task::yield_now().await;
                }
            }
            false
        });
        if closed && out.is_empty() { Err(anyhow!("the connection to totemd closed")) } else { Ok(()) }
    }
}
