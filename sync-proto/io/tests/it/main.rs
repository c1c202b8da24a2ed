//! Integration tests of taplink-sync-io.

#![allow(
    clippy::unwrap_used,
    reason = "a test that cannot go on fails by panicking; unwrap says where"
)]

mod blobs;
mod docstore;
mod outbox;
mod sqlite;
#[cfg(feature = "quic")]
mod transport;
