//! Certificate serial numbers: random for every certificate issued, the key of revocation.

use std::fmt;
use std::str::FromStr;

use data_encoding::{HEXLOWER, HEXLOWER_PERMISSIVE};

use crate::tls::crypto_provider;

/// Why a text is not a serial number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseSerialError {
    /// The text is not 2 to 42 hex digits in pairs (1 to 20 bytes, plus a sign byte).
    #[error("serial number must be 1 to 20 bytes of hex digits (e.g. 4f3a...), got {text:?}")]
    BadHex {
        /// The rejected text (truncated to 64 characters).
        text: String,
    },
}

/// The serial number of a certificate, as the content bytes of its DER INTEGER.
///
/// The form is canonical (no redundant leading zero byte, a zero byte in front only when
/// the top bit would otherwise make the number negative), which is how certificates and
/// CRLs both encode it, so two `Serial`s are equal exactly when X.509 considers them equal.
/// Printed as lowercase hex without separators.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Serial(Vec<u8>);

impl Serial {
    /// RFC 5280 caps serial numbers at 20 octets; one more allows the sign byte.
    const MAX_LEN: usize = 21;

    /// A fresh random serial: 16 bytes (127 random bits), positive, of fixed length.
    ///
    /// Random serials let several central replicas issue without coordinating, and make
    /// the serial of the next certificate unpredictable.
    pub(crate) fn random() -> Result<Self, rustls::crypto::GetRandomFailed> {
        let mut bytes = vec![0u8; 16];
        crypto_provider().secure_random.fill(&mut bytes)?;
        // Top bit clear keeps the number positive without a sign byte; the next bit set
        // keeps the first byte non-zero, so the encoding is always exactly 16 bytes.
        bytes[0] = (bytes[0] & 0x7f) | 0x40;
        Ok(Self(bytes))
    }

    /// The serial from the raw content bytes of a DER INTEGER (as found in a certificate),
    /// normalised to the canonical form.
    pub fn from_der_integer_bytes(bytes: &[u8]) -> Self {
        let first_nonzero = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
        let mut v = Vec::with_capacity(bytes.len() - first_nonzero + 1);
        match bytes.get(first_nonzero) {
            None => v.push(0),
            Some(&b) if b & 0x80 != 0 => v.push(0),
            Some(_) => {}
        }
        v.extend_from_slice(&bytes[first_nonzero..]);
        Self(v)
    }

    /// The content bytes of the DER INTEGER.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&HEXLOWER.encode(&self.0))
    }
}

impl fmt::Debug for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Serial({self})")
    }
}

impl FromStr for Serial {
    type Err = ParseSerialError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ParseSerialError::BadHex {
            text: s.chars().take(64).collect(),
        };
        let bytes = HEXLOWER_PERMISSIVE
            .decode(s.as_bytes())
            .map_err(|_| bad())?;
        if bytes.is_empty() || bytes.len() > Self::MAX_LEN {
            return Err(bad());
        }
        let serial = Self::from_der_integer_bytes(&bytes);
        if serial.0.len() > Self::MAX_LEN {
            return Err(bad());
        }
        Ok(serial)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_serials_are_16_positive_bytes_and_distinct() {
        let a = Serial::random().unwrap();
        let b = Serial::random().unwrap();
        assert_ne!(a, b);
        for s in [&a, &b] {
            assert_eq!(s.as_bytes().len(), 16);
            assert_eq!(s.as_bytes()[0] & 0xc0, 0x40);
            assert_eq!(Serial::from_der_integer_bytes(s.as_bytes()), *s);
        }
    }

    #[test]
    fn text_round_trips_and_normalises() {
        let s = Serial::random().unwrap();
        assert_eq!(s.to_string().parse::<Serial>().unwrap(), s);
        assert_eq!("0001".parse::<Serial>().unwrap().to_string(), "01");
        assert_eq!("80".parse::<Serial>().unwrap().to_string(), "0080");
        assert_eq!("00".parse::<Serial>().unwrap().to_string(), "00");
        assert_eq!("AB".parse::<Serial>().unwrap().to_string(), "00ab");
    }

    #[test]
    fn bad_text_is_refused() {
        for bad in ["", "0", "xyz1", "12 34", &"11".repeat(22)] {
            assert!(bad.parse::<Serial>().is_err(), "{bad:?} parsed");
        }
    }
}
