//! Integration tests of taplink-sync-io.

mod blobs;
mod docstore;
mod outbox;
mod sqlite;
#[cfg(feature = "quic")]
mod transport;
