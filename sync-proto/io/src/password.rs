//! Passwords and sessions, the same at central and at a hub: argon2id hashing and
//! checking (a bounded number at once, an unknown user costing the same as a wrong
//! password), the session lifetimes, and the CSRF token derived from a session's secret.
//! Central stores the hashes; a hub checks sign-ins against its venue's roster, which
//! carries central's hashes (`taplink_sync_proto::roster`).

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use chrono::TimeDelta;

/// argon2id memory cost in KiB (19 MiB).
pub const ARGON2_MEMORY_KIB: u32 = 19 * 1024;
/// argon2id passes: 6 at 19 MiB makes a sign-in take 60–65 ms on this machine
/// (`taplink-sim bench login`; OWASP's floor is 2), a deliberate cost for a guesser.
pub const ARGON2_PASSES: u32 = 6;
/// argon2 computations at once: each takes 19 MiB and a core for tens of milliseconds, so
/// a flood of sign-ins from many addresses queues here instead of exhausting memory.
pub const ARGON2_CONCURRENCY: usize = 4;
/// Longest password accepted (argon2 takes any length; this bounds the work per request).
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// A session ends after this long without a request.
pub const SESSION_IDLE: TimeDelta = TimeDelta::hours(1);
/// A session ends this long after sign-in, however busy.
pub const SESSION_MAX: TimeDelta = TimeDelta::hours(12);

/// Waits for one of the [`ARGON2_CONCURRENCY`] argon2 slots; the slot is freed on drop.
struct Argon2Slot;

static ARGON2_SLOTS: (std::sync::Mutex<usize>, std::sync::Condvar) =
    (std::sync::Mutex::new(0), std::sync::Condvar::new());

impl Argon2Slot {
    fn take() -> Argon2Slot {
        let (busy, freed) = &ARGON2_SLOTS;
        let mut busy = busy
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while *busy >= ARGON2_CONCURRENCY {
            busy = freed
                .wait(busy)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        *busy += 1;
        Argon2Slot
    }
}

impl Drop for Argon2Slot {
    fn drop(&mut self) {
        let (busy, freed) = &ARGON2_SLOTS;
        let mut busy = busy
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *busy = busy.saturating_sub(1);
        freed.notify_one();
    }
}

fn argon2() -> Argon2<'static> {
    // The parameters are constants inside argon2's accepted ranges.
    let params = Params::new(ARGON2_MEMORY_KIB, ARGON2_PASSES, 1, None)
        .expect("argon2 parameters are within range");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// The CSRF token of the session whose cookie is `secret`: derived from it, so a page
/// rendered for the session can embed it in its forms, and unguessable without the cookie.
pub fn csrf_token_for(secret: &str) -> String {
    data_encoding::BASE32_DNSSEC.encode(&blake3::derive_key(
        "taplink session csrf token v1",
        secret.as_bytes(),
    ))
}

/// Hash `password` with argon2id and a fresh salt (a PHC string).
pub fn hash_password(password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| format!("cannot be salted: {e}"))?;
    let _slot = Argon2Slot::take();
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("cannot be hashed: {e}"))
}

/// Whether `password` matches the PHC string `hash` (constant time in the password).
pub fn verify_password(password: &str, hash: &str) -> bool {
    let _slot = Argon2Slot::take();
    PasswordHash::new(hash).is_ok_and(|h| argon2().verify_password(password.as_bytes(), &h).is_ok())
}

/// A hash no password matches, verified against when the username is unknown so that
/// an unknown user costs the same time as a wrong password.
pub fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| {
        hash_password("no user has this password, it only spends the same time").unwrap_or_default()
    })
}
