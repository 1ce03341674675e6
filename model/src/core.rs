//! The core one machine runs: a bare Totem [`Node`], or a [`CpgNode`] (the CPG service on
//! top of a node). The model drives both through one [`Input`] type.

use serde::Serialize;
use totem_core::cpg::CpgNode;
use totem_core::{Message, Node, NodeId, Output, TimerKind};

use crate::model::NOW;

/// A machine's protocol state. It lives behind an `Arc` in each state; the CPG variant is
/// boxed so that a Totem-only model's cores stay as small as a bare node.
#[derive(Clone, Debug, Serialize)]
#[allow(clippy::large_enum_variant)]
pub enum Core {
    /// Totem only: the application submits raw messages.
    Plain(Node),
    /// The CPG service on top of the node; the application is its client connections.
    Cpg(Box<CpgNode>),
}

/// One input from the model to a core (every input is given the time [`NOW`]).
#[derive(Debug)]
pub enum Input {
    Start,
    Message(NodeId, Message),
    Timeout(TimerKind),
    /// The ring sequence the core asked to persist is on disk.
    Persisted(u64),
}

impl Core {
    /// Wrap `node` (not started yet) for the chosen mode.
    pub fn new(node: Node, cpg: bool) -> Core {
        if cpg { Core::Cpg(Box::new(CpgNode::new(node))) } else { Core::Plain(node) }
    }

    /// The Totem node (inside the CPG service, if any).
    pub fn node(&self) -> &Node {
        match self {
            Core::Plain(n) => n,
            Core::Cpg(c) => c.node(),
        }
    }

    pub fn cpg(&self) -> Option<&CpgNode> {
        match self {
            Core::Plain(_) => None,
            Core::Cpg(c) => Some(c),
        }
    }

    pub fn cpg_mut(&mut self) -> Option<&mut CpgNode> {
        match self {
            Core::Plain(_) => None,
            Core::Cpg(c) => Some(c),
        }
    }

    /// Hand `input` to the core; its outputs are appended to `out`.
    pub fn handle(&mut self, input: Input, out: &mut Vec<Output>) {
        match (self, input) {
            (Core::Plain(n), Input::Start) => n.start(NOW, out),
            (Core::Plain(n), Input::Message(from, m)) => n.handle_message(NOW, from, m, out),
            (Core::Plain(n), Input::Timeout(k)) => n.handle_timeout(NOW, k, out),
            (Core::Plain(n), Input::Persisted(seq)) => n.ring_seq_persisted(NOW, seq, out),
            (Core::Cpg(c), Input::Start) => c.start(NOW, out),
            (Core::Cpg(c), Input::Message(from, m)) => c.handle_message(NOW, from, m, out),
            (Core::Cpg(c), Input::Timeout(k)) => c.handle_timeout(NOW, k, out),
            (Core::Cpg(c), Input::Persisted(seq)) => c.ring_seq_persisted(NOW, seq, out),
        }
    }
}
