//! Taplink's PKI: the org CA, hub CSRs and certificates, hub identities, fingerprints,
//! revocation lists, key storage and the rustls configurations built on them.
//!
//! The org CA signs three kinds of leaf certificates: central's server certificate
//! (serverAuth, DNS/IP names), one client certificate per hub (clientAuth, whose only
//! identity is the SAN URI `taplink://venue/<venue id>/hub/<hub id>`), and the roster
//! signer (roster signing only, [`roster`]). Central decides the ids; a hub only
//! contributes its public key, through a CSR.
//!
//! Nothing here reads a clock: every validity period and CRL date is passed in by the
//! caller, so tests and simulations control time. All cryptography uses the `ring`
//! provider ([`tls::crypto_provider`]); aws-lc-rs is never linked.

mod ca;
mod crl;
mod identity;
mod issue;
mod key;
mod pem;
pub mod roster;
mod serial;
pub mod store;
pub mod tls;
mod validity;

pub use ca::{CaError, OrgCa};
pub use crl::{Crl, CrlError, Revocation};
pub use identity::{HubIdentity, IdentityError};
pub use issue::{CertAndKey, IssueCertError, IssuedCert, ServerSan};
pub use key::{KeyError, PrivateKey};
pub use pem::{PemError, cert_der_from_pem};
pub use roster::{RosterSignatureError, RosterSigner, verify_roster_signature};
pub use serial::{ParseSerialError, Serial};
pub use store::StoreError;
pub use taplink_sync_proto::fingerprint::{Fingerprint, ParseFingerprintError};
pub use validity::{Validity, ValidityError, offset_date_time};
