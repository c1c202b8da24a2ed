//! The venue's roster as central signed it (`taplink_sync_proto::roster`): kept only after
//! `taplink_sync_io::roster::admit` accepted it (the uplink), durable before anything
//! relies on it, and replaced only by a newer one. Kept signed, so it can be checked
//! again and shown as it came.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};
use taplink_sync_proto::roster::{Roster, SignedRoster};

use super::{Store, StoreError, sql};

/// The roster this hub holds.
#[derive(Debug, Clone)]
pub struct HeldRoster {
    /// As it came.
    pub signed: SignedRoster,
    /// Its content.
    pub roster: Roster,
    /// When this hub kept it.
    pub received_at: DateTime<Utc>,
    /// When the hub was last in touch with central (its session established or ended),
    /// or when it kept the roster if later.
    pub contact_at: DateTime<Utc>,
}

/// A roster row: body, signature, signer, received at (Unix ms).
type RosterRow = (Vec<u8>, Vec<u8>, Vec<u8>, i64, Option<i64>);

impl Store {
    /// The roster held, if any (`None` also for a row that no longer parses, which the next
    /// roster from central replaces).
    pub fn held_roster(&self) -> Result<Option<HeldRoster>, StoreError> {
        let row: Option<RosterRow> = self
            .conn()
            .query_row(
                "SELECT body, signature, signer, received_at, contact_at FROM roster WHERE id = 1",
                [],
                |row| {
                    Ok((
                        row.get(0)?,
                        row.get(1)?,
                        row.get(2)?,
                        row.get(3)?,
                        row.get(4)?,
                    ))
                },
            )
            .optional()
            .map_err(sql("read the roster"))?;
        Ok(row.and_then(|(body, signature, signer, at, contact)| {
            let signed = SignedRoster {
                body,
                signature,
                signer,
            };
            let roster = signed.roster().ok()?;
            let received_at = DateTime::from_timestamp_millis(at)?;
            let contact_at = contact
                .and_then(DateTime::from_timestamp_millis)
                .map_or(received_at, |c| c.max(received_at));
            Some(HeldRoster {
                signed,
                roster,
                received_at,
                contact_at,
            })
        }))
    }

    /// The held roster's version.
    pub fn roster_version(&self) -> Result<Option<u64>, StoreError> {
        self.conn()
            .query_row("SELECT version FROM roster WHERE id = 1", [], |row| {
                row.get::<_, i64>(0)
            })
            .optional()
            .map(|v| v.map(|v| u64::try_from(v).unwrap_or(0)))
            .map_err(sql("read the roster's version"))
    }

    /// Note that the hub is (or was until now) in touch with central.
    pub fn roster_contact(&self, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "UPDATE roster SET contact_at = ?1 WHERE id = 1",
                [now.timestamp_millis()],
            )
            .map_err(sql("note contact with central"))?;
        Ok(())
    }

    /// Keep `signed` (whose content is `roster`, already admitted) in place of the held one.
    pub fn keep_roster(
        &self,
        signed: &SignedRoster,
        roster: &Roster,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "INSERT INTO roster (id, version, body, signature, signer, received_at)
                 VALUES (1, ?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (id) DO UPDATE SET version = excluded.version, body = excluded.body,
                   signature = excluded.signature, signer = excluded.signer,
                   received_at = excluded.received_at",
                params![
                    i64::try_from(roster.version).unwrap_or(i64::MAX),
                    signed.body,
                    signed.signature,
                    signed.signer,
                    now.timestamp_millis()
                ],
            )
            .map_err(sql("keep the roster"))?;
        Ok(())
    }
}
