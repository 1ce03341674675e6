//! The second simulation level: whole clusters running the real node runtime under
//! turmoil.
//!
//! The packet level ([`crate::world`]) drives `totem-core` directly. Here every host of a
//! [turmoil] simulation runs what the daemon runs: the node runtime's event loop
//! ([`totem_node::runtime::Runtime`]) over a simulated UDP socket, on simulated time (the
//! runtime uses `tokio::time`), with its ring-sequence store, its packet protection, and
//! CPG applications talking to it through the runtime's `Handle` (the in-memory IPC
//! layer). What it adds over the packet level: the runtime's own code (the loop, its
//! ordering of outputs, persisting before going on, client queues, datagram checks), CPG
//! clients joining, leaving, exiting and coming back, and turmoil's network (latency
//! curves, partitions, holds).
//!
//! - [`plan`]: the actions ([`plan::Act`]) and a run's options, drawn from a seed (swarm).
//! - [`host`]: one host's software: runtime, applications, pauses.
//! - [`net`]: the transport with the seeded per-packet fault layer, and the protection.
//! - [`record`]: the recorder from runtime observations to the spec's trace.
//! - [`run`]: the driver, the phases and the verdict.
//! - [`script`]: the scenario file language (`sim scenario FILE`).
//! - [`cli`]: `sim cluster` and `sim scenario`.
//!
//! # Faults
//!
//! | fault | how |
//! |---|---|
//! | symmetric partition, cut, heal | turmoil `partition` / `release` per host pair |
//! | one-way partition | turmoil `partition_oneway` |
//! | hold and release | turmoil `hold` / `release` (packets wait on the link) |
//! | latency and jitter | turmoil's latency range (exponential curve), per run and by action |
//! | crash | turmoil `crash`: every task of the host dropped; the disk survives |
//! | restart with the ring sequence | turmoil `bounce` with the same [`totem_node::store::MemStore`] |
//! | restart without it | a fresh store before the bounce (recorded `StateLost`) |
//! | clean leave | `Handle::shutdown` (the core's LEAVE) |
//! | pause beyond the token timeout | the runtime's future is not polled (SIGSTOP); datagrams wait in its bounded socket buffer |
//! | per-packet loss, duplication, corruption | [`net::SimSocket`]'s seeded fault layer (turmoil has none) |
//! | application churn | processes leave, exit (disconnect) and come back |
//!
//! # Phases of a swarm run
//!
//! 1. Safety phase `[0, duration)`: the nodes cold-start (late joiners later), the drawn
//!    schedule runs, the applications send.
//! 2. At `healed_at` everything heals ([`run::Cluster::heal_all`]); crashed and departed
//!    nodes restart if the seed drew it. The live set S is then every running node.
//! 3. Liveness phase: the applications keep sending for a drawn while (at most B), then
//!    stop. The run goes on until S has converged and every message LIVE-2 requires was
//!    delivered, at least until the deadline `healed_at + B`; it gives up at
//!    `healed_at + B + epoch`.
//!
//! Every safety property of the spec is checked over the whole trace; LIVE-1, LIVE-2,
//! CPG-7 and CPG-11 over `{healed_at, healed_at + B, S}`.
//!
//! # The convergence bound
//!
//! ```text
//! B = token + 2 * consensus + merge + hold + 10 * (join + send_join) + 10 * rotation
//! rotation = nodes * (latency_max + tick + 1 ms)
//! ```
//!
//! the packet level's bound (see [`crate::run`]) with turmoil's step added to every hop
//! (a host sees a packet at its next step) and no fsync delay (the store confirms at once).
//! In token and consensus terms: one token loss, two consensus timeouts, a merge
//! detection, ten JOIN rounds and ten rotations.

pub mod cli;
pub mod host;
pub mod net;
pub mod plan;
pub mod record;
pub mod run;
pub mod script;

pub use plan::{Act, ClusterFaults, ClusterLimits, ClusterOptions, Timed};
pub use run::{Cluster, ClusterReport, run_script, run_swarm};
pub use script::Script;
