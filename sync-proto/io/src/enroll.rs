//! Enrollment: how a new hub proves a one-time code to central and receives its identity.
//!
//! An admin creates an [`EnrollmentToken`] for a venue on central. It carries the code's
//! secret and the SHA-256 fingerprint of central's certificate, so the hub pins central
//! and the exchange cannot be intercepted. The hub connects with ALPN [`ENROLL_ALPN`]
//! (no client certificate yet), opens one bidirectional stream, and sends an
//! [`EnrollRequest`] with the secret and a CSR for a key it generated; central redeems the
//! code (single use, short-lived) and answers with an [`EnrollResponse`]: the hub's
//! certificate (whose SAN names the venue and hub ids central chose), the CA certificate,
//! and the ids. Messages are JSON behind a `u32` big-endian length, at most
//! [`MAX_ENROLL_MESSAGE`] bytes.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use data_encoding::BASE32_DNSSEC;
use serde::{Deserialize, Serialize};
use taplink_certs::Fingerprint;
use taplink_sync_proto::ids::{HubId, VenueId};

use crate::net::{ENROLL_ALPN, NetError, client_config};

/// Largest enrollment message either way.
pub const MAX_ENROLL_MESSAGE: usize = 64 * 1024;

/// Bytes of randomness in an enrollment secret.
pub const SECRET_LEN: usize = 20;

/// What an admin hands to a new hub: the one-time secret and central's fingerprint.
///
/// Printed as `tl1-<secret>-<fingerprint>`, both in lowercase base32 (`0-9a-v`): 32 and
/// 52 characters, safe to paste and to put on a command line.
#[derive(Clone, PartialEq, Eq)]
pub struct EnrollmentToken {
    /// The one-time secret (central stores only its hash).
    pub secret: [u8; SECRET_LEN],
    /// The fingerprint of central's certificate.
    pub fingerprint: Fingerprint,
}

impl EnrollmentToken {
    /// A fresh token for a central whose certificate has this fingerprint.
    pub fn generate(fingerprint: Fingerprint) -> Self {
        let mut secret = [0u8; SECRET_LEN];
        rand::fill(&mut secret);
        Self {
            secret,
            fingerprint,
        }
    }

    /// The secret as printed (what the hub sends; central hashes it).
    pub fn secret_text(&self) -> String {
        BASE32_DNSSEC.encode(&self.secret)
    }
}

impl fmt::Display for EnrollmentToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "tl1-{}-{}",
            self.secret_text(),
            BASE32_DNSSEC.encode(self.fingerprint.as_bytes())
        )
    }
}

impl fmt::Debug for EnrollmentToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The secret is a credential: never in logs.
        write!(
            f,
            "EnrollmentToken(secret: <hidden>, central: {})",
            self.fingerprint
        )
    }
}

/// Why a text is not an enrollment token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an enrollment token (expected tl1-<32 characters>-<52 characters> of 0-9a-v)")]
pub struct ParseTokenError;

impl FromStr for EnrollmentToken {
    type Err = ParseTokenError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        let rest = lower.strip_prefix("tl1-").ok_or(ParseTokenError)?;
        let (secret, fp) = rest.split_once('-').ok_or(ParseTokenError)?;
        let secret = BASE32_DNSSEC
            .decode(secret.as_bytes())
            .map_err(|_| ParseTokenError)?;
        let fp = BASE32_DNSSEC
            .decode(fp.as_bytes())
            .map_err(|_| ParseTokenError)?;
        Ok(Self {
            secret: secret.try_into().map_err(|_| ParseTokenError)?,
            fingerprint: Fingerprint::from_bytes(fp.try_into().map_err(|_| ParseTokenError)?),
        })
    }
}

/// Hub → central.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollRequest {
    /// The token's secret, as printed.
    pub secret: String,
    /// A PEM CSR for the hub's freshly generated key.
    pub csr_pem: String,
    /// The hub's software version.
    pub software: String,
}

/// Central → hub.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum EnrollResponse {
    /// Welcome.
    Enrolled(Enrolled),
    /// No: a sentence saying why (unknown, used or expired code, bad CSR).
    Refused {
        /// Why.
        reason: String,
    },
}

/// A hub's new identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enrolled {
    /// The hub's id.
    pub hub: HubId,
    /// Its venue.
    pub venue: VenueId,
    /// Its certificate (PEM).
    pub cert_pem: String,
    /// The org CA certificate (PEM).
    pub ca_pem: String,
}

/// Why enrollment failed, from the hub's side.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnrollError {
    /// Central refused: the sentence says why.
    #[error("central refused enrollment: {0}")]
    Refused(String),
    /// The endpoint or TLS configuration could not be built.
    #[error(transparent)]
    Net(#[from] NetError),
    /// The TLS configuration could not be built.
    #[error("TLS configuration: {0}")]
    Tls(#[from] taplink_certs::tls::TlsConfigError),
    /// The connection failed; with a fingerprint mismatch the reason names both.
    #[error("cannot reach central at {addr}: {reason}")]
    Connect {
        /// Where.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
    /// A message was malformed or too large.
    #[error("enrollment protocol error: {0}")]
    Protocol(String),
}

/// Read one length-prefixed JSON message of at most [`MAX_ENROLL_MESSAGE`] bytes.
pub async fn read_message<T: for<'de> Deserialize<'de>>(
    recv: &mut quinn::RecvStream,
) -> Result<T, String> {
    let mut len = [0u8; 4];
    recv.read_exact(&mut len)
        .await
        .map_err(|e| format!("reading length: {e}"))?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_ENROLL_MESSAGE {
        return Err(format!(
            "message of {len} bytes exceeds the {MAX_ENROLL_MESSAGE}-byte limit"
        ));
    }
    let mut body = vec![0u8; len];
    recv.read_exact(&mut body)
        .await
        .map_err(|e| format!("reading body: {e}"))?;
    serde_json::from_slice(&body).map_err(|e| format!("malformed message: {e}"))
}

/// Write one length-prefixed JSON message.
pub async fn write_message<T: Serialize>(
    send: &mut quinn::SendStream,
    msg: &T,
) -> Result<(), String> {
    let body = serde_json::to_vec(msg).map_err(|e| format!("encoding: {e}"))?;
    if body.len() > MAX_ENROLL_MESSAGE {
        return Err(format!(
            "message of {} bytes exceeds the {MAX_ENROLL_MESSAGE}-byte limit",
            body.len()
        ));
    }
    let len = u32::try_from(body.len()).map_err(|_| "message too large".to_owned())?;
    send.write_all(&len.to_be_bytes())
        .await
        .map_err(|e| e.to_string())?;
    send.write_all(&body).await.map_err(|e| e.to_string())?;
    Ok(())
}

/// Enroll with central at `addr`, pinning the certificate fingerprint in `token`.
pub async fn request_enrollment(
    endpoint: &quinn::Endpoint,
    addr: SocketAddr,
    token: &EnrollmentToken,
    csr_pem: String,
    software: String,
) -> Result<Enrolled, EnrollError> {
    let mut tls = taplink_certs::tls::pinned_client_config(token.fingerprint, None)?;
    tls.alpn_protocols = vec![ENROLL_ALPN.to_vec()];
    let config = client_config(tls)?;
    let connect_err = |reason: String| EnrollError::Connect { addr, reason };
    // The pinned verifier ignores the name; any valid DNS name will do.
    let conn = endpoint
        .connect_with(config, addr, "central")
        .map_err(|e| connect_err(e.to_string()))?
        .await
        .map_err(|e| connect_err(e.to_string()))?;
    let (mut send, mut recv) = conn
        .open_bi()
        .await
        .map_err(|e| connect_err(e.to_string()))?;
    let request = EnrollRequest {
        secret: token.secret_text(),
        csr_pem,
        software,
    };
    write_message(&mut send, &request)
        .await
        .map_err(EnrollError::Protocol)?;
    let _ = send.finish();
    let response: EnrollResponse = read_message(&mut recv)
        .await
        .map_err(EnrollError::Protocol)?;
    conn.close(0u32.into(), b"enrolled");
    match response {
        EnrollResponse::Enrolled(enrolled) => Ok(enrolled),
        EnrollResponse::Refused { reason } => Err(EnrollError::Refused(reason)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_hide_their_secret() {
        let token = EnrollmentToken::generate(Fingerprint::of(b"central cert"));
        let text = token.to_string();
        assert!(text.starts_with("tl1-"));
        assert_eq!(text.len(), 4 + 32 + 1 + 52);
        assert_eq!(text.parse::<EnrollmentToken>().unwrap(), token);
        assert_eq!(
            text.to_uppercase().parse::<EnrollmentToken>().unwrap(),
            token
        );
        assert!(!format!("{token:?}").contains(&token.secret_text()));
    }

    #[test]
    fn malformed_tokens_are_refused() {
        for bad in [
            "",
            "tl1-",
            "tl2-aaaa-bbbb",
            "tl1-zz-zz",
            "tl1-00000000000000000000000000000000",
        ] {
            assert_eq!(
                bad.parse::<EnrollmentToken>(),
                Err(ParseTokenError),
                "{bad}"
            );
        }
    }
}
