//! `init` on disk, and a whole `Central` serving over a real socket.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use taplink_central::init::{InitError, InitOptions, init};
use taplink_central::state::LoadError;
use taplink_central::store::Registry;
use taplink_central::{BindError, Central, Config};
use taplink_certs::OrgCa;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::Initialised;

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn init_creates_a_private_data_directory_with_everything_central_needs() {
    let init = Initialised::new();
    let dir = &init.data_dir;
    assert_eq!(mode(dir), 0o700);
    for private in ["server.key", "admin-token", "ca/ca.key"] {
        assert_eq!(mode(&dir.join(private)), 0o600, "{private}");
    }
    // Every entry, from creation: the first start has nothing to fix.
    assert!(
        taplink_sync_io::private::secure_tree(dir)
            .unwrap()
            .is_empty(),
        "init left something readable by others"
    );
    let token = fs::read_to_string(dir.join("admin-token")).unwrap();
    assert_eq!(token.trim_end(), init.report.admin_token.as_str());
    let registry = Registry::open(&dir.join("central.sqlite")).unwrap();
    assert!(registry.check_admin_token(token.trim_end()).unwrap());

    let ca = OrgCa::load(&dir.join("ca")).unwrap();
    assert_eq!(ca.fingerprint(), init.report.ca_fingerprint);
    let config = Config::load(&dir.join("config.json")).unwrap();
    assert_eq!(config.data_dir, *dir);
    assert_eq!(config.public_names, ["localhost", "127.0.0.1"]);
    // Loading the state checks the server key and certificate parse and belong together
    // with the fingerprint init reported.
    let state = taplink_central::AppState::load(config).unwrap();
    assert_eq!(state.pki.server_fingerprint, init.report.server_fingerprint);

    // No staging directory is left next to the data directory.
    let siblings: Vec<_> = fs::read_dir(dir.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(siblings, ["data"]);
}

#[test]
fn a_second_init_is_refused_and_changes_nothing() {
    let init_done = Initialised::new();
    let dir = &init_done.data_dir;
    let token_before = fs::read(dir.join("admin-token")).unwrap();
    let err = init(&InitOptions::new(dir), crate::support::now()).unwrap_err();
    assert!(matches!(err, InitError::AlreadyExists { .. }), "{err:?}");
    assert!(err.to_string().contains("refusing"), "{err}");
    assert_eq!(fs::read(dir.join("admin-token")).unwrap(), token_before);
    assert_eq!(fs::read_dir(dir.parent().unwrap()).unwrap().count(), 1);
}

#[test]
fn init_accepts_an_empty_directory_but_not_a_used_one() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty");
    fs::create_dir(&empty).unwrap();
    init(&InitOptions::new(&empty), crate::support::now()).unwrap();
    assert!(empty.join("central.sqlite").is_file());
    assert_eq!(mode(&empty), 0o700);

    let used = tmp.path().join("used");
    fs::create_dir(&used).unwrap();
    fs::write(used.join("notes.txt"), "mine").unwrap();
    assert!(matches!(
        init(&InitOptions::new(&used), crate::support::now()),
        Err(InitError::AlreadyExists { .. })
    ));
    assert_eq!(fs::read_to_string(used.join("notes.txt")).unwrap(), "mine");
    assert_eq!(fs::read_dir(&used).unwrap().count(), 1);
}

#[test]
fn a_failed_init_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let mut opts = InitOptions::new(tmp.path().join("data"));
    opts.public_names = vec!["not a name".into()];
    assert!(matches!(
        init(&opts, crate::support::now()),
        Err(InitError::BadPublicName { .. })
    ));
    // This one fails late, when the server certificate is issued.
    opts.public_names = vec!["-bad-.example".into()];
    let err = init(&opts, crate::support::now()).unwrap_err();
    assert!(matches!(err, InitError::ServerCert(_)), "{err:?}");
    opts.public_names = vec!["localhost".into()];
    opts.org_name = "\n".into();
    assert!(matches!(
        init(&opts, crate::support::now()),
        Err(InitError::Ca(_))
    ));
    assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0);
}

#[tokio::test]
async fn bind_names_a_missing_data_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let err = Central::bind(Config::new(tmp.path().join("nope")))
        .await
        .unwrap_err();
    assert!(
        matches!(err, BindError::Load(LoadError::NoDataDir { .. })),
        "{err:?}"
    );
    assert!(err.to_string().contains("taplink-central init"), "{err}");
}

pub(crate) async fn http_get(addr: std::net::SocketAddr, raw_request: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(raw_request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

#[tokio::test]
async fn central_serves_http_on_a_real_socket_and_shuts_down() {
    let init = Initialised::new();
    let mut config = init.config();
    config.http_listen = "127.0.0.1:0".parse().unwrap();
    let central = Central::bind(config).await.unwrap();
    let addr = central.http_addr();
    assert_ne!(addr.port(), 0);

    let health = http_get(
        addr,
        "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(health.starts_with("HTTP/1.1 200 OK\r\n"), "{health}");
    assert!(health.ends_with(r#"{"status":"ok","db":"ok"}"#), "{health}");

    // The token init wrote works against the running server.
    let body = r#"{"name":"Bar","timezone":"Europe/Berlin"}"#;
    let create = http_get(
        addr,
        &format!(
            "POST /api/v1/venues HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
             Authorization: Bearer {}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            init.token(),
            body.len()
        ),
    )
    .await;
    assert!(create.starts_with("HTTP/1.1 201 Created\r\n"), "{create}");
    assert_eq!(central.state().registry.list_venues().unwrap().len(), 1);

    central.shutdown().await.unwrap();
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the listener is closed after shutdown"
    );
}
