//! Kiosk pairings and device tokens.
//!
//! A kiosk asks for a pairing and shows its code; staff approve the code, which reserves a
//! kiosk id; the hub then adds that kiosk to the venue document; the kiosk collects its
//! token exactly once. Tokens are 32 random bytes; only their BLAKE3 hash is stored, so a
//! copy of this database does not let anyone act as a kiosk.
//!
//! A kiosk that brings a kiosk code from central (a grant in the venue document) skips
//! staff: [`Store::reserve_granted`] is step 1 for it, with the grant in place of the
//! staff's approval, and the caller's step 2 redeems the grant in the venue document (adding
//! the kiosk and marking the grant used by it in one change). A pairing row remembers the
//! grant it redeems, at most one row per grant, so a retried request finds the same
//! pairing and the same kiosk id.
//!
//! # Why approval is split in steps
//! Approval touches two databases (this one and the venue document), which cannot commit
//! together. The order makes every crash point safe:
//!
//! 1. [`Store::reserve_kiosk`] records a fresh kiosk id on the pairing (here);
//! 2. the caller adds that kiosk to the venue document (durable before `edit` returns);
//! 3. [`Store::collect_token`], when the kiosk polls, issues the token — and the caller
//!    calls it only once the kiosk is in the venue document.
//!
//! A crash after 1 leaves a reservation without a kiosk: approving the same code again
//! reuses the reserved id, and until then polls say "pending". A crash after 2 leaves the
//! kiosk in the document with no token yet; the kiosk's next poll collects it. No step can
//! leave a token for a kiosk that is not in the document, and a retried approval never adds
//! a second kiosk. The token is created at collection rather than at approval so that its
//! plaintext is never stored: it exists only in the one response that carries it.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, TimeDelta, Utc};
use data_encoding::BASE32_DNSSEC;
use rand::Rng;
use rusqlite::{OptionalExtension, params};
use taplink_sync_proto::ids::{GrantId, KioskId};

use super::{Store, StoreError, sql};

/// How long a pairing code can be approved, and how long an approved pairing's token can
/// then be collected.
pub const PAIRING_TTL: TimeDelta = TimeDelta::minutes(15);

/// The most pairings that may wait for approval at once; a new one evicts the oldest, so
/// a misbehaving device on the LAN can neither grow the database without bound nor lock
/// staff out of pairing.
pub const MAX_PENDING_PAIRINGS: u64 = 100;

/// The most pairings one client address may have waiting; its new one evicts its oldest.
/// A kiosk needs one; a flood from one address only ever replaces its own.
pub const MAX_PENDING_PER_CLIENT: u64 = 3;

/// Longest device description, in characters.
pub const MAX_DEVICE_CHARS: usize = 100;

/// Pairings are kept this long after they expire (so a late poll gets "expired", not
/// "unknown", for a while), then deleted.
const PAIRING_RETENTION: TimeDelta = TimeDelta::hours(24);

/// The code alphabet: digits and capitals without the look-alikes 0/O, 1/I/L.
const CODE_ALPHABET: &[u8; 31] = b"23456789ABCDEFGHJKMNPQRSTUVWXYZ";

/// Characters in a code (shown as two groups of three).
const CODE_LEN: usize = 6;

/// Device tokens start with this, so a leaked one is recognisable (e.g. by secret scanners).
pub const TOKEN_PREFIX: &str = "tlk1-";

/// Why a pairing or token operation was refused or failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceError {
    /// No pairing has this code; check the code on the kiosk's screen.
    #[error("no pairing has code {0}; check the code on the kiosk's screen")]
    UnknownCode(String),
    /// No pairing has this id (or it was deleted a day after it expired).
    #[error("no pairing {0} is known here (unknown, or expired long ago)")]
    UnknownPairing(String),
    /// The code, or the window to collect an approved pairing's token, expired; the kiosk
    /// starts a new pairing.
    #[error("this pairing has expired; the kiosk shows a new code")]
    Expired,
    /// The pairing has not been approved yet.
    #[error("this pairing has not been approved yet")]
    NotApproved,
    /// The token of this pairing was already handed out; it is never shown twice.
    #[error("this pairing's token was already collected; pair the kiosk again if it was lost")]
    AlreadyCollected,
    /// The kiosk code was already used to pair a kiosk whose token was collected (or by
    /// another hub); a code pairs one kiosk only.
    #[error(
        "this kiosk code was already used to pair a kiosk; ask central for a new code, or pair the kiosk with staff approval"
    )]
    CodeUsed,
    /// Staff tried to approve a pairing that a kiosk code from central approved already.
    #[error("this pairing was approved by a kiosk code from central; there is nothing to approve")]
    PreApproved,
    /// The device description is too long or contains control characters.
    #[error("device must be at most {MAX_DEVICE_CHARS} characters without control characters")]
    InvalidDevice,
    /// The database failed; nothing was changed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A pairing's id: 128 random bits in base32. Whoever knows it can collect the token once
/// the pairing is approved, so it is as unguessable as any id, only the kiosk that
/// created the pairing learns it, and the database keeps only its hash
/// ([`PairingId::stored`]): a copy of `hub.sqlite` (or its WAL) yields no id to collect a
/// token with.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PairingId([u8; 16]);

impl PairingId {
    fn random(rng: &mut impl Rng) -> Self {
        Self(rng.random())
    }

    /// The id of the pairing a kiosk code makes: derived from the code, so a kiosk that
    /// retries with the same code (a lost answer, a restart) gets the same pairing back
    /// although the hub keeps neither the id nor the code.
    pub fn of_kiosk_code(code: &taplink_sync_proto::kiosk_code::KioskCode) -> Self {
        let mut h = blake3::Hasher::new_derive_key("taplink 2026 pairing id of a kiosk code v1");
        h.update(code.to_string().as_bytes());
        let mut id = [0u8; 16];
        id.copy_from_slice(&h.finalize().as_bytes()[..16]);
        Self(id)
    }

    /// What the database keeps of the id: its BLAKE3 hash in a context of its own, hex.
    fn stored(&self) -> String {
        let mut h = blake3::Hasher::new_derive_key("taplink 2026 stored pairing id v1");
        h.update(&self.0);
        h.finalize().to_hex().to_string()
    }
}

impl fmt::Display for PairingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&BASE32_DNSSEC.encode(&self.0))
    }
}

impl fmt::Debug for PairingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PairingId({self})")
    }
}

impl FromStr for PairingId {
    type Err = DeviceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let unknown = || DeviceError::UnknownPairing(s.chars().take(64).collect());
        if s.len() != 26 {
            return Err(unknown());
        }
        let bytes = BASE32_DNSSEC
            .decode(s.to_ascii_lowercase().as_bytes())
            .map_err(|_| unknown())?;
        Ok(Self(bytes.try_into().map_err(|_| unknown())?))
    }
}

/// A pairing code: 6 characters of an unambiguous alphabet, shown as `ABC-DEF`.
///
/// Parsing accepts any case, with or without the dash, and ignores surrounding spaces. A
/// text with characters outside the alphabet (such as 0, O, 1, I, L) is no code at all.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PairingCode([u8; CODE_LEN]);

impl PairingCode {
    fn random(rng: &mut impl Rng) -> Self {
        let mut code = [0u8; CODE_LEN];
        for c in &mut code {
            *c = CODE_ALPHABET[rng.random_range(0..CODE_ALPHABET.len())];
        }
        Self(code)
    }

    /// The canonical stored form: six capitals and digits, no dash.
    fn as_str(&self) -> &str {
        // Only CODE_ALPHABET bytes (ASCII) are ever stored in a code.
        std::str::from_utf8(&self.0).expect("pairing codes are ASCII")
    }
}

impl fmt::Display for PairingCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.as_str();
        write!(f, "{}-{}", &s[..3], &s[3..])
    }
}

impl fmt::Debug for PairingCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PairingCode({self})")
    }
}

impl FromStr for PairingCode {
    type Err = DeviceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let unknown = || DeviceError::UnknownCode(s.chars().take(16).collect());
        let trimmed = s.trim();
        let compact: Vec<u8> = match trimmed.as_bytes() {
            [a, b, c, b'-', d, e, f] => vec![*a, *b, *c, *d, *e, *f],
            other => other.to_vec(),
        };
        let code: [u8; CODE_LEN] = compact.try_into().map_err(|_| unknown())?;
        let code = code.map(|c| c.to_ascii_uppercase());
        if code.iter().all(|c| CODE_ALPHABET.contains(c)) {
            Ok(Self(code))
        } else {
            Err(unknown())
        }
    }
}

/// A pairing just created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPairing {
    /// Its id, which the kiosk polls.
    pub id: PairingId,
    /// The code the kiosk shows.
    pub code: PairingCode,
    /// When the code stops being accepted.
    pub expires_at: DateTime<Utc>,
}

/// A pairing pre-approved by a kiosk grant (see [`Store::reserve_granted`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantedPairing {
    /// The pairing: its id (which the kiosk polls), its code, and the end of the window in
    /// which the token can be collected.
    pub pairing: NewPairing,
    /// The kiosk id reserved for it.
    pub kiosk: KioskId,
    /// `false` when an earlier request for the same grant made this pairing (a retry).
    pub fresh: bool,
}

/// The outcome of approving a code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Approval {
    /// The kiosk reserved for it.
    pub kiosk: KioskId,
    /// `false` when this code had been approved before (a retry): the kiosk id is the one
    /// reserved then.
    pub fresh: bool,
}

/// Where a pairing stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairingStatus {
    /// Waiting for staff.
    Pending,
    /// Approved for this kiosk; its token has not been collected.
    Approved {
        /// The kiosk.
        kiosk: KioskId,
    },
    /// The token was handed out.
    Collected,
    /// The code, or the window to collect the token, expired.
    Expired,
}

/// A token handed out by [`Store::collect_token`].
#[derive(Clone, PartialEq, Eq)]
pub struct Collected {
    /// The kiosk it belongs to.
    pub kiosk: KioskId,
    /// The token (`tlk1-…`); this is the only copy.
    pub token: String,
}

impl fmt::Debug for Collected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Collected")
            .field("kiosk", &self.kiosk)
            .finish_non_exhaustive()
    }
}

/// What a presented token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenState {
    /// Valid for this kiosk.
    Active(KioskId),
    /// It was this kiosk's, and was revoked.
    Revoked(KioskId),
    /// Never issued here.
    Unknown,
}

/// The stored hash of a token: BLAKE3 in a context of its own.
fn token_hash(token: &str) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key("taplink 2026 kiosk device token v1");
    h.update(token.as_bytes());
    *h.finalize().as_bytes()
}

fn new_token(rng: &mut impl Rng) -> String {
    let bytes: [u8; 32] = rng.random();
    format!("{TOKEN_PREFIX}{}", BASE32_DNSSEC.encode(&bytes))
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn parse_kiosk(text: &str, row: &str) -> Result<KioskId, StoreError> {
    text.parse().map_err(|e| StoreError::Corrupt {
        row: row.to_owned(),
        reason: format!("{e}"),
    })
}

/// A random pairing code that no stored pairing has.
fn unused_code(
    tx: &rusqlite::Transaction<'_>,
    rng: &mut impl Rng,
) -> Result<PairingCode, StoreError> {
    // 31^6 (about 8.9e8) codes: a collision with one of at most a few hundred stored
    // pairings is rare, and a few redraws make it vanishingly so.
    let mut code = PairingCode::random(rng);
    for _ in 0..8 {
        let taken: bool = tx
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM pairings WHERE code = ?1)",
                [code.as_str()],
                |r| r.get(0),
            )
            .map_err(sql("check pairing code"))?;
        if !taken {
            break;
        }
        code = PairingCode::random(rng);
    }
    Ok(code)
}

/// Whether `device` is an acceptable description.
fn valid_device(device: &str) -> bool {
    device.chars().count() <= MAX_DEVICE_CHARS && !device.chars().any(char::is_control)
}

/// One pairing row.
struct Row {
    id: String,
    expires_at: i64,
    kiosk: Option<String>,
    collected_at: Option<i64>,
}

impl Row {
    const COLUMNS: &str = "id, expires_at, kiosk, collected_at";

    fn read(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: r.get(0)?,
            expires_at: r.get(1)?,
            kiosk: r.get(2)?,
            collected_at: r.get(3)?,
        })
    }

    fn status(&self, now: DateTime<Utc>) -> Result<PairingStatus, StoreError> {
        if self.collected_at.is_some() {
            return Ok(PairingStatus::Collected);
        }
        if self.expires_at <= ms(now) {
            return Ok(PairingStatus::Expired);
        }
        Ok(match &self.kiosk {
            Some(k) => PairingStatus::Approved {
                kiosk: parse_kiosk(k, &format!("pairing {}", self.id))?,
            },
            None => PairingStatus::Pending,
        })
    }
}

impl Store {
    /// Start a pairing for `device` (free text shown to staff), asked for from address
    /// `client`. Expired pairings older than a day are deleted on the way; a client at
    /// [`MAX_PENDING_PER_CLIENT`], or the hub at [`MAX_PENDING_PAIRINGS`], loses its oldest
    /// waiting pairing to the new one.
    pub fn create_pairing(
        &self,
        device: &str,
        client: &str,
        now: DateTime<Utc>,
    ) -> Result<NewPairing, DeviceError> {
        if !valid_device(device) {
            return Err(DeviceError::InvalidDevice);
        }
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(sql("begin pairing"))?;
        tx.execute(
            "DELETE FROM pairings WHERE expires_at < ?1",
            [ms(now - PAIRING_RETENTION)],
        )
        .map_err(sql("delete old pairings"))?;
        // Waiting pairings beyond the caps, oldest first: this client's, then anyone's.
        for (filter, cap) in [
            ("AND client = ?2", MAX_PENDING_PER_CLIENT),
            ("AND ?2 = ?2", MAX_PENDING_PAIRINGS),
        ] {
            let evicted = tx
                .execute(
                    &format!(
                        "DELETE FROM pairings WHERE id IN (
                            SELECT id FROM pairings
                            WHERE kiosk IS NULL AND expires_at > ?1 {filter}
                            ORDER BY created_at DESC, rowid DESC LIMIT -1 OFFSET ?3)"
                    ),
                    params![ms(now), client, i64::try_from(cap).unwrap_or(i64::MAX) - 1],
                )
                .map_err(sql("evict waiting pairings"))?;
            if evicted > 0 {
                tracing::warn!(client, evicted, "waiting pairings evicted by newer ones");
            }
        }
        let mut rng = rand::rng();
        let id = PairingId::random(&mut rng);
        let expires_at = now + PAIRING_TTL;
        let code = unused_code(&tx, &mut rng)?;
        tx.execute(
            "INSERT INTO pairings (id, code, device, created_at, expires_at, client) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![id.stored(), code.as_str(), device, ms(now), ms(expires_at), client],
        )
        .map_err(sql("insert pairing"))?;
        tx.commit().map_err(sql("commit pairing"))?;
        Ok(NewPairing {
            id,
            code,
            expires_at,
        })
    }

    /// Step 1 of a pairing pre-approved by kiosk grant `grant` (see the module docs): the
    /// pairing of this grant with its reserved kiosk id, made now or found from an earlier
    /// request. `consumed_by` is the grant's redemption in the venue document as the caller
    /// read it.
    ///
    /// - Unused grant, no pairing yet: a new pairing with a fresh kiosk id.
    /// - Unused grant with a pairing (a crash before step 2, or a refused step 2): that
    ///   pairing, so step 2 is retried with the same kiosk id.
    /// - Grant used by this pairing's kiosk, token not collected (a lost answer, a kiosk
    ///   restarted before it kept the pairing id): that pairing again.
    /// - Otherwise ([`DeviceError::CodeUsed`]): the token was collected, or another hub's
    ///   kiosk used the grant.
    ///
    /// A pairing returned again gets a fresh 15-minute window to collect its token.
    pub fn reserve_granted(
        &self,
        grant: GrantId,
        id: PairingId,
        consumed_by: Option<KioskId>,
        device: &str,
        now: DateTime<Utc>,
    ) -> Result<GrantedPairing, DeviceError> {
        if !valid_device(device) {
            return Err(DeviceError::InvalidDevice);
        }
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(sql("begin granted pairing"))?;
        tx.execute(
            "DELETE FROM pairings WHERE expires_at < ?1",
            [ms(now - PAIRING_RETENTION)],
        )
        .map_err(sql("delete old pairings"))?;
        let found = tx
            .query_row(
                &format!(
                    "SELECT {}, code FROM pairings WHERE grant_id = ?1",
                    Row::COLUMNS
                ),
                [grant.to_string()],
                |r| Ok((Row::read(r)?, r.get::<_, String>(4)?)),
            )
            .optional()
            .map_err(sql("find granted pairing"))?;
        let expires_at = now + PAIRING_TTL;
        let granted = match found {
            Some((row, code)) => {
                let where_ = format!("pairing {}", row.id);
                let kiosk = row
                    .kiosk
                    .as_deref()
                    .map(|k| parse_kiosk(k, &where_))
                    .transpose()?
                    .ok_or_else(|| StoreError::Corrupt {
                        row: where_.clone(),
                        reason: "a granted pairing without a kiosk".into(),
                    })?;
                let ours = consumed_by.is_none_or(|by| by == kiosk);
                if row.collected_at.is_some() || !ours {
                    return Err(DeviceError::CodeUsed);
                }
                // The id is the kiosk code's (a row from before ids were hashed gets it now).
                tx.execute(
                    "UPDATE pairings SET expires_at = ?1, id = ?2 WHERE id = ?3",
                    params![ms(expires_at), id.stored(), row.id],
                )
                .map_err(sql("renew granted pairing"))?;
                GrantedPairing {
                    pairing: NewPairing {
                        id,
                        code: code.parse().map_err(|_| StoreError::Corrupt {
                            row: where_,
                            reason: format!("pairing code {code:?}"),
                        })?,
                        expires_at,
                    },
                    kiosk,
                    fresh: false,
                }
            }
            // Used, but not through this hub's pairing (or one deleted long ago).
            None if consumed_by.is_some() => return Err(DeviceError::CodeUsed),
            None => {
                let mut rng = rand::rng();
                let code = unused_code(&tx, &mut rng)?;
                let kiosk = KioskId::random();
                tx.execute(
                    "INSERT INTO pairings (id, code, device, created_at, expires_at, kiosk, grant_id)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![
                        id.stored(),
                        code.as_str(),
                        device,
                        ms(now),
                        ms(expires_at),
                        kiosk.to_string(),
                        grant.to_string()
                    ],
                )
                .map_err(sql("insert granted pairing"))?;
                GrantedPairing {
                    pairing: NewPairing {
                        id,
                        code,
                        expires_at,
                    },
                    kiosk,
                    fresh: true,
                }
            }
        };
        tx.commit().map_err(sql("commit granted pairing"))?;
        Ok(granted)
    }

    /// Step 1 of approval (see the module docs): reserve a kiosk id for the pairing with
    /// `code`, or return the one reserved by an earlier approval of the same code. The
    /// reservation restarts the 15-minute window, now for collecting the token.
    pub fn reserve_kiosk(
        &self,
        code: &PairingCode,
        now: DateTime<Utc>,
    ) -> Result<Approval, DeviceError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(sql("begin approval"))?;
        let (row, granted) = tx
            .query_row(
                &format!(
                    "SELECT {}, grant_id IS NOT NULL FROM pairings WHERE code = ?1",
                    Row::COLUMNS
                ),
                [code.as_str()],
                |r| Ok((Row::read(r)?, r.get::<_, bool>(4)?)),
            )
            .optional()
            .map_err(sql("find pairing code"))?
            .ok_or_else(|| DeviceError::UnknownCode(code.to_string()))?;
        if granted {
            // Its kiosk joins the document through the grant's redemption, with the name
            // central gave it; a staff approval must not add it under another.
            return Err(DeviceError::PreApproved);
        }
        let approval = match row.status(now)? {
            PairingStatus::Collected => return Err(DeviceError::AlreadyCollected),
            PairingStatus::Expired => return Err(DeviceError::Expired),
            PairingStatus::Approved { kiosk } => Approval {
                kiosk,
                fresh: false,
            },
            PairingStatus::Pending => {
                let kiosk = KioskId::random();
                tx.execute(
                    "UPDATE pairings SET kiosk = ?1, expires_at = ?2 WHERE id = ?3",
                    params![kiosk.to_string(), ms(now + PAIRING_TTL), row.id],
                )
                .map_err(sql("reserve kiosk"))?;
                Approval { kiosk, fresh: true }
            }
        };
        tx.commit().map_err(sql("commit approval"))?;
        Ok(approval)
    }

    /// Where the pairing `id` stands at `now`.
    pub fn pairing(
        &self,
        id: &PairingId,
        now: DateTime<Utc>,
    ) -> Result<PairingStatus, DeviceError> {
        let row = self
            .conn()
            .query_row(
                &format!("SELECT {} FROM pairings WHERE id = ?1", Row::COLUMNS),
                [id.stored()],
                Row::read,
            )
            .optional()
            .map_err(sql("read pairing"))?
            .ok_or_else(|| DeviceError::UnknownPairing(id.to_string()))?;
        Ok(row.status(now)?)
    }

    /// Step 3 of approval: issue the token of approved pairing `id`, exactly once. Call
    /// it only when the reserved kiosk is in the venue document.
    pub fn collect_token(
        &self,
        id: &PairingId,
        now: DateTime<Utc>,
    ) -> Result<Collected, DeviceError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(sql("begin token issue"))?;
        let row = tx
            .query_row(
                &format!("SELECT {} FROM pairings WHERE id = ?1", Row::COLUMNS),
                [id.stored()],
                Row::read,
            )
            .optional()
            .map_err(sql("read pairing"))?
            .ok_or_else(|| DeviceError::UnknownPairing(id.to_string()))?;
        let kiosk = match row.status(now)? {
            PairingStatus::Approved { kiosk } => kiosk,
            PairingStatus::Collected => return Err(DeviceError::AlreadyCollected),
            PairingStatus::Expired => return Err(DeviceError::Expired),
            PairingStatus::Pending => return Err(DeviceError::NotApproved),
        };
        let token = new_token(&mut rand::rng());
        let hash = token_hash(&token);
        tx.execute(
            "UPDATE pairings SET token_hash = ?1, collected_at = ?2 WHERE id = ?3",
            params![&hash[..], ms(now), row.id],
        )
        .map_err(sql("mark token collected"))?;
        tx.execute(
            "INSERT INTO device_tokens (token_hash, kiosk, issued_at) VALUES (?1, ?2, ?3)",
            params![&hash[..], kiosk.to_string(), ms(now)],
        )
        .map_err(sql("store token hash"))?;
        tx.commit().map_err(sql("commit token issue"))?;
        Ok(Collected { kiosk, token })
    }

    /// What `token` is here, from the database (ask [`Store::cached_token`] first); an
    /// active token is remembered for `cached_token`.
    pub fn token(&self, token: &str) -> Result<TokenState, StoreError> {
        let hash = token_hash(token);
        let conn = self.conn();
        let row: Option<(String, Option<i64>)> = conn
            .query_row(
                "SELECT kiosk, revoked_at FROM device_tokens WHERE token_hash = ?1",
                [&hash[..]],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(sql("look up token"))?;
        Ok(match row {
            None => TokenState::Unknown,
            Some((kiosk, revoked)) => {
                let kiosk = parse_kiosk(&kiosk, "device token")?;
                if revoked.is_some() {
                    TokenState::Revoked(kiosk)
                } else {
                    // Still under `conn`: a revocation waits for this insert, then removes it.
                    self.active_tokens().insert(hash, kiosk);
                    TokenState::Active(kiosk)
                }
            }
        })
    }

    /// The kiosk of an active token this store has already looked up, without touching the
    /// database (never blocks on an fsync); `None`: ask [`Store::token`].
    pub fn cached_token(&self, token: &str) -> Option<KioskId> {
        self.active_tokens().get(&token_hash(token)).copied()
    }

    /// Revoke every token of `kiosk`. Returns how many were active, or `None` when no
    /// token was ever issued to it here.
    pub fn revoke_tokens(
        &self,
        kiosk: KioskId,
        now: DateTime<Utc>,
    ) -> Result<Option<usize>, StoreError> {
        let conn = self.conn();
        let key = kiosk.to_string();
        let known: bool = conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM device_tokens WHERE kiosk = ?1)",
                [&key],
                |r| r.get(0),
            )
            .map_err(sql("find kiosk tokens"))?;
        if !known {
            return Ok(None);
        }
        let revoked = conn
            .execute(
                "UPDATE device_tokens SET revoked_at = ?1 WHERE kiosk = ?2 AND revoked_at IS NULL",
                params![ms(now), key],
            )
            .map_err(sql("revoke tokens"))?;
        self.active_tokens().retain(|_, k| *k != kiosk);
        Ok(Some(revoked))
    }

    /// Kiosks holding an active token.
    pub fn paired_kiosks(&self) -> Result<u64, StoreError> {
        self.conn()
            .query_row(
                "SELECT COUNT(DISTINCT kiosk) FROM device_tokens WHERE revoked_at IS NULL",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
            .map_err(sql("count paired kiosks"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join(super::super::STORE_FILE)).unwrap();
        (dir, store)
    }

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    #[test]
    fn codes_parse_in_any_case_with_or_without_the_dash() {
        let code: PairingCode = "K7Q-4MP".parse().unwrap();
        assert_eq!(code.to_string(), "K7Q-4MP");
        for text in ["k7q4mp", "K7Q4MP", " k7q-4Mp ", "k7Q-4mp"] {
            assert_eq!(text.parse::<PairingCode>().unwrap(), code, "{text:?}");
        }
        for bad in [
            "K7Q-4M", "K7Q-4MPX", "K7Q_4MP", "O7Q-4MP", "I7Q-4MP", "L7Q-4MP", "1234567", "K7-Q4MP",
            "",
        ] {
            assert!(bad.parse::<PairingCode>().is_err(), "{bad:?}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        #[test]
        fn random_codes_use_the_alphabet_and_round_trip(seed: u64) {
            use rand::SeedableRng;
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let code = PairingCode::random(&mut rng);
            let shown = code.to_string();
            prop_assert_eq!(shown.len(), 7);
            prop_assert!(shown.chars().all(|c| c == '-' || CODE_ALPHABET.contains(&(c as u8))));
            prop_assert!(!shown.contains(['0', 'O', '1', 'I', 'L']));
            prop_assert_eq!(shown.parse::<PairingCode>().unwrap(), code);
            prop_assert_eq!(shown.to_lowercase().replace('-', "").parse::<PairingCode>().unwrap(), code);
        }
    }

    #[test]
    fn a_pairing_goes_pending_approved_collected_and_its_token_is_stored_hashed() {
        let (_dir, store) = store();
        let p = store
            .create_pairing("Pi in the bar", "10.0.0.1", t0())
            .unwrap();
        assert_eq!(p.expires_at, t0() + PAIRING_TTL);
        assert_eq!(store.pairing(&p.id, t0()).unwrap(), PairingStatus::Pending);
        let a = store
            .reserve_kiosk(&p.code, t0() + TimeDelta::minutes(1))
            .unwrap();
        assert!(a.fresh);
        // Approving again (a retry) reserves no second kiosk.
        let again = store
            .reserve_kiosk(&p.code, t0() + TimeDelta::minutes(2))
            .unwrap();
        assert_eq!((again.kiosk, again.fresh), (a.kiosk, false));
        assert_eq!(
            store.pairing(&p.id, t0()).unwrap(),
            PairingStatus::Approved { kiosk: a.kiosk }
        );
        let c = store
            .collect_token(&p.id, t0() + TimeDelta::minutes(3))
            .unwrap();
        assert_eq!(c.kiosk, a.kiosk);
        assert!(c.token.starts_with(TOKEN_PREFIX));
        assert_eq!(c.token.len(), TOKEN_PREFIX.len() + 52);
        assert!(matches!(
            store.collect_token(&p.id, t0() + TimeDelta::minutes(3)),
            Err(DeviceError::AlreadyCollected)
        ));
        assert!(matches!(
            store.reserve_kiosk(&p.code, t0() + TimeDelta::minutes(4)),
            Err(DeviceError::AlreadyCollected)
        ));
        assert_eq!(store.token(&c.token).unwrap(), TokenState::Active(a.kiosk));
        assert_eq!(store.token("tlk1-nope").unwrap(), TokenState::Unknown);
        assert_eq!(store.paired_kiosks().unwrap(), 1);
        // Only the hash is stored: the token's text appears nowhere in the database.
        let conn = store.conn();
        let hits: i64 = conn
            .query_row(
                "SELECT (SELECT COUNT(*) FROM device_tokens WHERE CAST(token_hash AS TEXT) LIKE ?1)
                      + (SELECT COUNT(*) FROM pairings WHERE CAST(token_hash AS TEXT) LIKE ?1)",
                [format!("%{}%", &c.token[5..])],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(hits, 0);
    }

    #[test]
    fn codes_expire_after_15_minutes_and_approval_restarts_the_window() {
        let (_dir, store) = store();
        let p = store.create_pairing("", "10.0.0.1", t0()).unwrap();
        assert!(matches!(
            store.reserve_kiosk(&p.code, t0() + PAIRING_TTL),
            Err(DeviceError::Expired)
        ));
        assert_eq!(
            store.pairing(&p.id, t0() + PAIRING_TTL).unwrap(),
            PairingStatus::Expired
        );

        let q = store.create_pairing("", "10.0.0.1", t0()).unwrap();
        let late = t0() + PAIRING_TTL - TimeDelta::seconds(1);
        store.reserve_kiosk(&q.code, late).unwrap();
        // Collectable for 15 minutes after the approval, not after the code was shown.
        assert!(
            store
                .collect_token(&q.id, late + TimeDelta::minutes(10))
                .is_ok()
        );

        let r = store.create_pairing("", "10.0.0.1", t0()).unwrap();
        store.reserve_kiosk(&r.code, t0()).unwrap();
        assert!(matches!(
            store.collect_token(&r.id, t0() + PAIRING_TTL),
            Err(DeviceError::Expired)
        ));
    }

    #[test]
    fn waiting_pairings_are_capped_per_client_and_in_all_evicting_the_oldest() {
        let (_dir, store) = store();
        let at = |s: i64| t0() + TimeDelta::seconds(s);
        // One address: its fourth pairing evicts its first; nobody else's is touched.
        let other = store.create_pairing("kiosk", "10.0.0.2", at(0)).unwrap();
        let mine: Vec<_> = (0..4)
            .map(|i| {
                store
                    .create_pairing("flood", "10.0.0.66", at(i + 1))
                    .unwrap()
            })
            .collect();
        assert!(matches!(
            store.pairing(&mine[0].id, at(5)),
            Err(DeviceError::UnknownPairing(_))
        ));
        for p in &mine[1..] {
            assert_eq!(store.pairing(&p.id, at(5)).unwrap(), PairingStatus::Pending);
        }
        assert_eq!(
            store.pairing(&other.id, at(5)).unwrap(),
            PairingStatus::Pending
        );
        // Many addresses: the hub keeps the newest MAX_PENDING_PAIRINGS, and a kiosk that
        // asks now still gets a code staff can approve.
        for i in 0..MAX_PENDING_PAIRINGS {
            store
                .create_pairing("flood", &format!("10.1.{}.{}", i / 200, i % 200), at(10))
                .unwrap();
        }
        let staff_kiosk = store.create_pairing("bar", "10.0.0.3", at(11)).unwrap();
        assert!(store.reserve_kiosk(&staff_kiosk.code, at(12)).is_ok());
        let waiting: i64 = store
            .conn()
            .query_row(
                "SELECT COUNT(*) FROM pairings WHERE kiosk IS NULL",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(waiting as u64, MAX_PENDING_PAIRINGS - 1);
        // A day after they expire, old rows are gone.
        let later = t0() + PAIRING_TTL + PAIRING_RETENTION + TimeDelta::minutes(1);
        store.create_pairing("a", "10.0.0.4", later).unwrap();
        assert!(matches!(
            store.pairing(&other.id, later),
            Err(DeviceError::UnknownPairing(_))
        ));
    }

    #[test]
    fn pairing_ids_are_stored_only_as_hashes() {
        let (_dir, store) = store();
        let p = store.create_pairing("Pi", "10.0.0.1", t0()).unwrap();
        let id = p.id.to_string();
        let stored: String = store
            .conn()
            .query_row("SELECT id FROM pairings", [], |r| r.get(0))
            .unwrap();
        assert_ne!(stored, id);
        assert_eq!(stored, p.id.stored());
        assert_eq!(store.pairing(&p.id, t0()).unwrap(), PairingStatus::Pending);
    }

    #[test]
    fn device_text_is_limited() {
        let (_dir, store) = store();
        assert!(
            store
                .create_pairing(&"x".repeat(100), "10.0.0.1", t0())
                .is_ok()
        );
        assert!(matches!(
            store.create_pairing(&"x".repeat(101), "10.0.0.1", t0()),
            Err(DeviceError::InvalidDevice)
        ));
        assert!(matches!(
            store.create_pairing("a\nb", "10.0.0.1", t0()),
            Err(DeviceError::InvalidDevice)
        ));
    }

    #[test]
    fn a_grant_gets_one_pairing_which_retries_find_until_its_token_is_collected() {
        let (_dir, store) = store();
        let grant = GrantId::random();
        let pid = PairingId::random(&mut rand::rng());
        let first = store.reserve_granted(grant, pid, None, "Pi", t0()).unwrap();
        assert!(first.fresh);
        assert_eq!(first.pairing.expires_at, t0() + PAIRING_TTL);
        assert_eq!(
            store.pairing(&first.pairing.id, t0()).unwrap(),
            PairingStatus::Approved { kiosk: first.kiosk }
        );
        // Approved pairings are never evicted by waiting ones.
        for i in 0..MAX_PENDING_PAIRINGS + 5 {
            store
                .create_pairing("a", &format!("10.0.{}.{}", i / 200, i % 200), t0())
                .unwrap();
        }
        // A retry before the grant was redeemed (a crash between the steps), and one after
        // it was redeemed for this pairing's kiosk, even once the window passed: the same
        // pairing and kiosk, with a renewed window.
        let later = t0() + PAIRING_TTL + TimeDelta::minutes(5);
        for consumed_by in [None, Some(first.kiosk)] {
            let again = store
                .reserve_granted(grant, pid, consumed_by, "Pi", later)
                .unwrap();
            assert!(!again.fresh);
            assert_eq!(again.kiosk, first.kiosk);
            assert_eq!(again.pairing.id, first.pairing.id);
            assert_eq!(again.pairing.code, first.pairing.code);
            assert_eq!(again.pairing.expires_at, later + PAIRING_TTL);
        }
        // Used by some other kiosk: refused.
        assert!(matches!(
            store.reserve_granted(grant, pid, Some(KioskId::random()), "Pi", later),
            Err(DeviceError::CodeUsed)
        ));
        assert!(matches!(
            store.reserve_granted(GrantId::random(), pid, Some(KioskId::random()), "Pi", later),
            Err(DeviceError::CodeUsed)
        ));
        // Once the token is collected, the grant is spent.
        store.collect_token(&first.pairing.id, later).unwrap();
        for consumed_by in [None, Some(first.kiosk)] {
            assert!(matches!(
                store.reserve_granted(grant, pid, consumed_by, "Pi", later),
                Err(DeviceError::CodeUsed)
            ));
        }
        assert!(matches!(
            store.reserve_granted(GrantId::random(), pid, None, "a\u{0}", later),
            Err(DeviceError::InvalidDevice)
        ));
        // Staff cannot approve a granted pairing by its code.
        let other = store
            .reserve_granted(
                GrantId::random(),
                PairingId::random(&mut rand::rng()),
                None,
                "Pi",
                later,
            )
            .unwrap();
        assert!(matches!(
            store.reserve_kiosk(&other.pairing.code, later),
            Err(DeviceError::PreApproved)
        ));
    }

    #[test]
    fn revoking_marks_every_token_of_the_kiosk() {
        let (_dir, store) = store();
        let p = store.create_pairing("", "10.0.0.1", t0()).unwrap();
        let a = store.reserve_kiosk(&p.code, t0()).unwrap();
        let c = store.collect_token(&p.id, t0()).unwrap();
        assert_eq!(store.revoke_tokens(KioskId::random(), t0()).unwrap(), None);
        assert_eq!(store.revoke_tokens(a.kiosk, t0()).unwrap(), Some(1));
        assert_eq!(store.revoke_tokens(a.kiosk, t0()).unwrap(), Some(0));
        assert_eq!(store.token(&c.token).unwrap(), TokenState::Revoked(a.kiosk));
        assert_eq!(store.paired_kiosks().unwrap(), 0);
    }

    #[test]
    fn a_cached_token_is_forgotten_when_it_is_revoked() {
        let (_dir, store) = store();
        let p = store.create_pairing("", "10.0.0.1", t0()).unwrap();
        let a = store.reserve_kiosk(&p.code, t0()).unwrap();
        let c = store.collect_token(&p.id, t0()).unwrap();
        assert_eq!(store.cached_token(&c.token), None, "not looked up yet");
        assert_eq!(store.token(&c.token).unwrap(), TokenState::Active(a.kiosk));
        assert_eq!(store.cached_token(&c.token), Some(a.kiosk));
        assert_eq!(store.token(&c.token).unwrap(), TokenState::Active(a.kiosk));
        store.revoke_tokens(a.kiosk, t0()).unwrap();
        assert_eq!(store.cached_token(&c.token), None);
        assert_eq!(store.token(&c.token).unwrap(), TokenState::Revoked(a.kiosk));
        // Unknown and revoked tokens are never cached.
        assert_eq!(store.cached_token(&c.token), None);
        assert_eq!(store.token("tlk1-nope").unwrap(), TokenState::Unknown);
        assert_eq!(store.cached_token("tlk1-nope"), None);
    }
}
