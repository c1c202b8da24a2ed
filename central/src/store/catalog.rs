//! The catalog: indexed tables that follow the documents, so that lists of kiosks and
//! media (and venue names and time zones) are answered by SQL pages rather than by
//! hydrating thousands of documents per request.
//!
//! [`Registry::refresh_venue`] and [`Registry::refresh_org`] replace one document's rows in
//! one transaction; `crate::observe` calls them after every change of a document, made here
//! or synced from a hub. Every list here is a keyset page: ordered by a unique key, the
//! cursor is the last key of the previous page, and only venues in the caller's reach
//! (`Reach`) are read, so a page is as fast at the end of the fleet as at its start.

use rusqlite::types::Value;
use rusqlite::{OptionalExtension, params};
use taplink_sync_proto::authz::Scope;
use taplink_sync_proto::doc::{OrgDoc, VenueDoc};
use taplink_sync_proto::ids::{HubId, MediaHash, VenueId};

use super::{HUB_COLUMNS, HubRecord, Registry, RegistryError, Venue, read_hub, read_venue, sql};

/// Whose venues a list may show: every venue (admins), or those a scope reaches.
#[derive(Debug, Clone)]
pub enum Reach {
    /// Every venue.
    All,
    /// The venues this scope names or tags.
    Scope(Scope),
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The rows.
    pub items: Vec<T>,
    /// The cursor of the next page, if there may be one.
    pub next: Option<String>,
}

/// A kiosk as the catalog knows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct KioskRow {
    /// The kiosk.
    pub id: String,
    /// Its venue.
    pub venue: String,
    /// Its name.
    pub name: String,
    /// Its group.
    pub group: Option<String>,
    /// How its screen is mounted.
    pub orientation: String,
    /// Its own playlist.
    pub playlist: Option<String>,
}

/// Where a media file is used.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct MediaUse {
    /// The venue.
    pub venue: String,
    /// The playlist.
    pub playlist: String,
    /// The playlist's name.
    pub playlist_name: String,
    /// The item.
    pub item: String,
}

/// A media file as the catalog knows it, with where it is used.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct MediaRow {
    /// Its BLAKE3 hash.
    pub hash: String,
    /// The venue it belongs to (`None`: the org library).
    pub venue: Option<String>,
    /// Its file name.
    pub name: String,
    /// Its media type.
    pub content_type: String,
    /// Its size in bytes.
    pub size: u64,
    /// The playlist items showing it (for library media: in every venue).
    pub used_by: Vec<MediaUse>,
}

/// A venue's line on the fleet overview.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VenueSummary {
    /// Its kiosks.
    pub kiosks: u64,
    /// When its hub last finished a sync.
    pub last_sync: Option<chrono::DateTime<chrono::Utc>>,
    /// Kiosks whose latest heartbeat said something was on screen (what central last knew;
    /// with the hub offline, whether they were playing when it was last heard from).
    pub kiosks_last_playing: u64,
    /// Kiosks whose latest heartbeat is at or after the `up_since` asked for.
    pub kiosks_up: u64,
    /// The venue document's heads when its hub last finished a sync (both sides held
    /// them then), if it ever did.
    pub synced_heads: Option<Vec<[u8; 32]>>,
}

/// Which venues to list.
#[derive(Debug, Clone, Default)]
pub struct VenueFilter {
    /// Only venues with this tag.
    pub tag: Option<String>,
    /// Only venues whose name contains this (any letter case).
    pub q: Option<String>,
    /// Only venues whose hub is in this state.
    pub hub_state: Option<HubState>,
}

/// The state of a venue's hub, as lists show and filter it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum HubState {
    /// A hub of the venue has a sync connection now.
    Online,
    /// The venue has a hub that synced before and is not connected now.
    Offline,
    /// The venue's hub enrolled but never connected.
    NeverConnected,
    /// No hub is enrolled (or every one was revoked).
    NoHub,
}

impl std::str::FromStr for HubState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        serde_json::from_value(serde_json::Value::from(s))
            .map_err(|_| format!("{s:?}: use online, offline, never_connected or no_hub"))
    }
}

/// SQL for a venue's hub state, given `?online` (a JSON array of connected hub ids).
fn hub_state_sql(venue_col: &str, online_arg: usize) -> String {
    format!(
        "CASE
            WHEN EXISTS (SELECT 1 FROM hubs h WHERE h.venue_id = {venue_col} AND h.revoked_at IS NULL
                         AND h.id IN (SELECT value FROM json_each(?{online_arg}))) THEN 'online'
            WHEN EXISTS (SELECT 1 FROM hubs h WHERE h.venue_id = {venue_col} AND h.revoked_at IS NULL
                         AND h.last_seen IS NOT NULL) THEN 'offline'
            WHEN EXISTS (SELECT 1 FROM hubs h WHERE h.venue_id = {venue_col} AND h.revoked_at IS NULL)
                THEN 'never_connected'
            ELSE 'no_hub'
         END"
    )
}

/// Collects a query's arguments and numbers its placeholders.
#[derive(Default)]
pub(super) struct Args(pub(super) Vec<Value>);

impl Args {
    pub(super) fn push(&mut self, value: impl Into<Value>) -> usize {
        self.0.push(value.into());
        self.0.len()
    }

    /// The clause keeping rows whose venue (`venue_col`, tags in `tags_col`) is in reach.
    fn reach(&mut self, reach: &Reach, venue_col: &str, tags_col: &str) -> Option<String> {
        let Reach::Scope(scope) = reach else {
            return None;
        };
        let ids: Vec<String> = scope.venues.iter().map(ToString::to_string).collect();
        let tags: Vec<String> = scope.tags.iter().map(ToString::to_string).collect();
        let ids = self.push(serde_json::Value::from(ids).to_string());
        let tags = self.push(serde_json::Value::from(tags).to_string());
        Some(format!(
            "({venue_col} IN (SELECT value FROM json_each(?{ids}))
              OR EXISTS (SELECT 1 FROM json_each({tags_col}) t
                         WHERE t.value IN (SELECT value FROM json_each(?{tags}))))"
        ))
    }
}

impl Args {
    /// The clauses every list starts with: in reach, and of `venue` (in `venue_col`) if
    /// given.
    pub(super) fn scoped(
        &mut self,
        reach: &Reach,
        venue: Option<VenueId>,
        venue_col: &str,
    ) -> Vec<String> {
        let mut clauses: Vec<String> = self
            .reach(reach, "v.id", "v.tags_json")
            .into_iter()
            .collect();
        if let Some(venue) = venue {
            let n = self.push(venue.to_string());
            clauses.push(format!("{venue_col} = ?{n}"));
        }
        clauses
    }

    /// The keyset clause of a page after `cursor`, for a list ordered by `(time, id)`
    /// (cursor `<ms>.<id>`, see [`time_id_cursor`]).
    fn after_time_id(
        &mut self,
        cursor: &str,
        time_col: &str,
        id_col: &str,
    ) -> Result<String, RegistryError> {
        let (ms, id) = cursor.split_once('.').ok_or_else(bad_cursor)?;
        let ms: i64 = ms.parse().map_err(|_| bad_cursor())?;
        let (a, b) = (self.push(ms), self.push(id.to_owned()));
        Ok(format!("({time_col}, {id_col}) > (?{a}, ?{b})"))
    }
}

/// The cursor after a row ordered by `(time, id)`.
fn time_id_cursor(at: chrono::DateTime<chrono::Utc>, id: impl std::fmt::Display) -> String {
    format!("{}.{id}", at.timestamp_millis())
}

/// The next page's cursor: the last row's key, if the page is full.
fn next_of<T>(items: &[T], limit: usize, key: impl Fn(&T) -> String) -> Option<String> {
    (items.len() == limit)
        .then(|| items.last().map(key))
        .flatten()
}

pub(super) fn where_of(clauses: &[String]) -> String {
    if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    }
}

pub(super) fn limit_of(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// A cursor that does not parse.
fn bad_cursor() -> RegistryError {
    RegistryError::Invalid {
        field: "cursor",
        reason: "not a cursor from a previous page".to_owned(),
    }
}

impl Registry {
    /// Replace venue `id`'s catalog rows with what `doc` says (and its registry name and
    /// time zone, which follow the document).
    pub fn refresh_venue(&self, id: VenueId, doc: &VenueDoc) -> Result<(), RegistryError> {
        let op = "refresh the venue catalog";
        let venue = id.to_string();
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(sql(op))?;
        for table in ["catalog_kiosks", "catalog_media_uses"] {
            tx.execute(
                &format!("DELETE FROM {table} WHERE venue_id = ?1"),
                params![venue],
            )
            .map_err(sql(op))?;
        }
        tx.execute("DELETE FROM catalog_media WHERE owner = ?1", params![venue])
            .map_err(sql(op))?;
        {
            let mut kiosk = tx
                .prepare_cached(
                    "INSERT INTO catalog_kiosks (kiosk_id, venue_id, name, group_name, orientation, playlist_id)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (kiosk_id) DO UPDATE SET venue_id = excluded.venue_id,
                        name = excluded.name, group_name = excluded.group_name,
                        orientation = excluded.orientation, playlist_id = excluded.playlist_id",
                )
                .map_err(sql(op))?;
            for (kid, k) in &doc.kiosks {
                let orientation = serde_json::to_value(k.orientation)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                kiosk
                    .execute(params![
                        kid.to_string(),
                        venue,
                        k.name,
                        k.group,
                        orientation,
                        k.playlist.map(|p| p.to_string())
                    ])
                    .map_err(sql(op))?;
            }
            let mut media = tx
                .prepare_cached(
                    "INSERT INTO catalog_media (owner, hash, name, content_type, size)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(sql(op))?;
            for (hash, m) in &doc.media {
                media
                    .execute(params![
                        venue,
                        hash.to_string(),
                        m.name,
                        m.content_type,
                        i64::try_from(m.size).unwrap_or(i64::MAX)
                    ])
                    .map_err(sql(op))?;
            }
            let mut uses = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO catalog_media_uses (venue_id, playlist_id, item_id, hash, playlist_name)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(sql(op))?;
            for (pid, playlist) in &doc.playlists {
                for (iid, item) in &playlist.items {
                    uses.execute(params![
                        venue,
                        pid.to_string(),
                        iid.to_string(),
                        item.media.to_string(),
                        playlist.name
                    ])
                    .map_err(sql(op))?;
                }
            }
        }
        if !doc.settings.name.is_empty() && !doc.settings.timezone.is_empty() {
            tx.execute(
                "UPDATE venues SET name = ?2, timezone = ?3 WHERE id = ?1",
                params![venue, doc.settings.name, doc.settings.timezone],
            )
            .map_err(sql(op))?;
        }
        tx.commit().map_err(sql(op))
    }

    /// Replace the org library's catalog rows with what `doc` says.
    pub fn refresh_org(&self, doc: &OrgDoc) -> Result<(), RegistryError> {
        let op = "refresh the library catalog";
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(sql(op))?;
        tx.execute("DELETE FROM catalog_media WHERE owner = 'org'", [])
            .map_err(sql(op))?;
        {
            let mut media = tx
                .prepare_cached(
                    "INSERT INTO catalog_media (owner, hash, name, content_type, size)
                     VALUES ('org', ?1, ?2, ?3, ?4)",
                )
                .map_err(sql(op))?;
            for (hash, m) in &doc.library {
                media
                    .execute(params![
                        hash.to_string(),
                        m.name,
                        m.content_type,
                        i64::try_from(m.size).unwrap_or(i64::MAX)
                    ])
                    .map_err(sql(op))?;
            }
        }
        tx.commit().map_err(sql(op))
    }

    /// A page of venues in `reach` matching `filter`, oldest first, each with its hub's
    /// state (`online`: the hubs connected now).
    pub fn venues_page(
        &self,
        reach: &Reach,
        filter: &VenueFilter,
        online: &[HubId],
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<(Venue, HubState)>, RegistryError> {
        let mut args = Args::default();
        let online: Vec<String> = online.iter().map(ToString::to_string).collect();
        let online_arg = args.push(serde_json::Value::from(online).to_string());
        let state_sql = hub_state_sql("v.id", online_arg);
        let mut clauses = args.scoped(reach, None, "v.id");
        if let Some(tag) = &filter.tag {
            let n = args.push(tag.clone());
            clauses.push(format!(
                "EXISTS (SELECT 1 FROM json_each(v.tags_json) t WHERE t.value = ?{n})"
            ));
        }
        if let Some(q) = &filter.q {
            let n = args.push(format!("%{}%", q.replace(['%', '_'], "")));
            clauses.push(format!("v.name LIKE ?{n}"));
        }
        if let Some(state) = filter.hub_state {
            let text = serde_json::to_value(state)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let n = args.push(text);
            clauses.push(format!("({state_sql}) = ?{n}"));
        }
        if let Some(cursor) = cursor {
            clauses.push(args.after_time_id(cursor, "v.created_at", "v.id")?);
        }
        let text = format!(
            "SELECT v.id, v.name, v.timezone, v.created_at, v.tags_json, {state_sql}
             FROM venues v {} ORDER BY v.created_at, v.id LIMIT {}",
            where_of(&clauses),
            limit_of(limit)
        );
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(&text).map_err(sql("list venues"))?;
        let items: Vec<(Venue, HubState)> = stmt
            .query_map(rusqlite::params_from_iter(args.0), |row| {
                let state: String = row.get(5)?;
                Ok((read_venue(row)?, state.parse().unwrap_or(HubState::NoHub)))
            })
            .and_then(Iterator::collect)
            .map_err(sql("list venues"))?;
        let next = next_of(&items, limit, |(v, _)| time_id_cursor(v.created_at, v.id));
        Ok(Page { items, next })
    }

    /// The state of `venue`'s hub (`online`: the hubs connected now).
    pub fn hub_state(&self, venue: VenueId, online: &[HubId]) -> Result<HubState, RegistryError> {
        let online: Vec<String> = online.iter().map(ToString::to_string).collect();
        let text = format!("SELECT {}", hub_state_sql("?1", 2));
        let state: String = self
            .lock()
            .query_row(
                &text,
                params![
                    venue.to_string(),
                    serde_json::Value::from(online).to_string()
                ],
                |row| row.get(0),
            )
            .map_err(sql("read a hub state"))?;
        Ok(state.parse().unwrap_or(HubState::NoHub))
    }

    /// For each of `venues`: how many kiosks it has and when its hub last finished a sync.
    pub fn venue_summaries(
        &self,
        venues: &[VenueId],
        up_since: chrono::DateTime<chrono::Utc>,
    ) -> Result<std::collections::HashMap<VenueId, VenueSummary>, RegistryError> {
        let ids: Vec<String> = venues.iter().map(ToString::to_string).collect();
        let conn = self.lock();
        // The latest heartbeat of each kiosk once, then counted two ways.
        let mut stmt = conn
            .prepare_cached(
                "SELECT v.value,
                        (SELECT count(*) FROM catalog_kiosks k WHERE k.venue_id = v.value),
                        (SELECT max(h.last_sync) FROM hubs h
                          WHERE h.venue_id = v.value AND h.revoked_at IS NULL),
                        (SELECT count(*) FROM (
                           SELECT (SELECT json_extract(t.body_json, '$.on_screen') FROM telemetry t
                                    WHERE t.kind = 'heartbeat' AND t.venue_id = v.value
                                      AND t.kiosk_id = k.kiosk_id
                                    ORDER BY t.at_ms DESC LIMIT 1) AS on_screen
                           FROM catalog_kiosks k WHERE k.venue_id = v.value)
                         WHERE on_screen IS NOT NULL),
                        (SELECT count(*) FROM catalog_kiosks k
                          WHERE k.venue_id = v.value
                            AND (SELECT max(t.at_ms) FROM telemetry t
                                  WHERE t.kind = 'heartbeat' AND t.venue_id = v.value
                                    AND t.kiosk_id = k.kiosk_id) >= ?2),
                        (SELECT h.heads_json FROM hubs h
                          WHERE h.venue_id = v.value AND h.revoked_at IS NULL
                            AND h.last_sync IS NOT NULL
                          ORDER BY h.last_sync DESC LIMIT 1)
                 FROM json_each(?1) v",
            )
            .map_err(sql("summarise venues"))?;
        let rows = stmt
            .query_map(
                params![
                    serde_json::Value::from(ids).to_string(),
                    up_since.timestamp_millis()
                ],
                |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, i64>(1)?,
                        row.get::<_, Option<i64>>(2)?,
                        row.get::<_, i64>(3)?,
                        row.get::<_, i64>(4)?,
                        row.get::<_, Option<String>>(5)?,
                    ))
                },
            )
            .and_then(Iterator::collect::<Result<Vec<_>, _>>)
            .map_err(sql("summarise venues"))?;
        Ok(rows
            .into_iter()
            .filter_map(|(id, kiosks, last_sync, playing, up, heads)| {
                let id: VenueId = id.parse().ok()?;
                let synced_heads = heads
                    .and_then(|json| super::decode_heads(&json).ok())
                    .and_then(|docs| {
                        docs.into_iter()
                            .find(|d| d.doc == taplink_sync_proto::wire::DocId::Venue(id))
                    })
                    .map(|d| d.heads.into_iter().collect());
                Some((
                    id,
                    VenueSummary {
                        kiosks: u64::try_from(kiosks).unwrap_or(0),
                        last_sync: last_sync.and_then(chrono::DateTime::from_timestamp_millis),
                        kiosks_last_playing: u64::try_from(playing).unwrap_or(0),
                        kiosks_up: u64::try_from(up).unwrap_or(0),
                        synced_heads,
                    },
                ))
            })
            .collect())
    }

    /// How many venues in `reach` have their hub in each state (`online`: the hubs
    /// connected now), in one query.
    pub fn venue_state_counts(
        &self,
        reach: &Reach,
        online: &[HubId],
    ) -> Result<Vec<(HubState, usize)>, RegistryError> {
        let mut args = Args::default();
        let online: Vec<String> = online.iter().map(ToString::to_string).collect();
        let online_arg = args.push(serde_json::Value::from(online).to_string());
        let state_sql = hub_state_sql("v.id", online_arg);
        let clauses = args.scoped(reach, None, "v.id");
        let text = format!(
            "SELECT {state_sql} AS state, count(*) FROM venues v {} GROUP BY state",
            where_of(&clauses)
        );
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(&text)
            .map_err(sql("count venues by hub state"))?;
        let found: Vec<(String, i64)> = stmt
            .query_map(rusqlite::params_from_iter(args.0), |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .and_then(Iterator::collect)
            .map_err(sql("count venues by hub state"))?;
        Ok([
            HubState::Online,
            HubState::Offline,
            HubState::NeverConnected,
            HubState::NoHub,
        ]
        .into_iter()
        .map(|state| {
            let n = found
                .iter()
                .filter(|(text, _)| text.parse::<HubState>().ok() == Some(state))
                .map(|(_, n)| usize::try_from(*n).unwrap_or(0))
                .sum();
            (state, n)
        })
        .collect())
    }

    /// A page of kiosks in `reach` (of `venue`, if given), by id.
    pub fn kiosks_page(
        &self,
        reach: &Reach,
        venue: Option<VenueId>,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<KioskRow>, RegistryError> {
        let mut args = Args::default();
        let mut clauses = args.scoped(reach, venue, "k.venue_id");
        if let Some(cursor) = cursor {
            let n = args.push(cursor.to_owned());
            clauses.push(format!("k.kiosk_id > ?{n}"));
        }
        let text = format!(
            "SELECT k.kiosk_id, k.venue_id, k.name, k.group_name, k.orientation, k.playlist_id
             FROM catalog_kiosks k JOIN venues v ON v.id = k.venue_id
             {} ORDER BY k.kiosk_id LIMIT {}",
            where_of(&clauses),
            limit_of(limit)
        );
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(&text).map_err(sql("list kiosks"))?;
        let items: Vec<KioskRow> = stmt
            .query_map(rusqlite::params_from_iter(args.0), |row| {
                Ok(KioskRow {
                    id: row.get(0)?,
                    venue: row.get(1)?,
                    name: row.get(2)?,
                    group: row.get(3)?,
                    orientation: row.get(4)?,
                    playlist: row.get(5)?,
                })
            })
            .and_then(Iterator::collect)
            .map_err(sql("list kiosks"))?;
        let next = next_of(&items, limit, |k| k.id.clone());
        Ok(Page { items, next })
    }

    /// A page of hubs in `reach` (of `venue`, if given), in enrollment order.
    pub fn hubs_page(
        &self,
        reach: &Reach,
        venue: Option<VenueId>,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<HubRecord>, RegistryError> {
        let mut args = Args::default();
        let mut clauses = args.scoped(reach, venue, "h.venue_id");
        if let Some(cursor) = cursor {
            clauses.push(args.after_time_id(cursor, "h.enrolled_at", "h.id")?);
        }
        let columns: Vec<String> = HUB_COLUMNS
            .split(',')
            .map(|c| format!("h.{}", c.trim()))
            .collect();
        let text = format!(
            "SELECT {} FROM hubs h JOIN venues v ON v.id = h.venue_id
             {} ORDER BY h.enrolled_at, h.id LIMIT {}",
            columns.join(", "),
            where_of(&clauses),
            limit_of(limit)
        );
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(&text).map_err(sql("list hubs"))?;
        let items: Vec<HubRecord> = stmt
            .query_map(rusqlite::params_from_iter(args.0), read_hub)
            .and_then(Iterator::collect)
            .map_err(sql("list hubs"))?;
        let next = next_of(&items, limit, |h| time_id_cursor(h.enrolled_at, h.id));
        Ok(Page { items, next })
    }

    /// The recorded content type of media `hash` of `venue` (or of the org library), if the
    /// catalog lists it there.
    pub fn catalog_media_type(
        &self,
        venue: Option<VenueId>,
        hash: &MediaHash,
    ) -> Result<Option<String>, RegistryError> {
        let owner = venue.map_or_else(|| "org".to_owned(), |v| v.to_string());
        self.lock()
            .prepare_cached("SELECT content_type FROM catalog_media WHERE owner = ?1 AND hash = ?2")
            .and_then(|mut stmt| {
                stmt.query_row(params![owner, hash.to_string()], |row| row.get(0))
                    .optional()
            })
            .map_err(sql("look up a media file"))
    }

    /// A page of media of `venue` (or of the org library), by hash, each with where it is
    /// used (library media: in the venues of `reach`).
    pub fn media_page(
        &self,
        reach: &Reach,
        venue: Option<VenueId>,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<MediaRow>, RegistryError> {
        let owner = venue.map_or_else(|| "org".to_owned(), |v| v.to_string());
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(
                "SELECT hash, name, content_type, size FROM catalog_media
                 WHERE owner = ?1 AND hash > ?2 ORDER BY hash LIMIT ?3",
            )
            .map_err(sql("list media"))?;
        let mut items: Vec<MediaRow> = stmt
            .query_map(
                params![owner, cursor.unwrap_or(""), limit_of(limit)],
                |row| {
                    Ok(MediaRow {
                        hash: row.get(0)?,
                        venue: venue.map(|v| v.to_string()),
                        name: row.get(1)?,
                        content_type: row.get(2)?,
                        size: u64::try_from(row.get::<_, i64>(3)?).unwrap_or(0),
                        used_by: Vec::new(),
                    })
                },
            )
            .and_then(Iterator::collect)
            .map_err(sql("list media"))?;
        let mut args = Args::default();
        let hash_arg = args.push(String::new());
        let mut clauses = vec![format!("u.hash = ?{hash_arg}")];
        if let Some(venue) = venue {
            let n = args.push(venue.to_string());
            clauses.push(format!("u.venue_id = ?{n}"));
        }
        clauses.extend(args.reach(reach, "v.id", "v.tags_json"));
        let text = format!(
            "SELECT u.venue_id, u.playlist_id, u.playlist_name, u.item_id
             FROM catalog_media_uses u JOIN venues v ON v.id = u.venue_id
             {} ORDER BY u.venue_id, u.playlist_id, u.item_id LIMIT 1000",
            where_of(&clauses)
        );
        let mut uses = conn.prepare_cached(&text).map_err(sql("list media uses"))?;
        for item in &mut items {
            args.0[hash_arg - 1] = Value::from(item.hash.clone());
            item.used_by = uses
                .query_map(rusqlite::params_from_iter(args.0.iter()), |row| {
                    Ok(MediaUse {
                        venue: row.get(0)?,
                        playlist: row.get(1)?,
                        playlist_name: row.get(2)?,
                        item: row.get(3)?,
                    })
                })
                .and_then(Iterator::collect)
                .map_err(sql("list media uses"))?;
        }
        let next = next_of(&items, limit, |m| m.hash.clone());
        Ok(Page { items, next })
    }
}
