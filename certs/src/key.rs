//! Private keys (ECDSA P-256) and the hub's certificate signing request.

use std::fmt;
use std::path::Path;

use rcgen::{CertificateParams, DnType, KeyPair, PKCS_ECDSA_P256_SHA256};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::store::{self, StoreError};

/// Why a key could not be generated, parsed or used for a CSR.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The operating system's random source or the key generator failed.
    #[error("could not generate an ECDSA P-256 key: {source}")]
    Generate {
        /// rcgen's report.
        #[source]
        source: rcgen::Error,
    },
    /// The text is not a PEM PKCS#8 private key of a supported algorithm.
    #[error("not a usable PEM private key (expected \"-----BEGIN PRIVATE KEY-----\"): {source}")]
    Parse {
        /// rcgen's report.
        #[source]
        source: rcgen::Error,
    },
    /// Serialising the certificate signing request failed.
    #[error("could not build the certificate signing request: {source}")]
    Csr {
        /// rcgen's report.
        #[source]
        source: rcgen::Error,
    },
}

/// A private key with its public half. ECDSA P-256 when generated here.
///
/// `Debug` never prints the secret.
pub struct PrivateKey(KeyPair);

impl PrivateKey {
    /// A fresh ECDSA P-256 key.
    pub fn generate() -> Result<Self, KeyError> {
        KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
            .map(Self)
            .map_err(|source| KeyError::Generate { source })
    }

    /// Parse a PEM private key (PKCS#8, as written by [`PrivateKey::pem`]).
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        KeyPair::from_pem(pem)
            .map(Self)
            .map_err(|source| KeyError::Parse { source })
    }

    /// The key as PEM PKCS#8. This is the secret: store it with
    /// [`store::write_private_file`] (or [`PrivateKey::save`]), never log it.
    pub fn pem(&self) -> String {
        self.0.serialize_pem()
    }

    /// The key in the form rustls takes.
    pub fn to_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.0.serialize_der()))
    }

    /// The DER SubjectPublicKeyInfo of the public half.
    pub fn public_key_der(&self) -> Vec<u8> {
        use rcgen::PublicKeyData;
        self.0.subject_public_key_info()
    }

    /// A PEM certificate signing request for this key, as a hub sends it to central.
    ///
    /// It names nobody: central ignores any names in a CSR and decides the hub and venue
    /// ids itself; the CSR only proves possession of the key.
    pub fn certificate_request_pem(&self) -> Result<String, KeyError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "Taplink hub (unassigned)");
        params
            .serialize_request(&self.0)
            .and_then(|csr| csr.pem())
            .map_err(|source| KeyError::Csr { source })
    }

    /// Write the key to `path` with mode 0600 (atomically; replaces an existing file).
    pub fn save(&self, path: &Path) -> Result<(), StoreError> {
        store::write_private_file(path, self.pem().as_bytes())
    }

    /// Read a key written by [`PrivateKey::save`], refusing a group- or world-readable file.
    pub fn load(path: &Path) -> Result<Self, StoreError> {
        let bytes = store::read_private_file(path)?;
        let text = String::from_utf8(bytes).map_err(|_| StoreError::BadContents {
            path: path.to_owned(),
            reason: "not UTF-8 text; expected a PEM private key".to_owned(),
        })?;
        Self::from_pem(&text).map_err(|e| StoreError::BadContents {
            path: path.to_owned(),
            reason: e.to_string(),
        })
    }

    pub(crate) fn key_pair(&self) -> &KeyPair {
        &self.0
    }

    pub(crate) fn into_key_pair(self) -> KeyPair {
        self.0
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKey")
            .field("algorithm", &self.0.algorithm())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trips_and_debug_hides_the_secret() {
        let key = PrivateKey::generate().unwrap();
        let again = PrivateKey::from_pem(&key.pem()).unwrap();
        assert_eq!(again.public_key_der(), key.public_key_der());
        let debug = format!("{key:?}");
        assert!(!debug.contains(&key.pem()[30..60]), "{debug}");
        assert!(matches!(
            PrivateKey::from_pem("not a key"),
            Err(KeyError::Parse { .. })
        ));
    }

    #[test]
    fn csr_is_valid_and_carries_the_public_key() {
        let key = PrivateKey::generate().unwrap();
        let pem = key.certificate_request_pem().unwrap();
        let csr = rcgen::CertificateSigningRequestParams::from_pem(&pem).unwrap();
        use rcgen::PublicKeyData;
        assert_eq!(csr.public_key.der_bytes(), key.key_pair().der_bytes());
    }
}
