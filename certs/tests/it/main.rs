//! Integration tests of taplink-certs.

#![allow(
    clippy::unwrap_used,
    reason = "a test that cannot go on fails by panicking; unwrap says where"
)]

mod pki;
mod support;
mod tls;
