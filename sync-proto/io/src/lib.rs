//! The I/O half of Taplink's sync protocol, shared by central and edge hubs: content-addressed
//! blob storage, the SQLite document store, framed QUIC streams and the session driver.
//!
//! `taplink-sync-proto` decides *what* to send; this crate moves and keeps the bytes.
//!
//! The QUIC half (`net`, `frames`, `driver`, `transfer`, `enroll`) is the default feature
//! `quic`; the kiosk builds without it. Storage (`sqlite`, `docstore`, `blobs`, `outbox`),
//! the HTTP listener (`web`), `private`, `netns` and `node` are always there.

pub mod blobs;
pub mod docs;
pub mod docstore;
#[cfg(feature = "quic")]
pub mod driver;
#[cfg(feature = "quic")]
pub mod enroll;
#[cfg(feature = "quic")]
pub mod frames;
#[cfg(feature = "quic")]
pub mod net;
pub mod netns;
pub mod node;
pub mod outbox;
pub mod password;
#[cfg(feature = "quic")]
pub mod peer;
pub mod private;
pub mod roster;
pub mod sqlite;
#[cfg(feature = "quic")]
pub mod transfer;
pub mod web;
