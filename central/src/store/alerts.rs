//! Alerts as stored: each condition (a hub offline, a kiosk's disk low, …) is one row from
//! when it opened until it cleared. [`Registry::reconcile_alerts`] takes the conditions
//! that hold now and, in one transaction, opens the new ones and clears the ones that no
//! longer hold, answering what changed (for the webhook).

use chrono::{DateTime, Utc};
use rusqlite::params;
use taplink_sync_proto::ids::VenueId;

use super::{Registry, RegistryError, sql};
use crate::timefmt::to_unix_ms;

/// A condition that holds now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// What it is about, unique while it holds (`hub_offline:<hub>`).
    pub key: String,
    /// `hub_offline`, `kiosk_offline`, `disk_low` or `temperature_high`.
    pub kind: &'static str,
    /// The venue.
    pub venue: VenueId,
    /// The hub or kiosk.
    pub subject: String,
    /// A sentence for people.
    pub detail: String,
}

/// An open (or just cleared) alert.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Alert {
    /// The condition's key.
    pub key: String,
    /// Its kind.
    pub kind: String,
    /// The venue.
    pub venue: String,
    /// The hub or kiosk.
    pub subject: String,
    /// A sentence for people.
    pub detail: String,
    /// When it opened, Unix ms.
    pub opened_ms: i64,
    /// When it cleared, Unix ms.
    pub cleared_ms: Option<i64>,
}

/// What [`Registry::reconcile_alerts`] changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertChange {
    /// Alerts opened now.
    pub opened: Vec<Alert>,
    /// Alerts cleared now.
    pub cleared: Vec<Alert>,
}

fn read(row: &rusqlite::Row<'_>) -> rusqlite::Result<Alert> {
    Ok(Alert {
        key: row.get(0)?,
        kind: row.get(1)?,
        venue: row.get(2)?,
        subject: row.get(3)?,
        detail: row.get(4)?,
        opened_ms: row.get(5)?,
        cleared_ms: row.get(6)?,
    })
}

const COLUMNS: &str = "key, kind, venue_id, subject, detail, opened_at, cleared_at";

impl Registry {
    /// Open the conditions of `now` that are not open, clear the open ones not among them.
    pub fn reconcile_alerts(
        &self,
        holding: &[Condition],
        now: DateTime<Utc>,
    ) -> Result<AlertChange, RegistryError> {
        let op = "reconcile alerts";
        let at = to_unix_ms(now);
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(sql(op))?;
        let open: Vec<Alert> = tx
            .prepare(&format!(
                "SELECT {COLUMNS} FROM alerts WHERE cleared_at IS NULL"
            ))
            .and_then(|mut stmt| stmt.query_map([], read)?.collect())
            .map_err(sql(op))?;
        let mut change = AlertChange::default();
        for alert in &open {
            if !holding.iter().any(|c| c.key == alert.key) {
                tx.execute(
                    "UPDATE alerts SET cleared_at = ?2 WHERE key = ?1 AND cleared_at IS NULL",
                    params![alert.key, at],
                )
                .map_err(sql(op))?;
                change.cleared.push(Alert {
                    cleared_ms: Some(at),
                    ..alert.clone()
                });
            }
        }
        for c in holding {
            if open.iter().any(|a| a.key == c.key) {
                continue;
            }
            tx.execute(
                "INSERT INTO alerts (key, kind, venue_id, subject, detail, opened_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![c.key, c.kind, c.venue.to_string(), c.subject, c.detail, at],
            )
            .map_err(sql(op))?;
            change.opened.push(Alert {
                key: c.key.clone(),
                kind: c.kind.to_owned(),
                venue: c.venue.to_string(),
                subject: c.subject.clone(),
                detail: c.detail.clone(),
                opened_ms: at,
                cleared_ms: None,
            });
        }
        tx.commit().map_err(sql(op))?;
        Ok(change)
    }

    /// The newest `limit` open alerts of the venues in `reach`, each with its venue's
    /// name, and how many are open there in all: two queries, the reach checked in SQL (the
    /// overview's panel, whatever the number of alerts).
    pub fn open_alerts_in_reach(
        &self,
        reach: &super::Reach,
        limit: usize,
    ) -> Result<(Vec<(String, Alert)>, usize), RegistryError> {
        let mut args = super::catalog::Args::default();
        let mut clauses = args.scoped(reach, None, "v.id");
        clauses.push("a.cleared_at IS NULL".to_owned());
        let filter = super::catalog::where_of(&clauses);
        let columns = COLUMNS
            .split(", ")
            .map(|c| format!("a.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let conn = self.lock();
        let total: i64 = conn
            .prepare_cached(&format!(
                "SELECT count(*) FROM alerts a JOIN venues v ON v.id = a.venue_id {filter}"
            ))
            .and_then(|mut stmt| {
                stmt.query_row(rusqlite::params_from_iter(args.0.iter()), |row| row.get(0))
            })
            .map_err(sql("count open alerts"))?;
        let n = args.push(super::catalog::limit_of(limit));
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {columns}, v.name FROM alerts a JOIN venues v ON v.id = a.venue_id {filter}
                 ORDER BY a.opened_at DESC, a.id DESC LIMIT ?{n}"
            ))
            .map_err(sql("list open alerts"))?;
        let alerts = stmt
            .query_map(rusqlite::params_from_iter(args.0.iter()), |row| {
                Ok((row.get::<_, String>(7)?, read(row)?))
            })
            .and_then(Iterator::collect)
            .map_err(sql("list open alerts"))?;
        Ok((alerts, usize::try_from(total).unwrap_or(0)))
    }

    /// The open alerts (of `venue`, if given), oldest first.
    pub fn open_alerts(&self, venue: Option<VenueId>) -> Result<Vec<Alert>, RegistryError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM alerts
                 WHERE cleared_at IS NULL AND (?1 IS NULL OR venue_id = ?1)
                 ORDER BY opened_at, id"
            ))
            .map_err(sql("list open alerts"))?;
        stmt.query_map(params![venue.map(|v| v.to_string())], read)
            .and_then(Iterator::collect)
            .map_err(sql("list open alerts"))
    }
}
