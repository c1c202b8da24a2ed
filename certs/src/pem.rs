//! PEM encoding of certificates and CRLs, and decoding of certificates received as PEM.

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// Why a PEM text did not yield a certificate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PemError {
    /// The text has no `-----BEGIN CERTIFICATE-----` block, or the block is malformed.
    #[error("expected a PEM block \"-----BEGIN CERTIFICATE-----\": {reason}")]
    NotACertificate {
        /// What the PEM decoder reported.
        reason: String,
    },
}

/// The DER of the first `CERTIFICATE` block in `pem` (e.g. the org CA certificate a hub
/// received at enrollment). The certificate itself is not parsed or checked here.
pub fn cert_der_from_pem(pem: &str) -> Result<CertificateDer<'static>, PemError> {
    CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|e| PemError::NotACertificate {
        reason: e.to_string(),
    })
}

/// `der` as a PEM block with the given label, 64 base64 characters a line, LF endings.
pub(crate) fn encode(label: &str, der: &[u8]) -> String {
    let b64 = data_encoding::BASE64.encode(der);
    let mut out = String::with_capacity(b64.len() + b64.len() / 64 + 2 * label.len() + 40);
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    // base64 output is ASCII, so slicing it at any byte index is on a char boundary.
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_then_decode_round_trips() {
        let der: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let pem = encode("CERTIFICATE", &der);
        assert!(pem.lines().all(|l| l.len() <= 64));
        assert_eq!(cert_der_from_pem(&pem).unwrap().as_ref(), &der[..]);
    }

    #[test]
    fn wrong_label_is_not_a_certificate() {
        let pem = encode("X509 CRL", b"abc");
        assert!(matches!(
            cert_der_from_pem(&pem),
            Err(PemError::NotACertificate { .. })
        ));
    }
}
