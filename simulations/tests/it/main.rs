//! Integration tests of taplink-simulations: real sockets on loopback, several nodes per
//! test. The `hub_*` modules are the edge hub's tests that need more than the hub itself:
//! `hub_crash` runs the real `taplink-hub` binary as a child process against a central in
//! this process (`kill -9` at random moments); `hub_mdns` and `hub_avahi` check the hub's
//! mDNS advertisement inside network namespaces (Avahi: Debian's avahi-daemon and
//! avahi-browse); `hub_security` is the hub's listener on real sockets and its private data
//! directory.

#![allow(
    clippy::unwrap_used,
    reason = "a test that cannot go on fails by panicking; unwrap says where"
)]

mod bench;
mod central_ops;
mod dashboard;
mod dashboard_wan;
mod demo;
mod hub_avahi;
mod hub_crash;
mod hub_mdns;
mod hub_security;
mod kiosks;
mod lan;
mod merge_rules;
mod mesh;
mod player;
mod preapprove;
mod rosters;
mod security;
mod wan_proxy;
