//! The registry: central's SQLite database of venues, hubs, enrollment codes, admin tokens
//! and telemetry. The only module that touches rusqlite.
//!
//! One connection behind a mutex is the write lock: every operation runs to completion
//! before the next starts, and every write is an `IMMEDIATE` transaction, so another
//! process on the same file (the CLI while the server runs) waits on `busy_timeout`
//! instead of failing half-way. `synchronous=FULL` because hubs and admins are told
//! "done" (an enrollment code redeemed, a telemetry batch acknowledged) right after a
//! commit. Nothing here reads the clock: every `now` is a parameter.
//!
//! Times are stored as Unix milliseconds, ids as their printed form (readable with the
//! `sqlite3` shell), secrets only as keyed BLAKE3 hashes.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use data_encoding::{BASE32_DNSSEC, HEXLOWER, HEXLOWER_PERMISSIVE};
use rand::RngCore;
use rusqlite::types::Type;
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};
use taplink_certs::{Fingerprint, Revocation, Serial};
use taplink_sync_proto::doc::MAX_NAME_CHARS;
use taplink_sync_proto::ids::{HubId, VenueId};
use taplink_sync_proto::wire::{DocHeads, DocId, TelemetryEvent, TelemetryKind};

use crate::enroll_token::EnrollmentSecret;
use crate::timefmt::{Rfc3339Display, from_unix_ms, to_unix_ms};

/// The schema version this build writes: the number of migrations.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Schema migrations; migration `i` takes `user_version` from `i` to `i + 1`.
/// Never edit one that has shipped: append a new one.
const MIGRATIONS: &[&str] = &[
    // 1: the first schema.
    "
    CREATE TABLE venues (
        id          TEXT PRIMARY KEY NOT NULL CHECK (length(id) = 26),
        name        TEXT NOT NULL,
        timezone    TEXT NOT NULL,
        created_at  INTEGER NOT NULL
    ) STRICT;

    CREATE TABLE hubs (
        id                TEXT PRIMARY KEY NOT NULL CHECK (length(id) = 26),
        venue_id          TEXT NOT NULL REFERENCES venues(id),
        cert_serial       TEXT NOT NULL UNIQUE,
        cert_fingerprint  TEXT NOT NULL,
        enrolled_at       INTEGER NOT NULL,
        revoked_at        INTEGER,
        last_seen         INTEGER,
        last_sync         INTEGER,
        software          TEXT,
        heads_json        TEXT
    ) STRICT;
    CREATE INDEX hubs_by_venue ON hubs(venue_id);

    CREATE TABLE enrollment_codes (
        code_hash    BLOB PRIMARY KEY NOT NULL CHECK (length(code_hash) = 32),
        venue_id     TEXT NOT NULL REFERENCES venues(id),
        created_at   INTEGER NOT NULL,
        expires_at   INTEGER NOT NULL,
        used_at      INTEGER,
        used_by_hub  TEXT
    ) STRICT, WITHOUT ROWID;

    CREATE TABLE admin_tokens (
        token_hash  BLOB PRIMARY KEY NOT NULL CHECK (length(token_hash) = 32),
        name        TEXT NOT NULL,
        created_at  INTEGER NOT NULL,
        revoked_at  INTEGER
    ) STRICT, WITHOUT ROWID;

    CREATE TABLE telemetry (
        event_id     BLOB PRIMARY KEY NOT NULL CHECK (length(event_id) = 16),
        hub_id       TEXT NOT NULL REFERENCES hubs(id),
        kiosk_id     TEXT,
        at_ms        INTEGER NOT NULL,
        kind         TEXT NOT NULL,
        body_json    TEXT NOT NULL,
        received_at  INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX telemetry_by_hub_time ON telemetry(hub_id, at_ms);
    ",
    // 2: people. Users (usernames unique case-insensitively through `username_key`), their
    // sign-in sessions (secrets stored as BLAKE3 hashes), and venue tags for scopes.
    "
    CREATE TABLE users (
        id             TEXT PRIMARY KEY NOT NULL CHECK (length(id) = 26),
        username       TEXT NOT NULL,
        username_key   TEXT NOT NULL UNIQUE,
        display_name   TEXT NOT NULL,
        role           TEXT NOT NULL,
        scope_json     TEXT NOT NULL,
        password_hash  TEXT NOT NULL,
        disabled       INTEGER NOT NULL DEFAULT 0,
        created_at     INTEGER NOT NULL,
        last_login_at  INTEGER
    ) STRICT;

    CREATE TABLE sessions (
        secret_hash   BLOB PRIMARY KEY NOT NULL CHECK (length(secret_hash) = 32),
        user_id       TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        csrf_hash     BLOB NOT NULL CHECK (length(csrf_hash) = 32),
        created_at    INTEGER NOT NULL,
        last_seen_at  INTEGER NOT NULL
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX sessions_by_user ON sessions(user_id);

    ALTER TABLE venues ADD COLUMN tags_json TEXT NOT NULL DEFAULT '[]';
    ",
    // 3: API tokens for automation, each with a role and scope no wider than its maker's.
    "
    CREATE TABLE api_tokens (
        id             TEXT PRIMARY KEY NOT NULL CHECK (length(id) = 26),
        token_hash     BLOB NOT NULL UNIQUE CHECK (length(token_hash) = 32),
        name           TEXT NOT NULL,
        owner_user_id  TEXT,
        role           TEXT NOT NULL,
        scope_json     TEXT NOT NULL,
        created_at     INTEGER NOT NULL,
        expires_at     INTEGER NOT NULL,
        last_used_at   INTEGER,
        revoked_at     INTEGER
    ) STRICT;
    CREATE INDEX api_tokens_by_owner ON api_tokens(owner_user_id);
    ",
    // 4: the audit log, hash-chained (`store/audit.rs`), and how far each document's
    // changes are in it.
    "
    CREATE TABLE audit (
        seq          INTEGER PRIMARY KEY NOT NULL,
        at_ms        INTEGER NOT NULL,
        recorded_ms  INTEGER NOT NULL,
        actor        TEXT NOT NULL,
        via          TEXT NOT NULL,
        origin       TEXT NOT NULL,
        venue_id     TEXT,
        action       TEXT NOT NULL,
        detail_json  TEXT NOT NULL,
        heads_json   TEXT NOT NULL,
        flag         TEXT,
        prev_hash    BLOB NOT NULL CHECK (length(prev_hash) = 32),
        hash         BLOB NOT NULL CHECK (length(hash) = 32)
    ) STRICT;
    CREATE INDEX audit_by_venue ON audit(venue_id, seq);
    CREATE INDEX audit_by_actor ON audit(actor, seq);
    CREATE INDEX audit_by_time ON audit(at_ms, seq);
    CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;

    CREATE TABLE audit_cursors (
        doc         TEXT PRIMARY KEY NOT NULL,
        heads_json  TEXT NOT NULL
    ) STRICT, WITHOUT ROWID;
    ",
    // 5: the catalog (`store/catalog.rs`): kiosks and media as the documents say, for
    // paged lists; and keyset indexes for venue and hub pages.
    "
    CREATE TABLE catalog_kiosks (
        kiosk_id     TEXT PRIMARY KEY NOT NULL,
        venue_id     TEXT NOT NULL,
        name         TEXT NOT NULL,
        group_name   TEXT,
        orientation  TEXT NOT NULL,
        playlist_id  TEXT
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX catalog_kiosks_by_venue ON catalog_kiosks(venue_id, kiosk_id);

    CREATE TABLE catalog_media (
        owner         TEXT NOT NULL,
        hash          TEXT NOT NULL,
        name          TEXT NOT NULL,
        content_type  TEXT NOT NULL,
        size          INTEGER NOT NULL,
        PRIMARY KEY (owner, hash)
    ) STRICT, WITHOUT ROWID;

    CREATE TABLE catalog_media_uses (
        venue_id       TEXT NOT NULL,
        playlist_id    TEXT NOT NULL,
        item_id        TEXT NOT NULL,
        hash           TEXT NOT NULL,
        playlist_name  TEXT NOT NULL,
        PRIMARY KEY (venue_id, playlist_id, item_id)
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX catalog_media_uses_by_hash ON catalog_media_uses(hash, venue_id);

    CREATE INDEX venues_by_age ON venues(created_at, id);
    CREATE INDEX hubs_by_age ON hubs(enrolled_at, id);
    ",
    // 6: proof of play (`store/plays.rs`). A play's venue, media, start and length become
    // columns (filled on ingestion, and here from the JSON of rows already stored), so
    // reports read them through an index instead of parsing every event; `telemetry_by_time`
    // lets expiry find the oldest rows; `play_rollups` keeps the daily totals of expired
    // plays per venue, kiosk (`''` for a play a hub reported for itself), media and local day.
    "
    ALTER TABLE telemetry ADD COLUMN venue_id TEXT;
    ALTER TABLE telemetry ADD COLUMN play_media TEXT;
    ALTER TABLE telemetry ADD COLUMN play_started_ms INTEGER;
    ALTER TABLE telemetry ADD COLUMN play_duration_ms INTEGER;
    UPDATE telemetry SET venue_id = (SELECT venue_id FROM hubs WHERE hubs.id = telemetry.hub_id);
    UPDATE telemetry SET
        play_media = json_extract(body_json, '$.media'),
        play_started_ms = json_extract(body_json, '$.started_ms'),
        play_duration_ms = json_extract(body_json, '$.duration_ms')
    WHERE kind = 'proof_of_play';
    CREATE INDEX telemetry_plays ON telemetry(venue_id, play_started_ms)
        WHERE play_started_ms IS NOT NULL;
    CREATE INDEX telemetry_by_time ON telemetry(at_ms);

    CREATE TABLE play_rollups (
        venue_id   TEXT NOT NULL,
        day        TEXT NOT NULL CHECK (length(day) = 10),
        kiosk_id   TEXT NOT NULL,
        media      TEXT NOT NULL,
        plays      INTEGER NOT NULL,
        played_ms  INTEGER NOT NULL,
        PRIMARY KEY (venue_id, day, kiosk_id, media)
    ) STRICT, WITHOUT ROWID;
    ",
    // 7: kiosk health (`store/health.rs`). A heartbeat's manifest version becomes a column
    // (filled on ingestion, and here from rows already stored) so the venue page finds a
    // kiosk's latest heartbeat, and its latest one reporting a given version, by index
    // seeks rather than by reading every heartbeat the retention period keeps.
    "
    ALTER TABLE telemetry ADD COLUMN beat_version TEXT;
    UPDATE telemetry SET beat_version = json_extract(body_json, '$.manifest_version')
    WHERE kind = 'heartbeat';
    CREATE INDEX telemetry_heartbeats ON telemetry(venue_id, kiosk_id, at_ms)
        WHERE kind = 'heartbeat';
    CREATE INDEX telemetry_heartbeat_versions
        ON telemetry(venue_id, kiosk_id, beat_version, at_ms)
        WHERE kind = 'heartbeat';
    ",
    // 8: alerts (`store/alerts.rs`): each condition once, from when it opened to when it
    // cleared.
    "
    CREATE TABLE alerts (
        id          INTEGER PRIMARY KEY NOT NULL,
        key         TEXT NOT NULL,
        kind        TEXT NOT NULL,
        venue_id    TEXT NOT NULL,
        subject     TEXT NOT NULL,
        detail      TEXT NOT NULL,
        opened_at   INTEGER NOT NULL,
        cleared_at  INTEGER
    ) STRICT;
    CREATE UNIQUE INDEX alerts_open ON alerts(key) WHERE cleared_at IS NULL;
    CREATE INDEX alerts_open_by_venue ON alerts(venue_id) WHERE cleared_at IS NULL;
    ",
    // 9: rosters (`roster.rs`): the latest signed roster of each venue.
    "
    CREATE TABLE rosters (
        venue_id   TEXT PRIMARY KEY NOT NULL,
        version    INTEGER NOT NULL,
        body       BLOB NOT NULL,
        signature  BLOB NOT NULL,
        issued_at  INTEGER NOT NULL
    ) STRICT, WITHOUT ROWID;
    ",
];

/// How long a statement waits for another connection's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// The WAL file is truncated back to this size after checkpoints.
const JOURNAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;
/// Longest software version string kept from a hub's hello.
const MAX_SOFTWARE_CHARS: usize = 200;
/// Longest time zone name accepted (the longest IANA name is 32 characters).
const MAX_TIMEZONE_CHARS: usize = 64;
/// Longest admin token name.
const MAX_TOKEN_NAME_CHARS: usize = 100;

/// Why the registry database could not be opened or created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// There is no database at the path (open only opens an existing registry).
    #[error(
        "no registry database at {path}; run `taplink-central init --data <dir>` first, or point \
         --data/--config at the directory init created"
    )]
    Missing {
        /// The expected database file.
        path: PathBuf,
    },
    /// `create` found a database file already there.
    #[error("{path} already exists; refusing to create a new registry over it")]
    AlreadyExists {
        /// The existing file.
        path: PathBuf,
    },
    /// The database could not be opened: not WAL (the data directory is on a file system
    /// without it), written by a newer central, a failed migration, ….
    #[error("registry: {0}")]
    Db(#[from] taplink_sync_io::sqlite::OpenError),
}

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// An argument was refused; the message says which and why.
    #[error("{field}: {reason}")]
    Invalid {
        /// The argument (as the API names it).
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// No venue with this id.
    #[error("venue {venue} does not exist")]
    UnknownVenue {
        /// The venue asked for.
        venue: VenueId,
    },
    /// No hub with this id.
    #[error("hub {hub} does not exist")]
    UnknownHub {
        /// The hub asked for.
        hub: HubId,
    },
    /// A hub with this id is already recorded.
    #[error("hub {hub} is already recorded")]
    HubExists {
        /// The hub.
        hub: HubId,
    },
    /// SQLite failed, or a stored value did not parse (the database was edited by hand).
    #[error("registry: {op} failed: {source}")]
    Sqlite {
        /// The operation.
        op: &'static str,
        /// SQLite's report.
        #[source]
        source: rusqlite::Error,
    },
    /// A value could not be encoded as JSON for storage.
    #[error("registry: could not encode {what} as JSON: {source}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// serde_json's report.
        #[source]
        source: serde_json::Error,
    },
    /// A stored value does not parse (the database was edited by hand).
    #[error("registry: the stored {what} is corrupt: {reason}")]
    Corrupt {
        /// What was read.
        what: &'static str,
        /// Why it does not parse.
        reason: String,
    },
}

/// Why an enrollment code was not redeemed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnrollError {
    /// No code with this secret exists (mistyped, or from another central).
    #[error("unknown enrollment code; check it was copied whole, or ask an admin for a new one")]
    Unknown,
    /// The code expired before it was redeemed.
    #[error("the enrollment code expired at {}; ask an admin for a new one", Rfc3339Display(*.at))]
    Expired {
        /// When it expired.
        at: DateTime<Utc>,
    },
    /// The code was redeemed before: each code enrolls exactly one hub.
    #[error(
        "the enrollment code was already used at {}; each code enrolls one hub, ask an admin for a new one",
        Rfc3339Display(*.at)
    )]
    AlreadyUsed {
        /// When it was used.
        at: DateTime<Utc>,
    },
    /// The registry failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

/// A venue's registry entry (its settings live in the venue document).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Venue {
    /// The venue's id.
    pub id: VenueId,
    /// Its display name.
    pub name: String,
    /// Its IANA time zone name.
    pub timezone: String,
    /// When it was created (millisecond precision).
    pub created_at: DateTime<Utc>,
    /// Its tags (`region:north`): scopes name venues by tag.
    pub tags: std::collections::BTreeSet<taplink_sync_proto::authz::VenueTag>,
}

/// A newly created enrollment code. The secret exists only here; the registry keeps its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollmentCode {
    /// The one-time secret.
    pub secret: EnrollmentSecret,
    /// The venue a hub enrolled with it joins.
    pub venue: VenueId,
    /// The first instant at which it can no longer be redeemed.
    pub expires_at: DateTime<Utc>,
}

/// A hub's registry entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubRecord {
    /// The hub's id (its certificate's SAN URI names it).
    pub id: HubId,
    /// Its venue.
    pub venue: VenueId,
    /// Serial number of its certificate: what the CRL names when it is revoked.
    pub cert_serial: Serial,
    /// SHA-256 fingerprint of its certificate.
    pub cert_fingerprint: Fingerprint,
    /// When it enrolled.
    pub enrolled_at: DateTime<Utc>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
    /// When central last heard from it.
    pub last_seen: Option<DateTime<Utc>>,
    /// When it last finished a sync.
    pub last_sync: Option<DateTime<Utc>>,
    /// The software version it reported.
    pub software: Option<String>,
    /// The document heads it last reported.
    pub heads: Option<Vec<DocHeads>>,
}

/// How many things the registry holds (for the metrics gauges).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    /// Venues.
    pub venues: u64,
    /// Hubs not revoked.
    pub active_hubs: u64,
    /// Revoked hubs.
    pub revoked_hubs: u64,
}

/// An admin API bearer token: `tla1-` and 52 characters of base32 (256 random bits).
///
/// Shown once when created; the registry keeps only a keyed BLAKE3 hash. `Debug` does not
/// print it.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(String);

impl AdminToken {
    const PREFIX: &'static str = "tla1-";
    const HASH_CONTEXT: &'static str = "taplink central 2026 admin api token v1";
    /// Longer texts are not tokens; refusing them bounds the hashing work per request.
    const MAX_LEN: usize = 128;

    fn generate() -> AdminToken {
        AdminToken(format!("{}{}", Self::PREFIX, random_secret(32)))
    }

    /// The token text, to print once or write to a 0600 file.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn hash_of(text: &str) -> [u8; 32] {
        let mut hasher = blake3::Hasher::new_derive_key(Self::HASH_CONTEXT);
        hasher.update(text.as_bytes());
        *hasher.finalize().as_bytes()
    }
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

mod alerts;
mod audit;
mod catalog;
mod health;
mod plays;
mod tokens;
mod users;

pub use alerts::{Alert, AlertChange, Condition};
pub use audit::{AuditEntry, AuditQuery, AuditRecord, AuditVerdict};
pub use catalog::{HubState, KioskRow, MediaRow, MediaUse, Page, Reach, VenueFilter, VenueSummary};
pub use health::KioskHeartbeat;
pub use plays::{
    DailyPlays, ExpiryBatch, PlayFilter, RawPlay, RawPlayCursor, day_start_utc, local_day, venue_tz,
};
pub use tokens::{ApiToken, MAX_TOKEN_DAYS, NewApiToken, TOKEN_PREFIX};
pub use users::{
    ARGON2_CONCURRENCY, ARGON2_MEMORY_KIB, ARGON2_PASSES, MAX_PASSWORD_BYTES, MAX_USERNAME_CHARS,
    MIN_PASSWORD_CHARS, NewUser, SESSION_IDLE, SESSION_MAX, Session, StoredRoster, User, UserError,
    UserPatch, check_password, csrf_token_for, hash_password,
};

/// A fresh secret: `bytes` random bytes in lowercase base32 (the alphabet of Taplink ids).
/// Admin tokens, API tokens, session cookies and CSRF tokens are made of these.
fn random_secret(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    BASE32_DNSSEC.encode(&buf)
}

/// The BLAKE3 hash a session or API-token secret is stored and looked up as. Looking up by
/// hash makes the comparison independent of how much of a guess matched.
fn secret_hash(text: &str) -> [u8; 32] {
    *blake3::hash(text.as_bytes()).as_bytes()
}

/// Central's registry database. Cheap to share behind an `Arc`; every method blocks on
/// SQLite (call it from `spawn_blocking` in async code).
pub struct Registry {
    conn: Mutex<Connection>,
    path: PathBuf,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// Create a new registry database at `path` (which must not exist) with the current schema.
    pub fn create(path: &Path) -> Result<Registry, OpenError> {
        if path.symlink_metadata().is_ok() {
            return Err(OpenError::AlreadyExists {
                path: path.to_owned(),
            });
        }
        Self::open_with(path, true)
    }

    /// Open an existing registry database, migrating it to the current schema.
    /// Refuses a database written by a newer central.
    pub fn open(path: &Path) -> Result<Registry, OpenError> {
        if !path.is_file() {
            return Err(OpenError::Missing {
                path: path.to_owned(),
            });
        }
        Self::open_with(path, false)
    }

    fn open_with(path: &Path, create: bool) -> Result<Registry, OpenError> {
        let options = taplink_sync_io::sqlite::Options {
            create,
            journal_size_limit: JOURNAL_SIZE_LIMIT,
            busy_timeout: BUSY_TIMEOUT,
            foreign_keys: true,
        };
        let conn = taplink_sync_io::sqlite::open(path, MIGRATIONS, &options)?;
        Ok(Registry {
            conn: Mutex::new(conn),
            path: path.to_owned(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves the connection usable: an open transaction
        // is rolled back when its guard drops during unwinding.
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A cheap query that proves the database answers (health checks).
    pub fn ping(&self) -> Result<(), RegistryError> {
        self.lock()
            .query_row("SELECT count(*) FROM venues", [], |row| {
                row.get::<_, i64>(0)
            })
            .map(drop)
            .map_err(sql("health check"))
    }

    // -----------------------------------------------------------------------------------
    // Venues
    // -----------------------------------------------------------------------------------

    /// Record a new venue. The name follows the venue document's rules (1 to 100
    /// characters, not blank, no control characters); the time zone is only checked for
    /// shape here (callers validate it against the time zone database, see
    /// [`crate::venue::create_venue`]).
    pub fn create_venue(
        &self,
        name: &str,
        timezone: &str,
        now: DateTime<Utc>,
    ) -> Result<Venue, RegistryError> {
        check_venue_name(name)?;
        check_timezone_shape(timezone)?;
        let venue = Venue {
            id: VenueId::random(),
            name: name.to_owned(),
            timezone: timezone.to_owned(),
            created_at: crate::timefmt::truncate_to_ms(now),
            tags: Default::default(),
        };
        self.lock()
            .execute(
                "INSERT INTO venues (id, name, timezone, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![
                    venue.id.to_string(),
                    venue.name,
                    venue.timezone,
                    to_unix_ms(now)
                ],
            )
            .map_err(sql("create venue"))?;
        Ok(venue)
    }

    /// Every venue, oldest first.
    pub fn list_venues(&self) -> Result<Vec<Venue>, RegistryError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(
                "SELECT id, name, timezone, created_at, tags_json FROM venues ORDER BY created_at, id",
            )
            .map_err(sql("list venues"))?;
        stmt.query_map([], read_venue)
            .and_then(Iterator::collect)
            .map_err(sql("list venues"))
    }

    /// One venue, if it exists.
    pub fn venue(&self, id: VenueId) -> Result<Option<Venue>, RegistryError> {
        venue_in(&self.lock(), id).map_err(sql("read venue"))
    }

    /// Replace a venue's tags.
    pub fn set_venue_tags(
        &self,
        id: VenueId,
        tags: &std::collections::BTreeSet<taplink_sync_proto::authz::VenueTag>,
    ) -> Result<Venue, RegistryError> {
        let json = serde_json::to_string(tags).map_err(|source| RegistryError::Encode {
            what: "a venue's tags",
            source,
        })?;
        let conn = self.lock();
        let changed = conn
            .execute(
                "UPDATE venues SET tags_json = ?1 WHERE id = ?2",
                params![json, id.to_string()],
            )
            .map_err(sql("set venue tags"))?;
        if changed == 0 {
            return Err(RegistryError::UnknownVenue { venue: id });
        }
        venue_in(&conn, id)
            .map_err(sql("read venue"))?
            .ok_or(RegistryError::UnknownVenue { venue: id })
    }

    // -----------------------------------------------------------------------------------
    // Enrollment codes
    // -----------------------------------------------------------------------------------

    /// A new single-use enrollment code for `venue`, redeemable until `now + ttl`.
    pub fn create_enrollment_code(
        &self,
        venue: VenueId,
        ttl: TimeDelta,
        now: DateTime<Utc>,
    ) -> Result<EnrollmentCode, RegistryError> {
        if ttl <= TimeDelta::zero() {
            return Err(RegistryError::Invalid {
                field: "ttl",
                reason: format!(
                    "an enrollment code's lifetime must be positive, got {}s",
                    ttl.num_seconds()
                ),
            });
        }
        let expires_at = now
            .checked_add_signed(ttl)
            .ok_or_else(|| RegistryError::Invalid {
                field: "ttl",
                reason: format!(
                    "{}s from now is past any representable date",
                    ttl.num_seconds()
                ),
            })?;
        let code = EnrollmentCode {
            secret: EnrollmentSecret::random(),
            venue,
            expires_at: crate::timefmt::truncate_to_ms(expires_at),
        };
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql("create enrollment code"))?;
        if venue_in(&tx, venue)
            .map_err(sql("create enrollment code"))?
            .is_none()
        {
            return Err(RegistryError::UnknownVenue { venue });
        }
        tx.execute(
            "INSERT INTO enrollment_codes (code_hash, venue_id, created_at, expires_at)
             VALUES (?1, ?2, ?3, ?4)",
            params![
                code.secret.hash(),
                venue.to_string(),
                to_unix_ms(now),
                to_unix_ms(expires_at)
            ],
        )
        .and_then(|_| tx.commit())
        .map_err(sql("create enrollment code"))?;
        Ok(code)
    }

    /// Redeem an enrollment code for `hub`: atomically check that it exists, is unused and
    /// has not expired (it is redeemable strictly before `expires_at`), and mark it used.
    /// Returns the venue the hub joins. Of two concurrent redeems of one code, exactly
    /// one succeeds.
    pub fn redeem_enrollment_code(
        &self,
        secret: &EnrollmentSecret,
        hub: HubId,
        now: DateTime<Utc>,
    ) -> Result<VenueId, EnrollError> {
        let op = "redeem enrollment code";
        let hash = secret.hash();
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql(op))?;
        let row = tx
            .query_row(
                "SELECT venue_id, expires_at, used_at FROM enrollment_codes WHERE code_hash = ?1",
                params![hash],
                |row| {
                    Ok((
                        parse_col::<VenueId>(row, 0)?,
                        time_col(row, 1)?,
                        opt_time_col(row, 2)?,
                    ))
                },
            )
            .optional()
            .map_err(sql(op))?;
        let (venue, expires_at, used_at) = row.ok_or(EnrollError::Unknown)?;
        if let Some(at) = used_at {
            return Err(EnrollError::AlreadyUsed { at });
        }
        if now >= expires_at {
            return Err(EnrollError::Expired { at: expires_at });
        }
        tx.execute(
            "UPDATE enrollment_codes SET used_at = ?1, used_by_hub = ?2
             WHERE code_hash = ?3 AND used_at IS NULL",
            params![to_unix_ms(now), hub.to_string(), hash],
        )
        .and_then(|_| tx.commit())
        .map_err(sql(op))?;
        Ok(venue)
    }

    // -----------------------------------------------------------------------------------
    // Hubs
    // -----------------------------------------------------------------------------------

    /// Record an enrolled hub and the certificate central issued it.
    pub fn record_hub(
        &self,
        hub: HubId,
        venue: VenueId,
        cert_serial: &Serial,
        cert_fingerprint: Fingerprint,
        now: DateTime<Utc>,
    ) -> Result<HubRecord, RegistryError> {
        let op = "record hub";
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql(op))?;
        if venue_in(&tx, venue).map_err(sql(op))?.is_none() {
            return Err(RegistryError::UnknownVenue { venue });
        }
        if hub_in(&tx, hub).map_err(sql(op))?.is_some() {
            return Err(RegistryError::HubExists { hub });
        }
        tx.execute(
            "INSERT INTO hubs (id, venue_id, cert_serial, cert_fingerprint, enrolled_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                hub.to_string(),
                venue.to_string(),
                cert_serial.to_string(),
                cert_fingerprint.to_string(),
                to_unix_ms(now)
            ],
        )
        .map_err(sql(op))?;
        let record = hub_in(&tx, hub).map_err(sql(op))?;
        tx.commit().map_err(sql(op))?;
        record.ok_or(RegistryError::UnknownHub { hub })
    }

    /// Every hub (revoked ones too), or only `venue`'s, in enrollment order.
    pub fn list_hubs(&self, venue: Option<VenueId>) -> Result<Vec<HubRecord>, RegistryError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {HUB_COLUMNS} FROM hubs WHERE ?1 IS NULL OR venue_id = ?1
                 ORDER BY enrolled_at, id"
            ))
            .map_err(sql("list hubs"))?;
        stmt.query_map(params![venue.map(|v| v.to_string())], read_hub)
            .and_then(Iterator::collect)
            .map_err(sql("list hubs"))
    }

    /// One hub, if it exists.
    pub fn hub(&self, id: HubId) -> Result<Option<HubRecord>, RegistryError> {
        hub_in(&self.lock(), id).map_err(sql("read hub"))
    }

    /// Revoke a hub: its certificate's serial joins [`Registry::revoked_serials`].
    /// Revoking a revoked hub keeps the first revocation time. Returns the updated record.
    pub fn revoke_hub(&self, id: HubId, now: DateTime<Utc>) -> Result<HubRecord, RegistryError> {
        let op = "revoke hub";
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql(op))?;
        let changed = tx
            .execute(
                "UPDATE hubs SET revoked_at = coalesce(revoked_at, ?1) WHERE id = ?2",
                params![to_unix_ms(now), id.to_string()],
            )
            .map_err(sql(op))?;
        if changed == 0 {
            return Err(RegistryError::UnknownHub { hub: id });
        }
        let record = hub_in(&tx, id).map_err(sql(op))?;
        tx.commit().map_err(sql(op))?;
        record.ok_or(RegistryError::UnknownHub { hub: id })
    }

    /// The serials of every revoked hub certificate, for the CRL.
    pub fn revoked_serials(&self) -> Result<Vec<Revocation>, RegistryError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(
                "SELECT cert_serial, revoked_at FROM hubs WHERE revoked_at IS NOT NULL
                 ORDER BY revoked_at, cert_serial",
            )
            .map_err(sql("list revoked serials"))?;
        stmt.query_map([], |row| {
            Ok(Revocation {
                serial: parse_col(row, 0)?,
                revoked_at: taplink_certs::offset_date_time(time_col(row, 1)?),
            })
        })
        .and_then(Iterator::collect)
        .map_err(sql("list revoked serials"))
    }

    /// Note that a hub was heard from. `None` leaves that field as it was; a software
    /// string longer than 200 characters is cut.
    pub fn touch_hub(
        &self,
        hub: HubId,
        last_seen: DateTime<Utc>,
        software: Option<&str>,
        heads: Option<&[DocHeads]>,
        last_sync: Option<DateTime<Utc>>,
    ) -> Result<(), RegistryError> {
        let software: Option<String> =
            software.map(|s| s.chars().take(MAX_SOFTWARE_CHARS).collect());
        let heads_json = heads.map(encode_heads).transpose()?;
        let changed = self
            .lock()
            .execute(
                "UPDATE hubs SET last_seen = ?1,
                     software = coalesce(?2, software),
                     heads_json = coalesce(?3, heads_json),
                     last_sync = coalesce(?4, last_sync)
                 WHERE id = ?5",
                params![
                    to_unix_ms(last_seen),
                    software,
                    heads_json,
                    last_sync.map(to_unix_ms),
                    hub.to_string()
                ],
            )
            .map_err(sql("update hub status"))?;
        if changed == 0 {
            return Err(RegistryError::UnknownHub { hub });
        }
        Ok(())
    }

    /// How many venues and hubs there are.
    pub fn counts(&self) -> Result<Counts, RegistryError> {
        self.lock()
            .query_row(
                "SELECT (SELECT count(*) FROM venues),
                        (SELECT count(*) FROM hubs WHERE revoked_at IS NULL),
                        (SELECT count(*) FROM hubs WHERE revoked_at IS NOT NULL)",
                [],
                |row| {
                    Ok(Counts {
                        venues: count_col(row, 0)?,
                        active_hubs: count_col(row, 1)?,
                        revoked_hubs: count_col(row, 2)?,
                    })
                },
            )
            .map_err(sql("count venues and hubs"))
    }

    // -----------------------------------------------------------------------------------
    // Admin tokens
    // -----------------------------------------------------------------------------------

    /// Create an admin token named `name` (e.g. `bootstrap`) and return its text, which is
    /// not stored anywhere: show it once.
    pub fn bootstrap_admin_token(
        &self,
        name: &str,
        now: DateTime<Utc>,
    ) -> Result<AdminToken, RegistryError> {
        if name.trim().is_empty()
            || name.chars().count() > MAX_TOKEN_NAME_CHARS
            || name.chars().any(char::is_control)
        {
            return Err(RegistryError::Invalid {
                field: "name",
                reason: format!(
                    "a token name must be 1 to {MAX_TOKEN_NAME_CHARS} characters without control characters"
                ),
            });
        }
        let token = AdminToken::generate();
        self.lock()
            .execute(
                "INSERT INTO admin_tokens (token_hash, name, created_at) VALUES (?1, ?2, ?3)",
                params![AdminToken::hash_of(token.as_str()), name, to_unix_ms(now)],
            )
            .map_err(sql("create admin token"))?;
        Ok(token)
    }

    /// Whether `text` is a current (unrevoked) admin token.
    pub fn check_admin_token(&self, text: &str) -> Result<bool, RegistryError> {
        // Looking up by hash makes the comparison independent of how much of the token
        // matched, so no constant-time compare is needed.
        if text.len() > AdminToken::MAX_LEN || !text.starts_with(AdminToken::PREFIX) {
            return Ok(false);
        }
        self.lock()
            .query_row(
                "SELECT 1 FROM admin_tokens WHERE token_hash = ?1 AND revoked_at IS NULL",
                params![AdminToken::hash_of(text)],
                |_| Ok(()),
            )
            .optional()
            .map(|found| found.is_some())
            .map_err(sql("check admin token"))
    }

    // -----------------------------------------------------------------------------------
    // Telemetry
    // -----------------------------------------------------------------------------------

    /// Store a batch of a hub's telemetry in one transaction, skipping events whose id is
    /// already stored. Returns how many were new. Once this returns, the batch is on disk
    /// and may be acknowledged.
    pub fn store_telemetry(
        &self,
        hub: HubId,
        events: &[TelemetryEvent],
        now: DateTime<Utc>,
    ) -> Result<u32, RegistryError> {
        let op = "store telemetry";
        let rows = events
            .iter()
            .map(|e| {
                let (kind, body, play, beat_version) = match &e.kind {
                    TelemetryKind::Heartbeat(h) => (
                        "heartbeat",
                        serde_json::to_string(h),
                        None,
                        Some(h.manifest_version.clone()),
                    ),
                    TelemetryKind::ProofOfPlay(p) => (
                        "proof_of_play",
                        serde_json::to_string(p),
                        Some((
                            p.media.to_string(),
                            p.started_ms,
                            // At most a day (checked on arrival); saturate rather than wrap.
                            i64::try_from(p.duration_ms).unwrap_or(i64::MAX),
                        )),
                        None,
                    ),
                };
                body.map(|body| (e, kind, body, play, beat_version))
                    .map_err(|source| RegistryError::Encode {
                        what: "a telemetry event",
                        source,
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql(op))?;
        let Some(record) = hub_in(&tx, hub).map_err(sql(op))? else {
            return Err(RegistryError::UnknownHub { hub });
        };
        let mut stored = 0u32;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO telemetry
                     (event_id, hub_id, kiosk_id, at_ms, kind, body_json, received_at,
                      venue_id, play_media, play_started_ms, play_duration_ms, beat_version)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                )
                .map_err(sql(op))?;
            let hub_text = hub.to_string();
            let venue_text = record.venue.to_string();
            for (event, kind, body, play, beat_version) in rows {
                let (media, started, duration) = match play {
                    Some((media, started, duration)) => {
                        (Some(media), Some(started), Some(duration))
                    }
                    None => (None, None, None),
                };
                let inserted = stmt
                    .execute(params![
                        event.id,
                        hub_text,
                        event.kiosk.map(|k| k.to_string()),
                        event.at_ms,
                        kind,
                        body,
                        to_unix_ms(now),
                        venue_text,
                        media,
                        started,
                        duration,
                        beat_version
                    ])
                    .map_err(sql(op))?;
                stored += u32::from(inserted > 0);
            }
        }
        tx.commit().map_err(sql(op))?;
        Ok(stored)
    }

    /// How many telemetry events are stored.
    pub fn telemetry_count(&self) -> Result<u64, RegistryError> {
        self.lock()
            .query_row("SELECT count(*) FROM telemetry", [], |row| {
                count_col(row, 0)
            })
            .map_err(sql("count telemetry"))
    }
}

pub(crate) const HUB_COLUMNS: &str = "id, venue_id, cert_serial, cert_fingerprint, enrolled_at, revoked_at, \
                           last_seen, last_sync, software, heads_json";

pub(crate) fn read_hub(row: &Row<'_>) -> rusqlite::Result<HubRecord> {
    let heads: Option<String> = row.get(9)?;
    Ok(HubRecord {
        id: parse_col(row, 0)?,
        venue: parse_col(row, 1)?,
        cert_serial: parse_col(row, 2)?,
        cert_fingerprint: parse_col(row, 3)?,
        enrolled_at: time_col(row, 4)?,
        revoked_at: opt_time_col(row, 5)?,
        last_seen: opt_time_col(row, 6)?,
        last_sync: opt_time_col(row, 7)?,
        software: row.get(8)?,
        heads: heads
            .map(|json| decode_heads(&json))
            .transpose()
            .map_err(|e| conversion(9, Type::Text, e))?,
    })
}

fn hub_in(conn: &Connection, id: HubId) -> rusqlite::Result<Option<HubRecord>> {
    conn.prepare_cached(&format!("SELECT {HUB_COLUMNS} FROM hubs WHERE id = ?1"))?
        .query_row(params![id.to_string()], read_hub)
        .optional()
}

pub(crate) fn read_venue(row: &Row<'_>) -> rusqlite::Result<Venue> {
    Ok(Venue {
        id: parse_col(row, 0)?,
        name: row.get(1)?,
        timezone: row.get(2)?,
        created_at: time_col(row, 3)?,
        tags: serde_json::from_str(&row.get::<_, String>(4)?)
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(4, Type::Text, Box::new(e)))?,
    })
}

fn venue_in(conn: &Connection, id: VenueId) -> rusqlite::Result<Option<Venue>> {
    conn.prepare_cached(
        "SELECT id, name, timezone, created_at, tags_json FROM venues WHERE id = ?1",
    )?
    .query_row(params![id.to_string()], read_venue)
    .optional()
}

fn check_venue_name(name: &str) -> Result<(), RegistryError> {
    if name.trim().is_empty()
        || name.chars().count() > MAX_NAME_CHARS
        || name.chars().any(char::is_control)
    {
        return Err(RegistryError::Invalid {
            field: "name",
            reason: format!(
                "a venue name must be 1 to {MAX_NAME_CHARS} characters, not blank, without \
                 control characters; got {:?}",
                name.chars().take(120).collect::<String>()
            ),
        });
    }
    Ok(())
}

fn check_timezone_shape(tz: &str) -> Result<(), RegistryError> {
    let ok = !tz.is_empty()
        && tz.len() <= MAX_TIMEZONE_CHARS
        && tz
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/_+-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(RegistryError::Invalid {
            field: "timezone",
            reason: format!(
                "expected an IANA time zone name such as \"Europe/Berlin\", got {:?}",
                tz.chars().take(80).collect::<String>()
            ),
        })
    }
}

/// Heads are stored as `{"<doc id>": ["<hex change hash>", ...]}`, readable in the shell.
fn encode_heads(heads: &[DocHeads]) -> Result<String, RegistryError> {
    let map: BTreeMap<String, Vec<String>> = heads
        .iter()
        .map(|h| {
            (
                h.doc.to_string(),
                h.heads.iter().map(|c| HEXLOWER.encode(c)).collect(),
            )
        })
        .collect();
    serde_json::to_string(&map).map_err(|source| RegistryError::Encode {
        what: "document heads",
        source,
    })
}

fn decode_heads(json: &str) -> Result<Vec<DocHeads>, String> {
    let map: BTreeMap<String, Vec<String>> =
        serde_json::from_str(json).map_err(|e| format!("heads_json: {e}"))?;
    map.into_iter()
        .map(|(doc, hashes)| {
            let doc: DocId = doc.parse().map_err(|e| format!("heads_json: {e}"))?;
            let heads = hashes
                .iter()
                .map(|h| {
                    HEXLOWER_PERMISSIVE
                        .decode(h.as_bytes())
                        .ok()
                        .and_then(|b| <[u8; 32]>::try_from(b).ok())
                        .ok_or_else(|| format!("heads_json: {h:?} is not a change hash"))
                })
                .collect::<Result<_, _>>()?;
            Ok(DocHeads { doc, heads })
        })
        .collect()
}

fn sql(op: &'static str) -> impl FnOnce(rusqlite::Error) -> RegistryError {
    move |source| RegistryError::Sqlite { op, source }
}

fn conversion(
    idx: usize,
    ty: Type,
    e: impl Into<Box<dyn std::error::Error + Send + Sync>>,
) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(idx, ty, e.into())
}

fn parse_col<T>(row: &Row<'_>, idx: usize) -> rusqlite::Result<T>
where
    T: FromStr,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    let text: String = row.get(idx)?;
    text.parse().map_err(|e| conversion(idx, Type::Text, e))
}

fn time_col(row: &Row<'_>, idx: usize) -> rusqlite::Result<DateTime<Utc>> {
    from_unix_ms(row.get(idx)?).map_err(|e| conversion(idx, Type::Integer, e))
}

fn opt_time_col(row: &Row<'_>, idx: usize) -> rusqlite::Result<Option<DateTime<Utc>>> {
    row.get::<_, Option<i64>>(idx)?
        .map(|ms| from_unix_ms(ms).map_err(|e| conversion(idx, Type::Integer, e)))
        .transpose()
}

fn count_col(row: &Row<'_>, idx: usize) -> rusqlite::Result<u64> {
    let n: i64 = row.get(idx)?;
    u64::try_from(n).map_err(|e| conversion(idx, Type::Integer, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_round_trip_through_their_json_form() {
        let heads = vec![
            DocHeads {
                doc: DocId::Org,
                heads: vec![[1; 32], [2; 32]],
            },
            DocHeads {
                doc: DocId::Venue(VenueId::from_bytes([9; 16])),
                heads: vec![],
            },
        ];
        let json = encode_heads(&heads).unwrap();
        assert!(json.contains("\"org\":[\"0101"), "{json}");
        assert_eq!(decode_heads(&json).unwrap(), heads);
        assert!(decode_heads(r#"{"org": ["zz"]}"#).is_err());
        assert!(decode_heads(r#"{"nope": []}"#).is_err());
    }

    #[test]
    fn timezone_shape_check_accepts_iana_names_only_in_shape() {
        for ok in [
            "Europe/Berlin",
            "America/Argentina/Buenos_Aires",
            "Etc/GMT+5",
            "UTC",
        ] {
            check_timezone_shape(ok).unwrap();
        }
        for bad in ["", "Europe/Berlin ", "Europe\\Berlin", &"A".repeat(65)] {
            assert!(check_timezone_shape(bad).is_err(), "{bad:?}");
        }
    }
}
