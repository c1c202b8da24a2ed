//! taplink-central: the central server: registry, org CA, admin HTTP API and the QUIC sync
//! endpoint hubs connect to.
//!
//! [`Central::bind`] (in [`server`]) opens everything a data directory holds (see
//! [`config::DataDir`]) and starts serving; [`Central::shutdown`] stops it. `main.rs` is a thin CLI over this, and
//! simulations run centrals in-process the same way.
//!
//! Modules: [`alerts`] (conditions people should hear of, and the webhook), [`config`] (settings, data directory layout), [`store`] (the SQLite registry,
//! the only module that touches rusqlite), [`init`] (creating a data directory),
//! [`http`] (health, metrics, admin API), [`audit`] (recording document changes in the
//! audit log), [`observe`] (audit and catalog after every document change), [`metrics`], [`state`] (what handlers share),
//! [`enroll_token`] (the enrollment code format), [`venue`] (creating a venue),
//! [`kiosk_codes`] (kiosk provisioning codes: pairings pre-approved in the venue document),
//! [`retention`] (expiring old telemetry into daily play totals),
//! [`admin_client`] (the CLI's client of the running server's admin API), [`cli`] (the
//! command line's types and commands), [`sync`] (the QUIC endpoint: admission, enrollment,
//! one `peer::run` per hub connection), [`server`] (the server shell).

pub mod admin_client;
pub mod alerts;
pub mod audit;
pub mod cli;
pub mod config;
pub mod dashboard;
pub mod http;
pub mod init;
pub mod kiosk_codes;
pub mod metrics;
pub mod observe;
pub mod proof;
pub mod retention;
pub mod roster;
pub mod server;
pub mod state;
pub mod store;
pub mod sync;
mod timefmt;
pub mod venue;

/// The enrollment token format, shared with hubs (it lives in `taplink-sync-proto`).
pub use taplink_sync_proto::enroll_token;

pub use config::Config;
pub use server::{BindError, Central, SHUTDOWN_TIMEOUT};
pub use state::AppState;
pub use taplink_sync_io::node::ShutdownError;
pub use timefmt::{rfc3339, truncate_to_ms};
