//! taplink-kiosk: the kiosk agent. It finds its venue's hub by mDNS, pairs once, follows
//! its manifest, keeps every media file it needs in a verified cache, reports status and
//! proof of play, and serves the local player page that Chromium shows in kiosk mode.
//!
//! [`Kiosk::bind`] (in `server.rs`) opens the state in the data directory, starts the player
//! server and the tasks; [`Kiosk::shutdown`] stops them (a SQLite transaction or a blob write in progress
//! is never cut half-way: blocking work runs to its end on its own thread).
//!
//! Tasks: the player server (`player`), the link to the hub (`link`: discovery, pairing,
//! then `follower` and `reporter` against the hub), and the heartbeat timer (`reporter`).
//! They share [`state::Shared`]; one `CancellationToken` stops them all.

pub mod cache;
pub mod cli;
pub mod config;
pub mod discovery;
pub mod follower;
pub mod hub;
mod link;
pub mod metrics;
pub mod pairing;
pub mod player;
pub mod reporter;
pub mod server;
pub mod state;
pub mod store;

pub use config::Config;
pub use server::{BindError, Kiosk};

/// Why one of the loops against the hub ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LinkEnd {
    /// The hub answered 401: the token was revoked.
    Revoked,
    /// The hub stopped answering.
    HubLost,
    /// Shutdown.
    Cancelled,
}
