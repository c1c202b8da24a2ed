//! The hub's integration tests: one binary (link time on a 2-core machine), one module per
//! area. `crash` runs the real `taplink-hub` binary as a child process against a central
//! in the test's own process; `avahi` runs Debian's avahi-daemon and avahi-browse against
//! the hub's mDNS advertisement. `security` is the hostile-LAN suite of docs/security.md.

#![allow(
    clippy::unwrap_used,
    reason = "a test that cannot go on fails by panicking; unwrap says where"
)]

mod avahi;
mod crash;
mod kiosk_api;
mod mdns;
mod security;
