//! Kiosk health in the registry: each kiosk's latest heartbeat, and since when it has
//! reported a manifest other than a given one (the venue page's content proof).
//!
//! Both read heartbeats through the partial indexes of migration 7 (`telemetry_heartbeats`
//! and `telemetry_heartbeat_versions`): a few index seeks per kiosk, however many
//! heartbeats the retention period keeps.

use chrono::{DateTime, Utc};
use rusqlite::params;
use rusqlite::types::Type;
use taplink_sync_proto::ids::{KioskId, VenueId};
use taplink_sync_proto::wire::Heartbeat;

use super::{Registry, RegistryError, parse_col, sql};

/// A kiosk's latest heartbeat as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KioskHeartbeat {
    /// The kiosk.
    pub kiosk: KioskId,
    /// When the kiosk recorded it (its clock).
    pub at: DateTime<Utc>,
    /// What it reported.
    pub heartbeat: Heartbeat,
}

/// Each kiosk's (`?2`, a JSON array of ids) latest heartbeat in venue `?1`.
const LATEST: &str = "
    SELECT t.kiosk_id, t.at_ms, t.body_json
    FROM json_each(?2) k
    JOIN telemetry t ON t.rowid = (
        SELECT rowid FROM telemetry
        WHERE kind = 'heartbeat' AND venue_id = ?1 AND kiosk_id = k.value
        ORDER BY at_ms DESC LIMIT 1)";

/// The first heartbeat of kiosk `?2` in venue `?1` after its latest one reporting version
/// `?3`.
const OTHER_SINCE: &str = "
    SELECT min(at_ms) FROM telemetry
    WHERE kind = 'heartbeat' AND venue_id = ?1 AND kiosk_id = ?2
      AND at_ms > (
        SELECT max(at_ms) FROM telemetry
        WHERE kind = 'heartbeat' AND venue_id = ?1 AND kiosk_id = ?2
          AND beat_version = ?3)";

impl Registry {
    /// The latest heartbeat of each of `kiosks` in `venue`, for those that sent one.
    pub fn latest_heartbeats(
        &self,
        venue: VenueId,
        kiosks: &[KioskId],
    ) -> Result<Vec<KioskHeartbeat>, RegistryError> {
        let op = "read latest heartbeats";
        let ids: Vec<String> = kiosks.iter().map(ToString::to_string).collect();
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(LATEST).map_err(sql(op))?;
        stmt.query_map(
            params![venue.to_string(), serde_json::Value::from(ids).to_string()],
            |row| {
                let at_ms: i64 = row.get(1)?;
                let body: String = row.get(2)?;
                let heartbeat = serde_json::from_str(&body).map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(2, Type::Text, Box::new(e))
                })?;
                Ok(KioskHeartbeat {
                    kiosk: parse_col(row, 0)?,
                    at: DateTime::from_timestamp_millis(at_ms).unwrap_or_default(),
                    heartbeat,
                })
            },
        )
        .and_then(Iterator::collect)
        .map_err(sql(op))
    }

    /// When `kiosk` first reported something other than `version` after its latest heartbeat
    /// reporting `version`; `None` if it never reported `version` (or reported nothing
    /// after it).
    pub fn reported_other_since(
        &self,
        venue: VenueId,
        kiosk: KioskId,
        version: &str,
    ) -> Result<Option<DateTime<Utc>>, RegistryError> {
        let op = "read a kiosk's heartbeat history";
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(OTHER_SINCE).map_err(sql(op))?;
        let at: Option<i64> = stmt
            .query_row(
                params![venue.to_string(), kiosk.to_string(), version],
                |row| row.get(0),
            )
            .map_err(sql(op))?;
        Ok(at.and_then(DateTime::from_timestamp_millis))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The query plans seek the heartbeat indexes; none reads the whole telemetry table.
    #[test]
    fn heartbeat_queries_use_their_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::create(&dir.path().join("central.sqlite")).unwrap();
        let conn = registry.lock();
        let plan = |text: &str| -> String {
            let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {text}")).unwrap();
            let args = vec!["[]"; stmt.parameter_count()];
            let rows: Vec<String> = stmt
                .query_map(rusqlite::params_from_iter(args), |row| {
                    row.get::<_, String>(3)
                })
                .unwrap()
                .map(Result::unwrap)
                .collect();
            rows.join("\n")
        };
        let latest = plan(LATEST);
        assert!(latest.contains("telemetry_heartbeats"), "{latest}");
        assert!(!latest.contains("SCAN telemetry"), "{latest}");
        let since = plan(OTHER_SINCE);
        assert!(since.contains("telemetry_heartbeat_versions"), "{since}");
        assert!(since.contains("telemetry_heartbeats"), "{since}");
        assert!(!since.contains("SCAN telemetry"), "{since}");
    }
}
