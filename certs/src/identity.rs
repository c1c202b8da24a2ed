//! The hub identity a certificate carries: the SAN URI `taplink://venue/<venue>/hub/<hub>`.
//!
//! Reading an identity does not verify the certificate: call it on a certificate rustls
//! has already verified against the org CA (e.g. `ServerConnection::peer_certificates`).

use std::fmt;
use std::str::FromStr;

use rustls::pki_types::CertificateDer;
use taplink_sync_proto::ids::{HubId, ParseIdError, VenueId};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::serial::Serial;

/// Why no hub identity could be read from a certificate or URI.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The peer presented no certificate at all.
    #[error("the peer presented no certificate")]
    NoCertificate,
    /// The bytes are not an X.509 certificate.
    #[error("not a parseable X.509 certificate: {reason}")]
    BadCertificate {
        /// What the parser reported.
        reason: String,
    },
    /// The certificate has no SubjectAlternativeName extension (or an unparseable one).
    #[error("the certificate has no usable SubjectAlternativeName extension{detail}")]
    NoSubjectAltName {
        /// Empty, or ": " and the parser's report.
        detail: String,
    },
    /// The certificate names no `taplink:` URI.
    #[error(
        "the certificate's SubjectAlternativeName has no taplink:// URI (found URIs: {found:?})"
    )]
    NoTaplinkUri {
        /// The other URIs present, if any.
        found: Vec<String>,
    },
    /// The certificate names more than one `taplink:` URI, so it would speak for several hubs.
    #[error("the certificate names {} taplink URIs, exactly one is allowed: {uris:?}", uris.len())]
    SeveralTaplinkUris {
        /// All of them.
        uris: Vec<String>,
    },
    /// A `taplink:` URI is not of the form `taplink://venue/<venue id>/hub/<hub id>`.
    #[error("{uri:?} is not of the form taplink://venue/<venue id>/hub/<hub id>")]
    MalformedUri {
        /// The URI (truncated to 200 characters).
        uri: String,
    },
    /// The venue id in the URI does not parse.
    #[error("bad venue id in {uri:?}: {source}")]
    BadVenueId {
        /// The URI (truncated to 200 characters).
        uri: String,
        /// The id parser's report.
        #[source]
        source: ParseIdError,
    },
    /// The hub id in the URI does not parse.
    #[error("bad hub id in {uri:?}: {source}")]
    BadHubId {
        /// The URI (truncated to 200 characters).
        uri: String,
        /// The id parser's report.
        #[source]
        source: ParseIdError,
    },
}

/// Which hub a certificate speaks for, and the venue that hub serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HubIdentity {
    /// The hub.
    pub hub: HubId,
    /// The venue it belongs to; central grants the hub access to this venue only.
    pub venue: VenueId,
}

const SCHEME: &str = "taplink";

impl HubIdentity {
    /// The SAN URI naming this identity: `taplink://venue/<venue id>/hub/<hub id>`.
    pub fn uri(&self) -> String {
        format!("{SCHEME}://venue/{}/hub/{}", self.venue, self.hub)
    }

    /// Read the identity from a certificate (DER). Exactly one `taplink:` SAN URI must be
    /// present; other SAN entries are ignored.
    pub fn from_cert_der(der: &[u8]) -> Result<HubIdentity, IdentityError> {
        let x509 = parse(der)?;
        let san = match x509.subject_alternative_name() {
            Ok(Some(ext)) => ext.value,
            Ok(None) => {
                return Err(IdentityError::NoSubjectAltName {
                    detail: String::new(),
                });
            }
            Err(e) => {
                return Err(IdentityError::NoSubjectAltName {
                    detail: format!(": {e}"),
                });
            }
        };
        let uris: Vec<&str> = san
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::URI(u) => Some(*u),
                _ => None,
            })
            .collect();
        let (taplink, others): (Vec<&str>, Vec<&str>) =
            uris.into_iter().partition(|u| has_taplink_scheme(u));
        match taplink.as_slice() {
            [] => Err(IdentityError::NoTaplinkUri {
                found: others.iter().map(|u| clip(u)).collect(),
            }),
            [one] => one.parse(),
            several => Err(IdentityError::SeveralTaplinkUris {
                uris: several.iter().map(|u| clip(u)).collect(),
            }),
        }
    }

    /// Read the identity from the certificate chain a peer presented (its first element
    /// is the end-entity certificate), e.g. `ServerConnection::peer_certificates()`.
    pub fn from_peer_certificates(
        chain: Option<&[CertificateDer<'_>]>,
    ) -> Result<HubIdentity, IdentityError> {
        match chain.and_then(|c| c.first()) {
            Some(leaf) => Self::from_cert_der(leaf),
            None => Err(IdentityError::NoCertificate),
        }
    }
}

impl fmt::Display for HubIdentity {
    /// The SAN URI form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri())
    }
}

impl FromStr for HubIdentity {
    type Err = IdentityError;

    /// Parse the SAN URI form, `taplink://venue/<venue id>/hub/<hub id>`.
    fn from_str(uri: &str) -> Result<Self, Self::Err> {
        let malformed = || IdentityError::MalformedUri { uri: clip(uri) };
        let rest = uri
            .split_once(':')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case(SCHEME))
            .map(|(_, rest)| rest)
            .ok_or_else(malformed)?;
        let mut parts = rest.strip_prefix("//").ok_or_else(malformed)?.split('/');
        let (Some("venue"), Some(venue), Some("hub"), Some(hub), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(malformed());
        };
        let venue = venue
            .parse::<VenueId>()
            .map_err(|source| IdentityError::BadVenueId {
                uri: clip(uri),
                source,
            })?;
        let hub = hub
            .parse::<HubId>()
            .map_err(|source| IdentityError::BadHubId {
                uri: clip(uri),
                source,
            })?;
        Ok(HubIdentity { hub, venue })
    }
}

impl Serial {
    /// The serial number of a certificate (DER), e.g. to look a presented certificate up
    /// in central's records.
    pub fn from_cert_der(der: &[u8]) -> Result<Serial, IdentityError> {
        Ok(Serial::from_der_integer_bytes(parse(der)?.raw_serial()))
    }
}

fn parse(der: &[u8]) -> Result<X509Certificate<'_>, IdentityError> {
    let (rest, x509) =
        X509Certificate::from_der(der).map_err(|e| IdentityError::BadCertificate {
            reason: e.to_string(),
        })?;
    if !rest.is_empty() {
        return Err(IdentityError::BadCertificate {
            reason: format!(
                "{} bytes of trailing data after the certificate",
                rest.len()
            ),
        });
    }
    Ok(x509)
}

fn has_taplink_scheme(uri: &str) -> bool {
    uri.split_once(':')
        .is_some_and(|(scheme, _)| scheme.eq_ignore_ascii_case(SCHEME))
}

fn clip(s: &str) -> String {
    s.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_round_trips() {
        let id = HubIdentity {
            hub: HubId::random(),
            venue: VenueId::random(),
        };
        let uri = id.uri();
        assert!(uri.starts_with("taplink://venue/"));
        assert_eq!(uri.len(), "taplink://venue//hub/".len() + 52);
        assert_eq!(uri.parse::<HubIdentity>().unwrap(), id);
        assert_eq!(id.to_string(), uri);
    }

    #[test]
    fn malformed_uris_are_refused() {
        let v = VenueId::random();
        let h = HubId::random();
        for bad in [
            format!("taplink:venue/{v}/hub/{h}"),
            format!("taplink://venue/{v}/hub/{h}/"),
            format!("taplink://venue/{v}/kiosk/{h}"),
            format!("taplink://hub/{h}/venue/{v}"),
            format!("https://venue/{v}/hub/{h}"),
            "taplink://".to_owned(),
        ] {
            assert!(
                matches!(
                    bad.parse::<HubIdentity>(),
                    Err(IdentityError::MalformedUri { .. })
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            format!("taplink://venue/nope/hub/{h}").parse::<HubIdentity>(),
            Err(IdentityError::BadVenueId { .. })
        ));
        assert!(matches!(
            format!("taplink://venue/{v}/hub/{}", "w".repeat(26)).parse::<HubIdentity>(),
            Err(IdentityError::BadHubId { .. })
        ));
    }

    #[test]
    fn no_peer_certificate_is_an_error() {
        assert_eq!(
            HubIdentity::from_peer_certificates(None),
            Err(IdentityError::NoCertificate)
        );
        assert_eq!(
            HubIdentity::from_peer_certificates(Some(&[])),
            Err(IdentityError::NoCertificate)
        );
        assert!(matches!(
            HubIdentity::from_cert_der(b"garbage"),
            Err(IdentityError::BadCertificate { .. })
        ));
    }
}
