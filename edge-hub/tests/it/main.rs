//! The hub's integration tests: one binary (link time on a 2-core machine), one module per
//! area. `crash` runs the real `taplink-hub` binary as a child process against a central
//! in the test's own process.

mod crash;
mod kiosk_api;
mod mdns;
