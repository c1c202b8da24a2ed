//! Real TLS 1.3 handshakes in memory between the configurations of `taplink_certs::tls`.

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, CertificateRevocationListDer};
use rustls::{CertificateError, ClientConfig, Error, ProtocolVersion, ServerConfig};
use taplink_certs::tls::{
    ClientAuth, client_config, crypto_provider, pinned_client_config, server_config,
};
use taplink_certs::{CertAndKey, Fingerprint, HubIdentity, PrivateKey, Revocation, Validity};
use taplink_sync_proto::wire::ALPN;
use time::Duration;

use crate::support::{CENTRAL_NAME, Failure, Org, connect, now, random_hub, validity_days};

fn central_config(
    org: &Org,
    crls: Vec<CertificateRevocationListDer<'static>>,
    auth: ClientAuth,
) -> Arc<ServerConfig> {
    Arc::new(
        server_config(
            vec![org.central.cert.der().clone()],
            org.central.key.to_der(),
            org.ca.cert_der(),
            crls,
            auth,
        )
        .unwrap(),
    )
}

fn hub_config(ca_cert: &CertificateDer<'_>, hub: &CertAndKey) -> Arc<ClientConfig> {
    Arc::new(client_config(vec![hub.cert.der().clone()], hub.key.to_der(), ca_cert).unwrap())
}

fn assert_cert_error(
    result: Result<crate::support::Connected, Failure>,
    server_side: bool,
) -> CertificateError {
    match (result, server_side) {
        (Err(Failure::Server(Error::InvalidCertificate(e))), true) => e,
        (Err(Failure::Client(Error::InvalidCertificate(e))), false) => e,
        (Err(other), _) => panic!("wrong failure: {other:?}"),
        (Ok(_), _) => panic!("handshake succeeded but should have been refused"),
    }
}

#[test]
fn hub_signed_by_the_org_ca_is_accepted_and_its_identity_read_back() {
    let org = Org::new("Acme");
    // The production flow: key and CSR on the hub, certificate from central.
    let key = PrivateKey::generate().unwrap();
    let csr = key.certificate_request_pem().unwrap();
    let id = random_hub();
    let cert = org.ca.sign_hub_csr(&csr, id, validity_days(90)).unwrap();
    let hub = CertAndKey { cert, key };

    let conn = connect(
        hub_config(org.ca.cert_der(), &hub),
        central_config(&org, vec![], ClientAuth::Required),
        CENTRAL_NAME,
    )
    .unwrap();

    let presented = conn.server.peer_certificates();
    assert_eq!(HubIdentity::from_peer_certificates(presented).unwrap(), id);
    assert_eq!(
        Fingerprint::of(&presented.unwrap()[0]),
        hub.cert.fingerprint()
    );
    assert_eq!(conn.server.alpn_protocol(), Some(ALPN));
    assert_eq!(conn.client.alpn_protocol(), Some(ALPN));
    assert_eq!(
        conn.client.protocol_version(),
        Some(ProtocolVersion::TLSv1_3)
    );
    assert_eq!(
        Fingerprint::of(&conn.client.peer_certificates().unwrap()[0]),
        org.central.cert.fingerprint()
    );
}

#[test]
fn hub_from_another_ca_is_refused() {
    let org = Org::new("Acme");
    let rogue = Org::new("Rogue");
    let (_, hub) = rogue.hub();
    // The hub trusts the real CA for the server side, so only its own cert is at fault.
    let result = connect(
        hub_config(org.ca.cert_der(), &hub),
        central_config(&org, vec![], ClientAuth::Required),
        CENTRAL_NAME,
    );
    assert_eq!(
        assert_cert_error(result, true),
        CertificateError::UnknownIssuer
    );
}

#[test]
fn expired_hub_is_refused() {
    let org = Org::new("Acme");
    let past = Validity::between(now() - Duration::days(30), now() - Duration::days(1)).unwrap();
    let hub = org.ca.issue_hub_cert(random_hub(), past).unwrap();
    let result = connect(
        hub_config(org.ca.cert_der(), &hub),
        central_config(&org, vec![], ClientAuth::Required),
        CENTRAL_NAME,
    );
    let err = assert_cert_error(result, true);
    assert!(
        matches!(
            err,
            CertificateError::Expired | CertificateError::ExpiredContext { .. }
        ),
        "{err:?}"
    );
}

#[test]
fn revoked_hub_is_refused_and_its_sibling_accepted() {
    let org = Org::new("Acme");
    let (_, revoked) = org.hub();
    let (sibling_id, sibling) = org.hub();
    let crl = org
        .ca
        .crl(
            &[Revocation {
                serial: revoked.cert.serial().clone(),
                revoked_at: now(),
            }],
            1,
            now() - Duration::hours(1),
            now() + Duration::days(7),
        )
        .unwrap();
    let server = central_config(&org, vec![crl.into_der()], ClientAuth::Required);

    let result = connect(
        hub_config(org.ca.cert_der(), &revoked),
        server.clone(),
        CENTRAL_NAME,
    );
    assert_eq!(assert_cert_error(result, true), CertificateError::Revoked);

    let conn = connect(
        hub_config(org.ca.cert_der(), &sibling),
        server,
        CENTRAL_NAME,
    )
    .unwrap();
    assert_eq!(
        HubIdentity::from_peer_certificates(conn.server.peer_certificates()).unwrap(),
        sibling_id
    );
}

#[test]
fn client_refuses_a_server_from_another_ca() {
    let org = Org::new("Acme");
    let rogue = Org::new("Rogue");
    let (_, hub) = org.hub();
    // The rogue server would even accept the hub: only the hub's check can stop this.
    let rogue_server = Arc::new(
        server_config(
            vec![rogue.central.cert.der().clone()],
            rogue.central.key.to_der(),
            org.ca.cert_der(),
            vec![],
            ClientAuth::Required,
        )
        .unwrap(),
    );
    let result = connect(
        hub_config(org.ca.cert_der(), &hub),
        rogue_server,
        CENTRAL_NAME,
    );
    assert_eq!(
        assert_cert_error(result, false),
        CertificateError::UnknownIssuer
    );
}

#[test]
fn client_refuses_a_server_certificate_for_another_name() {
    let org = Org::new("Acme");
    let (_, hub) = org.hub();
    let result = connect(
        hub_config(org.ca.cert_der(), &hub),
        central_config(&org, vec![], ClientAuth::Required),
        "elsewhere.taplink.test",
    );
    let err = assert_cert_error(result, false);
    assert!(
        matches!(
            err,
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
        ),
        "{err:?}"
    );
}

#[test]
fn a_hub_certificate_cannot_serve_as_central() {
    // A stolen hub key must not let its thief impersonate central to other hubs.
    let org = Org::new("Acme");
    let (_, thief) = org.hub();
    let (_, victim) = org.hub();
    let fake_central = Arc::new(
        server_config(
            vec![thief.cert.der().clone()],
            thief.key.to_der(),
            org.ca.cert_der(),
            vec![],
            ClientAuth::Required,
        )
        .unwrap(),
    );
    let result = connect(
        hub_config(org.ca.cert_der(), &victim),
        fake_central,
        CENTRAL_NAME,
    );
    let err = assert_cert_error(result, false);
    assert!(
        matches!(
            err,
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. }
        ),
        "{err:?}"
    );
}

#[test]
fn central_certificate_cannot_serve_as_a_hub() {
    let org = Org::new("Acme");
    let result = connect(
        hub_config(org.ca.cert_der(), &org.central),
        central_config(&org, vec![], ClientAuth::Required),
        CENTRAL_NAME,
    );
    let err = assert_cert_error(result, true);
    assert!(
        matches!(
            err,
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. }
        ),
        "{err:?}"
    );
}

#[test]
fn anonymous_client_is_refused_when_required_and_admitted_when_optional() {
    let org = Org::new("Acme");
    let pin = org.central.cert.fingerprint();
    let anonymous = || Arc::new(pinned_client_config(pin, None).unwrap());

    let result = connect(
        anonymous(),
        central_config(&org, vec![], ClientAuth::Required),
        CENTRAL_NAME,
    );
    assert!(
        matches!(result, Err(Failure::Server(Error::NoCertificatesPresented))),
        "{:?}",
        result.err()
    );

    let conn = connect(
        anonymous(),
        central_config(&org, vec![], ClientAuth::Optional),
        CENTRAL_NAME,
    )
    .unwrap();
    assert!(conn.server.peer_certificates().is_none());

    // Optional still verifies a certificate that is presented.
    let rogue = Org::new("Rogue");
    let (_, rogue_hub) = rogue.hub();
    let with_rogue_cert = Arc::new(
        pinned_client_config(
            pin,
            Some((vec![rogue_hub.cert.der().clone()], rogue_hub.key.to_der())),
        )
        .unwrap(),
    );
    let result = connect(
        with_rogue_cert,
        central_config(&org, vec![], ClientAuth::Optional),
        CENTRAL_NAME,
    );
    assert_eq!(
        assert_cert_error(result, true),
        CertificateError::UnknownIssuer
    );
}

#[test]
fn pinned_client_connects_to_the_pinned_server_only() {
    let org = Org::new("Acme");
    let enrollment = central_config(&org, vec![], ClientAuth::Optional);

    let right = Arc::new(pinned_client_config(org.central.cert.fingerprint(), None).unwrap());
    // The pin is all that is checked: any server name will do.
    let conn = connect(right, enrollment.clone(), "10.1.2.3").unwrap();
    assert_eq!(conn.client.alpn_protocol(), Some(ALPN));

    let other = Org::new("Acme");
    let wrong = Arc::new(pinned_client_config(other.central.cert.fingerprint(), None).unwrap());
    let result = connect(wrong, enrollment, CENTRAL_NAME);
    let err = assert_cert_error(result, false);
    let CertificateError::Other(other_err) = &err else {
        panic!("{err:?}");
    };
    let msg = other_err.to_string();
    assert!(
        msg.contains(&org.central.cert.fingerprint().to_string()),
        "{msg}"
    );
    assert!(
        msg.contains(&other.central.cert.fingerprint().to_string()),
        "{msg}"
    );
}

#[test]
fn pinned_client_can_present_a_hub_identity() {
    let org = Org::new("Acme");
    let (id, hub) = org.hub();
    let client = Arc::new(
        pinned_client_config(
            org.central.cert.fingerprint(),
            Some((vec![hub.cert.der().clone()], hub.key.to_der())),
        )
        .unwrap(),
    );
    let conn = connect(
        client,
        central_config(&org, vec![], ClientAuth::Required),
        CENTRAL_NAME,
    )
    .unwrap();
    assert_eq!(
        HubIdentity::from_peer_certificates(conn.server.peer_certificates()).unwrap(),
        id
    );
}

#[test]
fn pinned_client_still_checks_the_handshake_signature() {
    // A server that shows the pinned certificate without holding its key.
    let org = Org::new("Acme");
    let impostor_key = PrivateKey::generate().unwrap();
    let signing_key = crypto_provider()
        .key_provider
        .load_private_key(impostor_key.to_der())
        .unwrap();
    let certified =
        rustls::sign::CertifiedKey::new(vec![org.central.cert.der().clone()], signing_key);
    let mut impostor = ServerConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(certified)));
    impostor.alpn_protocols = vec![ALPN.to_vec()];

    let client = Arc::new(pinned_client_config(org.central.cert.fingerprint(), None).unwrap());
    let result = connect(client, Arc::new(impostor), CENTRAL_NAME);
    assert!(
        matches!(
            result,
            Err(Failure::Client(Error::InvalidCertificate(
                CertificateError::BadSignature
            )))
        ),
        "{:?}",
        result.err()
    );
}

#[test]
fn another_protocol_version_is_refused_by_alpn() {
    let org = Org::new("Acme");
    let (_, hub) = org.hub();
    let mut client = client_config(
        vec![hub.cert.der().clone()],
        hub.key.to_der(),
        org.ca.cert_der(),
    )
    .unwrap();
    client.alpn_protocols = vec![b"taplink/2".to_vec()];
    let result = connect(
        Arc::new(client),
        central_config(&org, vec![], ClientAuth::Required),
        CENTRAL_NAME,
    );
    assert!(
        matches!(result, Err(Failure::Server(Error::NoApplicationProtocol))),
        "{:?}",
        result.err()
    );
}

#[test]
fn mismatched_key_and_certificate_are_refused_when_building_configs() {
    let org = Org::new("Acme");
    let (_, hub) = org.hub();
    let other_key = PrivateKey::generate().unwrap();
    let err = client_config(
        vec![hub.cert.der().clone()],
        other_key.to_der(),
        org.ca.cert_der(),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            taplink_certs::tls::TlsConfigError::CertificateOrKey { .. }
        ),
        "{err}"
    );
    let err = server_config(
        vec![],
        other_key.to_der(),
        org.ca.cert_der(),
        vec![],
        ClientAuth::Required,
    )
    .unwrap_err();
    assert!(
        matches!(err, taplink_certs::tls::TlsConfigError::EmptyChain),
        "{err}"
    );
    let garbage_crl = CertificateRevocationListDer::from(b"not a crl".to_vec());
    let err = server_config(
        vec![org.central.cert.der().clone()],
        org.central.key.to_der(),
        org.ca.cert_der(),
        vec![garbage_crl],
        ClientAuth::Required,
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            taplink_certs::tls::TlsConfigError::ClientVerifier { .. }
        ),
        "{err}"
    );
}

#[test]
fn a_ca_reloaded_from_disk_issues_certificates_the_original_trust_anchor_accepts() {
    let org = Org::new("Acme");
    let dir = tempfile::tempdir().unwrap();
    org.ca.save(dir.path()).unwrap();
    let reloaded = taplink_certs::OrgCa::load(dir.path()).unwrap();
    let id = random_hub();
    let hub = reloaded.issue_hub_cert(id, validity_days(30)).unwrap();
    // A CRL from the reloaded CA is also honoured by a verifier built on the original.
    let (_, revoked) = org.hub();
    let crl = reloaded
        .crl(
            &[Revocation {
                serial: revoked.cert.serial().clone(),
                revoked_at: now(),
            }],
            2,
            now() - Duration::hours(1),
            now() + Duration::days(1),
        )
        .unwrap();
    let server = central_config(&org, vec![crl.into_der()], ClientAuth::Required);
    let conn = connect(
        hub_config(org.ca.cert_der(), &hub),
        server.clone(),
        CENTRAL_NAME,
    )
    .unwrap();
    assert_eq!(
        HubIdentity::from_peer_certificates(conn.server.peer_certificates()).unwrap(),
        id
    );
    let result = connect(
        hub_config(org.ca.cert_der(), &revoked),
        server,
        CENTRAL_NAME,
    );
    assert_eq!(assert_cert_error(result, true), CertificateError::Revoked);
}
