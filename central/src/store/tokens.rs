//! API tokens: credentials for automation, each with a role and a scope (checked by the
//! API to be no wider than its maker's), an expiry, and a last-used time. The token itself
//! (`tlt1-<52 characters>`) is shown once; only its BLAKE3 hash is stored.

use chrono::{DateTime, TimeDelta, Utc};
use rusqlite::{OptionalExtension, params};
use taplink_sync_proto::authz::{Principal, Role, Scope};
use taplink_sync_proto::ids::UserId;

use super::{Registry, RegistryError, random_secret, secret_hash, sql};
use crate::timefmt::{from_unix_ms, to_unix_ms};

/// Every API token starts with this.
pub const TOKEN_PREFIX: &str = "tlt1-";
/// The longest lifetime a token may be given, in days.
pub const MAX_TOKEN_DAYS: i64 = 365;

/// A token as stored (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    /// Its id (for listing and revoking).
    pub id: String,
    /// What it is for.
    pub name: String,
    /// Who made it (`None`: the bootstrap admin token).
    pub owner: Option<UserId>,
    /// Its role and scope.
    pub principal: Principal,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
    /// When it was last used.
    pub last_used_at: Option<DateTime<Utc>>,
    /// When it was revoked.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// What a new token is made of (checked by the API against its maker).
#[derive(Debug, Clone)]
pub struct NewApiToken {
    /// What it is for.
    pub name: String,
    /// Who makes it.
    pub owner: Option<UserId>,
    /// Its role and scope.
    pub principal: Principal,
    /// Its lifetime.
    pub lifetime: TimeDelta,
}

const COLUMNS: &str = "id, name, owner_user_id, role, scope_json, created_at, expires_at, \
                       last_used_at, revoked_at";

fn token_of(row: &rusqlite::Row<'_>) -> rusqlite::Result<ApiToken> {
    let bad = |i: usize, e: String| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, e.into())
    };
    let ms = |i: usize, v: i64| from_unix_ms(v).map_err(|e| bad(i, e.to_string()));
    let owner: Option<String> = row.get(2)?;
    Ok(ApiToken {
        id: row.get(0)?,
        name: row.get(1)?,
        owner: owner
            .map(|o| o.parse::<UserId>().map_err(|e| bad(2, e.to_string())))
            .transpose()?,
        principal: Principal {
            role: row
                .get::<_, String>(3)?
                .parse::<Role>()
                .map_err(|e| bad(3, e.to_string()))?,
            scope: serde_json::from_str::<Scope>(&row.get::<_, String>(4)?)
                .map_err(|e| bad(4, e.to_string()))?,
        },
        created_at: ms(5, row.get(5)?)?,
        expires_at: ms(6, row.get(6)?)?,
        last_used_at: row
            .get::<_, Option<i64>>(7)?
            .map(|v| ms(7, v))
            .transpose()?,
        revoked_at: row
            .get::<_, Option<i64>>(8)?
            .map(|v| ms(8, v))
            .transpose()?,
    })
}

impl Registry {
    /// Make a token; returns it (shown once) and its record.
    pub fn create_api_token(
        &self,
        new: NewApiToken,
        now: DateTime<Utc>,
    ) -> Result<(String, ApiToken), RegistryError> {
        let name = new.name.trim().to_owned();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(RegistryError::Invalid {
                field: "name",
                reason: "a token's name must be 1 to 100 characters".into(),
            });
        }
        let token = format!("{TOKEN_PREFIX}{}", random_secret(32));
        let record = ApiToken {
            id: random_secret(16),
            name,
            owner: new.owner,
            principal: new.principal,
            created_at: crate::timefmt::truncate_to_ms(now),
            expires_at: crate::timefmt::truncate_to_ms(now + new.lifetime),
            last_used_at: None,
            revoked_at: None,
        };
        let scope_json = serde_json::to_string(&record.principal.scope).map_err(|source| {
            RegistryError::Encode {
                what: "a token's scope",
                source,
            }
        })?;
        self.lock()
            .execute(
                "INSERT INTO api_tokens (id, token_hash, name, owner_user_id, role, scope_json,
                                         created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    record.id,
                    secret_hash(&token).to_vec(),
                    record.name,
                    record.owner.map(|o| o.to_string()),
                    record.principal.role.as_str(),
                    scope_json,
                    to_unix_ms(record.created_at),
                    to_unix_ms(record.expires_at)
                ],
            )
            .map_err(sql("create api token"))?;
        Ok((token, record))
    }

    /// The live token `text` (not revoked, not expired, its maker not disabled), with its
    /// last-used time moved to `now`.
    pub fn check_api_token(
        &self,
        text: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<ApiToken>, RegistryError> {
        if !text.starts_with(TOKEN_PREFIX) || text.len() > 128 {
            return Ok(None);
        }
        let conn = self.lock();
        let found = conn
            .query_row(
                &format!(
                    "SELECT {COLUMNS} FROM api_tokens t
                     WHERE token_hash = ?1 AND revoked_at IS NULL AND expires_at > ?2
                       AND (owner_user_id IS NULL OR EXISTS (
                            SELECT 1 FROM users u WHERE u.id = t.owner_user_id AND u.disabled = 0))"
                ),
                params![secret_hash(text).to_vec(), to_unix_ms(now)],
                token_of,
            )
            .optional()
            .map_err(sql("check api token"))?;
        if let Some(token) = &found {
            conn.execute(
                "UPDATE api_tokens SET last_used_at = ?1 WHERE id = ?2",
                params![to_unix_ms(now), token.id],
            )
            .map_err(sql("record token use"))?;
        }
        Ok(found)
    }

    /// Tokens made by `owner` (`None`: every token), newest first.
    pub fn list_api_tokens(&self, owner: Option<UserId>) -> Result<Vec<ApiToken>, RegistryError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {COLUMNS} FROM api_tokens
                 WHERE ?1 IS NULL OR owner_user_id = ?1
                 ORDER BY created_at DESC, id"
            ))
            .map_err(sql("list api tokens"))?;
        stmt.query_map([owner.map(|o| o.to_string())], token_of)
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(sql("list api tokens"))
    }

    /// One token.
    pub fn api_token(&self, id: &str) -> Result<Option<ApiToken>, RegistryError> {
        self.lock()
            .query_row(
                &format!("SELECT {COLUMNS} FROM api_tokens WHERE id = ?1"),
                [id],
                token_of,
            )
            .optional()
            .map_err(sql("read api token"))
    }

    /// Revoke a token (it stops working at the next request); revoking twice keeps the
    /// first time.
    pub fn revoke_api_token(&self, id: &str, now: DateTime<Utc>) -> Result<(), RegistryError> {
        self.lock()
            .execute(
                "UPDATE api_tokens SET revoked_at = coalesce(revoked_at, ?1) WHERE id = ?2",
                params![to_unix_ms(now), id],
            )
            .map_err(sql("revoke api token"))?;
        Ok(())
    }
}
