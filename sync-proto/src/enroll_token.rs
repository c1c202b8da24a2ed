//! Enrollment codes as an admin hands them to a hub installer: a one-time secret plus the
//! fingerprint of central's certificate, so the hub can pin central before it has the org CA.
//!
//! # Format
//!
//! ```text
//! tl1-<secret>-<fingerprint>
//! ```
//!
//! - `tl1` names the format (version 1);
//! - `<secret>` is the 20-byte one-time secret in lowercase base32 (DNSSEC alphabet `0-9a-v`,
//!   no padding, the alphabet of Taplink ids): 32 characters;
//! - `<fingerprint>` is the SHA-256 digest of central's server certificate in the same
//!   base32: 52 characters.
//!
//! 89 characters in all, made of letters, digits and dashes only, so it survives copying
//! through chat, e-mail and shell arguments. Parsing ignores surrounding white space and
//! letter case. Central stores only a BLAKE3 hash of the secret
//! ([`EnrollmentSecret::hash`]); the fingerprint is public.

use std::fmt;
use std::str::FromStr;

use data_encoding::BASE32_DNSSEC;

use crate::fingerprint::Fingerprint;

/// Why a text is not an enrollment token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseTokenError {
    /// The text does not start with `tl1-`.
    #[error("an enrollment code starts with \"tl1-\" (copy the whole code the admin API printed)")]
    BadPrefix,
    /// The text is not `tl1-<secret>-<fingerprint>`.
    #[error(
        "an enrollment code has the form tl1-<32 characters>-<52 characters>; this one does not (was it cut short?)"
    )]
    BadShape,
    /// The secret part is not 32 characters of `0-9a-v`.
    #[error("the secret part of the enrollment code is not 32 characters of 0-9 and a-v")]
    BadSecret,
    /// The fingerprint part is not 52 characters of `0-9a-v`.
    #[error("the fingerprint part of the enrollment code is not 52 characters of 0-9 and a-v")]
    BadFingerprint,
}

/// The one-time secret of an enrollment code: 160 random bits.
///
/// `Debug` does not print it.
#[derive(Clone, PartialEq, Eq)]
pub struct EnrollmentSecret([u8; EnrollmentSecret::LEN]);

impl EnrollmentSecret {
    /// Length of the secret in bytes.
    pub const LEN: usize = 20;
    /// Key-derivation context for the stored hash, so the hash of a secret can never be
    /// mistaken for a hash of anything else (e.g. an admin token).
    const HASH_CONTEXT: &'static str = "taplink central 2026 enrollment code secret v1";

    /// A fresh secret from a cryptographically secure generator.
    pub fn random() -> EnrollmentSecret {
        let mut bytes = [0u8; Self::LEN];
        // As for ids: the OS random source fails only on a broken system.
        getrandom::fill(&mut bytes).expect("operating system random source failed");
        EnrollmentSecret(bytes)
    }

    /// The secret with exactly these bytes (tests).
    pub const fn from_bytes(bytes: [u8; Self::LEN]) -> EnrollmentSecret {
        EnrollmentSecret(bytes)
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; Self::LEN] {
        &self.0
    }

    /// What the registry stores instead of the secret: a keyed BLAKE3 hash.
    pub fn hash(&self) -> [u8; 32] {
        let mut hasher = blake3::Hasher::new_derive_key(Self::HASH_CONTEXT);
        hasher.update(&self.0);
        *hasher.finalize().as_bytes()
    }

    /// The secret in base32 (32 characters): the middle part of the token.
    pub fn to_base32(&self) -> String {
        BASE32_DNSSEC.encode(&self.0)
    }

    /// Parse the 32-character base32 form (any letter case).
    pub fn from_base32(s: &str) -> Result<EnrollmentSecret, ParseTokenError> {
        decode_exact(s).ok_or(ParseTokenError::BadSecret).map(Self)
    }
}

impl fmt::Debug for EnrollmentSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EnrollmentSecret(<redacted>)")
    }
}

/// What an admin gives a hub installer: the secret and central's certificate fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollmentToken {
    /// The one-time secret central redeems.
    pub secret: EnrollmentSecret,
    /// SHA-256 fingerprint of central's server certificate, which the hub pins.
    pub central: Fingerprint,
}

impl EnrollmentToken {
    const PREFIX: &'static str = "tl1-";
}

impl fmt::Display for EnrollmentToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}{}-{}",
            Self::PREFIX,
            self.secret.to_base32(),
            BASE32_DNSSEC.encode(self.central.as_bytes())
        )
    }
}

impl FromStr for EnrollmentToken {
    type Err = ParseTokenError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim().to_ascii_lowercase();
        let rest = s
            .strip_prefix(Self::PREFIX)
            .ok_or(ParseTokenError::BadPrefix)?;
        let (secret, fingerprint) = rest.split_once('-').ok_or(ParseTokenError::BadShape)?;
        if secret.len() != 32 || fingerprint.len() != 52 {
            return Err(ParseTokenError::BadShape);
        }
        let secret = EnrollmentSecret::from_base32(secret)?;
        let central = decode_exact::<32>(fingerprint)
            .map(Fingerprint::from_bytes)
            .ok_or(ParseTokenError::BadFingerprint)?;
        Ok(EnrollmentToken { secret, central })
    }
}

/// Decodes base32 that encodes exactly `N` bytes in its canonical form (the trailing bits
/// of the last character are zero), so every value has exactly one accepted spelling.
fn decode_exact<const N: usize>(s: &str) -> Option<[u8; N]> {
    let bytes = BASE32_DNSSEC
        .decode(s.to_ascii_lowercase().as_bytes())
        .ok()?;
    let arr: [u8; N] = bytes.try_into().ok()?;
    (BASE32_DNSSEC.encode(&arr) == s.to_ascii_lowercase()).then_some(arr)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> EnrollmentToken {
        EnrollmentToken {
            secret: EnrollmentSecret::random(),
            central: Fingerprint::of(b"central certificate"),
        }
    }

    #[test]
    fn round_trips_and_has_the_documented_shape() {
        let t = token();
        let text = t.to_string();
        assert_eq!(text.len(), 4 + 32 + 1 + 52);
        assert!(text.starts_with("tl1-"));
        assert!(
            text.bytes()
                .all(|b| b == b'-' || b.is_ascii_digit() || (b'a'..=b'v').contains(&b))
        );
        assert_eq!(text.parse::<EnrollmentToken>().unwrap(), t);
        let shouted = format!("  {}\n", text.to_uppercase());
        assert_eq!(shouted.parse::<EnrollmentToken>().unwrap(), t);
    }

    #[test]
    fn malformed_tokens_are_refused_with_the_right_reason() {
        let text = token().to_string();
        let (head, fp) = text.rsplit_once('-').unwrap();
        let cases = [
            ("", ParseTokenError::BadPrefix),
            ("tl2-abc-def", ParseTokenError::BadPrefix),
            ("tl1-abc", ParseTokenError::BadShape),
            (&text[..text.len() - 1], ParseTokenError::BadShape),
            (
                &format!("tl1-{}-{fp}", "w".repeat(32)),
                ParseTokenError::BadSecret,
            ),
            (
                &format!("{head}-{}", "z".repeat(52)),
                ParseTokenError::BadFingerprint,
            ),
            // The last character of a 52-character fingerprint carries 4 padding bits,
            // which must be zero: "1" sets one of them.
            (
                &format!("{head}-{}1", &fp[..51]),
                ParseTokenError::BadFingerprint,
            ),
        ];
        for (input, want) in cases {
            assert_eq!(input.parse::<EnrollmentToken>(), Err(want), "{input:?}");
        }
    }

    #[test]
    fn hash_is_keyed_and_depends_on_every_byte() {
        let a = EnrollmentSecret::from_bytes([7; 20]);
        let mut b_bytes = [7; 20];
        b_bytes[19] = 8;
        let b = EnrollmentSecret::from_bytes(b_bytes);
        assert_ne!(a.hash(), b.hash());
        assert_ne!(a.hash(), *blake3::hash(a.as_bytes()).as_bytes());
        assert!(!format!("{a:?}").contains(&a.to_base32()));
    }
}
