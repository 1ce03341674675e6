//! `totem-sam`: the SAM supervisor and status tool on its own (`totemctl sam` runs the same
//! code).
//!
//! ```text
//! totem-sam run --interval 2s --policy restart [--quorum] [--warn-signal TERM] -- CMD ARGS...
//! totem-sam status [--json]
//! ```

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;
use totem_node::sam::{SamRunArgs, sam_cli_main};

#[derive(Debug, Parser)]
#[command(name = "totem-sam", version, about = "Simple Availability Manager: keep a local application alive")]
struct Cli {
    /// The daemon's socket (quorum, and the default SAM directory). Default: $TOTEM_SOCKET,
    /// else /run/totem/totem.sock.
    #[arg(long, global = true)]
    socket: Option<PathBuf>,
    /// Print JSON (`status`).
    #[arg(long, global = true)]
    json: bool,
    #[command(flatten)]
    sam: SamRunArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut args = cli.sam;
    args.socket = cli.socket;
    if let totem_node::sam::SamCommand::Status(st) = &mut args.command {
        st.json = cli.json;
    }
    sam_cli_main(args)
}
