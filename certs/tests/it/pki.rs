//! The org PKI without TLS: CA storage, hub certificates, identities, CSRs, fingerprints.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use rcgen::{CertificateParams, KeyPair, SanType};
use taplink_certs::store::{CA_CERT_FILE, CA_KEY_FILE};
use taplink_certs::{
    Fingerprint, HubIdentity, IdentityError, IssueCertError, OrgCa, ParseFingerprintError,
    PrivateKey, Serial, StoreError, Validity,
};
use taplink_sync_proto::ids::{HubId, VenueId};
use time::Duration;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::support::{Org, now, random_hub, validity_days};

fn mode(path: &std::path::Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn ca_save_load_round_trip_with_a_0600_key() {
    let ca = OrgCa::create("Acme", validity_days(3650)).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ca");
    ca.save(&dir).unwrap();

    assert_eq!(mode(&dir.join(CA_KEY_FILE)), 0o600);
    assert_eq!(mode(&dir.join(CA_CERT_FILE)) & 0o600, 0o600);
    assert_eq!(mode(&dir) & 0o077, 0, "a new CA directory is private");
    let mut names: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["ca.key", "ca.pem"], "no temporary files left");

    let loaded = OrgCa::load(&dir).unwrap();
    assert_eq!(loaded.cert_der(), ca.cert_der());
    assert_eq!(loaded.fingerprint(), ca.fingerprint());
    assert_eq!(loaded.validity(), ca.validity());
    assert_eq!(loaded.key_pem(), ca.key_pem());

    // The reloaded CA signs certificates that verify under the original CA certificate.
    let hub = loaded
        .issue_hub_cert(random_hub(), validity_days(30))
        .unwrap();
    let (_, ca_x) = X509Certificate::from_der(ca.cert_der()).unwrap();
    let (_, hub_x) = X509Certificate::from_der(hub.cert.der()).unwrap();
    assert_eq!(hub_x.issuer(), ca_x.subject());
    hub_x.verify_signature(Some(ca_x.public_key())).unwrap();
}

#[test]
fn saving_never_overwrites_an_existing_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let first = OrgCa::create("Acme", validity_days(365)).unwrap();
    first.save(tmp.path()).unwrap();
    let second = OrgCa::create("Acme", validity_days(365)).unwrap();
    let err = second.save(tmp.path()).unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists { .. }), "{err}");
    assert_eq!(
        OrgCa::load(tmp.path()).unwrap().cert_der(),
        first.cert_der()
    );
}

#[test]
fn a_world_readable_ca_key_is_refused_naming_the_file_and_mode() {
    let tmp = tempfile::tempdir().unwrap();
    OrgCa::create("Acme", validity_days(365))
        .unwrap()
        .save(tmp.path())
        .unwrap();
    let key_path = tmp.path().join(CA_KEY_FILE);
    fs::set_permissions(&key_path, fs::Permissions::from_mode(0o644)).unwrap();

    let err = OrgCa::load(tmp.path()).unwrap_err();
    match &err {
        StoreError::InsecurePermissions { path, mode } => {
            assert_eq!(path, &key_path);
            assert_eq!(*mode, 0o644);
        }
        other => panic!("wrong error: {other}"),
    }
    let msg = err.to_string();
    assert!(msg.contains(&key_path.display().to_string()), "{msg}");
    assert!(msg.contains("0644"), "{msg}");

    fs::set_permissions(&key_path, fs::Permissions::from_mode(0o600)).unwrap();
    OrgCa::load(tmp.path()).unwrap();
}

#[test]
fn loading_refuses_a_key_from_another_ca_and_missing_files() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    OrgCa::create("A", validity_days(365))
        .unwrap()
        .save(&a)
        .unwrap();
    OrgCa::create("B", validity_days(365))
        .unwrap()
        .save(&b)
        .unwrap();
    fs::copy(b.join(CA_KEY_FILE), a.join(CA_KEY_FILE)).unwrap();
    let err = OrgCa::load(&a).unwrap_err();
    assert!(matches!(err, StoreError::KeyMismatch { .. }), "{err}");

    let missing = tmp.path().join("nowhere");
    let err = OrgCa::load(&missing).unwrap_err();
    assert!(matches!(err, StoreError::Io { .. }), "{err}");
    assert!(err.to_string().contains("nowhere"), "{err}");

    // A leaf certificate in ca.pem is not a CA.
    let leaf_dir = tmp.path().join("leaf");
    let org = Org::new("Acme");
    fs::create_dir(&leaf_dir).unwrap();
    fs::write(leaf_dir.join(CA_CERT_FILE), org.central.cert.pem()).unwrap();
    org.central.key.save(&leaf_dir.join(CA_KEY_FILE)).unwrap();
    let err = OrgCa::load(&leaf_dir).unwrap_err();
    assert!(matches!(err, StoreError::BadContents { .. }), "{err}");
    assert!(err.to_string().contains("not a CA"), "{err}");
}

#[test]
fn private_key_save_load_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("hub.key");
    let key = PrivateKey::generate().unwrap();
    key.save(&path).unwrap();
    assert_eq!(mode(&path), 0o600);
    assert_eq!(
        PrivateKey::load(&path).unwrap().public_key_der(),
        key.public_key_der()
    );
    fs::set_permissions(&path, fs::Permissions::from_mode(0o604)).unwrap();
    assert!(matches!(
        PrivateKey::load(&path),
        Err(StoreError::InsecurePermissions { mode: 0o604, .. })
    ));
}

#[test]
fn hub_certificate_carries_identity_serial_and_explicit_validity() {
    let org = Org::new("Acme");
    let start = now();
    let validity = Validity::new(start, Duration::days(90)).unwrap();
    let id = random_hub();
    let hub = org.ca.issue_hub_cert(id, validity).unwrap();

    assert_eq!(HubIdentity::from_cert_der(hub.cert.der()).unwrap(), id);
    assert_eq!(
        &Serial::from_cert_der(hub.cert.der()).unwrap(),
        hub.cert.serial()
    );
    let (_, x) = X509Certificate::from_der(hub.cert.der()).unwrap();
    let nb = x.validity().not_before.to_datetime();
    let na = x.validity().not_after.to_datetime();
    // One day of clock-skew slack backwards, the lifetime forwards, nothing from 1975.
    assert!(
        (nb - (start - Duration::DAY)).abs() < Duration::seconds(1),
        "{nb}"
    );
    assert!(
        (na - (start + Duration::days(90))).abs() < Duration::seconds(1),
        "{na}"
    );
    assert_eq!(hub.cert.validity(), validity);

    let other = org.ca.issue_hub_cert(id, validity).unwrap();
    assert_ne!(other.cert.serial(), hub.cert.serial(), "serials are random");
}

fn self_signed_with_sans(sans: Vec<SanType>) -> Vec<u8> {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    let v = validity_days(1);
    params.not_before = v.not_before();
    params.not_after = v.not_after();
    params.subject_alt_names = sans;
    params.self_signed(&key).unwrap().der().to_vec()
}

fn uri(s: &str) -> SanType {
    SanType::URI(s.try_into().unwrap())
}

#[test]
fn identity_errors_say_what_is_wrong() {
    let v = VenueId::random();
    let h = HubId::random();

    let no_san = self_signed_with_sans(vec![]);
    assert!(matches!(
        HubIdentity::from_cert_der(&no_san),
        Err(IdentityError::NoSubjectAltName { .. })
    ));

    let dns_only = self_signed_with_sans(vec![SanType::DnsName("hub.example".try_into().unwrap())]);
    assert_eq!(
        HubIdentity::from_cert_der(&dns_only),
        Err(IdentityError::NoTaplinkUri { found: vec![] })
    );

    let other_uri = self_signed_with_sans(vec![uri("https://example.com/hub")]);
    assert_eq!(
        HubIdentity::from_cert_der(&other_uri),
        Err(IdentityError::NoTaplinkUri {
            found: vec!["https://example.com/hub".into()]
        })
    );

    let first = format!("taplink://venue/{v}/hub/{h}");
    let second = format!("taplink://venue/{v}/hub/{}", HubId::random());
    let two = self_signed_with_sans(vec![uri(&first), uri(&second)]);
    let err = HubIdentity::from_cert_der(&two).unwrap_err();
    assert_eq!(
        err,
        IdentityError::SeveralTaplinkUris {
            uris: vec![first.clone(), second]
        }
    );
    assert!(err.to_string().contains("2 taplink URIs"), "{err}");

    // An unrelated URI next to the taplink one is ignored.
    let with_extra = self_signed_with_sans(vec![uri("https://example.com/"), uri(&first)]);
    assert_eq!(
        HubIdentity::from_cert_der(&with_extra).unwrap(),
        HubIdentity { hub: h, venue: v }
    );

    let bad_venue = self_signed_with_sans(vec![uri(&format!("taplink://venue/not-an-id/hub/{h}"))]);
    let err = HubIdentity::from_cert_der(&bad_venue).unwrap_err();
    assert!(matches!(err, IdentityError::BadVenueId { .. }), "{err}");
    assert!(err.to_string().contains("not-an-id"), "{err}");

    let bad_hub = self_signed_with_sans(vec![uri(&format!(
        "taplink://venue/{v}/hub/{}",
        "x".repeat(26)
    ))]);
    assert!(matches!(
        HubIdentity::from_cert_der(&bad_hub),
        Err(IdentityError::BadHubId { .. })
    ));

    let bad_shape = self_signed_with_sans(vec![uri(&format!("taplink://venue/{v}/kiosk/{h}"))]);
    assert!(matches!(
        HubIdentity::from_cert_der(&bad_shape),
        Err(IdentityError::MalformedUri { .. })
    ));

    assert!(matches!(
        HubIdentity::from_cert_der(b"\x30\x03\x02\x01\x01"),
        Err(IdentityError::BadCertificate { .. })
    ));
}

/// The DER of a PEM text's single block.
fn pem_der(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    data_encoding::BASE64.decode(body.as_bytes()).unwrap()
}

fn pem_of(label: &str, der: &[u8]) -> String {
    let b64 = data_encoding::BASE64.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

fn replace_once(haystack: &mut [u8], needle: &[u8], replacement: &[u8]) {
    assert_eq!(needle.len(), replacement.len());
    let at = haystack
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("needle present");
    haystack[at..at + needle.len()].copy_from_slice(replacement);
}

#[test]
fn tampered_csrs_are_refused() {
    let org = Org::new("Acme");
    let key_a = PrivateKey::generate().unwrap();
    let csr_a = key_a.certificate_request_pem().unwrap();
    // Sanity: the untouched CSR is accepted.
    org.ca
        .sign_hub_csr(&csr_a, random_hub(), validity_days(30))
        .unwrap();

    // One byte of the signed body changed (a letter of the subject name).
    let mut der = pem_der(&csr_a);
    replace_once(&mut der, b"unassigned", b"unassignee");
    let err = org
        .ca
        .sign_hub_csr(
            &pem_of("CERTIFICATE REQUEST", &der),
            random_hub(),
            validity_days(30),
        )
        .unwrap_err();
    assert!(matches!(err, IssueCertError::CsrBadSignature), "{err}");

    // Key A's CSR re-labelled with key B's public key: B's holder never signed anything.
    let key_b = PrivateKey::generate().unwrap();
    let raw = |k: &PrivateKey| {
        let spki = k.public_key_der();
        spki[spki.len() - 65..].to_vec()
    };
    let mut der = pem_der(&csr_a);
    replace_once(&mut der, &raw(&key_a), &raw(&key_b));
    let err = org
        .ca
        .sign_hub_csr(
            &pem_of("CERTIFICATE REQUEST", &der),
            random_hub(),
            validity_days(30),
        )
        .unwrap_err();
    assert!(matches!(err, IssueCertError::CsrBadSignature), "{err}");

    // Not a CSR at all, and an absurdly large input.
    assert!(matches!(
        org.ca
            .sign_hub_csr("hello", random_hub(), validity_days(30)),
        Err(IssueCertError::CsrUnparseable)
    ));
    let huge = "A".repeat(100_000);
    assert!(matches!(
        org.ca.sign_hub_csr(&huge, random_hub(), validity_days(30)),
        Err(IssueCertError::CsrTooLarge { .. })
    ));
}

#[test]
fn fingerprint_display_and_parse() {
    let org = Org::new("Acme");
    let fp = org.central.cert.fingerprint();
    let text = fp.to_string();
    assert_eq!(text.len(), "sha256:".len() + 64);
    assert!(text.starts_with("sha256:"));
    assert!(
        text[7..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    );
    assert_eq!(text.parse::<Fingerprint>().unwrap(), fp);
    assert_eq!(
        text.to_uppercase()
            .replace("SHA256:", "sha256:")
            .parse::<Fingerprint>()
            .unwrap(),
        fp
    );
    assert_eq!(Fingerprint::of(org.central.cert.der()), fp);
    assert_ne!(org.ca.fingerprint(), fp);

    let hex = &text[7..];
    for (input, missing_prefix) in [
        (String::new(), true),
        (hex.to_owned(), true),
        (format!("sha1:{hex}"), true),
        (format!("SHA256:{hex}"), true),
        ("sha256:".to_owned(), false),
        (format!("sha256:{}", &hex[1..]), false),
        (format!("sha256:{hex}00"), false),
        (format!("sha256:{}zz", &hex[2..]), false),
        (format!("sha256: {}", &hex[1..]), false),
    ] {
        match input.parse::<Fingerprint>() {
            Err(ParseFingerprintError::MissingPrefix { .. }) if missing_prefix => {}
            Err(ParseFingerprintError::BadDigest { .. }) if !missing_prefix => {}
            other => panic!("{input:?} gave {other:?}"),
        }
    }
}
