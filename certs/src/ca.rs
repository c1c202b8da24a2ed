//! The org CA: a self-signed ECDSA P-256 certificate that may sign leaf certificates only.

use std::fmt;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SerialNumber,
};
use rustls::pki_types::CertificateDer;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::Fingerprint;
use crate::key::{KeyError, PrivateKey};
use crate::pem::{self, cert_der_from_pem};
use crate::serial::Serial;
use crate::validity::Validity;

/// Why an org CA could not be created or rebuilt from its certificate and key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaError {
    /// The organisation name cannot go into the CA's common name.
    #[error("org name {name:?} is not usable in the CA certificate: {reason}")]
    BadOrgName {
        /// The rejected name (truncated to 80 characters).
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The CA key could not be generated.
    #[error("could not generate the CA key: {source}")]
    GenerateKey {
        /// The key generator's report.
        #[source]
        source: KeyError,
    },
    /// The random source failed while drawing the serial number.
    #[error("the random source failed while drawing a serial number")]
    Random,
    /// rcgen could not build or sign the certificate.
    #[error("could not sign the CA certificate: {source}")]
    Sign {
        /// rcgen's report.
        #[source]
        source: rcgen::Error,
    },
    /// The CA certificate text is not a parseable X.509 certificate.
    #[error("the CA certificate is not usable: {reason}")]
    BadCertificate {
        /// What the parser reported.
        reason: String,
    },
    /// The certificate parses but is not a CA allowed to sign certificates.
    #[error("the certificate is not a CA certificate: {reason}")]
    NotACa {
        /// Which property is missing.
        reason: &'static str,
    },
    /// The CA key text is not a usable private key.
    #[error("the CA key is not usable: {source}")]
    BadKey {
        /// The key parser's report.
        #[source]
        source: KeyError,
    },
    /// The key is not the private key of the certificate.
    #[error("the CA key is not the private key of the CA certificate")]
    KeyMismatch,
}

/// The organisation's certificate authority: its certificate and signing key.
///
/// Issues central's server certificate and hub client certificates (see the `issue_*` and
/// `sign_hub_csr` methods) and CRLs ([`OrgCa::crl`]). Its BasicConstraints path length
/// is 0: it signs leaves only, never intermediate CAs.
pub struct OrgCa {
    cert_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
    validity: Validity,
}

impl OrgCa {
    /// The longest org name that keeps the common name within X.509's 64 characters.
    pub const MAX_ORG_NAME_CHARS: usize = 64 - Self::CN_PREFIX.len();
    const CN_PREFIX: &'static str = "Taplink Org CA ";

    /// A new CA with a fresh ECDSA P-256 key, common name `Taplink Org CA <org_name>`,
    /// valid for exactly `validity` (build it with [`Validity::new`] for the usual
    /// clock-skew slack).
    pub fn create(org_name: &str, validity: Validity) -> Result<OrgCa, CaError> {
        check_org_name(org_name)?;
        let key = PrivateKey::generate().map_err(|source| CaError::GenerateKey { source })?;
        let serial = Serial::random().map_err(|_| CaError::Random)?;

        let mut params = CertificateParams::default();
        params.not_before = validity.not_before();
        params.not_after = validity.not_after();
        params.serial_number = Some(SerialNumber::from_slice(serial.as_bytes()));
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{}{org_name}", Self::CN_PREFIX));
        params
            .distinguished_name
            .push(DnType::OrganizationName, org_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];

        let key_pair = key.into_key_pair();
        let cert = params
            .self_signed(&key_pair)
            .map_err(|source| CaError::Sign { source })?;
        Ok(OrgCa {
            cert_der: cert.der().clone(),
            issuer: Issuer::new(params, key_pair),
            validity,
        })
    }

    /// Rebuild a CA from its PEM certificate and PEM private key, checking that the
    /// certificate is a CA that may sign certificates and that the key is its key.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<OrgCa, CaError> {
        let cert_der = cert_der_from_pem(cert_pem).map_err(|e| CaError::BadCertificate {
            reason: e.to_string(),
        })?;
        let key = PrivateKey::from_pem(key_pem).map_err(|source| CaError::BadKey { source })?;

        let (_, x509) =
            X509Certificate::from_der(&cert_der).map_err(|e| CaError::BadCertificate {
                reason: e.to_string(),
            })?;
        if !x509.is_ca() {
            return Err(CaError::NotACa {
                reason: "BasicConstraints does not say CA:TRUE",
            });
        }
        match x509.key_usage() {
            Ok(Some(ku)) if !ku.value.key_cert_sign() => {
                return Err(CaError::NotACa {
                    reason: "KeyUsage lacks keyCertSign",
                });
            }
            Ok(_) => {}
            Err(e) => {
                return Err(CaError::BadCertificate {
                    reason: format!("KeyUsage: {e}"),
                });
            }
        }
        if x509.public_key().subject_public_key.data.as_ref() != key.key_pair().public_key_raw() {
            return Err(CaError::KeyMismatch);
        }
        let v = x509.validity();
        let validity = Validity::between(v.not_before.to_datetime(), v.not_after.to_datetime())
            .map_err(|e| CaError::BadCertificate {
                reason: format!("validity: {e}"),
            })?;

        let issuer = Issuer::from_ca_cert_der(&cert_der, key.into_key_pair()).map_err(|e| {
            CaError::BadCertificate {
                reason: e.to_string(),
            }
        })?;
        Ok(OrgCa {
            cert_der,
            issuer,
            validity,
        })
    }

    /// The CA certificate, DER: the trust anchor hubs and central verify against.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// The CA certificate, PEM (what `ca.pem` holds and what a hub receives at enrollment).
    pub fn cert_pem(&self) -> String {
        pem::encode("CERTIFICATE", &self.cert_der)
    }

    /// The CA private key, PEM PKCS#8. The org's most valuable secret: never log it.
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// SHA-256 fingerprint of the CA certificate.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(&self.cert_der)
    }

    /// The validity of the CA certificate. Nothing it issues may outlive it.
    pub fn validity(&self) -> Validity {
        self.validity
    }

    pub(crate) fn issuer(&self) -> &Issuer<'static, KeyPair> {
        &self.issuer
    }
}

impl fmt::Debug for OrgCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OrgCa")
            .field("fingerprint", &self.fingerprint())
            .field("validity", &self.validity)
            .finish_non_exhaustive()
    }
}

fn check_org_name(name: &str) -> Result<(), CaError> {
    let bad = |reason| CaError::BadOrgName {
        name: name.chars().take(80).collect(),
        reason,
    };
    if name.trim().is_empty() {
        return Err(bad("it is empty"));
    }
    if name.trim() != name {
        return Err(bad("it starts or ends with white space"));
    }
    if name.chars().count() > OrgCa::MAX_ORG_NAME_CHARS {
        return Err(bad("it is longer than 49 characters"));
    }
    if name.chars().any(char::is_control) {
        return Err(bad("it contains control characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::Duration;
    use x509_parser::extensions::ParsedExtension;

    fn validity() -> Validity {
        Validity::new(crate::validity::test_now(), Duration::days(3650)).unwrap()
    }

    #[test]
    fn ca_certificate_has_the_required_fields() {
        let v = validity();
        let ca = OrgCa::create("Acme Bars", v).unwrap();
        let (_, x) = X509Certificate::from_der(ca.cert_der()).unwrap();
        let cn = x.subject().iter_common_name().next().unwrap();
        assert_eq!(cn.as_str().unwrap(), "Taplink Org CA Acme Bars");
        assert_eq!(x.subject(), x.issuer());
        let bc = x.basic_constraints().unwrap().unwrap().value;
        assert!(bc.ca);
        assert_eq!(bc.path_len_constraint, Some(0));
        let ku = x.key_usage().unwrap().unwrap().value;
        assert!(ku.key_cert_sign() && ku.crl_sign());
        assert!(!ku.digital_signature());
        assert_eq!(x.validity().not_before.to_datetime(), v.not_before());
        assert_eq!(x.validity().not_after.to_datetime(), v.not_after());
        assert_eq!(
            x.signature_algorithm.algorithm,
            x509_parser::oid_registry::OID_SIG_ECDSA_WITH_SHA256
        );
        assert!(x.extensions().iter().any(|e| matches!(
            e.parsed_extension(),
            ParsedExtension::SubjectKeyIdentifier(_)
        )));
        // The signature verifies with the certificate's own key.
        x.verify_signature(None).unwrap();
    }

    #[test]
    fn from_pem_round_trips_and_rejects_a_foreign_key() {
        let ca = OrgCa::create("Acme", validity()).unwrap();
        let again = OrgCa::from_pem(&ca.cert_pem(), &ca.key_pem()).unwrap();
        assert_eq!(again.cert_der(), ca.cert_der());
        assert_eq!(again.validity(), ca.validity());

        let other = OrgCa::create("Other", validity()).unwrap();
        assert!(matches!(
            OrgCa::from_pem(&ca.cert_pem(), &other.key_pem()),
            Err(CaError::KeyMismatch)
        ));
    }

    #[test]
    fn bad_org_names_are_refused() {
        for name in ["", "  ", " Acme", "Acme\n", &"x".repeat(50)] {
            assert!(
                matches!(
                    OrgCa::create(name, validity()),
                    Err(CaError::BadOrgName { .. })
                ),
                "{name:?}"
            );
        }
        assert!(OrgCa::create(&"x".repeat(49), validity()).is_ok());
    }
}
