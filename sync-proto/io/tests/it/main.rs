//! Integration tests of taplink-sync-io.

mod blobs;
mod docstore;
mod transport;
