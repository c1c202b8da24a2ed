//! Kiosk provisioning codes: the secret with which central pre-approves a kiosk's pairing.
//!
//! An admin creates a code for a venue at central; central keeps only its
//! [`KioskCodeHash`], in the venue document (a [`crate::doc::KioskGrant`]), so the venue's
//! hub can honour the code with the WAN down. The technician gives the code to the kiosk,
//! which sends it when it pairs; the hub hashes it and looks the hash up.
//!
//! A code is 80 random bits written as 16 characters of Crockford's base32
//! (`0-9`, `A-Z` without `I L O U`) in four groups: `7KQ4-MP2X-9RTA-B3HZ`. Reading is
//! forgiving, as Crockford intends: any case, dashes and spaces ignored, `O` read as `0`
//! and `I`/`L` as `1`. 80 bits cannot be guessed online, and the stored hash cannot be
//! reversed offline (2^80 BLAKE3 evaluations), so a stolen hub or document reveals no code.

use std::fmt;
use std::str::FromStr;

/// Random bytes in a code (80 bits).
const CODE_BYTES: usize = 10;

/// Significant characters in a code (5 bits each).
pub const KIOSK_CODE_CHARS: usize = 16;

/// Longest text accepted as a code, separators included; longer input is refused before
/// it is looked at.
pub const MAX_KIOSK_CODE_INPUT: usize = 64;

/// Crockford's base32 alphabet.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// The BLAKE3 key-derivation context of the stored hash: a hash of a code is never the
/// hash of anything else.
const HASH_CONTEXT: &str = "taplink 2026 kiosk provisioning code v1";

/// Why a text is not a kiosk code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseKioskCodeError {
    /// More than [`MAX_KIOSK_CODE_INPUT`] characters.
    #[error("a kiosk code is 16 characters such as 7KQ4-MP2X-9RTA-B3HZ; this text is far longer")]
    TooLong,
    /// A character that is neither a code character nor a separator.
    #[error(
        "a kiosk code is 16 characters of 0-9 and A-Z (without U) such as 7KQ4-MP2X-9RTA-B3HZ; {0:?} is not one of them"
    )]
    BadCharacter(char),
    /// Too few or too many code characters.
    #[error("a kiosk code is 16 characters such as 7KQ4-MP2X-9RTA-B3HZ; this one has {0}")]
    WrongLength(usize),
}

/// A kiosk provisioning code. Its `Debug` form hides it; `Display` shows it grouped.
#[derive(Clone, PartialEq, Eq)]
pub struct KioskCode([u8; CODE_BYTES]);

impl KioskCode {
    /// A fresh code from the operating system's random source.
    pub fn random() -> Self {
        let mut bytes = [0u8; CODE_BYTES];
        // As for ids: the OS random source fails only on a broken system.
        getrandom::fill(&mut bytes).expect("operating system random source failed");
        Self(bytes)
    }

    /// The code with exactly these bytes (tests).
    pub const fn from_bytes(bytes: [u8; CODE_BYTES]) -> Self {
        Self(bytes)
    }

    /// The hash under which the venue document keeps it.
    pub fn hash(&self) -> KioskCodeHash {
        let mut h = blake3::Hasher::new_derive_key(HASH_CONTEXT);
        h.update(&self.0);
        KioskCodeHash(*h.finalize().as_bytes())
    }

    fn value(&self) -> u128 {
        self.0
            .iter()
            .fold(0u128, |acc, b| (acc << 8) | u128::from(*b))
    }
}

impl fmt::Display for KioskCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value = self.value();
        for i in 0..KIOSK_CODE_CHARS {
            if i > 0 && i % 4 == 0 {
                f.write_str("-")?;
            }
            let shift = 5 * (KIOSK_CODE_CHARS - 1 - i);
            // The index is five bits: always inside the 32-character alphabet.
            let symbol = ALPHABET[((value >> shift) & 0x1f) as usize];
            write!(f, "{}", char::from(symbol))?;
        }
        Ok(())
    }
}

impl fmt::Debug for KioskCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A code is a secret: never in logs.
        f.write_str("KioskCode(<redacted>)")
    }
}

/// The 5-bit value of a code character, reading look-alikes as Crockford does.
fn symbol_value(c: char) -> Option<u8> {
    let c = match c.to_ascii_uppercase() {
        'O' => '0',
        'I' | 'L' => '1',
        other => other,
    };
    ALPHABET
        .iter()
        .position(|&a| char::from(a) == c)
        .map(|p| p as u8)
}

impl FromStr for KioskCode {
    type Err = ParseKioskCodeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() > MAX_KIOSK_CODE_INPUT {
            return Err(ParseKioskCodeError::TooLong);
        }
        let mut value = 0u128;
        let mut count = 0usize;
        for c in s.chars() {
            if c == '-' || c == ' ' {
                continue;
            }
            let v = symbol_value(c).ok_or(ParseKioskCodeError::BadCharacter(c))?;
            count += 1;
            if count <= KIOSK_CODE_CHARS {
                value = (value << 5) | u128::from(v);
            }
        }
        if count != KIOSK_CODE_CHARS {
            return Err(ParseKioskCodeError::WrongLength(count));
        }
        let bytes = value.to_be_bytes();
        let mut code = [0u8; CODE_BYTES];
        code.copy_from_slice(&bytes[16 - CODE_BYTES..]);
        Ok(Self(code))
    }
}

crate::ids::typed_hash!(
    /// The stored form of a [`KioskCode`]: BLAKE3 in a context of its own, 64 hex
    /// characters.
    KioskCodeHash, "kiosk code hash"
);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn codes_print_in_four_groups_of_crockford_base32() {
        let code = KioskCode::from_bytes([0; 10]);
        assert_eq!(code.to_string(), "0000-0000-0000-0000");
        let code = KioskCode::from_bytes([0xff; 10]);
        assert_eq!(code.to_string(), "ZZZZ-ZZZZ-ZZZZ-ZZZZ");
        let code = KioskCode::from_bytes([0, 0, 0, 0, 0, 0, 0, 0, 0, 33]);
        assert_eq!(code.to_string(), "0000-0000-0000-0011");
        assert_eq!(format!("{code:?}"), "KioskCode(<redacted>)");
    }

    #[test]
    fn reading_forgives_case_separators_and_look_alikes() {
        let code: KioskCode = "7KQ4-MP2X-9RTA-B3H0".parse().unwrap();
        for text in [
            "7kq4-mp2x-9rta-b3h0",
            "7KQ4MP2X9RTAB3H0",
            " 7KQ4 MP2X 9RTA B3HO ",
            "7KQ4-MP2X-9RTA-B3Ho",
        ] {
            assert_eq!(text.parse::<KioskCode>().unwrap(), code, "{text:?}");
        }
        let ones: KioskCode = "1111-1111-1111-1111".parse().unwrap();
        assert_eq!("iIlL-1111-1111-1111".parse::<KioskCode>().unwrap(), ones);
    }

    #[test]
    fn malformed_codes_say_what_is_wrong() {
        use ParseKioskCodeError::*;
        assert_eq!("7KQ4-MP2X-9RTA".parse::<KioskCode>(), Err(WrongLength(12)));
        assert_eq!(
            "7KQ4-MP2X-9RTA-B3HZ-A".parse::<KioskCode>(),
            Err(WrongLength(17))
        );
        assert_eq!("".parse::<KioskCode>(), Err(WrongLength(0)));
        assert_eq!(
            "7KQ4-MP2X-9RTA-B3HU".parse::<KioskCode>(),
            Err(BadCharacter('U'))
        );
        assert_eq!(
            "7KQ4_MP2X_9RTA_B3HZ".parse::<KioskCode>(),
            Err(BadCharacter('_'))
        );
        assert_eq!(
            "7KQ4-MP2X-9RTA-B3Hé".parse::<KioskCode>(),
            Err(BadCharacter('é'))
        );
        assert_eq!("7".repeat(65).parse::<KioskCode>(), Err(TooLong));
        assert!(
            WrongLength(3).to_string().contains("16 characters"),
            "{}",
            WrongLength(3)
        );
    }

    #[test]
    fn the_hash_is_keyed_to_its_context_and_round_trips_as_hex() {
        let code = KioskCode::from_bytes([7; 10]);
        let hash = code.hash();
        assert_ne!(hash.0, *blake3::hash(&[7; 10]).as_bytes());
        assert_eq!(hash, code.clone().hash());
        assert_ne!(hash, KioskCode::from_bytes([8; 10]).hash());
        let text = hash.to_string();
        assert_eq!(text.len(), 64);
        assert_eq!(text.parse::<KioskCodeHash>().unwrap(), hash);
        assert!("abc".parse::<KioskCodeHash>().is_err());
        let json = serde_json::to_string(&hash).unwrap();
        assert_eq!(serde_json::from_str::<KioskCodeHash>(&json).unwrap(), hash);
    }

    proptest! {
        #[test]
        fn every_code_round_trips_through_its_printed_form(bytes: [u8; 10]) {
            let code = KioskCode::from_bytes(bytes);
            let shown = code.to_string();
            prop_assert_eq!(shown.len(), 19);
            prop_assert!(!shown.contains(['I', 'L', 'O', 'U']));
            prop_assert_eq!(shown.parse::<KioskCode>().unwrap(), code.clone());
            prop_assert_eq!(shown.to_lowercase().replace('-', "").parse::<KioskCode>().unwrap(), code);
        }

        #[test]
        fn any_text_parses_or_is_refused_without_a_panic(text in "\\PC{0,80}") {
            let _ = text.parse::<KioskCode>();
        }
    }
}
