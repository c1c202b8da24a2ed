//! taplink-sim: many venues and kiosks on one machine, WAN faults, convergence and load
//! measurements.
//!
//! - [`bench`]: the benchmarks behind `taplink-sim bench <name>` (blob transfer, reconvergence,
//!   warm resync, mass reconnect).
//! - [`mesh`]: a real central and real hubs in one process on loopback (tests, benchmarks,
//!   the demo).
//! - [`wan_proxy`]: a userspace UDP "WAN" with delay, jitter, loss and cuts that hubs reach
//!   central through.
//! - [`netns`]: network namespaces for tests that need separate hosts on a LAN (mDNS) and a
//!   WAN link that can be cut.
//! - [`demo`]: the demo mesh of the README's first command.
//! - [`browser`]: headless Chromium driven over the DevTools protocol (the dashboard's
//!   tests sign in through its forms and take screenshots).

pub mod bench;
pub mod browser;
pub mod demo;
pub mod mesh;
pub mod netns;
pub mod wan_proxy;
