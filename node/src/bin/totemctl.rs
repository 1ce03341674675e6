//! `totemctl`: the Totem admin tool: key generation; the running node's ring status,
//! members, CPG groups and statistics, and configuration reload (over the daemon's IPC
//! socket; `--socket PATH` or `$TOTEM_SOCKET`). Every query has `--json`.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use totem_node::crypto::{AUTHKEY_LEN_MAX, AUTHKEY_LEN_MIN};
use totem_node::keygen::{self, DEFAULT_KEY_LEN, DEFAULT_KEY_PATH};

#[derive(Debug, Parser)]
#[command(name = "totemctl", version, about = "Administer a Totem cluster node")]
struct Cli {
    /// The daemon's IPC socket (default: $TOTEM_SOCKET, else /run/totem/totem.sock).
    #[arg(long, global = true)]
    socket: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate a cluster key (as corosync-keygen does): random bytes, mode 0400. Copy the
    /// same file to every node.
    Keygen {
        /// Where to write the key.
        #[arg(short = 'k', long, default_value = DEFAULT_KEY_PATH)]
        key_file: PathBuf,
        /// Replace an existing key (every node then needs the new one).
        #[arg(long)]
        force: bool,
        /// Key size in bytes.
        #[arg(short = 's', long, default_value_t = DEFAULT_KEY_LEN as u64,
              value_parser = clap::value_parser!(u64).range(AUTHKEY_LEN_MIN as u64..=AUTHKEY_LEN_MAX as u64))]
        size: u64,
    },
    /// Ring id, protocol state, members and this node (like `corosync-cfgtool -s`).
    Status,
    /// The members of the current ring.
    Members,
    /// CPG groups and their members (like `corosync-cpgtool`).
    Cpg,
    /// Packet, protocol and configuration-change counters.
    Stats,
    /// The Simple Availability Manager: `sam run ... -- CMD` supervises an application,
    /// `sam status` shows every supervisor on this machine.
    Sam(totem_node::sam::SamRunArgs),
    /// Make the daemon re-read its configuration (as `kill -HUP`; root or the daemon's
    /// user). What changed and what needs a restart is in the daemon's log.
    Reload,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let socket = totem_node::client::socket_path(cli.socket.as_deref());
    match cli.command {
        Command::Sam(mut args) => {
            args.socket = cli.socket;
            if cli.json
                && let totem_node::sam::SamCommand::Status(st) = &mut args.command
            {
                st.json = true;
            }
            totem_node::sam::sam_cli_main(args)
        }
        Command::Status | Command::Members | Command::Cpg | Command::Stats => {
            match query(&socket, &cli.command, cli.json) {
                Ok(text) => {
                    println!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("totemctl: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Reload => match reload(&socket) {
            Ok(()) => {
                if cli.json {
                    println!("{}", serde_json::json!({"reload": "requested"}));
                } else {
                    println!("reload requested (the daemon's log says what changed)");
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("totemctl: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Keygen { key_file, force, size } => {
            // The parser bounded it to 128..=4096.
            let size = size as usize;
            println!("Gathering {} bits for the key from the OS random source.", size * 8);
            match keygen::generate_key_sized(&key_file, size, force) {
                Ok(info) => {
                    println!(
                        "Wrote the Totem cluster key to {} ({} bytes, mode 0400).",
                        info.path.display(),
                        info.bytes
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("totemctl keygen: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn reload(socket: &std::path::Path) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    rt.block_on(async {
        let client = totem_node::client::Client::admin(socket).await.map_err(|e| e.to_string())?;
        client.reload().await.map_err(|e| e.to_string())
    })
}

/// Ask the daemon and render the answer.
fn query(socket: &std::path::Path, command: &Command, json: bool) -> Result<String, String> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    rt.block_on(async {
        let client = totem_node::client::Client::admin(socket).await.map_err(|e| e.to_string())?;
        let status = client.status().await.map_err(|e| e.to_string())?;
        let text = match command {
            Command::Status if json => to_json(&status)?,
            Command::Status => {
                let mut t = format!("Local node ID {}\n", status.node);
                t += &format!("Ring ID {}.{}\n", status.ring_rep, status.ring_seq);
                t += &format!("State {}{}\n", status.state, if status.syncing { " (synchronizing)" } else { "" });
                t += &format!("Members {:?}\n", status.members);
                t += &format!("Quorate {}", if status.quorate { "yes" } else { "no" });
                t
            }
            Command::Members if json => to_json(&status.members)?,
            Command::Members => {
                let lines: Vec<String> = status
                    .members
                    .iter()
                    .map(|n| format!("node {n}{}", if *n == status.node { " (local)" } else { "" }))
                    .collect();
                lines.join("\n")
            }
            Command::Cpg => {
                let groups = client.groups().await.map_err(|e| e.to_string())?;
                if json {
                    let v: Vec<serde_json::Value> = groups
                        .iter()
                        .map(|(g, m)| {
                            serde_json::json!({
                                "group": String::from_utf8_lossy(g.as_bytes()),
                                "members": m.iter().map(|p| serde_json::json!({"node": p.node.0, "pid": p.pid})).collect::<Vec<_>>(),
                            })
                        })
                        .collect();
                    to_json(&v)?
                } else if groups.is_empty() {
                    "No CPG groups.".into()
                } else {
                    let mut t = String::from("Group name\tnode\tpid");
                    for (g, members) in &groups {
                        t += &format!("\n{}", String::from_utf8_lossy(g.as_bytes()));
                        for p in members {
                            t += &format!("\n\t\t{}\t{}", p.node.0, p.pid);
                        }
                    }
                    t
                }
            }
            Command::Stats if json => to_json(&serde_json::json!({"runtime": status.runtime, "protocol": status.core, "token_rotations_per_sec": status.token_rotations_per_sec, "uptime_ms": status.uptime_ms}))?,
            Command::Stats => {
                let r = &status.runtime;
                let c = &status.core;
                [
                    format!("packets in {} out {} (bytes in {} out {})", r.packets_in, r.packets_out, r.bytes_in, r.bytes_out),
                    format!("dropped: authentication {} replay {} malformed {} unknown source {}", r.auth_failures, r.replays, r.malformed, r.unknown_source),
                    format!(
                        "frames sent as fragments {}; fragments in {} (frames {}, dropped {}, duplicates {}, frames unfinished {})",
                        r.frames_fragmented,
                        r.reassembly.fragments,
                        r.reassembly.frames,
                        r.reassembly.dropped,
                        r.reassembly.duplicates,
                        r.reassembly.evicted
                    ),
                    format!("retransmissions {} retransmit requests {}", c.retransmissions, c.retransmit_requests),
                    format!("token rotations/s {:.1}, token losses {}", status.token_rotations_per_sec, c.token_losses),
                    format!("messages delivered {}", r.deliveries),
                    format!(
                        "configuration changes: regular {} transitional {}; nodes joined {} left {}",
                        r.regular_configs, r.transitional_configs, r.nodes_joined, r.nodes_left
                    ),
                    format!("clients disconnected for not reading {}", r.clients_stalled),
                ]
                .join("\n")
            }
            Command::Keygen { .. } | Command::Sam(_) | Command::Reload => String::new(),
        };
        Ok(text)
    })
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String, String> {
    serde_json::to_string_pretty(v).map_err(|e| e.to_string())
}
