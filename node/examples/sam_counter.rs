//! A SAM application that keeps a counter in its supervisor across restarts.
//!
//! ```text
//! cargo build -p node --bin totem-sam --example sam_counter
//! TOTEM_SAM_DIR=/tmp/sam target/debug/totem-sam run --interval 1s --policy restart \
//!     -- target/debug/examples/sam_counter --crash-every 5 --until 12
//! ```
//!
//! Each instance restores the counter, counts (storing each new value and sending a health
//! check per step), and crashes on every `--crash-every`th value to show that nothing is
//! lost: the next instance carries on where the last one stored. At `--until` it stops
//! health checking and exits cleanly, which ends the supervisor with status 0. Run it
//! without a supervisor and it says so.

use std::error::Error;
use std::time::Duration;
use totem_node::sam::Sam;

fn arg(name: &str, default: u64) -> Result<u64, Box<dyn Error>> {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == name) {
        Some(i) => Ok(args.get(i + 1).ok_or(format!("{name} needs a value"))?.parse()?),
        None => Ok(default),
    }
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sam_counter: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn Error>> {
    let crash_every = arg("--crash-every", 5)?;
    let until = arg("--until", 12)?;

    let sam = Sam::initialize()?;
    let instance = sam.register()?;
    // The data is whatever the previous instance stored: 8 bytes, or nothing the first time.
    let saved = sam.data_restore()?;
    let mut counter = <[u8; 8]>::try_from(saved.as_slice()).map(u64::from_le_bytes).unwrap_or(0);
    println!("instance {instance}: counter resumes at {counter}");

    // Work in steps well inside the health-check interval.
    let interval = sam.supervision().interval;
    let step = if interval.is_zero() { Duration::from_millis(200) } else { interval / 3 };
    sam.start()?;
    loop {
        counter += 1;
        sam.data_store(&counter.to_le_bytes())?;
        sam.hc_send()?;
        println!("instance {instance}: counter = {counter}");
        if counter >= until {
            sam.stop()?;
            sam.finalize()?;
            println!("instance {instance}: done");
            return Ok(());
        }
        if crash_every > 0 && counter % crash_every == 0 {
            println!("instance {instance}: crashing on purpose");
            std::process::abort();
        }
        std::thread::sleep(step);
    }
}
