//! The I/O half of Taplink's sync protocol, shared by central and edge hubs: content-addressed
//! blob storage, the SQLite document store, framed QUIC streams and the session driver.
//!
//! `taplink-sync-proto` decides *what* to send; this crate moves and keeps the bytes.

pub mod blobs;
pub mod docs;
pub mod docstore;
pub mod driver;
pub mod enroll;
pub mod frames;
pub mod net;
pub mod netns;
pub mod node;
pub mod peer;
pub mod private;
pub mod sqlite;
pub mod transfer;
pub mod web;
