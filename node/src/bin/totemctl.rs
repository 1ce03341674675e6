//! `totemctl`: the Totem admin tool. For now only `keygen`; ring status, members, CPG
//! groups and statistics come with the daemon's IPC.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use totem_node::crypto::{AUTHKEY_LEN_MAX, AUTHKEY_LEN_MIN};
use totem_node::keygen::{self, DEFAULT_KEY_LEN, DEFAULT_KEY_PATH};

#[derive(Debug, Parser)]
#[command(name = "totemctl", version, about = "Administer a Totem cluster node")]
struct Cli {
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
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
