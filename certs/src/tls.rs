//! rustls configurations for Taplink: mutual TLS against the org CA, and the pinned
//! client used during enrollment.
//!
//! Every configuration uses the `ring` provider ([`crypto_provider`]), allows TLS 1.3 only
//! (QUIC requires it) and offers exactly the ALPN protocol
//! [`taplink_sync_proto::wire::ALPN`], so a peer speaking another protocol major version
//! fails the handshake instead of misparsing frames.

use std::fmt;
use std::sync::{Arc, OnceLock};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName, UnixTime,
};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, OtherError, RootCertStore, ServerConfig,
    SignatureScheme,
};
use taplink_sync_proto::wire::ALPN;

use crate::Fingerprint;

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsConfigError {
    /// The org CA certificate cannot be used as a trust anchor.
    #[error("the org CA certificate is not a usable trust anchor: {source}")]
    BadCaCert {
        /// rustls's report.
        #[source]
        source: rustls::Error,
    },
    /// The client-certificate verifier could not be built (typically an unparseable CRL).
    #[error("could not build the client-certificate verifier (check the CRLs): {source}")]
    ClientVerifier {
        /// rustls's report.
        #[source]
        source: rustls::server::VerifierBuilderError,
    },
    /// The server-certificate verifier could not be built.
    #[error("could not build the server-certificate verifier: {source}")]
    ServerVerifier {
        /// rustls's report.
        #[source]
        source: rustls::server::VerifierBuilderError,
    },
    /// The certificate chain to present is empty.
    #[error("the certificate chain to present is empty")]
    EmptyChain,
    /// The own certificate or key is unusable, or the key is not the certificate's key.
    #[error("the certificate and key to present are unusable together: {source}")]
    CertificateOrKey {
        /// rustls's report.
        #[source]
        source: rustls::Error,
    },
    /// The provider does not support TLS 1.3 (never the case with `ring`).
    #[error("the crypto provider cannot do TLS 1.3: {source}")]
    Protocol {
        /// rustls's report.
        #[source]
        source: rustls::Error,
    },
}

/// Whether a server configuration demands a client certificate.
///
/// A certificate that is presented is always verified against the org CA and the CRLs;
/// this only decides whether presenting none is allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// Every client must present a valid certificate from the org CA: the sync endpoint.
    Required,
    /// Clients may connect without a certificate: central's enrollment endpoint, where a
    /// new hub has no certificate yet (and a hub renewing may present its current one).
    /// The application must then check `peer_certificates()` itself before trusting the
    /// peer as a hub.
    Optional,
}

/// The process-wide `ring` crypto provider every Taplink TLS configuration uses.
///
/// Shared so that quinn and rustls configurations built elsewhere use the same one;
/// never install or rely on a process-default provider.
///
/// It prefers AES-128-GCM to *ring*'s default AES-256-GCM: TLS 1.3's mandatory suite, the
/// one QUIC's Initial packets use anyway, and 10 AES rounds per block instead of 14, which
/// counts when every byte of a media transfer is sealed and opened (docs/performance.md,
/// `bench blob`). AES-256-GCM and ChaCha20-Poly1305 stay acceptable to a peer preferring them.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| {
            let mut provider = rustls::crypto::ring::default_provider();
            provider.cipher_suites = vec![
                rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256,
                rustls::crypto::ring::cipher_suite::TLS13_AES_256_GCM_SHA384,
                rustls::crypto::ring::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
            ];
            Arc::new(provider)
        })
        .clone()
}

/// The server side of mutual TLS (central): presents `chain`/`key`, verifies client
/// certificates against `ca_cert`, and refuses any certificate whose serial is in `crls`.
///
/// With CRLs given, the status of a certificate no CRL covers counts as an error (rustls's
/// default); since the org CA issues both, every hub certificate is covered. A CRL past its
/// `next_update` is still applied (rustls's default): an old list of revocations is better
/// than none, and dropping it would re-admit revoked hubs.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    ca_cert: &CertificateDer<'_>,
    crls: Vec<CertificateRevocationListDer<'static>>,
    client_auth: ClientAuth,
) -> Result<ServerConfig, TlsConfigError> {
    if chain.is_empty() {
        return Err(TlsConfigError::EmptyChain);
    }
    let provider = crypto_provider();
    let mut verifier =
        WebPkiClientVerifier::builder_with_provider(roots(ca_cert)?, provider.clone())
            .with_crls(crls);
    if client_auth == ClientAuth::Optional {
        verifier = verifier.allow_unauthenticated();
    }
    let verifier = verifier
        .build()
        .map_err(|source| TlsConfigError::ClientVerifier { source })?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|source| TlsConfigError::Protocol { source })?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|source| TlsConfigError::CertificateOrKey { source })?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(config)
}

/// The client side of mutual TLS (a hub): presents `chain`/`key` and verifies the
/// server's certificate against `ca_cert` and the server name given when connecting.
pub fn client_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    ca_cert: &CertificateDer<'_>,
) -> Result<ClientConfig, TlsConfigError> {
    if chain.is_empty() {
        return Err(TlsConfigError::EmptyChain);
    }
    let provider = crypto_provider();
    let verifier = WebPkiServerVerifier::builder_with_provider(roots(ca_cert)?, provider.clone())
        .build()
        .map_err(|source| TlsConfigError::ServerVerifier { source })?;
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|source| TlsConfigError::Protocol { source })?
        .with_webpki_verifier(verifier)
        .with_client_auth_cert(chain, key)
        .map_err(|source| TlsConfigError::CertificateOrKey { source })?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(config)
}

/// A client for enrollment: trusts exactly the server certificate whose SHA-256
/// fingerprint is `pin` (given to the hub out of band, e.g. in its provisioning token).
///
/// Nothing but the fingerprint is checked about that certificate: not its issuer, not the
/// server name, not its validity dates, since a hub with no real-time clock may not know
/// the date yet. The handshake signature is still verified, so the server must hold the
/// pinned certificate's key. `client_identity` optionally presents a certificate (a hub
/// renewing its current one); `None` presents none.
pub fn pinned_client_config(
    pin: Fingerprint,
    client_identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<ClientConfig, TlsConfigError> {
    let provider = crypto_provider();
    let verifier = Arc::new(PinnedServerVerifier {
        pin: HubPin::Exact(pin),
        algorithms: provider.signature_verification_algorithms,
    });
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|source| TlsConfigError::Protocol { source })?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match client_identity {
        None => builder.with_no_client_auth(),
        Some((chain, _)) if chain.is_empty() => return Err(TlsConfigError::EmptyChain),
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .map_err(|source| TlsConfigError::CertificateOrKey { source })?,
    };
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(config)
}

/// ALPN of the hub's LAN API: plain HTTP/1.1 inside TLS.
pub const LAN_ALPN: &[u8] = b"http/1.1";

/// The hub's LAN API server (HTTPS for kiosks and staff): presents the hub's own
/// certificate, the one the org CA issued at enrollment and whose fingerprint the hub
/// advertises by mDNS (TXT `fp`). No client certificate is asked for: kiosks and staff
/// authenticate with bearer tokens inside the encrypted connection.
pub fn lan_server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<ServerConfig, TlsConfigError> {
    if chain.is_empty() {
        return Err(TlsConfigError::EmptyChain);
    }
    let mut config = ServerConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|source| TlsConfigError::Protocol { source })?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|source| TlsConfigError::CertificateOrKey { source })?;
    config.alpn_protocols = vec![LAN_ALPN.to_vec()];
    Ok(config)
}

/// Which hub certificate a LAN client (a kiosk) accepts.
#[derive(Debug, Clone)]
pub enum HubPin {
    /// Exactly the certificate with this fingerprint: from the hub's mDNS record, from the
    /// kiosk's configuration, or the one it paired with.
    Exact(Fingerprint),
    /// The first certificate seen, recorded in the cell, and from then on only that one:
    /// for a kiosk given a bare `--hub HOST:PORT` before it has paired. Whoever pairs
    /// stores what the cell holds and pins it ever after.
    FirstUse(Arc<OnceLock<Fingerprint>>),
}

impl HubPin {
    /// The pinned fingerprint, if known yet.
    pub fn fingerprint(&self) -> Option<Fingerprint> {
        match self {
            HubPin::Exact(fp) => Some(*fp),
            HubPin::FirstUse(cell) => cell.get().copied(),
        }
    }
}

/// A client of the hub's LAN API that accepts only the hub certificate `pin` names
/// (checked by fingerprint, the handshake signature verified as usual); TLS 1.3,
/// HTTP/1.1.
pub fn lan_client_config(pin: HubPin) -> Result<ClientConfig, TlsConfigError> {
    let provider = crypto_provider();
    let verifier = Arc::new(PinnedServerVerifier {
        pin,
        algorithms: provider.signature_verification_algorithms,
    });
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|source| TlsConfigError::Protocol { source })?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![LAN_ALPN.to_vec()];
    Ok(config)
}

/// The TLS configuration of an HTTP client that must never speak TLS: one talking plain
/// HTTP to a loopback API or a lab hub. It trusts no certificate at all, so an `https://`
/// URL given to it by mistake fails instead of trusting anything. (HTTP clients need some
/// configuration: Taplink never installs a process-wide crypto provider.)
pub fn plain_http_client_config() -> ClientConfig {
    ClientConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map(|b| {
            b.with_root_certificates(RootCertStore::empty())
                .with_no_client_auth()
        })
        // TLS 1.3 is in every provider this crate builds; still, no panic: an empty
        // default-version config is as good for a client that never uses it.
        .unwrap_or_else(|_| {
            ClientConfig::builder_with_provider(crypto_provider())
                .with_safe_default_protocol_versions()
                .map(|b| {
                    b.with_root_certificates(RootCertStore::empty())
                        .with_no_client_auth()
                })
                .expect("the ring provider supports the default protocol versions")
        })
}

fn roots(ca_cert: &CertificateDer<'_>) -> Result<Arc<RootCertStore>, TlsConfigError> {
    let mut roots = RootCertStore::empty();
    roots
        .add(ca_cert.clone().into_owned())
        .map_err(|source| TlsConfigError::BadCaCert { source })?;
    Ok(Arc::new(roots))
}

/// The server's end-entity certificate did not have the pinned fingerprint.
#[derive(Debug, thiserror::Error)]
#[error("the server's certificate has fingerprint {found}, not the pinned {expected}")]
struct PinMismatch {
    expected: Fingerprint,
    found: Fingerprint,
}

/// Accepts exactly one server certificate, by fingerprint; checks handshake signatures
/// with the provider's algorithms as a normal verifier would.
struct PinnedServerVerifier {
    pin: HubPin,
    algorithms: WebPkiSupportedAlgorithms,
}

impl fmt::Debug for PinnedServerVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PinnedServerVerifier")
            .field("pin", &self.pin)
            .finish_non_exhaustive()
    }
}

impl ServerCertVerifier for PinnedServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let found = Fingerprint::of(end_entity);
        let expected = match &self.pin {
            HubPin::Exact(fp) => *fp,
            HubPin::FirstUse(cell) => *cell.get_or_init(|| found),
        };
        if found == expected {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                OtherError(Arc::new(PinMismatch { expected, found })),
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // Unreachable with TLS 1.3 only, but correct should the versions ever widen.
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
