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

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use taplink_sync_proto::ids::{HubId, VenueId};

pub use taplink_sync_proto::enroll_token::{EnrollmentSecret, EnrollmentToken, ParseTokenError};

use crate::net::{ENROLL_ALPN, NetError, client_config};

/// Largest enrollment message either way.
pub const MAX_ENROLL_MESSAGE: usize = 64 * 1024;

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
    let mut tls = taplink_certs::tls::pinned_client_config(token.central, None)?;
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
        secret: token.secret.to_base32(),
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
