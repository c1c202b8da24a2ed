//! Certificate revocation lists signed by the org CA.
//!
//! Central revokes a hub (stolen, replaced) by adding its certificate's serial to the CRL
//! it gives its TLS server configuration ([`crate::tls::server_config`]).

use rcgen::{CertificateRevocationListParams, KeyIdMethod, RevokedCertParams, SerialNumber};
use rustls::pki_types::CertificateRevocationListDer;
use time::OffsetDateTime;

use crate::ca::OrgCa;
use crate::pem;
use crate::serial::Serial;
use crate::validity::Validity;

/// Why a CRL could not be produced.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CrlError {
    /// `next_update` is not later than `this_update` (or a date is not encodable).
    #[error("invalid CRL dates (this_update {this_update}, next_update {next_update}): {reason}")]
    BadDates {
        /// The requested issue date.
        this_update: OffsetDateTime,
        /// The requested next issue date.
        next_update: OffsetDateTime,
        /// What is wrong.
        reason: String,
    },
    /// rcgen could not build or sign the CRL.
    #[error("could not sign the CRL: {source}")]
    Sign {
        /// rcgen's report.
        #[source]
        source: rcgen::Error,
    },
}

/// One revoked certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    /// The revoked certificate's serial number ([`crate::IssuedCert::serial`]).
    pub serial: Serial,
    /// When central revoked it.
    pub revoked_at: OffsetDateTime,
}

/// A CRL signed by the org CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crl {
    der: CertificateRevocationListDer<'static>,
}

impl Crl {
    /// The CRL, DER (what rustls takes).
    pub fn der(&self) -> &CertificateRevocationListDer<'static> {
        &self.der
    }

    /// The CRL, DER, by value.
    pub fn into_der(self) -> CertificateRevocationListDer<'static> {
        self.der
    }

    /// The CRL, PEM (`-----BEGIN X509 CRL-----`).
    pub fn pem(&self) -> String {
        pem::encode("X509 CRL", &self.der)
    }
}

impl OrgCa {
    /// A CRL listing `revoked`, issued at `this_update` and promising the next one by
    /// `next_update`. `crl_number` must grow with every CRL this CA issues (RFC 5280
    /// §5.2.3); central keeps the counter.
    pub fn crl(
        &self,
        revoked: &[Revocation],
        crl_number: u64,
        this_update: OffsetDateTime,
        next_update: OffsetDateTime,
    ) -> Result<Crl, CrlError> {
        // `Validity` already normalises to whole UTC seconds and checks the order.
        let dates =
            Validity::between(this_update, next_update).map_err(|e| CrlError::BadDates {
                this_update,
                next_update,
                reason: e.to_string(),
            })?;
        let params = CertificateRevocationListParams {
            this_update: dates.not_before(),
            next_update: dates.not_after(),
            crl_number: SerialNumber::from_slice(&crl_number.to_be_bytes()),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|r| RevokedCertParams {
                    serial_number: SerialNumber::from_slice(r.serial.as_bytes()),
                    revocation_time: r
                        .revoked_at
                        .to_offset(time::UtcOffset::UTC)
                        .replace_nanosecond(0)
                        .unwrap_or(r.revoked_at),
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = params
            .signed_by(self.issuer())
            .map_err(|source| CrlError::Sign { source })?;
        Ok(Crl {
            der: crl.der().clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::Duration;
    use x509_parser::prelude::{CertificateRevocationList, FromDer, X509Certificate};

    #[test]
    fn crl_lists_the_serials_with_explicit_dates_and_verifies() {
        let now = crate::validity::test_now();
        let ca = OrgCa::create("Acme", Validity::new(now, Duration::days(365)).unwrap()).unwrap();
        let a = Serial::random().unwrap();
        let b: Serial = "80".parse().unwrap();
        let revoked = [
            Revocation {
                serial: a.clone(),
                revoked_at: now,
            },
            Revocation {
                serial: b.clone(),
                revoked_at: now,
            },
        ];
        let next = now + Duration::days(7);
        let crl = ca.crl(&revoked, 42, now, next).unwrap();
        let (_, parsed) = CertificateRevocationList::from_der(crl.der()).unwrap();
        let serials: Vec<Serial> = parsed
            .iter_revoked_certificates()
            .map(|r| Serial::from_der_integer_bytes(r.raw_serial()))
            .collect();
        assert_eq!(serials, vec![a, b]);
        assert_eq!(
            parsed.last_update().to_datetime().unix_timestamp(),
            now.unix_timestamp()
        );
        assert_eq!(
            parsed.next_update().unwrap().to_datetime().unix_timestamp(),
            next.unix_timestamp()
        );
        assert_eq!(
            parsed.crl_number().map(|n| n.to_string()),
            Some("42".into())
        );
        let (_, ca_x) = X509Certificate::from_der(ca.cert_der()).unwrap();
        assert_eq!(parsed.issuer(), ca_x.subject());
        parsed.verify_signature(ca_x.public_key()).unwrap();
        assert!(crl.pem().starts_with("-----BEGIN X509 CRL-----\n"));
    }

    #[test]
    fn next_update_must_follow_this_update() {
        let now = crate::validity::test_now();
        let ca = OrgCa::create("Acme", Validity::new(now, Duration::days(365)).unwrap()).unwrap();
        assert!(matches!(
            ca.crl(&[], 1, now, now),
            Err(CrlError::BadDates { .. })
        ));
    }
}
