//! taplink-sim: many venues and kiosks on one machine, WAN faults, convergence and load
//! measurements.
//!
//! Built so far: [`wan_proxy`], a userspace UDP "WAN" with delay, jitter, loss and cuts
//! that hubs reach central through. The simulations themselves are still to come; see
//! ARCHITECTURE.md.

pub mod wan_proxy;
