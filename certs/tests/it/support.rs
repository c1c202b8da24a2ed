//! Shared fixtures: an org PKI and an in-memory TLS handshake between rustls endpoints.

use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, ServerConfig, ServerConnection};
use taplink_certs::{CertAndKey, HubIdentity, OrgCa, ServerSan, Validity};
use taplink_sync_proto::ids::{HubId, VenueId};
use time::{Duration, OffsetDateTime};

/// The name central's test certificate is issued for.
pub(crate) const CENTRAL_NAME: &str = "central.taplink.test";

/// An org CA with central's server certificate.
pub(crate) struct Org {
    pub ca: OrgCa,
    pub central: CertAndKey,
}

impl Org {
    pub(crate) fn new(name: &str) -> Org {
        let ca = OrgCa::create(name, validity_days(3650)).unwrap();
        let central = ca
            .issue_server_cert(&[ServerSan::Dns(CENTRAL_NAME.into())], validity_days(365))
            .unwrap();
        Org { ca, central }
    }

    /// A hub certificate with a fresh key for a random hub in a random venue.
    pub(crate) fn hub(&self) -> (HubIdentity, CertAndKey) {
        let id = random_hub();
        (id, self.ca.issue_hub_cert(id, validity_days(90)).unwrap())
    }
}

pub(crate) fn now() -> OffsetDateTime {
    // Real time: rustls checks the certificates against the system clock.
    taplink_certs::offset_date_time(taplink_sync_proto::clock::Clock::now(
        &taplink_sync_proto::clock::SystemClock,
    ))
}

pub(crate) fn validity_days(days: i64) -> Validity {
    Validity::new(now(), Duration::days(days)).unwrap()
}

pub(crate) fn random_hub() -> HubIdentity {
    HubIdentity {
        hub: HubId::random(),
        venue: VenueId::random(),
    }
}

/// Which side of the handshake failed, and with what.
#[derive(Debug)]
pub(crate) enum Failure {
    Client(rustls::Error),
    Server(rustls::Error),
}

/// A connected pair that has exchanged a first application message.
pub(crate) struct Connected {
    pub client: ClientConnection,
    pub server: ServerConnection,
}

/// Run a TLS handshake in memory, then have the server send "hello" and the client read
/// it: a client refused by the server only learns so after its own handshake finished,
/// so a finished client handshake alone proves nothing.
pub(crate) fn connect(
    client: Arc<ClientConfig>,
    server: Arc<ServerConfig>,
    server_name: &str,
) -> Result<Connected, Failure> {
    let name = ServerName::try_from(server_name.to_owned()).unwrap();
    let mut c = ClientConnection::new(client, name).unwrap();
    let mut s = ServerConnection::new(server).unwrap();
    pump(&mut c, &mut s)?;
    assert!(
        !c.is_handshaking() && !s.is_handshaking(),
        "handshake stalled"
    );

    use std::io::{Read, Write};
    s.writer().write_all(b"hello").unwrap();
    pump(&mut c, &mut s)?;
    let mut got = [0u8; 5];
    c.reader().read_exact(&mut got).unwrap();
    assert_eq!(&got, b"hello");
    Ok(Connected {
        client: c,
        server: s,
    })
}

/// Move bytes both ways until neither side has anything to send.
fn pump(c: &mut ClientConnection, s: &mut ServerConnection) -> Result<(), Failure> {
    for _ in 0..100 {
        let mut moved = false;
        while c.wants_write() {
            let mut buf = Vec::new();
            c.write_tls(&mut buf).unwrap();
            let mut slice = &buf[..];
            while !slice.is_empty() {
                s.read_tls(&mut slice).unwrap();
            }
            moved = true;
            s.process_new_packets().map_err(Failure::Server)?;
        }
        while s.wants_write() {
            let mut buf = Vec::new();
            s.write_tls(&mut buf).unwrap();
            let mut slice = &buf[..];
            while !slice.is_empty() {
                c.read_tls(&mut slice).unwrap();
            }
            moved = true;
            c.process_new_packets().map_err(Failure::Client)?;
        }
        if !moved {
            return Ok(());
        }
    }
    panic!("handshake did not settle after 100 rounds");
}
