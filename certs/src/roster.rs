//! The roster signer: a certificate the org CA issues for one purpose only — signing venue
//! rosters (who may sign in at a venue's hub while its internet is down) — and the check a
//! hub makes of a signature with it.
//!
//! The CA key signs certificates and CRLs, never data: central signs each roster with the
//! signer's own key, and the signer's certificate carries the roster-signing extended key
//! usage ([`ROSTER_SIGNING_OID`]) and no other. A hub accepts a signature only from a
//! certificate that chains to the org CA it enrolled with, is valid now and names that
//! purpose (webpki, as rustls checks TLS certificates): a hub's or central's TLS
//! certificate, the CA's own, or another organisation's signer are all refused.

use rcgen::{ExtendedKeyUsagePurpose, SigningKey};
use rustls::pki_types::{CertificateDer, UnixTime};
use webpki::{EndEntityCert, KeyUsage};

use crate::{CertAndKey, IssueCertError, OrgCa, PrivateKey, Validity};

/// The roster-signing purpose, `2.25.15871387234629811633`: an OID in the `2.25` arc (ITU-T
/// X.667, no registration), chosen at random for Taplink.
pub const ROSTER_SIGNING_OID: &[u64] = &[2, 25, 15_871_387_234_629_811_633];

/// [`ROSTER_SIGNING_OID`] as DER content bytes (what webpki compares).
const ROSTER_SIGNING_OID_DER: &[u8] = &[
    0x69, 0x81, 0xdc, 0xa1, 0x9f, 0xd3, 0x98, 0xa6, 0x9d, 0xfb, 0x31,
];

/// Why a roster's signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RosterSignatureError {
    /// The signer's certificate does not parse.
    #[error("the roster signer's certificate is not a certificate: {0}")]
    BadCertificate(String),
    /// The certificate is not the org CA's roster signer: another issuer, another purpose,
    /// expired, or not yet valid.
    #[error("the roster was not signed by this organisation's roster signer: {0}")]
    NotRosterSigner(String),
    /// The signature does not match the roster.
    #[error("the roster's signature does not match its content")]
    BadSignature,
}

/// The roster signer's certificate and key, held by central.
pub struct RosterSigner {
    cert: CertificateDer<'static>,
    key: PrivateKey,
}

impl std::fmt::Debug for RosterSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RosterSigner").finish_non_exhaustive()
    }
}

impl RosterSigner {
    /// A signer from its certificate and key (as [`OrgCa::issue_roster_signer`] made them).
    pub fn new(cert: CertificateDer<'static>, key: PrivateKey) -> RosterSigner {
        RosterSigner { cert, key }
    }

    /// The certificate, sent with every signed roster.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert
    }

    /// The key, for storing it.
    pub fn key(&self) -> &PrivateKey {
        &self.key
    }

    /// An ECDSA P-256 SHA-256 signature (ASN.1 DER) of `message`.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, IssueCertError> {
        self.key
            .key_pair()
            .sign(message)
            .map_err(|source| IssueCertError::Sign { source })
    }
}

impl OrgCa {
    /// Issue the roster signer: a fresh key and a certificate for roster signing only.
    pub fn issue_roster_signer(&self, validity: Validity) -> Result<CertAndKey, IssueCertError> {
        let key =
            PrivateKey::generate().map_err(|source| IssueCertError::GenerateKey { source })?;
        let cert = self.issue(
            key.key_pair(),
            "Taplink roster signer",
            Vec::new(),
            ExtendedKeyUsagePurpose::Other(ROSTER_SIGNING_OID.to_vec()),
            validity,
        )?;
        Ok(CertAndKey { cert, key })
    }
}

/// Check that `signature` is the roster signer's signature of `message`: `signer` chains
/// to `ca` (the org CA's certificate), is valid at `now` and is for roster signing.
pub fn verify_roster_signature(
    ca: &CertificateDer<'_>,
    signer: &[u8],
    message: &[u8],
    signature: &[u8],
    now: UnixTime,
) -> Result<(), RosterSignatureError> {
    let anchor = webpki::anchor_from_trusted_cert(ca)
        .map_err(|e| RosterSignatureError::NotRosterSigner(format!("the org CA: {e}")))?;
    let signer_der = CertificateDer::from(signer);
    let cert = EndEntityCert::try_from(&signer_der)
        .map_err(|e| RosterSignatureError::BadCertificate(e.to_string()))?;
    cert.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &[anchor],
        &[],
        now,
        KeyUsage::required(ROSTER_SIGNING_OID_DER),
        None,
        None,
    )
    .map_err(|e| RosterSignatureError::NotRosterSigner(format!("{e:?}")))?;
    cert.verify_signature(webpki::ring::ECDSA_P256_SHA256, message, signature)
        .map_err(|_| RosterSignatureError::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-01-01, when the test CAs start.
    fn start() -> time::OffsetDateTime {
        time::OffsetDateTime::from_unix_timestamp(1_767_225_600).unwrap()
    }

    /// 2026-06-01: within every test certificate's validity.
    fn now() -> UnixTime {
        UnixTime::since_unix_epoch(std::time::Duration::from_secs(1_780_272_000))
    }
    use crate::HubIdentity;

    fn validity() -> Validity {
        Validity::new(start(), time::Duration::days(365)).unwrap()
    }

    fn ca(name: &str) -> OrgCa {
        OrgCa::create(
            name,
            Validity::new(start(), time::Duration::days(3650)).unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn only_the_org_cas_roster_signer_is_believed() {
        let org = ca("Pub Co");
        let issued = org.issue_roster_signer(validity()).unwrap();
        let signer = RosterSigner::new(issued.cert.der().clone(), issued.key);
        let message = b"roster v2 of venue 1";
        let signature = signer.sign(message).unwrap();
        let now = now();
        verify_roster_signature(org.cert_der(), signer.cert_der(), message, &signature, now)
            .unwrap();
        // Any change to the content.
        assert_eq!(
            verify_roster_signature(
                org.cert_der(),
                signer.cert_der(),
                b"roster v3",
                &signature,
                now
            ),
            Err(RosterSignatureError::BadSignature)
        );
        // Another organisation's signer.
        let other = ca("Other Co");
        let theirs = other.issue_roster_signer(validity()).unwrap();
        let theirs = RosterSigner::new(theirs.cert.der().clone(), theirs.key);
        let forged = theirs.sign(message).unwrap();
        assert!(matches!(
            verify_roster_signature(org.cert_der(), theirs.cert_der(), message, &forged, now),
            Err(RosterSignatureError::NotRosterSigner(_))
        ));
        // A certificate of the org CA for another purpose: a hub's.
        let hub = org
            .issue_hub_cert(
                HubIdentity {
                    hub: taplink_sync_proto::ids::HubId::random(),
                    venue: taplink_sync_proto::ids::VenueId::random(),
                },
                validity(),
            )
            .unwrap();
        let hub_signer = RosterSigner::new(hub.cert.der().clone(), hub.key);
        let by_hub = hub_signer.sign(message).unwrap();
        assert!(matches!(
            verify_roster_signature(org.cert_der(), hub_signer.cert_der(), message, &by_hub, now),
            Err(RosterSignatureError::NotRosterSigner(_))
        ));
        // Garbage for a certificate.
        assert!(matches!(
            verify_roster_signature(org.cert_der(), b"not a cert", message, &signature, now),
            Err(RosterSignatureError::BadCertificate(_))
        ));
        // The CA's own certificate as the signer (the CA key signs no data).
        assert!(
            verify_roster_signature(org.cert_der(), org.cert_der(), message, &signature, now)
                .is_err()
        );
    }
}
