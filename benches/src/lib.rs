//! `cpgbench`: one CPG workload, two back ends.
//!
//! The workload ([`workload`]) is written once against the [`backend::Cpg`] trait. Back end
//! A is Totem through its own client library ([`totem::TotemCpg`]); back end B, behind the
//! `corosync` feature, is the real Corosync through `rust-corosync`, Corosync's own Rust
//! binding of libcpg ([`corosync::CorosyncCpg`]). [`orchestrate`] runs one worker per node
//! (each in its node's network namespace), checks the order across them, and reads the
//! daemons' CPU; [`report`] turns the records into the side-by-side table.

pub mod backend;
#[cfg(feature = "corosync")]
pub mod corosync;
pub mod orchestrate;
pub mod procstat;
pub mod report;
pub mod totem;
pub mod udp;
pub mod workload;

/// CLOCK_MONOTONIC in nanoseconds: every network namespace of the host shares it, so send
/// and delivery times taken in different "nodes" compare directly.
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    if rc != 0 {
        return 0;
    }
    (ts.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(ts.tv_nsec as u64)
}
