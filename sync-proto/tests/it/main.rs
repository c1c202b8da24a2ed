//! Integration tests of taplink-sync-proto: one test binary, one module per area.

#![allow(
    clippy::unwrap_used,
    reason = "a test that cannot go on fails by panicking; unwrap says where"
)]

mod codec;
mod convergence;
mod manifest;
mod session;
