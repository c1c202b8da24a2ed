//! What central's request handlers and endpoints share: the registry, the metrics, the org
//! PKI, settings and the clock.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use rustls::pki_types::CertificateDer;
use taplink_certs::{Fingerprint, OrgCa, PrivateKey, RosterSigner, StoreError, cert_der_from_pem};
use taplink_sync_proto::clock::{Clock, SystemClock};
use taplink_sync_proto::ids::HubId;
use taplink_sync_proto::wire::TelemetryEvent;
use tokio::sync::broadcast;

use taplink_sync_io::blobs::{BlobError, BlobStore};
use taplink_sync_io::docs::{Documents, DocumentsError};
use taplink_sync_io::docstore::{DocDb, DocDbError};
use taplink_sync_proto::doc::new_org_doc;
use taplink_sync_proto::wire::DocId;

use crate::config::{Config, DataDir};
use crate::metrics::Metrics;
use crate::store::{OpenError, Registry, RegistryError};

/// Revocations are rare; a receiver this far behind rebuilds from the registry.
const REVOCATION_CHANNEL_CAPACITY: usize = 64;

/// Why central's state could not be loaded from its data directory.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The data directory does not exist.
    #[error(
        "data directory {path} does not exist; create it with `taplink-central init --data {path}`"
    )]
    NoDataDir {
        /// The configured directory.
        path: PathBuf,
    },
    /// The data directory's modes could not be made private (0700 directories, 0600
    /// files).
    #[error("cannot make {path} private to this user: {source}")]
    Private {
        /// The data directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The registry database could not be opened.
    #[error(transparent)]
    Registry(#[from] OpenError),
    /// The org CA could not be loaded.
    #[error("could not load the org CA: {source}")]
    Ca {
        /// The certs crate's report (names the file).
        #[source]
        source: StoreError,
    },
    /// Central's server certificate or key could not be loaded.
    #[error("could not load central's server certificate or key: {source}")]
    ServerIdentity {
        /// The certs crate's report (names the file).
        #[source]
        source: StoreError,
    },
    /// The document database could not be opened.
    #[error("could not open the document database: {source}")]
    Docs {
        /// What failed.
        #[source]
        source: DocDbError,
    },
    /// The documents could not be loaded or the org document created.
    #[error("could not load the documents: {source}")]
    Documents {
        /// What failed.
        #[source]
        source: DocumentsError,
    },
    /// The org document could not be made (a bug: its defaults are constants).
    #[error("could not create the org document: {reason}")]
    OrgDoc {
        /// What failed.
        reason: String,
    },
    /// The upload staging directory could not be created.
    #[error("could not create the upload staging directory {path}: {source}")]
    Uploads {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The media store could not be opened.
    #[error("could not open the media store: {source}")]
    Blobs {
        /// What failed.
        #[source]
        source: BlobError,
    },
}

/// The org CA and central's own certificate and key, loaded from the data directory.
pub struct CentralPki {
    /// The org CA: signs hub certificates (enrollment) and CRLs (revocation).
    pub ca: OrgCa,
    /// Central's server certificate (DER), presented on the QUIC endpoint.
    pub server_cert: CertificateDer<'static>,
    /// Central's server private key.
    pub server_key: PrivateKey,
    /// SHA-256 fingerprint of `server_cert`, which enrollment codes pin.
    pub server_fingerprint: Fingerprint,
    /// The roster signer (`roster.pem`, `roster.key`): signs venue rosters, nothing else.
    pub roster: RosterSigner,
}

impl CentralPki {
    /// The automerge actor of central's own document changes: derived from the org CA, so
    /// it is the same across restarts and names central in every change it writes.
    pub fn actor(&self) -> automerge::ActorId {
        let hash = blake3::derive_key("taplink central actor v1", self.ca.cert_der());
        let mut id = [0u8; 16];
        id.copy_from_slice(&hash[..16]);
        taplink_sync_proto::note::node_actor(id)
    }

    /// Load the CA from `ca/` and the server certificate and key from `server.pem` and
    /// `server.key` (which must be 0600).
    pub fn load(data: &DataDir) -> Result<CentralPki, LoadError> {
        let ca = OrgCa::load(&data.ca_dir()).map_err(|source| LoadError::Ca { source })?;
        let server_cert = load_cert(data)?;
        let server_key = PrivateKey::load(&data.server_key())
            .map_err(|source| LoadError::ServerIdentity { source })?;
        let roster = roster_signer(data, &ca)?;
        Ok(CentralPki {
            server_fingerprint: Fingerprint::of(&server_cert),
            ca,
            server_cert,
            server_key,
            roster,
        })
    }
}

/// The roster signer of `data`, issued by `ca` (for as long as the CA is valid) and saved
/// the first time: data directories made before rosters existed get one at their next
/// start.
fn roster_signer(data: &DataDir, ca: &OrgCa) -> Result<RosterSigner, LoadError> {
    let (cert_path, key_path) = (data.roster_cert(), data.roster_key());
    let bad = |source: StoreError| LoadError::ServerIdentity { source };
    if cert_path.exists() && key_path.exists() {
        let bytes = taplink_certs::store::read_public_file(&cert_path).map_err(bad)?;
        let text = String::from_utf8(bytes).map_err(|_| {
            bad(StoreError::BadContents {
                path: cert_path.clone(),
                reason: "not UTF-8 PEM text".to_owned(),
            })
        })?;
        let cert = cert_der_from_pem(&text).map_err(|e| {
            bad(StoreError::BadContents {
                path: cert_path.clone(),
                reason: e.to_string(),
            })
        })?;
        let key = PrivateKey::load(&key_path).map_err(bad)?;
        return Ok(RosterSigner::new(cert, key));
    }
    let issued = ca.issue_roster_signer(ca.validity()).map_err(|e| {
        bad(StoreError::BadContents {
            path: cert_path.clone(),
            reason: format!("issuing the roster signer: {e}"),
        })
    })?;
    issued.key.save(&key_path).map_err(bad)?;
    taplink_certs::store::write_public_file(&cert_path, issued.cert.pem().as_bytes())
        .map_err(bad)?;
    tracing::info!(path = %cert_path.display(), "issued the roster signer");
    Ok(RosterSigner::new(issued.cert.der().clone(), issued.key))
}

/// Read central's server certificate (`server.pem`).
pub fn load_cert(data: &DataDir) -> Result<CertificateDer<'static>, LoadError> {
    let path = data.server_cert();
    let bytes = taplink_certs::store::read_public_file(&path)
        .map_err(|source| LoadError::ServerIdentity { source })?;
    let bad = |reason: String| LoadError::ServerIdentity {
        source: StoreError::BadContents {
            path: path.clone(),
            reason,
        },
    };
    let text = String::from_utf8(bytes).map_err(|_| bad("not UTF-8 PEM text".to_owned()))?;
    cert_der_from_pem(&text).map_err(|e| bad(e.to_string()))
}

impl fmt::Debug for CentralPki {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CentralPki")
            .field("ca", &self.ca)
            .field("server_fingerprint", &self.server_fingerprint)
            .finish_non_exhaustive()
    }
}

/// Central's shared state: cheap to clone (every part is behind an `Arc`).
#[derive(Debug, Clone)]
pub struct AppState {
    /// The registry database.
    pub registry: Arc<Registry>,
    /// The metrics.
    pub metrics: Arc<Metrics>,
    /// The org CA and central's certificate and key.
    pub pki: Arc<CentralPki>,
    /// The configuration central was started with.
    pub config: Arc<Config>,
    /// The wall clock handlers and sessions read (the system's in production, a
    /// `ManualClock` in tests and simulations).
    pub clock: Arc<dyn Clock>,
    /// Every hub revoked through the admin API, as it happens.
    ///
    /// SEAM(quic): the QUIC endpoint subscribes ([`AppState::subscribe_hub_revocations`]),
    /// reissues its CRL and closes the hub's connections. A receiver that lags should
    /// rebuild from `Registry::revoked_serials`.
    pub hub_revocations: broadcast::Sender<HubId>,
    // here once they exist, so the admin API and the QUIC endpoint share them.
    /// The CRDT documents (venue documents and the org document), shared by the admin API
    /// and the sync endpoint.
    pub docs: Arc<Documents>,
    /// Media blobs by content hash.
    pub blobs: Arc<BlobStore>,
    /// The sync endpoint's admission counters.
    pub admission: Arc<crate::sync::Admission>,
    /// Hubs with a sync connection right now.
    pub online: Arc<crate::sync::OnlineHubs>,
    /// Held while changes are recorded in the audit log ([`crate::audit`]), so two
    /// recorders never read the same cursor.
    pub audit_lock: Arc<std::sync::Mutex<()>>,
    /// Told whenever users change through this process: each hub session then checks its
    /// venue's roster (`roster::current`).
    pub rosters_changed: broadcast::Sender<()>,
    /// Since when central has seen each kiosk's content proof say "behind" (the
    /// content-behind alert's clock; `alerts::evaluate` keeps it).
    pub behind_since: Arc<
        std::sync::Mutex<
            std::collections::HashMap<taplink_sync_proto::ids::KioskId, DateTime<Utc>>,
        >,
    >,
}

impl AppState {
    /// Open the registry and load the PKI from `config.data_dir`, with the system clock.
    pub fn load(config: Config) -> Result<AppState, LoadError> {
        Self::load_with_clock(config, SystemClock::shared())
    }

    /// [`load`](Self::load), with everything (handlers, sessions, the document and media
    /// stores) reading the wall clock from `clock`.
    pub fn load_with_clock(config: Config, clock: Arc<dyn Clock>) -> Result<AppState, LoadError> {
        let data = config.data();
        if !data.root().is_dir() {
            return Err(LoadError::NoDataDir {
                path: data.root().to_owned(),
            });
        }
        // Keys, token hashes and every venue's documents: private to central's user.
        taplink_sync_io::private::secure_and_report(data.root()).map_err(|source| {
            LoadError::Private {
                path: data.root().to_owned(),
                source,
            }
        })?;
        let registry = Registry::open(&data.registry_db())?;
        let pki = CentralPki::load(&data)?;
        let db = Arc::new(
            DocDb::open(&data.docs_db())
                .map_err(|source| LoadError::Docs { source })?
                .with_clock(clock.clone()),
        );
        let docs = Arc::new(
            Documents::open(db, pki.actor()).map_err(|source| LoadError::Documents { source })?,
        );
        if !docs.contains(DocId::Org) {
            // The org document is created once, here, on central's first start.
            let org = new_org_doc("UTC", 10_000).map_err(|e| LoadError::OrgDoc {
                reason: e.to_string(),
            })?;
            docs.create(DocId::Org, org)
                .map_err(|source| LoadError::Documents { source })?;
        }
        let blobs = Arc::new(
            BlobStore::open_with_clock(&data.media_dir(), clock.clone())
                .map_err(|source| LoadError::Blobs { source })?,
        );
        let uploads = data.upload_dir();
        taplink_sync_io::private::create_dir(&uploads).map_err(|source| LoadError::Uploads {
            path: uploads.clone(),
            source,
        })?;
        // After the media store's lock: no other central of this data directory is
        // receiving uploads.
        taplink_sync_io::web::media::clear_stale_uploads(&uploads);
        Ok(AppState {
            docs,
            blobs,
            admission: Arc::default(),
            online: Arc::default(),
            audit_lock: Arc::default(),
            behind_since: Arc::default(),
            rosters_changed: broadcast::channel(16).0,
            registry: Arc::new(registry),
            metrics: Arc::new(Metrics::new()),
            pki: Arc::new(pki),
            config: Arc::new(config),
            clock,
            hub_revocations: broadcast::channel(REVOCATION_CHANNEL_CAPACITY).0,
        })
    }

    /// The same state reading time from `clock`.
    pub fn with_clock(self, clock: Arc<dyn Clock>) -> AppState {
        AppState { clock, ..self }
    }

    /// Now, on the state's clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Announce that `hub` was revoked.
    pub fn notify_hub_revoked(&self, hub: HubId) {
        // An error only means nobody listens yet (no QUIC endpoint); the registry is the
        // record, and a later subscriber starts from it.
        let _ = self.hub_revocations.send(hub);
    }

    /// Receive every hub revoked from now on.
    pub fn subscribe_hub_revocations(&self) -> broadcast::Receiver<HubId> {
        self.hub_revocations.subscribe()
    }

    /// Store a hub's telemetry batch and count the new events; blocks on SQLite (call it
    /// from `spawn_blocking`). Once it returns `Ok`, the batch may be acknowledged.
    ///
    /// SEAM(quic): the sync endpoint calls this for `Message::TelemetryBatch` and answers
    /// `TelemetryAck { stored }`.
    pub fn store_telemetry(
        &self,
        hub: HubId,
        events: &[TelemetryEvent],
    ) -> Result<u32, RegistryError> {
        let stored = self.registry.store_telemetry(hub, events, self.now())?;
        self.metrics.telemetry_events.inc_by(u64::from(stored));
        Ok(stored)
    }
}
