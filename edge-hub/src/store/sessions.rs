//! Sessions of people who signed in at the hub with their central account (checked against
//! the venue's roster): the same rules as central's (`taplink_sync_io::password`: ended
//! after [`SESSION_IDLE`] without a request or [`SESSION_MAX`] after sign-in). Only the
//! BLAKE3 hash of a session's secret is stored. Whether the person may still act is
//! decided on every request against the roster held then, so a roster that disables them
//! ends their session too.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};
use taplink_sync_io::password::{SESSION_IDLE, SESSION_MAX};
use taplink_sync_proto::ids::UserId;

use super::{Store, StoreError, sql};

fn hash(secret: &str) -> Vec<u8> {
    blake3::derive_key("taplink hub session v1", secret.as_bytes()).to_vec()
}

impl Store {
    /// A new session of `user`: its secret (the cookie's value).
    pub fn create_session(&self, user: UserId, now: DateTime<Utc>) -> Result<String, StoreError> {
        let mut bytes = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
        let secret = data_encoding::BASE32_DNSSEC.encode(&bytes);
        let conn = self.conn();
        conn.execute(
            "DELETE FROM sessions WHERE created_at < ?1 OR last_seen_at < ?2",
            params![
                (now - SESSION_MAX).timestamp_millis(),
                (now - SESSION_IDLE).timestamp_millis()
            ],
        )
        .map_err(sql("drop ended sessions"))?;
        conn.execute(
            "INSERT INTO sessions (secret_hash, user_id, created_at, last_seen_at) VALUES (?1, ?2, ?3, ?3)",
            params![hash(&secret), user.to_string(), now.timestamp_millis()],
        )
        .map_err(sql("create a session"))?;
        Ok(secret)
    }

    /// The user of the live session `secret`, which this use keeps alive; `None` for an
    /// unknown or ended one.
    pub fn session_user(
        &self,
        secret: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<UserId>, StoreError> {
        let conn = self.conn();
        let found: Option<(String, i64, i64)> = conn
            .query_row(
                "SELECT user_id, created_at, last_seen_at FROM sessions WHERE secret_hash = ?1",
                [hash(secret)],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .optional()
            .map_err(sql("read a session"))?;
        let Some((user, created, seen)) = found else {
            return Ok(None);
        };
        let ms = now.timestamp_millis();
        if created < (now - SESSION_MAX).timestamp_millis()
            || seen < (now - SESSION_IDLE).timestamp_millis()
        {
            conn.execute(
                "DELETE FROM sessions WHERE secret_hash = ?1",
                [hash(secret)],
            )
            .map_err(sql("end a session"))?;
            return Ok(None);
        }
        conn.execute(
            "UPDATE sessions SET last_seen_at = ?1 WHERE secret_hash = ?2",
            params![ms, hash(secret)],
        )
        .map_err(sql("touch a session"))?;
        Ok(user.parse().ok())
    }

    /// End session `secret` (signing out).
    pub fn end_session(&self, secret: &str) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "DELETE FROM sessions WHERE secret_hash = ?1",
                [hash(secret)],
            )
            .map_err(sql("end a session"))?;
        Ok(())
    }

    /// End every session of `user` (disabled or gone from the roster).
    pub fn end_sessions_of(&self, user: UserId) -> Result<usize, StoreError> {
        self.conn()
            .execute(
                "DELETE FROM sessions WHERE user_id = ?1",
                [user.to_string()],
            )
            .map_err(sql("end a person's sessions"))
    }
}
