//! A chat room on CPG, with the async client library: join a group, send every line read
//! from stdin, print every message and view change. Every member sees the same messages in
//! the same order, its own included.
//!
//! ```sh
//! # with a node running (see the node README), in two terminals:
//! cargo run -p node --example chat -- --socket /tmp/totem/n1/run/totem.sock
//! cargo run -p node --example chat -- --socket /tmp/totem/n2/run/totem.sock
//! ```
//!
//! Ctrl-D leaves the group and exits.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use tokio::sync::mpsc;
use totem_core::Guarantee;
use totem_node::client::{Client, ClientError, Event, Process, socket_path};

#[derive(Debug, Parser)]
#[command(about = "Chat over Totem CPG: lines from stdin go to every member of the group")]
struct Args {
    /// The daemon's socket (default: $TOTEM_SOCKET, else /run/totem/totem.sock).
    #[arg(long)]
    socket: Option<PathBuf>,
    /// The group to join.
    #[arg(long, default_value = "chat")]
    group: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    // One thread is plenty: the work is waiting on two sockets and stdin.
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("chat: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chat: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), ClientError> {
    let client = Client::connect(&socket_path(args.socket.as_deref())).await?;
    let group = args.group.as_bytes();
    client.join(group, std::process::id()).await?;
    println!(
        "joined {:?} as {}:{}; type a line to send it, Ctrl-D to leave",
        args.group,
        client.local_node_id(),
        std::process::id()
    );

    // Tokio's stdin is a blocking thread too; a plain one keeps the dependencies small.
    let (tx, mut lines) = mpsc::channel::<String>(16);
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });

    // Print events while sending: replies and events share the connection, so a send must
    // not wait for a reader that is itself waiting for the send.
    let send = async {
        while let Some(text) = lines.recv().await {
            // Waits (briefly) while the cluster synchronizes or the send queue is full.
            client.send_retrying(Guarantee::Agreed, text.into_bytes()).await?;
        }
        Ok::<(), ClientError>(())
    };
    let print = async {
        while let Some(event) = client.next_event().await {
            show(&event);
        }
        ClientError::Closed
    };
    tokio::select! {
        sent = send => sent?,
        closed = print => return Err(closed),
    }
    client.leave(group).await?;
    println!("left {:?}", args.group);
    Ok(())
}

fn show(event: &Event) {
    match event {
        Event::Deliver { sender, payload, .. } => {
            println!("<{}> {}", who(sender), String::from_utf8_lossy(payload));
        }
        Event::Confchg { members, left, joined, .. } => {
            for (p, reason) in joined {
                println!("* {} joined ({reason:?})", who(p));
            }
            for (p, reason) in left {
                println!("* {} left ({reason:?})", who(p));
            }
            let all: Vec<String> = members.iter().map(who).collect();
            println!("* members: {}", all.join(", "));
        }
        Event::TotemConfchg { ring_id, members, .. } => {
            let nodes: Vec<String> = members.iter().map(|n| n.0.to_string()).collect();
            println!("* ring {}.{}: nodes {}", ring_id.rep.0, ring_id.seq, nodes.join(", "));
        }
    }
}

fn who(p: &Process) -> String {
    format!("{}:{}", p.node.0, p.pid)
}
