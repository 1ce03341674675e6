//! Short, readable descriptions of messages and events, for counterexamples and the
//! Explorer.

use spec::trace::{ConfKind, EventKind};
use totem_core::message::{Mcast, McastBody};
use totem_core::{Message, NodeId};

fn ids(v: &[NodeId]) -> String {
    let parts: Vec<String> = v.iter().map(|n| n.0.to_string()).collect();
    format!("[{}]", parts.join(","))
}

/// A group name, quoted, with non-printable bytes escaped (`"g\0"`).
pub fn group(name: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(name))
}

fn procs(v: &[spec::trace::Process]) -> String {
    let parts: Vec<String> = v.iter().map(|p| format!("{}:{}", p.node, p.pid)).collect();
    format!("[{}]", parts.join(","))
}

fn changes(v: &[(spec::trace::Process, spec::trace::CpgReason)]) -> String {
    let parts: Vec<String> = v.iter().map(|(p, r)| format!("{}:{} {r:?}", p.node, p.pid)).collect();
    format!("[{}]", parts.join(", "))
}

fn nums(v: &[u32]) -> String {
    let parts: Vec<String> = v.iter().map(|n| n.to_string()).collect();
    format!("[{}]", parts.join(","))
}

fn mcast(m: &Mcast) -> String {
    let g = match m.guarantee {
        totem_core::Guarantee::Agreed => "agreed",
        totem_core::Guarantee::Safe => "safe",
    };
    match &m.body {
        McastBody::Frame(f) => {
            format!("mcast {}#{} by n{} ({g}, {} bytes)", m.ring_id, m.seq.0, m.origin.0, f.len())
        }
        McastBody::Recovered(inner) => {
            format!("mcast {}#{} by n{} recovering [{}]", m.ring_id, m.seq.0, m.origin.0, mcast(inner))
        }
    }
}

/// One line for a protocol message.
pub fn message(msg: &Message) -> String {
    match msg {
        Message::Token(t) => {
            let mut s = format!(
                "token {} tseq={} seq={} aru={}{}",
                t.ring_id,
                t.token_seq,
                t.seq.0,
                t.aru.0,
                t.aru_addr.map(|n| format!("@n{}", n.0)).unwrap_or_default()
            );
            if !t.rtr.is_empty() {
                let rtr: Vec<String> = t.rtr.iter().map(|e| format!("{}#{}", e.ring_id, e.seq.0)).collect();
                s.push_str(&format!(" rtr=[{}]", rtr.join(",")));
            }
            if t.retrans_flag {
                s.push_str(" retrans");
            }
            if t.backlog > 0 {
                s.push_str(&format!(" backlog={}", t.backlog));
            }
            s
        }
        Message::Mcast(m) => mcast(m),
        Message::MergeDetect(d) => format!("merge-detect ring {}", d.ring_id),
        Message::Join(j) => format!(
            "join{} proc={} failed={} ring_seq={}",
            if j.leave { " (leave)" } else { "" },
            ids(&j.proc_set),
            ids(&j.failed_set),
            j.ring_seq
        ),
        Message::CommitToken(c) => {
            let members: Vec<String> = c
                .members
                .iter()
                .map(|m| format!("n{}(old {} aru {})", m.node.0, m.old_ring_id, m.old_aru.0))
                .collect();
            format!(
                "commit-token {} tseq={} memb_index={} members=[{}]",
                c.ring_id,
                c.token_seq,
                c.memb_index,
                members.join(", ")
            )
        }
        Message::TokenHoldCancel(c) => format!("token-hold-cancel ring {}", c.ring_id),
    }
}

/// One line for a spec event, or `None` for the chatty internal ones (receipt, release,
/// token visits) that a counterexample reader rarely needs.
pub fn event(kind: &EventKind, verbose: bool) -> Option<String> {
    Some(match kind {
        EventKind::Start => "starts".into(),
        EventKind::StateLost => "lost its persisted state".into(),
        EventKind::Leave => "leaves".into(),
        EventKind::Crash => "crashes".into(),
        EventKind::State { from, to } => format!("state {from:?} -> {to:?}"),
        EventKind::Commit { ring, members, via_consensus, .. } => format!(
            "enters COMMIT for ring {ring:?} members {}{}",
            nums(members),
            if *via_consensus { " (created the commit token)" } else { "" }
        ),
        EventKind::Send { msg, guarantee } => format!("application sends {msg:?} ({guarantee:?})"),
        EventKind::Config { kind, ring, prev_ring, members, left, joined } => format!(
            "installs {} {ring:?} members {} (prev {}, left {}, joined {})",
            match kind {
                ConfKind::Transitional => "TRANS",
                ConfKind::Regular => "REG",
            },
            nums(members),
            prev_ring.map_or("none".to_string(), |r| format!("{r:?}")),
            nums(left),
            nums(joined)
        ),
        EventKind::Deliver { msg, slot, guarantee } => {
            format!("delivers {msg:?} at {:?}#{} ({guarantee:?})", slot.ring, slot.seq)
        }
        EventKind::CpgJoin { conn, group: g, pid, result } => {
            format!("conn {conn} joins {} as pid {pid}: {result:?}", group(g))
        }
        EventKind::CpgLeave { conn, group: g, result } => {
            format!("conn {conn} leaves {}: {result:?}", group(g))
        }
        EventKind::CpgMcast { conn, group: g, msg, guarantee, result } => {
            format!("conn {conn} multicasts {msg:?} ({guarantee:?}) to {}: {result:?}", group(g))
        }
        EventKind::CpgDeliver { conn, group: g, sender, msg } => {
            format!("conn {conn} gets {msg:?} from {}:{} in {}", sender.node, sender.pid, group(g))
        }
        EventKind::CpgConfchg { conn, group: g, members, left, joined } => format!(
            "conn {conn} view of {}: {} (left {}, joined {})",
            group(g),
            procs(members),
            changes(left),
            changes(joined)
        ),
        EventKind::CpgTotemConfchg { conn, ring, members } => {
            format!("conn {conn} totem view {ring:?} {}", nums(members))
        }
        EventKind::CpgExit { conn } => format!("conn {conn} exits"),
        EventKind::CpgMembership { conn, group: g, members } if verbose => {
            format!("conn {conn} snapshot of {}: {}", group(g), procs(members))
        }
        EventKind::Assign { slot } if verbose => format!("assigns {:?}#{}", slot.ring, slot.seq),
        EventKind::Receive { slot } if verbose => format!("holds {:?}#{}", slot.ring, slot.seq),
        EventKind::Release { ring, up_to } if verbose => format!("releases {ring:?} up to #{up_to}"),
        EventKind::Token { ring, token_seq, seq, aru, rtr, sent_new, retransmitted, .. } if verbose => {
            format!(
                "token visit {ring:?} tseq={token_seq} seq={seq} aru={aru} rtr={} new={sent_new} re-sent={retransmitted}",
                rtr.len()
            )
        }
        _ => return None,
    })
}
