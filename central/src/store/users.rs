//! People in the registry: users (argon2id password hashes, a role and a scope) and their
//! sign-in sessions (a random secret in the cookie and a CSRF token, both stored only as
//! BLAKE3 hashes).
//!
//! Passwords are hashed with argon2id, m = 19 MiB, t = 6, p = 1 (OWASP's floor is t = 2;
//! see docs/performance.md for what a sign-in costs). Hashing is slow on purpose: call
//! these methods from a blocking thread. At most [`ARGON2_CONCURRENCY`] run at once.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};
use taplink_sync_proto::authz::{Principal, Role, Scope};
use taplink_sync_proto::ids::{UserId, VenueId};

use super::{Registry, RegistryError, random_secret, secret_hash, sql};
use crate::timefmt::{from_unix_ms, to_unix_ms};
use taplink_sync_io::password::{self, decoy_hash, verify_password};
pub use taplink_sync_io::password::{
    ARGON2_CONCURRENCY, ARGON2_MEMORY_KIB, ARGON2_PASSES, MAX_PASSWORD_BYTES, SESSION_IDLE,
    SESSION_MAX, csrf_token_for,
};

/// Shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 10;
/// Longest username.
pub const MAX_USERNAME_CHARS: usize = 64;
/// A user as stored (never with the password hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The id.
    pub id: UserId,
    /// The username as written at creation (unique case-insensitively).
    pub username: String,
    /// The name shown to people.
    pub display_name: String,
    /// What the user may do.
    pub role: Role,
    /// Where (ignored for admins).
    pub scope: Scope,
    /// A disabled user cannot sign in, and their sessions stop working.
    pub disabled: bool,
    /// When the account was made.
    pub created_at: DateTime<Utc>,
    /// The last successful sign-in.
    pub last_login_at: Option<DateTime<Utc>>,
}

impl User {
    /// The user as a principal for [`taplink_sync_proto::authz::authorize`].
    pub fn principal(&self) -> Principal {
        Principal {
            role: self.role,
            scope: self.scope.clone(),
        }
    }
}

/// What a new user is made of.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// The username (3 to 64 characters of letters, digits, `.`, `_`, `-`, `@`).
    pub username: String,
    /// The display name (defaults to the username when empty).
    pub display_name: String,
    /// The role.
    pub role: Role,
    /// The scope.
    pub scope: Scope,
    /// The password, in clear (hashed here, then dropped).
    pub password: String,
}

/// A sign-in: what the client gets once (the cookie's secret and the CSRF token).
#[derive(Debug)]
pub struct Session {
    /// The cookie value.
    pub secret: String,
    /// The CSRF token to send back in `X-CSRF-Token` on writes.
    pub csrf_token: String,
    /// Who signed in.
    pub user: User,
}

/// Why a user operation was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UserError {
    /// A field's value is not acceptable; the sentence says why.
    #[error("{field}: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// The username is taken (case-insensitively).
    #[error("username: {0:?} is already taken")]
    Taken(String),
    /// Unknown username, wrong password or disabled user: one answer for all three, so that
    /// it does not tell which usernames exist.
    #[error("wrong username or password")]
    BadCredentials,
    /// The registry failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

fn invalid(field: &'static str, reason: impl Into<String>) -> UserError {
    UserError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// Hash `password` with argon2id and a fresh salt (a PHC string): the shared
/// `taplink_sync_io::password::hash_password`, its failure named as the `password` field.
pub fn hash_password(password: &str) -> Result<String, UserError> {
    password::hash_password(password).map_err(|e| invalid("password", e))
}

fn check_username(username: &str) -> Result<(), UserError> {
    let n = username.chars().count();
    if !(3..=MAX_USERNAME_CHARS).contains(&n) {
        return Err(invalid(
            "username",
            format!("must be 3 to {MAX_USERNAME_CHARS} characters"),
        ));
    }
    if !username
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
    {
        return Err(invalid(
            "username",
            "may use letters, digits, '.', '_', '-' and '@' only",
        ));
    }
    Ok(())
}

/// Check a new password's length.
pub fn check_password(password: &str) -> Result<(), UserError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(invalid(
            "password",
            format!("must be at least {MIN_PASSWORD_CHARS} characters"),
        ));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(invalid(
            "password",
            format!("must be at most {MAX_PASSWORD_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// A stored roster: version, body, signature.
pub type StoredRoster = (u64, Vec<u8>, Vec<u8>);

const USER_COLUMNS: &str =
    "id, username, display_name, role, scope_json, disabled, created_at, last_login_at";

fn user_of(row: &rusqlite::Row<'_>) -> rusqlite::Result<User> {
    let text = |i: usize| row.get::<_, String>(i);
    let bad = |i: usize, e: String| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, e.into())
    };
    let id: UserId = text(0)?.parse().map_err(|e| bad(0, format!("{e}")))?;
    let role: Role = text(3)?.parse().map_err(|e| bad(3, format!("{e}")))?;
    let scope: Scope = serde_json::from_str(&text(4)?).map_err(|e| bad(4, e.to_string()))?;
    let ms = |i: usize, v: i64| from_unix_ms(v).map_err(|e| bad(i, e.to_string()));
    Ok(User {
        id,
        username: text(1)?,
        display_name: text(2)?,
        role,
        scope,
        disabled: row.get::<_, i64>(5)? != 0,
        created_at: ms(6, row.get(6)?)?,
        last_login_at: row
            .get::<_, Option<i64>>(7)?
            .map(|v| ms(7, v))
            .transpose()?,
    })
}

impl Registry {
    /// Make a user. The password is hashed here (slow: call from a blocking thread).
    pub fn create_user(&self, new: NewUser, now: DateTime<Utc>) -> Result<User, UserError> {
        check_username(&new.username)?;
        check_password(&new.password)?;
        let display_name = if new.display_name.trim().is_empty() {
            new.username.clone()
        } else {
            new.display_name.trim().to_owned()
        };
        if display_name.chars().count() > 100 {
            return Err(invalid("display_name", "must be at most 100 characters"));
        }
        let hash = hash_password(&new.password)?;
        let user = User {
            id: UserId::random(),
            username: new.username.clone(),
            display_name,
            role: new.role,
            scope: new.scope,
            disabled: false,
            created_at: now,
            last_login_at: None,
        };
        let scope_json =
            serde_json::to_string(&user.scope).map_err(|source| RegistryError::Encode {
                what: "a user's scope",
                source,
            })?;
        let inserted = self.lock().execute(
            "INSERT INTO users (id, username, username_key, display_name, role, scope_json,
                                password_hash, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (username_key) DO NOTHING",
            params![
                user.id.to_string(),
                user.username,
                user.username.to_lowercase(),
                user.display_name,
                user.role.as_str(),
                scope_json,
                hash,
                to_unix_ms(now)
            ],
        );
        match inserted.map_err(sql("insert user"))? {
            0 => Err(UserError::Taken(new.username)),
            _ => Ok(user),
        }
    }

    /// Every user with their password hash (for venue rosters), by id.
    pub fn users_with_hashes(&self) -> Result<Vec<(User, String)>, RegistryError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {USER_COLUMNS}, password_hash FROM users ORDER BY id"
            ))
            .map_err(sql("list users"))?;
        stmt.query_map([], |row| Ok((user_of(row)?, row.get::<_, String>(8)?)))
            .and_then(Iterator::collect)
            .map_err(sql("list users"))
    }

    /// The latest roster central signed for `venue`: version, body, signature.
    pub fn latest_roster(&self, venue: VenueId) -> Result<Option<StoredRoster>, RegistryError> {
        self.lock()
            .query_row(
                "SELECT version, body, signature FROM rosters WHERE venue_id = ?1",
                [venue.to_string()],
                |row| {
                    Ok((
                        u64::try_from(row.get::<_, i64>(0)?).unwrap_or(0),
                        row.get(1)?,
                        row.get(2)?,
                    ))
                },
            )
            .optional()
            .map_err(sql("read a roster"))
    }

    /// Keep `version` of `venue`'s roster as its latest, unless one at least as new is
    /// there (two sessions issuing at once): whether it was kept.
    pub fn store_roster(
        &self,
        venue: VenueId,
        version: u64,
        body: &[u8],
        signature: &[u8],
        now: DateTime<Utc>,
    ) -> Result<bool, RegistryError> {
        let changed = self
            .lock()
            .execute(
                "INSERT INTO rosters (venue_id, version, body, signature, issued_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (venue_id) DO UPDATE SET
                   version = excluded.version, body = excluded.body,
                   signature = excluded.signature, issued_at = excluded.issued_at
                 WHERE excluded.version > rosters.version",
                params![
                    venue.to_string(),
                    i64::try_from(version).unwrap_or(i64::MAX),
                    body,
                    signature,
                    to_unix_ms(now)
                ],
            )
            .map_err(sql("store a roster"))?;
        Ok(changed > 0)
    }

    /// Every user, by username.
    pub fn list_users(&self) -> Result<Vec<User>, RegistryError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {USER_COLUMNS} FROM users ORDER BY username_key"
            ))
            .map_err(sql("list users"))?;
        stmt.query_map([], user_of)
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(sql("list users"))
    }

    /// Check a username and password and open a session. Unknown user, wrong password and
    /// disabled user all answer [`UserError::BadCredentials`], after the same work.
    pub fn sign_in(
        &self,
        username: &str,
        password: &str,
        now: DateTime<Utc>,
    ) -> Result<Session, UserError> {
        if password.len() > MAX_PASSWORD_BYTES {
            return Err(UserError::BadCredentials);
        }
        let found: Option<(User, String)> = self
            .lock()
            .query_row(
                &format!("SELECT {USER_COLUMNS}, password_hash FROM users WHERE username_key = ?1"),
                [username.to_lowercase()],
                |row| Ok((user_of(row)?, row.get::<_, String>(8)?)),
            )
            .optional()
            .map_err(sql("find user"))?;
        let Some((user, hash)) = found else {
            let _ = verify_password(password, decoy_hash());
            return Err(UserError::BadCredentials);
        };
        if !verify_password(password, &hash) || user.disabled {
            return Err(UserError::BadCredentials);
        }
        let secret = random_secret(32);
        let csrf_token = csrf_token_for(&secret);
        let at = to_unix_ms(now);
        let conn = self.lock();
        conn.execute(
            "INSERT INTO sessions (secret_hash, user_id, csrf_hash, created_at, last_seen_at)
             VALUES (?1, ?2, ?3, ?4, ?4)",
            params![
                secret_hash(&secret).to_vec(),
                user.id.to_string(),
                secret_hash(&csrf_token).to_vec(),
                at
            ],
        )
        .map_err(sql("open session"))?;
        conn.execute(
            "UPDATE users SET last_login_at = ?1 WHERE id = ?2",
            params![at, user.id.to_string()],
        )
        .map_err(sql("record sign-in"))?;
        let user = User {
            last_login_at: Some(now),
            ..user
        };
        Ok(Session {
            secret,
            csrf_token,
            user,
        })
    }

    /// The user of the session whose cookie is `secret`, if the session is alive (not idle
    /// for [`SESSION_IDLE`], younger than [`SESSION_MAX`], its user not disabled); its
    /// last-seen time moves to `now`. Also whether `csrf` (the request's `X-CSRF-Token`,
    /// if any) is the session's.
    pub fn session_user(
        &self,
        secret: &str,
        csrf: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Option<(User, bool)>, RegistryError> {
        let key = secret_hash(secret).to_vec();
        let conn = self.lock();
        let found: Option<(User, Vec<u8>, i64, i64)> = conn
            .query_row(
                &format!(
                    "SELECT {}, s.csrf_hash, s.created_at, s.last_seen_at
                     FROM sessions s JOIN users u ON u.id = s.user_id
                     WHERE s.secret_hash = ?1",
                    USER_COLUMNS
                        .split(", ")
                        .map(|c| format!("u.{c}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                [&key],
                |row| Ok((user_of(row)?, row.get(8)?, row.get(9)?, row.get(10)?)),
            )
            .optional()
            .map_err(sql("find session"))?;
        let Some((user, csrf_hash, created, last_seen)) = found else {
            return Ok(None);
        };
        let at = to_unix_ms(now);
        let expired = at - last_seen > SESSION_IDLE.num_milliseconds()
            || at - created > SESSION_MAX.num_milliseconds();
        if expired || user.disabled {
            conn.execute("DELETE FROM sessions WHERE secret_hash = ?1", [&key])
                .map_err(sql("end session"))?;
            return Ok(None);
        }
        conn.execute(
            "UPDATE sessions SET last_seen_at = ?1 WHERE secret_hash = ?2",
            params![at, key],
        )
        .map_err(sql("touch session"))?;
        let csrf_ok = csrf.is_some_and(|c| secret_hash(c)[..] == csrf_hash[..]);
        Ok(Some((user, csrf_ok)))
    }

    /// End the session whose cookie is `secret` (signing out).
    pub fn end_session(&self, secret: &str) -> Result<(), RegistryError> {
        self.lock()
            .execute(
                "DELETE FROM sessions WHERE secret_hash = ?1",
                [secret_hash(secret).to_vec()],
            )
            .map_err(sql("end session"))?;
        Ok(())
    }
}

/// Changes to a user; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct UserPatch {
    /// A new display name.
    pub display_name: Option<String>,
    /// A new role.
    pub role: Option<Role>,
    /// A new scope.
    pub scope: Option<Scope>,
    /// Disable (`true`) or enable the account. Disabling ends its sessions.
    pub disabled: Option<bool>,
    /// A new password (reset by an admin). It ends the user's sessions.
    pub password: Option<String>,
}

impl Registry {
    /// One user.
    pub fn user(&self, id: UserId) -> Result<Option<User>, RegistryError> {
        self.lock()
            .query_row(
                &format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"),
                [id.to_string()],
                user_of,
            )
            .optional()
            .map_err(sql("read user"))
    }

    /// Change a user (slow when it sets a password: call from a blocking thread). A new
    /// password or disabling ends every session of the user at once.
    pub fn update_user(&self, id: UserId, patch: UserPatch) -> Result<Option<User>, UserError> {
        if let Some(password) = &patch.password {
            check_password(password)?;
        }
        if let Some(name) = &patch.display_name
            && (name.trim().is_empty() || name.chars().count() > 100)
        {
            return Err(invalid("display_name", "must be 1 to 100 characters"));
        }
        let hash = patch.password.as_deref().map(hash_password).transpose()?;
        let scope_json = patch
            .scope
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|source| RegistryError::Encode {
                what: "a user's scope",
                source,
            })?;
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(sql("begin user update"))?;
        let changed = tx
            .execute(
                "UPDATE users SET
                     display_name = coalesce(?2, display_name),
                     role = coalesce(?3, role),
                     scope_json = coalesce(?4, scope_json),
                     disabled = coalesce(?5, disabled),
                     password_hash = coalesce(?6, password_hash)
                 WHERE id = ?1",
                params![
                    id.to_string(),
                    patch.display_name.as_deref().map(str::trim),
                    patch.role.map(Role::as_str),
                    scope_json,
                    patch.disabled.map(i64::from),
                    hash
                ],
            )
            .map_err(sql("update user"))?;
        if changed == 0 {
            return Ok(None);
        }
        if patch.password.is_some() || patch.disabled == Some(true) || patch.role.is_some() {
            tx.execute("DELETE FROM sessions WHERE user_id = ?1", [id.to_string()])
                .map_err(sql("end the user's sessions"))?;
        }
        let user = tx
            .query_row(
                &format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"),
                [id.to_string()],
                user_of,
            )
            .map_err(sql("read user"))?;
        tx.commit().map_err(sql("commit user update"))?;
        Ok(Some(user))
    }

    /// Delete a user and their sessions; whether there was one.
    pub fn delete_user(&self, id: UserId) -> Result<bool, RegistryError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(sql("begin user deletion"))?;
        tx.execute("DELETE FROM sessions WHERE user_id = ?1", [id.to_string()])
            .map_err(sql("end the user's sessions"))?;
        // Their API tokens die with the account.
        tx.execute(
            "DELETE FROM api_tokens WHERE owner_user_id = ?1",
            [id.to_string()],
        )
        .map_err(sql("delete the user's tokens"))?;
        let deleted = tx
            .execute("DELETE FROM users WHERE id = ?1", [id.to_string()])
            .map_err(sql("delete user"))?;
        tx.commit().map_err(sql("commit user deletion"))?;
        Ok(deleted > 0)
    }
}
