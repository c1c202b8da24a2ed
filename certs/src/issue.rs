//! Issuing leaf certificates: central's server certificate and hub client certificates.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use rcgen::{
    CertificateParams, CertificateSigningRequestParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PublicKeyData, SanType, SerialNumber,
};
use rustls::pki_types::CertificateDer;

use crate::Fingerprint;
use crate::ca::OrgCa;
use crate::identity::HubIdentity;
use crate::key::{KeyError, PrivateKey};
use crate::pem;
use crate::serial::Serial;
use crate::validity::Validity;

/// Why a certificate was not issued.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IssueCertError {
    /// The requested validity ends after the CA's own certificate expires.
    #[error(
        "the certificate would be valid until {requested}, after the org CA expires \
         ({ca_not_after}); shorten its lifetime or renew the CA"
    )]
    OutlivesCa {
        /// The requested `not_after`.
        requested: time::OffsetDateTime,
        /// The CA's `not_after`.
        ca_not_after: time::OffsetDateTime,
    },
    /// A server certificate needs at least one DNS name or IP address.
    #[error("a server certificate needs at least one DNS name or IP address")]
    NoServerNames,
    /// A DNS name cannot go into a certificate.
    #[error("{name:?} is not a usable DNS name: {reason}")]
    BadDnsName {
        /// The rejected name (truncated to 80 characters).
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The CSR is larger than any CSR a hub produces.
    #[error("the CSR is {size} bytes, more than the {limit} accepted")]
    CsrTooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The CSR is not a parseable PEM PKCS#10 request.
    #[error(
        "the CSR is not a parseable PEM certificate request (\"-----BEGIN CERTIFICATE REQUEST-----\")"
    )]
    CsrUnparseable,
    /// The CSR's signature does not verify with the public key it carries: it was altered,
    /// or assembled by someone who does not hold the key.
    #[error("the CSR's signature does not verify with its public key; refusing it")]
    CsrBadSignature,
    /// The CSR uses something this CA does not accept (an extension, a signature algorithm).
    #[error("the CSR uses something this CA does not accept: {source}")]
    CsrUnsupported {
        /// rcgen's report.
        #[source]
        source: rcgen::Error,
    },
    /// The CSR's key is not ECDSA P-256, the only key type hubs use.
    #[error("the CSR's key must be ECDSA P-256, got {algorithm}")]
    CsrKeyAlgorithm {
        /// The algorithm found.
        algorithm: String,
    },
    /// A key for the certificate could not be generated.
    #[error("could not generate a key for the certificate: {source}")]
    GenerateKey {
        /// The key generator's report.
        #[source]
        source: KeyError,
    },
    /// The random source failed while drawing the serial number.
    #[error("the random source failed while drawing a serial number")]
    Random,
    /// rcgen could not build or sign the certificate.
    #[error("could not sign the certificate: {source}")]
    Sign {
        /// rcgen's report.
        #[source]
        source: rcgen::Error,
    },
}

/// A name central's server certificate is valid for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ServerSan {
    /// A DNS name such as `central.example.com`.
    Dns(String),
    /// An IP address, for deployments reached without DNS.
    Ip(IpAddr),
}

impl FromStr for ServerSan {
    type Err = std::convert::Infallible;

    /// An IP address if the text parses as one, a DNS name otherwise (checked at issuance).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.parse::<IpAddr>() {
            Ok(ip) => ServerSan::Ip(ip),
            Err(_) => ServerSan::Dns(s.to_owned()),
        })
    }
}

impl fmt::Display for ServerSan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerSan::Dns(name) => f.write_str(name),
            ServerSan::Ip(ip) => ip.fmt(f),
        }
    }
}

/// A certificate this CA issued.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedCert {
    der: CertificateDer<'static>,
    serial: Serial,
    validity: Validity,
}

impl IssuedCert {
    /// The certificate, DER (what rustls takes; a one-element chain is complete because
    /// the org CA signs leaves directly).
    pub fn der(&self) -> &CertificateDer<'static> {
        &self.der
    }

    /// The certificate, PEM.
    pub fn pem(&self) -> String {
        pem::encode("CERTIFICATE", &self.der)
    }

    /// Its serial number: what a CRL names to revoke it. Store it with the hub's record.
    pub fn serial(&self) -> &Serial {
        &self.serial
    }

    /// Its validity period.
    pub fn validity(&self) -> Validity {
        self.validity
    }

    /// SHA-256 fingerprint of the certificate.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(&self.der)
    }
}

impl fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedCert")
            .field("serial", &self.serial)
            .field("fingerprint", &self.fingerprint())
            .field("validity", &self.validity)
            .finish()
    }
}

/// A certificate issued together with a key generated for it on the CA's side.
#[derive(Debug)]
pub struct CertAndKey {
    /// The certificate.
    pub cert: IssuedCert,
    /// Its private key.
    pub key: PrivateKey,
}

/// CSRs from hubs are well under 1 KiB; the limit bounds parsing work on untrusted input.
const MAX_CSR_PEM_LEN: usize = 16 * 1024;

impl OrgCa {
    /// Issue central's server certificate (serverAuth) for `names`, with a fresh key.
    pub fn issue_server_cert(
        &self,
        names: &[ServerSan],
        validity: Validity,
    ) -> Result<CertAndKey, IssueCertError> {
        if names.is_empty() {
            return Err(IssueCertError::NoServerNames);
        }
        let mut sans = Vec::with_capacity(names.len());
        for name in names {
            sans.push(match name {
                ServerSan::Ip(ip) => SanType::IpAddress(*ip),
                ServerSan::Dns(dns) => SanType::DnsName(check_dns_name(dns)?),
            });
        }
        let common_name = names[0].to_string();
        let key =
            PrivateKey::generate().map_err(|source| IssueCertError::GenerateKey { source })?;
        let cert = self.issue(
            key.key_pair(),
            &common_name,
            sans,
            ExtendedKeyUsagePurpose::ServerAuth,
            validity,
        )?;
        Ok(CertAndKey { cert, key })
    }

    /// Sign a hub's CSR into its client certificate (clientAuth) naming `hub`.
    ///
    /// The CSR's signature must verify; everything in it except the public key (names,
    /// requested extensions) is ignored, because central alone decides which hub and venue
    /// a key speaks for.
    pub fn sign_hub_csr(
        &self,
        csr_pem: &str,
        hub: HubIdentity,
        validity: Validity,
    ) -> Result<IssuedCert, IssueCertError> {
        if csr_pem.len() > MAX_CSR_PEM_LEN {
            return Err(IssueCertError::CsrTooLarge {
                size: csr_pem.len(),
                limit: MAX_CSR_PEM_LEN,
            });
        }
        let csr = CertificateSigningRequestParams::from_pem(csr_pem).map_err(|e| match e {
            rcgen::Error::CouldNotParseCertificationRequest => IssueCertError::CsrUnparseable,
            rcgen::Error::InvalidCertificationRequestSignature => IssueCertError::CsrBadSignature,
            other => IssueCertError::CsrUnsupported { source: other },
        })?;
        let key = &csr.public_key;
        // rcgen infers the key type from the signature algorithm; the point length tells
        // P-256 (65 bytes, uncompressed) from other curves signed with SHA-256.
        if key.algorithm() != &PKCS_ECDSA_P256_SHA256 || key.der_bytes().len() != 65 {
            return Err(IssueCertError::CsrKeyAlgorithm {
                algorithm: format!("{:?} ({} byte key)", key.algorithm(), key.der_bytes().len()),
            });
        }
        self.issue_hub(key, hub, validity)
    }

    /// Issue a hub certificate with a key generated here (provisioning, tests). Prefer
    /// [`OrgCa::sign_hub_csr`] in production so the key never leaves the hub.
    pub fn issue_hub_cert(
        &self,
        hub: HubIdentity,
        validity: Validity,
    ) -> Result<CertAndKey, IssueCertError> {
        let key =
            PrivateKey::generate().map_err(|source| IssueCertError::GenerateKey { source })?;
        let cert = self.issue_hub(key.key_pair(), hub, validity)?;
        Ok(CertAndKey { cert, key })
    }

    fn issue_hub(
        &self,
        key: &impl PublicKeyData,
        hub: HubIdentity,
        validity: Validity,
    ) -> Result<IssuedCert, IssueCertError> {
        let uri = hub
            .uri()
            .try_into()
            .map_err(|source| IssueCertError::Sign { source })?;
        self.issue(
            key,
            &format!("Taplink hub {}", hub.hub),
            vec![SanType::URI(uri)],
            ExtendedKeyUsagePurpose::ClientAuth,
            validity,
        )
    }

    pub(crate) fn issue(
        &self,
        key: &impl PublicKeyData,
        common_name: &str,
        sans: Vec<SanType>,
        eku: ExtendedKeyUsagePurpose,
        validity: Validity,
    ) -> Result<IssuedCert, IssueCertError> {
        let ca_not_after = self.validity().not_after();
        if validity.not_after() > ca_not_after {
            return Err(IssueCertError::OutlivesCa {
                requested: validity.not_after(),
                ca_not_after,
            });
        }
        let serial = Serial::random().map_err(|_| IssueCertError::Random)?;
        let mut params = CertificateParams::default();
        params.not_before = validity.not_before();
        params.not_after = validity.not_after();
        params.serial_number = Some(SerialNumber::from_slice(serial.as_bytes()));
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.subject_alt_names = sans;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![eku];
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .signed_by(key, self.issuer())
            .map_err(|source| IssueCertError::Sign { source })?;
        Ok(IssuedCert {
            der: cert.der().clone(),
            serial,
            validity,
        })
    }
}

fn check_dns_name(name: &str) -> Result<rcgen::string::Ia5String, IssueCertError> {
    let bad = |reason| IssueCertError::BadDnsName {
        name: name.chars().take(80).collect(),
        reason,
    };
    if name.is_empty() || name.len() > 253 {
        return Err(bad("it must be 1 to 253 characters"));
    }
    let labels_ok = name.trim_end_matches('.').split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    });
    if !labels_ok {
        return Err(bad(
            "labels must be 1 to 63 letters, digits or inner hyphens, separated by dots \
             (write internationalised names in their xn-- form)",
        ));
    }
    name.try_into().map_err(|_| bad("it is not ASCII"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use taplink_sync_proto::ids::{HubId, VenueId};
    use time::Duration;
    use x509_parser::extensions::GeneralName;
    use x509_parser::prelude::{FromDer, X509Certificate};

    fn ca() -> OrgCa {
        let v = Validity::new(crate::validity::test_now(), Duration::days(365)).unwrap();
        OrgCa::create("Acme", v).unwrap()
    }

    fn short() -> Validity {
        Validity::new(crate::validity::test_now(), Duration::days(30)).unwrap()
    }

    #[test]
    fn server_cert_has_names_eku_and_explicit_validity() {
        let ca = ca();
        let names: Vec<ServerSan> = ["central.example.com", "10.0.0.1", "::1"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let v = short();
        let issued = ca.issue_server_cert(&names, v).unwrap();
        let (_, x) = X509Certificate::from_der(issued.cert.der()).unwrap();
        let san = x.subject_alternative_name().unwrap().unwrap().value;
        assert!(
            san.general_names
                .contains(&GeneralName::DNSName("central.example.com"))
        );
        assert!(
            san.general_names
                .contains(&GeneralName::IPAddress(&[10, 0, 0, 1]))
        );
        assert_eq!(san.general_names.len(), 3);
        let eku = x.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && !eku.client_auth);
        assert!(!x.is_ca());
        assert_eq!(x.validity().not_before.to_datetime(), v.not_before());
        assert_eq!(x.validity().not_after.to_datetime(), v.not_after());
        let (_, ca_x) = X509Certificate::from_der(ca.cert_der()).unwrap();
        assert_eq!(x.issuer(), ca_x.subject());
        x.verify_signature(Some(ca_x.public_key())).unwrap();
        assert_eq!(
            Serial::from_der_integer_bytes(x.raw_serial()),
            *issued.cert.serial()
        );
    }

    #[test]
    fn bad_server_names_are_refused() {
        let ca = ca();
        assert!(matches!(
            ca.issue_server_cert(&[], short()),
            Err(IssueCertError::NoServerNames)
        ));
        for bad in ["", "a..b", "-a.example", "caf\u{e9}.example", "a b"] {
            assert!(
                matches!(
                    ca.issue_server_cert(&[ServerSan::Dns(bad.into())], short()),
                    Err(IssueCertError::BadDnsName { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn certificates_may_not_outlive_the_ca() {
        let ca = ca();
        let long = Validity::new(crate::validity::test_now(), Duration::days(400)).unwrap();
        let hub = HubIdentity {
            hub: HubId::random(),
            venue: VenueId::random(),
        };
        assert!(matches!(
            ca.issue_hub_cert(hub, long),
            Err(IssueCertError::OutlivesCa { .. })
        ));
    }

    #[test]
    fn hub_cert_ignores_names_requested_in_the_csr() {
        let ca = ca();
        let key = PrivateKey::generate().unwrap();
        let mut params = CertificateParams::new(vec!["evil.example".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "Taplink hub of someone else");
        let csr = params
            .serialize_request(key.key_pair())
            .unwrap()
            .pem()
            .unwrap();
        let hub = HubIdentity {
            hub: HubId::random(),
            venue: VenueId::random(),
        };
        let cert = ca.sign_hub_csr(&csr, hub, short()).unwrap();
        let (_, x) = X509Certificate::from_der(cert.der()).unwrap();
        let san = x.subject_alternative_name().unwrap().unwrap().value;
        assert_eq!(san.general_names, vec![GeneralName::URI(&hub.uri())]);
        assert_eq!(
            x.public_key().subject_public_key.data.as_ref(),
            key.key_pair().public_key_raw()
        );
        let eku = x.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.server_auth);
        let cn = x.subject().iter_common_name().next().unwrap();
        assert_eq!(cn.as_str().unwrap(), format!("Taplink hub {}", hub.hub));
    }

    #[test]
    fn non_p256_csr_keys_are_refused() {
        let ca = ca();
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let csr = CertificateParams::default()
            .serialize_request(&key)
            .unwrap()
            .pem()
            .unwrap();
        let hub = HubIdentity {
            hub: HubId::random(),
            venue: VenueId::random(),
        };
        assert!(matches!(
            ca.sign_hub_csr(&csr, hub, short()),
            Err(IssueCertError::CsrKeyAlgorithm { .. })
        ));
    }
}
