//! SHA-256 certificate fingerprints, printed as `sha256:<64 lowercase hex>`.
//!
//! A fingerprint pins central's certificate during enrollment (before the hub has the org
//! CA; the [`crate::enroll_token`] carries it) and is advertised in the hub's DNS-SD TXT
//! record for kiosks. It is a plain value (SHA-256 of DER bytes, no certificate parsing),
//! so it lives here; `taplink-certs` re-exports it as `taplink_certs::Fingerprint`.

use std::fmt;
use std::str::FromStr;

use data_encoding::{HEXLOWER, HEXLOWER_PERMISSIVE};
use sha2::{Digest, Sha256};

/// Why a text is not a fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseFingerprintError {
    /// The text does not start with `sha256:`.
    #[error("fingerprint must start with \"sha256:\", got {text:?}")]
    MissingPrefix {
        /// The rejected text (truncated to 80 characters).
        text: String,
    },
    /// What follows `sha256:` is not 64 hex digits.
    #[error("fingerprint must be \"sha256:\" followed by 64 hex digits, got {text:?}")]
    BadDigest {
        /// The rejected text (truncated to 80 characters).
        text: String,
    },
}

/// The SHA-256 digest of a certificate's DER encoding.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    const PREFIX: &'static str = "sha256:";

    /// The fingerprint of the certificate whose DER encoding is `der`.
    pub fn of(der: &[u8]) -> Self {
        Self(Sha256::digest(der).into())
    }

    /// The fingerprint with exactly this digest.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw digest.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(Self::PREFIX)?;
        f.write_str(&HEXLOWER.encode(&self.0))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

impl FromStr for Fingerprint {
    type Err = ParseFingerprintError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let clip = || s.chars().take(80).collect::<String>();
        let hex = s
            .strip_prefix(Self::PREFIX)
            .ok_or_else(|| ParseFingerprintError::MissingPrefix { text: clip() })?;
        let bad = || ParseFingerprintError::BadDigest { text: clip() };
        if hex.len() != 64 {
            return Err(bad());
        }
        let bytes = HEXLOWER_PERMISSIVE
            .decode(hex.as_bytes())
            .map_err(|_| bad())?;
        Ok(Self(bytes.try_into().map_err(|_| bad())?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_a_known_sha256() {
        // SHA-256("abc") from FIPS 180-2.
        assert_eq!(
            Fingerprint::of(b"abc").to_string(),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
