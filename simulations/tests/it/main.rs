//! Integration tests of taplink-simulations: real sockets on loopback.

#![allow(
    clippy::unwrap_used,
    reason = "a test that cannot go on fails by panicking; unwrap says where"
)]

mod bench;
mod demo;
mod kiosks;
mod lan;
mod mesh;
mod player;
mod preapprove;
mod security;
mod wan_proxy;
