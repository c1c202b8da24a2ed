//! The hub's identity on disk: key, certificate, CA, and the ids central assigned.
//!
//! Written once by `enroll` (the key with 0600 permissions), read by every `run`.

use std::path::{Path, PathBuf};

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use taplink_certs::{HubIdentity, PrivateKey, cert_der_from_pem};
use taplink_sync_io::enroll::{EnrollmentToken, request_enrollment};
use taplink_sync_io::net::{PeerAddr, client_endpoint};
use taplink_sync_proto::ids::{HubId, VenueId};

use crate::config::Config;

const KEY_FILE: &str = "hub.key";
const CERT_FILE: &str = "hub.pem";
const CA_FILE: &str = "ca.pem";
const IDS_FILE: &str = "identity.json";

/// Why the identity could not be created or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// This data directory already holds an enrolled hub.
    #[error("{0} already holds an enrolled hub; use another --data directory")]
    AlreadyEnrolled(PathBuf),
    /// This data directory holds no enrolled hub.
    #[error("{0} holds no enrolled hub: run `taplink-hub enroll` first")]
    NotEnrolled(PathBuf),
    /// Enrollment failed.
    #[error(transparent)]
    Enroll(#[from] taplink_sync_io::enroll::EnrollError),
    /// Central answered with a certificate that does not name the ids it sent.
    #[error("central's certificate names {cert} but its answer says hub {hub} of venue {venue}")]
    Mismatch {
        /// The identity in the certificate.
        cert: HubIdentity,
        /// The hub id in the answer.
        hub: HubId,
        /// The venue id in the answer.
        venue: VenueId,
    },
    /// A key or certificate problem.
    #[error("{0}")]
    Pki(String),
    /// File trouble.
    #[error("{action} {path}: {source}")]
    Io {
        /// What we tried.
        action: &'static str,
        /// Which file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The config could not be written.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// Central's name did not resolve.
    #[error("cannot find central at {central}: {source}")]
    Resolve {
        /// The address as given.
        central: PeerAddr,
        /// What the resolver said.
        source: std::io::Error,
    },
}

#[derive(Debug, Serialize, Deserialize)]
struct Ids {
    hub: HubId,
    venue: VenueId,
}

/// A loaded hub identity.
#[derive(Debug)]
pub struct Identity {
    /// Hub and venue.
    pub ids: HubIdentity,
    /// The hub's certificate chain.
    pub chain: Vec<CertificateDer<'static>>,
    /// The hub's key.
    pub key: PrivateKeyDer<'static>,
    /// The org CA.
    pub ca: CertificateDer<'static>,
}

impl Identity {
    /// The fingerprint of the hub's certificate: what it advertises by mDNS (TXT `fp`) and
    /// what kiosks pin for its HTTPS API.
    pub fn fingerprint(&self) -> Option<taplink_certs::Fingerprint> {
        self.chain
            .first()
            .map(|c| taplink_certs::Fingerprint::of(c))
    }
}

fn pki<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> IdentityError + '_ {
    move |e| IdentityError::Pki(format!("{what}: {e}"))
}

fn read(path: PathBuf) -> Result<String, IdentityError> {
    std::fs::read_to_string(&path).map_err(|source| IdentityError::Io {
        action: "cannot read",
        path,
        source,
    })
}

/// Enroll a new hub with central: generate a key and CSR, redeem `token`, store the result
/// and a default config in `data_dir`.
pub async fn enroll(
    data_dir: &Path,
    central: &PeerAddr,
    token: &EnrollmentToken,
) -> Result<Identity, IdentityError> {
    if data_dir.join(IDS_FILE).exists() {
        return Err(IdentityError::AlreadyEnrolled(data_dir.to_owned()));
    }
    taplink_sync_io::private::create_dir(data_dir).map_err(|source| IdentityError::Io {
        action: "cannot create",
        path: data_dir.to_owned(),
        source,
    })?;
    let key = PrivateKey::generate().map_err(pki("generating the hub key"))?;
    let csr = key
        .certificate_request_pem()
        .map_err(pki("making the CSR"))?;
    let resolved = central
        .resolve()
        .await
        .map_err(|source| IdentityError::Resolve {
            central: central.clone(),
            source,
        })?;
    // The token pins central's certificate, so any address the name resolves to is safe
    // to try; the first is the resolver's preference.
    let addr = resolved[0];
    let endpoint = client_endpoint(taplink_sync_io::net::unspecified_like(addr))
        .map_err(taplink_sync_io::enroll::EnrollError::from)?;
    let software = format!("taplink-hub {}", env!("CARGO_PKG_VERSION"));
    let enrolled = request_enrollment(&endpoint, addr, token, csr, software).await;
    endpoint.close(0u32.into(), b"done");
    let enrolled = enrolled?;
    let cert = cert_der_from_pem(&enrolled.cert_pem).map_err(pki("central's certificate"))?;
    let ids = HubIdentity::from_cert_der(&cert).map_err(pki("central's certificate"))?;
    if ids.hub != enrolled.hub || ids.venue != enrolled.venue {
        return Err(IdentityError::Mismatch {
            cert: ids,
            hub: enrolled.hub,
            venue: enrolled.venue,
        });
    }
    key.save(&data_dir.join(KEY_FILE))
        .map_err(pki("saving the key"))?;
    write(data_dir.join(CERT_FILE), enrolled.cert_pem.as_bytes())?;
    write(data_dir.join(CA_FILE), enrolled.ca_pem.as_bytes())?;
    let ids_json = serde_json::to_vec_pretty(&Ids {
        hub: ids.hub,
        venue: ids.venue,
    })
    .map_err(pki("encoding identity.json"))?;
    Config::new(data_dir.to_owned(), central.clone()).save()?;
    // Written last: its presence means "enrolled".
    write(data_dir.join(IDS_FILE), &ids_json)?;
    taplink_sync_io::private::secure_and_report(data_dir).map_err(|source| IdentityError::Io {
        action: "cannot make private",
        path: data_dir.to_owned(),
        source,
    })?;
    load(data_dir)
}

/// Certificates are public, but the data directory is private: every file in it is 0600.
fn write(path: PathBuf, bytes: &[u8]) -> Result<(), IdentityError> {
    taplink_sync_io::private::write_file(&path, bytes).map_err(|source| IdentityError::Io {
        action: "cannot write",
        path,
        source,
    })
}

/// Read the identity `enroll` stored.
pub fn load(data_dir: &Path) -> Result<Identity, IdentityError> {
    if !data_dir.join(IDS_FILE).exists() {
        return Err(IdentityError::NotEnrolled(data_dir.to_owned()));
    }
    let ids: Ids =
        serde_json::from_str(&read(data_dir.join(IDS_FILE))?).map_err(pki("identity.json"))?;
    let key = PrivateKey::load(&data_dir.join(KEY_FILE)).map_err(pki("the hub key"))?;
    let cert = cert_der_from_pem(&read(data_dir.join(CERT_FILE))?).map_err(pki("hub.pem"))?;
    let ca = cert_der_from_pem(&read(data_dir.join(CA_FILE))?).map_err(pki("ca.pem"))?;
    Ok(Identity {
        ids: HubIdentity {
            hub: ids.hub,
            venue: ids.venue,
        },
        chain: vec![cert],
        key: key.to_der(),
        ca,
    })
}
