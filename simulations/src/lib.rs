//! taplink-sim: many venues and kiosks on one machine, WAN faults, convergence and load
//! measurements.
//!
//! - [`bench`]: the benchmarks behind `taplink-sim bench <name>` (blob transfer, reconvergence,
//!   warm resync, mass reconnect).
//! - [`mesh`]: a real central and real hubs in one process on loopback (tests, benchmarks,
//!   the demo).
//! - [`wan_proxy`]: a userspace UDP "WAN" with delay, jitter, loss and cuts that hubs reach
//!   central through.

pub mod bench;
pub mod mesh;
pub mod wan_proxy;
