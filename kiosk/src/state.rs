//! What the agent's tasks share: the stores, the metrics, and the published [`Status`]
//! that the player page and `/healthz` read.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};
use taplink_sync_io::blobs::BlobStore;
use taplink_sync_proto::clock::{Clock, SystemClock};
use taplink_sync_proto::ids::{KioskId, MediaHash, VenueId};
use taplink_sync_proto::manifest::Manifest;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::Store;

/// Where the kiosk stands with its hub.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Phase {
    /// No device token, and no hub found yet.
    #[default]
    Searching,
    /// No device token; a hub was found and a pairing code is being requested.
    Unpaired,
    /// Waiting for staff to approve this code.
    Pairing {
        /// The code to show.
        code: String,
        /// When the hub forgets it (the hub's clock).
        expires_at: DateTime<Utc>,
    },
    /// Holding a device token (whether or not the hub answers right now).
    Paired {
        /// This kiosk.
        kiosk: KioskId,
        /// Its venue, when known.
        venue: Option<VenueId>,
    },
}

/// The agent's current state, as published to the player page and health endpoint.
#[derive(Debug, Clone, Default)]
pub struct Status {
    /// Pairing state.
    pub phase: Phase,
    /// Why the hub refused the kiosk code this kiosk was given, while it waits for staff
    /// approval instead (cleared once paired).
    pub pair_code_refused: Option<String>,
    /// The hub in use, if one was found.
    pub hub: Option<SocketAddr>,
    /// Whether the hub answered the last request.
    pub hub_reachable: bool,
    /// The last good manifest (from the hub, or from disk after a restart).
    pub manifest: Option<Arc<Manifest>>,
    /// The manifest's media that is in the cache, with sizes: what the page can play.
    pub ready: Arc<BTreeMap<MediaHash, u64>>,
    /// The hub's clock minus ours, in milliseconds (0 until measured, or when within the
    /// one-second resolution of the `Date` header). The page uses it to switch to
    /// `next.items` at the hub's `next.at`: a Pi without a real-time clock may be far off.
    pub clock_offset_ms: i64,
}

/// What the player page last said is on screen.
#[derive(Debug, Clone, Copy, Default)]
pub struct Screen {
    /// The media on screen.
    pub on_screen: Option<MediaHash>,
    /// When the page last polled its state.
    pub seen: Option<Instant>,
}

/// How long after its last poll the page's report still counts.
pub const SCREEN_FRESH: std::time::Duration = std::time::Duration::from_secs(10);

/// Everything the tasks and handlers share.
#[derive(Debug)]
pub struct Shared {
    /// The configuration.
    pub config: Config,
    /// The kiosk's database.
    pub store: Store,
    /// The media cache.
    pub blobs: BlobStore,
    /// Metrics.
    pub metrics: Metrics,
    /// The published state.
    pub status: watch::Sender<Status>,
    /// The page's last report.
    pub screen: Mutex<Screen>,
    /// Signalled when events were buffered, so the sender does not wait for its timer.
    pub events_added: Notify,
    /// When the agent started.
    pub started: Instant,
    /// The wall clock: event times, the hub's clock offset, `/healthz`'s `now`.
    pub clock: Arc<dyn Clock>,
}

impl Shared {
    /// Open the kiosk's database and media cache in `config.data_dir` (creating them), with
    /// nothing published yet.
    pub fn open(config: Config) -> Result<Self, crate::BindError> {
        Self::open_with_clock(config, SystemClock::shared())
    }

    /// [`open`](Self::open), reading the wall clock from `clock`.
    pub fn open_with_clock(
        config: Config,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, crate::BindError> {
        config.validate()?;
        // The device token and the venue's media are nobody else's business on this machine.
        taplink_sync_io::private::secure_and_report(&config.data_dir).map_err(|source| {
            crate::BindError::Dir {
                path: config.data_dir.clone(),
                source,
            }
        })?;
        let media_dir = config.data_dir.join("media");
        taplink_sync_io::private::create_dir(&media_dir).map_err(|source| {
            crate::BindError::Dir {
                path: media_dir.clone(),
                source,
            }
        })?;
        let store = Store::open(&config.data_dir.join(crate::store::STORE_FILE))?;
        let blobs = BlobStore::open_with_clock(&media_dir, clock.clone())?;
        Ok(Self {
            config,
            store,
            blobs,
            metrics: Metrics::new(),
            status: watch::Sender::new(Status::default()),
            screen: Mutex::default(),
            events_added: Notify::new(),
            started: Instant::now(),
            clock,
        })
    }

    /// Unix time in milliseconds on the kiosk's clock.
    pub fn now_ms(&self) -> i64 {
        self.clock.now().timestamp_millis()
    }

    /// A snapshot of the published state.
    pub fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    /// What is on screen, if the page reported recently.
    pub fn on_screen(&self) -> Option<MediaHash> {
        let screen = *self.screen.lock().unwrap_or_else(PoisonError::into_inner);
        screen
            .seen
            .filter(|seen| seen.elapsed() <= SCREEN_FRESH)
            .and(screen.on_screen)
    }

    /// Record the page's report.
    pub fn saw_screen(&self, on_screen: Option<MediaHash>) {
        *self.screen.lock().unwrap_or_else(PoisonError::into_inner) = Screen {
            on_screen,
            seen: Some(Instant::now()),
        };
    }

    /// Publish whether the hub answers.
    pub fn set_reachable(&self, reachable: bool) {
        self.metrics.hub_reachable.set(i64::from(reachable));
        self.status.send_if_modified(|s| {
            let changed = s.hub_reachable != reachable;
            s.hub_reachable = reachable;
            changed
        });
    }
}
