//! taplink-hub: the venue edge hub. It owns its venue's state locally (documents, media,
//! telemetry outbox, kiosk devices), serves it on the LAN (advertised by mDNS), and keeps it
//! in sync with central over QUIC whenever the WAN allows.
//!
//! [`Hub::bind`] starts everything; [`Hub::shutdown`] stops it (a SQLite transaction or a
//! blob write in progress is never cut half-way: tasks finish their step first).

pub mod cli;
pub mod config;
pub mod error;
pub mod http;
pub mod identity;
pub mod kiosk_api;
pub mod mdns;
pub mod metrics;
pub mod people;
pub mod server;
pub mod store;
pub mod uplink;
pub mod view;

pub use config::Config;
pub use server::{BindError, Hub};
