//! The hub's integration tests: one binary (link time on a 2-core machine), one module per
//! area, the hub alone in this process. `security` is the in-process half of the
//! hostile-LAN suite of docs/security.md. Tests that need central, network namespaces or the
//! real `taplink-hub` binary (crash, mDNS, Avahi, the listener on real sockets) live in
//! `simulations/tests/it/hub_*.rs`, so that edge-hub does not depend on simulations.

#![allow(
    clippy::unwrap_used,
    reason = "a test that cannot go on fails by panicking; unwrap says where"
)]

mod kiosk_api;
mod security;
