//! Staff tokens: the hub's own credentials for the people who run the venue, until staff
//! sign in with their central accounts (the roster; a later step plugs into the same
//! check). `taplink-hub token create --name NAME` on the device prints a token once; only
//! its BLAKE3 hash is kept, so a copy of `hub.sqlite` lets nobody act as staff.
//!
//! Tokens are checked against the database on every use (no cache): staff requests are
//! few, and a `token revoke` from the command line, another process, takes effect on the
//! next request.

use chrono::{DateTime, Utc};
use data_encoding::BASE32_DNSSEC;
use rand::Rng;
use rusqlite::{OptionalExtension, params};

use super::{Store, StoreError, sql};

/// Staff tokens start with this, so a leaked one is recognisable.
pub const STAFF_TOKEN_PREFIX: &str = "tls1-";

/// Longest token name, in characters.
pub const MAX_NAME_CHARS: usize = 64;

/// Why a staff-token operation was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StaffTokenError {
    /// The name is empty, too long, or has control characters.
    #[error("--name must be 1 to {MAX_NAME_CHARS} characters without control characters")]
    InvalidName,
    /// An active token already has this name.
    #[error("an active staff token is already named {0:?}; revoke it first or pick another name")]
    NameTaken(String),
    /// No active token has this name.
    #[error("no active staff token is named {0:?}")]
    Unknown(String),
    /// The database failed; nothing was changed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A staff token as listed (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaffToken {
    /// Its name (who or what holds it).
    pub name: String,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When it was last used, if ever.
    pub last_used_at: Option<DateTime<Utc>>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
}

fn staff_hash(token: &str) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key("taplink 2026 hub staff token v1");
    h.update(token.as_bytes());
    *h.finalize().as_bytes()
}

fn time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

impl Store {
    /// Make a staff token named `name`; the returned token is the only copy.
    pub fn create_staff_token(
        &self,
        name: &str,
        now: DateTime<Utc>,
    ) -> Result<String, StaffTokenError> {
        let name = name.trim();
        if name.is_empty()
            || name.chars().count() > MAX_NAME_CHARS
            || name.chars().any(char::is_control)
        {
            return Err(StaffTokenError::InvalidName);
        }
        let bytes: [u8; 32] = rand::rng().random();
        let token = format!("{STAFF_TOKEN_PREFIX}{}", BASE32_DNSSEC.encode(&bytes));
        let conn = self.conn();
        let inserted = conn.execute(
            "INSERT INTO staff_tokens (token_hash, name, created_at) VALUES (?1, ?2, ?3)",
            params![&staff_hash(&token)[..], name, now.timestamp_millis()],
        );
        match inserted {
            Ok(_) => Ok(token),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(StaffTokenError::NameTaken(name.to_owned()))
            }
            Err(e) => Err(sql("insert staff token")(e).into()),
        }
    }

    /// The name of the active staff token `token`, recording its use; `None` if it is
    /// unknown or revoked.
    pub fn staff_token(
        &self,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<String>, StoreError> {
        let hash = staff_hash(token);
        let conn = self.conn();
        let name: Option<String> = conn
            .query_row(
                "SELECT name FROM staff_tokens WHERE token_hash = ?1 AND revoked_at IS NULL
                   AND (expires_at IS NULL OR expires_at > ?2)",
                params![&hash[..], now.timestamp_millis()],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql("look up staff token"))?;
        if name.is_some() {
            // Minute resolution: a busy staff screen does not write on every request.
            conn.execute(
                "UPDATE staff_tokens SET last_used_at = ?1
                 WHERE token_hash = ?2 AND (last_used_at IS NULL OR last_used_at < ?1 - 60000)",
                params![now.timestamp_millis(), &hash[..]],
            )
            .map_err(sql("record staff token use"))?;
        }
        Ok(name)
    }

    /// Revoke the active staff token named `name`.
    pub fn revoke_staff_token(
        &self,
        name: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StaffTokenError> {
        let n = self
            .conn()
            .execute(
                "UPDATE staff_tokens SET revoked_at = ?1 WHERE name = ?2 AND revoked_at IS NULL",
                params![now.timestamp_millis(), name.trim()],
            )
            .map_err(sql("revoke staff token"))?;
        if n == 0 {
            return Err(StaffTokenError::Unknown(name.trim().to_owned()));
        }
        Ok(())
    }

    /// A recovery token for `taplink-hub local-admin`: a staff token named
    /// `local-admin <time>` that stops working `lifetime` after `now`. Its name and
    /// creation are in `token list`, and every change made with it carries its name to
    /// central's audit log.
    pub fn create_local_admin(
        &self,
        lifetime: chrono::TimeDelta,
        now: DateTime<Utc>,
    ) -> Result<(String, String), StaffTokenError> {
        let name = format!("local-admin {}", now.format("%Y-%m-%d %H:%M:%S"));
        let token = self.create_staff_token(&name, now)?;
        self.conn()
            .execute(
                "UPDATE staff_tokens SET expires_at = ?1 WHERE token_hash = ?2",
                params![(now + lifetime).timestamp_millis(), &staff_hash(&token)[..]],
            )
            .map_err(|e| StaffTokenError::Store(sql("limit a recovery token")(e)))?;
        Ok((token, name))
    }

    /// Every staff token, active and revoked, oldest first.
    pub fn staff_tokens(&self) -> Result<Vec<StaffToken>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT name, created_at, last_used_at, revoked_at FROM staff_tokens ORDER BY created_at, name",
            )
            .map_err(sql("list staff tokens"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(StaffToken {
                    name: r.get(0)?,
                    created_at: time(r.get(1)?),
                    last_used_at: r.get::<_, Option<i64>>(2)?.map(time),
                    revoked_at: r.get::<_, Option<i64>>(3)?.map(time),
                })
            })
            .map_err(sql("list staff tokens"))?;
        rows.collect::<Result<_, _>>()
            .map_err(sql("list staff tokens"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_works_until_revoked_and_only_its_hash_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(super::super::STORE_FILE);
        let store = Store::open(&path).unwrap();
        let now = DateTime::from_timestamp(1_772_366_400, 0).unwrap();
        let token = store.create_staff_token("till 1", now).unwrap();
        assert!(token.starts_with(STAFF_TOKEN_PREFIX));
        assert_eq!(
            store.staff_token(&token, now).unwrap().as_deref(),
            Some("till 1")
        );
        assert_eq!(store.staff_token("tls1-guess", now).unwrap(), None);
        assert!(matches!(
            store.create_staff_token("till 1", now),
            Err(StaffTokenError::NameTaken(_))
        ));
        assert!(matches!(
            store.create_staff_token(" ", now),
            Err(StaffTokenError::InvalidName)
        ));
        store.revoke_staff_token("till 1", now).unwrap();
        assert_eq!(store.staff_token(&token, now).unwrap(), None);
        assert!(matches!(
            store.revoke_staff_token("till 1", now),
            Err(StaffTokenError::Unknown(_))
        ));
        // The name is free again once revoked.
        store
            .create_staff_token("till 1", now + chrono::TimeDelta::seconds(1))
            .unwrap();
        let listed = store.staff_tokens().unwrap();
        assert_eq!(listed.len(), 2);
        assert!(listed[0].revoked_at.is_some() && listed[0].last_used_at.is_some());
        drop(store);
        let raw = std::fs::read(&path).unwrap();
        let wal = std::fs::read(path.with_extension("sqlite-wal")).unwrap_or_default();
        for bytes in [raw, wal] {
            assert!(!bytes.windows(token.len()).any(|w| w == token.as_bytes()));
        }
    }

    #[test]
    fn a_local_admin_token_works_for_its_minutes_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join(super::super::STORE_FILE)).unwrap();
        let now = DateTime::from_timestamp(1_772_366_400, 0).unwrap();
        let (token, name) = store
            .create_local_admin(chrono::TimeDelta::minutes(30), now)
            .unwrap();
        assert!(name.starts_with("local-admin "), "{name}");
        let at = |minutes| now + chrono::TimeDelta::minutes(minutes);
        assert_eq!(store.staff_token(&token, at(29)).unwrap(), Some(name));
        assert_eq!(store.staff_token(&token, at(30)).unwrap(), None);
        // An ordinary staff token does not expire.
        let lasting = store.create_staff_token("manager", now).unwrap();
        assert!(
            store
                .staff_token(&lasting, at(60 * 24 * 365))
                .unwrap()
                .is_some()
        );
    }
}
