//! Typed identifiers, content hashes and roles shared by every Taplink component.
//!
//! Ids are 128 random bits printed as 26 characters of lowercase base32 (DNSSEC alphabet,
//! `0-9a-v`, no padding): short, case-insensitive-safe, usable in DNS labels, URIs and
//! certificate SANs. A kind prefix is never part of the printed form; the type says the kind.

use std::fmt;
use std::str::FromStr;

use data_encoding::BASE32_DNSSEC;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};

/// Why a string is not a valid id, hash or role.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseIdError {
    /// The text is not 26 base32 characters (0-9, a-v) encoding 16 bytes.
    #[error("{kind} must be 26 characters of 0-9a-v, got {text:?}")]
    BadId {
        /// Which kind of id was expected.
        kind: &'static str,
        /// The rejected text (truncated to 64 characters).
        text: String,
    },
    /// The text is not 64 hex characters encoding a BLAKE3 hash.
    #[error("{kind} must be 64 hex characters, got {text:?}")]
    BadHash {
        /// Which kind of hash was expected.
        kind: &'static str,
        /// The rejected text (truncated to 64 characters).
        text: String,
    },
    /// The text names no known role.
    #[error("unknown role {text:?}: expected admin, technician, store_staff or viewer")]
    BadRole {
        /// The rejected text (truncated to 64 characters).
        text: String,
    },
}

// Ids and hashes are their printed form in human-readable formats (JSON APIs, config) and
// raw fixed-size bytes in binary ones (the postcard wire format).

pub(crate) fn parse_text<'de, T, D>(d: D) -> Result<T, D::Error>
where
    T: FromStr<Err = ParseIdError>,
    D: Deserializer<'de>,
{
    let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
    text.parse::<T>().map_err(D::Error::custom)
}

pub(crate) fn clip(s: &str) -> String {
    s.chars().take(64).collect()
}

/// serde for a fixed-size byte-array newtype: its `Display`/`FromStr` text in
/// human-readable formats (JSON, documents), the raw bytes otherwise (the wire codec).
macro_rules! text_or_bytes_serde {
    ($name:ident, $len:literal) => {
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                if s.is_human_readable() {
                    s.collect_str(self)
                } else {
                    serde::Serialize::serialize(&self.0, s)
                }
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                if d.is_human_readable() {
                    $crate::ids::parse_text(d)
                } else {
                    <[u8; $len] as serde::Deserialize>::deserialize(d).map(Self)
                }
            }
        }
    };
}
pub(crate) use text_or_bytes_serde;

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name([u8; 16]);

        $crate::ids::text_or_bytes_serde!($name, 16);

        impl $name {
            /// A fresh random id from the operating system's random source.
            pub fn random() -> Self {
                let mut bytes = [0u8; 16];
                // The OS random source failing is unrecoverable for id generation and
                // happens only on a broken system; there is nothing better to do.
                getrandom::fill(&mut bytes).expect("operating system random source failed");
                Self(bytes)
            }

            /// The id with exactly these bytes (tests, decoding).
            pub const fn from_bytes(bytes: [u8; 16]) -> Self {
                Self(bytes)
            }

            /// The raw 16 bytes.
            pub const fn as_bytes(&self) -> &[u8; 16] {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&BASE32_DNSSEC.encode(&self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self)
            }
        }

        impl FromStr for $name {
            type Err = ParseIdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let bad = || ParseIdError::BadId { kind: $kind, text: clip(s) };
                if s.len() != 26 {
                    return Err(bad());
                }
                let bytes = BASE32_DNSSEC
                    .decode(s.to_ascii_lowercase().as_bytes())
                    .map_err(|_| bad())?;
                let arr: [u8; 16] = bytes.try_into().map_err(|_| bad())?;
                Ok(Self(arr))
            }
        }

        impl autosurgeon::Reconcile for $name {
            type Key<'a> = autosurgeon::reconcile::NoKey;
            fn reconcile<R: autosurgeon::Reconciler>(&self, reconciler: R) -> Result<(), R::Error> {
                self.to_string().reconcile(reconciler)
            }
        }

        impl autosurgeon::Hydrate for $name {
            fn hydrate_string(s: &'_ str) -> Result<Self, autosurgeon::HydrateError> {
                s.parse().map_err(|e: ParseIdError| {
                    autosurgeon::HydrateError::unexpected($kind, e.to_string())
                })
            }
        }
    };
}

typed_id!(
    /// A venue (bar, shop): the unit of ownership, of a venue document and of a hub.
    VenueId, "venue id"
);
typed_id!(
    /// An edge hub, the one Pi per venue that syncs with central.
    HubId, "hub id"
);
typed_id!(
    /// A kiosk (screen) in a venue.
    KioskId, "kiosk id"
);
typed_id!(
    /// A playlist in a venue document.
    PlaylistId, "playlist id"
);
typed_id!(
    /// One item of a playlist. Items are identified by id, never by position.
    ItemId, "item id"
);
typed_id!(
    /// A media entry (its metadata); the bytes are addressed by [`MediaHash`].
    MediaId, "media id"
);
typed_id!(
    /// A kiosk provisioning grant in a venue document: one pre-approved pairing, made at
    /// central.
    GrantId, "grant id"
);
typed_id!(
    /// A user account (admin, technician, staff, viewer).
    UserId, "user id"
);
typed_id!(
    /// An organisation: the owner of central, its CA and all venues.
    OrgId, "org id"
);

/// A 32-byte hash type: 64 lowercase hex characters in text (JSON, documents), raw bytes
/// on the wire, a 12-character prefix in `Debug`.
macro_rules! typed_hash {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name([u8; 32]);

        impl $name {
            /// The hash with exactly these bytes.
            pub const fn from_bytes(bytes: [u8; 32]) -> Self {
                Self(bytes)
            }

            /// The raw 32 bytes.
            pub const fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }
        }

        $crate::ids::text_or_bytes_serde!($name, 32);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&data_encoding::HEXLOWER.encode(&self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), &self.to_string()[..12])
            }
        }

        impl FromStr for $name {
            type Err = $crate::ids::ParseIdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let bad = || $crate::ids::ParseIdError::BadHash {
                    kind: $kind,
                    text: $crate::ids::clip(s),
                };
                if s.len() != 64 {
                    return Err(bad());
                }
                let bytes = data_encoding::HEXLOWER_PERMISSIVE
                    .decode(s.as_bytes())
                    .map_err(|_| bad())?;
                Ok(Self(bytes.try_into().map_err(|_| bad())?))
            }
        }

        impl autosurgeon::Reconcile for $name {
            type Key<'a> = autosurgeon::reconcile::NoKey;
            fn reconcile<R: autosurgeon::Reconciler>(&self, reconciler: R) -> Result<(), R::Error> {
                self.to_string().reconcile(reconciler)
            }
        }

        impl autosurgeon::Hydrate for $name {
            fn hydrate_string(s: &'_ str) -> Result<Self, autosurgeon::HydrateError> {
                s.parse().map_err(|e: $crate::ids::ParseIdError| {
                    autosurgeon::HydrateError::unexpected($kind, e.to_string())
                })
            }
        }
    };
}
pub(crate) use typed_hash;

typed_hash!(
    /// The BLAKE3 hash of a media file's bytes: its content address.
    MediaHash, "media hash"
);

impl MediaHash {
    /// Hash these bytes.
    pub fn of(bytes: &[u8]) -> Self {
        Self(*blake3::hash(bytes).as_bytes())
    }
}

impl From<blake3::Hash> for MediaHash {
    fn from(h: blake3::Hash) -> Self {
        Self(*h.as_bytes())
    }
}

/// What a user may do. Roles other than `Admin` are scoped to a set of venues by central.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything, in every venue: users, roles, provisioning, audit log.
    Admin,
    /// Devices and health in their venues: provision and replace hubs and kiosks.
    Technician,
    /// Content in their venues: media, playlists, assignments, schedules.
    StoreStaff,
    /// Read-only access to their venues.
    Viewer,
}

impl Role {
    /// Every role, most powerful first.
    pub const ALL: [Role; 4] = [
        Role::Admin,
        Role::Technician,
        Role::StoreStaff,
        Role::Viewer,
    ];

    /// The role's stable name, as used in config, the API and tokens.
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Technician => "technician",
            Role::StoreStaff => "store_staff",
            Role::Viewer => "viewer",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = ParseIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| ParseIdError::BadRole { text: clip(s) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_round_trips_through_its_printed_form() {
        let id = VenueId::random();
        let text = id.to_string();
        assert_eq!(text.len(), 26);
        assert!(
            text.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'v').contains(&b))
        );
        assert_eq!(text.parse::<VenueId>().unwrap(), id);
        assert_eq!(text.to_uppercase().parse::<VenueId>().unwrap(), id);
    }

    #[test]
    fn bad_ids_name_the_kind_and_text() {
        let err = "not-an-id".parse::<KioskId>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "kiosk id must be 26 characters of 0-9a-v, got \"not-an-id\""
        );
        assert!("zzzzzzzzzzzzzzzzzzzzzzzzzz".parse::<KioskId>().is_err());
    }

    #[test]
    fn media_hash_round_trips_and_matches_blake3() {
        let h = MediaHash::of(b"hello");
        assert_eq!(h.to_string(), blake3::hash(b"hello").to_hex().as_str());
        assert_eq!(h.to_string().parse::<MediaHash>().unwrap(), h);
        assert!("abc".parse::<MediaHash>().is_err());
    }

    #[test]
    fn ids_and_hashes_are_text_in_json_and_bytes_on_the_wire() {
        let id = KioskId::from_bytes([3; 16]);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(serde_json::from_str::<KioskId>(&json).unwrap(), id);
        assert!(
            serde_json::from_str::<KioskId>("\"nope\"")
                .unwrap_err()
                .to_string()
                .contains("kiosk id")
        );
        assert_eq!(postcard::to_stdvec(&id).unwrap(), vec![3; 16]);
        let hash = MediaHash::of(b"x");
        let json = serde_json::to_string(&hash).unwrap();
        assert_eq!(serde_json::from_str::<MediaHash>(&json).unwrap(), hash);
        let bytes = postcard::to_stdvec(&hash).unwrap();
        assert_eq!(bytes.len(), 32);
        assert_eq!(postcard::from_bytes::<MediaHash>(&bytes).unwrap(), hash);
    }

    #[test]
    fn roles_parse_by_name() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
        }
        assert!(matches!(
            "root".parse::<Role>(),
            Err(ParseIdError::BadRole { .. })
        ));
    }
}
