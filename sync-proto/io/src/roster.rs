//! Whether a hub keeps a roster central sent: the signature (the org CA's roster signer,
//! `taplink_certs::roster`) and the rules of `taplink_sync_proto::roster` — for this
//! venue, newer than the one held. Every refusal has a [`RosterError::reason`] for the
//! hub's log and its `rosters_refused` counter.

use rustls::pki_types::{CertificateDer, UnixTime};
use taplink_certs::{RosterSignatureError, verify_roster_signature};
use taplink_sync_proto::ids::VenueId;
use taplink_sync_proto::roster::{Roster, SignedRoster};

/// Why a roster was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RosterError {
    /// No signature or no signer certificate.
    #[error("the roster is not signed")]
    Unsigned,
    /// The signature or the signer is not the org CA's roster signer's.
    #[error(transparent)]
    Signature(#[from] RosterSignatureError),
    /// The signed body is not a roster.
    #[error("the roster does not parse: {0}")]
    Malformed(String),
    /// It is another venue's.
    #[error("the roster is for venue {got}, not this hub's venue {expected}")]
    OtherVenue {
        /// The roster's venue.
        got: VenueId,
        /// This hub's.
        expected: VenueId,
    },
    /// It is not newer than the one held.
    #[error("the roster is version {got}; this hub holds version {held}")]
    Older {
        /// The roster's version.
        got: u64,
        /// The held one's.
        held: u64,
    },
}

impl RosterError {
    /// A short label: the `reason` of the refusal counter.
    pub fn reason(&self) -> &'static str {
        match self {
            RosterError::Unsigned => "unsigned",
            RosterError::Signature(RosterSignatureError::BadSignature) => "bad_signature",
            RosterError::Signature(_) => "not_roster_signer",
            RosterError::Malformed(_) => "malformed",
            RosterError::OtherVenue { .. } => "other_venue",
            RosterError::Older { .. } => "older",
        }
    }
}

/// The roster in `signed`, if this hub of `venue`, trusting `ca` and holding version
/// `held` (if any), should keep it at `now`.
pub fn admit(
    ca: &CertificateDer<'_>,
    signed: &SignedRoster,
    venue: VenueId,
    held: Option<u64>,
    now: UnixTime,
) -> Result<Roster, RosterError> {
    if signed.signature.is_empty() || signed.signer.is_empty() {
        return Err(RosterError::Unsigned);
    }
    verify_roster_signature(ca, &signed.signer, &signed.body, &signed.signature, now)?;
    let roster = signed.roster().map_err(RosterError::Malformed)?;
    if roster.venue != venue {
        return Err(RosterError::OtherVenue {
            got: roster.venue,
            expected: venue,
        });
    }
    if let Some(held) = held
        && roster.version <= held
    {
        return Err(RosterError::Older {
            got: roster.version,
            held,
        });
    }
    Ok(roster)
}

#[cfg(test)]
mod tests {
    use taplink_certs::{OrgCa, RosterSigner, Validity};
    use taplink_sync_proto::authz::Role;
    use taplink_sync_proto::ids::UserId;
    use taplink_sync_proto::roster::RosterUser;

    use super::*;

    /// 2026-01-01, when the test CAs start.
    fn start() -> time::OffsetDateTime {
        time::OffsetDateTime::from_unix_timestamp(1_767_225_600).unwrap()
    }

    /// 2026-06-01: within every test certificate's validity.
    fn now() -> UnixTime {
        UnixTime::since_unix_epoch(std::time::Duration::from_secs(1_780_272_000))
    }

    fn org() -> (OrgCa, RosterSigner) {
        let validity = |days| Validity::new(start(), time::Duration::days(days)).unwrap();
        let ca = OrgCa::create("Pub Co", validity(3650)).unwrap();
        let issued = ca.issue_roster_signer(validity(365)).unwrap();
        let signer = RosterSigner::new(issued.cert.der().clone(), issued.key);
        (ca, signer)
    }

    fn roster(venue: VenueId, version: u64) -> Roster {
        Roster {
            venue,
            version,
            previous: None,
            issued_at_ms: 0,
            users: vec![RosterUser {
                id: UserId::random(),
                username: "sue".into(),
                role: Role::StoreStaff,
                password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaA".into(),
                disabled: false,
            }],
        }
    }

    fn sign(signer: &RosterSigner, roster: &Roster) -> SignedRoster {
        let body = roster.body();
        SignedRoster {
            signature: signer.sign(&body).unwrap(),
            signer: signer.cert_der().to_vec(),
            body,
        }
    }

    #[test]
    fn a_hub_keeps_only_its_venues_newer_roster_signed_by_its_org() {
        let (ca, signer) = org();
        let venue = VenueId::random();
        let now = now();
        let v2 = sign(&signer, &roster(venue, 2));
        assert_eq!(
            admit(ca.cert_der(), &v2, venue, Some(1), now)
                .unwrap()
                .version,
            2
        );
        assert_eq!(
            admit(ca.cert_der(), &v2, venue, None, now).unwrap().version,
            2
        );
        // Older or the same as held.
        let e = admit(ca.cert_der(), &v2, venue, Some(2), now).unwrap_err();
        assert_eq!(e.reason(), "older");
        // Another venue's.
        let theirs = sign(&signer, &roster(VenueId::random(), 5));
        assert_eq!(
            admit(ca.cert_der(), &theirs, venue, None, now)
                .unwrap_err()
                .reason(),
            "other_venue"
        );
        // Unsigned.
        let mut unsigned = v2.clone();
        unsigned.signature.clear();
        assert_eq!(
            admit(ca.cert_der(), &unsigned, venue, None, now)
                .unwrap_err()
                .reason(),
            "unsigned"
        );
        // Edited after signing: a user's role raised.
        let mut edited = v2.clone();
        edited.body = String::from_utf8(edited.body)
            .unwrap()
            .replace("store_staff", "admin")
            .into_bytes();
        assert_eq!(
            admit(ca.cert_der(), &edited, venue, None, now)
                .unwrap_err()
                .reason(),
            "bad_signature"
        );
        // Signed by another organisation's signer.
        let (_, other) = org();
        let forged = sign(&other, &roster(venue, 9));
        assert_eq!(
            admit(ca.cert_der(), &forged, venue, None, now)
                .unwrap_err()
                .reason(),
            "not_roster_signer"
        );
        // Signed bytes that are not a roster.
        let junk = SignedRoster {
            signature: signer.sign(b"junk").unwrap(),
            signer: signer.cert_der().to_vec(),
            body: b"junk".to_vec(),
        };
        assert_eq!(
            admit(ca.cert_der(), &junk, venue, None, now)
                .unwrap_err()
                .reason(),
            "malformed"
        );
    }
}
