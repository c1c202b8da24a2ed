//! The `taplink-central` command line, run as a process.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use taplink_central::enroll_token::EnrollmentToken;
use taplink_certs::{Fingerprint, cert_der_from_pem};
use taplink_sync_proto::ids::VenueId;

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_taplink-central"))
        .args(args)
        .env_remove("TAPLINK_LOG_FORMAT")
        .output()
        .unwrap()
}

fn stdout_ok(args: &[&str]) -> String {
    let output = run(args);
    assert!(
        output.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// `init` and a free loopback port for the HTTP API, written into config.json where the
/// CLI reads it; the returned config is the one `serve` would use.
fn init_with_free_port(data: &Path) -> taplink_central::Config {
    stdout_ok(&["init", "--data", data.to_str().unwrap()]);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config_path = data.join("config.json");
    let mut config = taplink_central::Config::load(&config_path).unwrap();
    config.http_listen = format!("127.0.0.1:{port}").parse().unwrap();
    config.quic_listen = "127.0.0.1:0".parse().unwrap();
    std::fs::write(&config_path, config.to_json_pretty()).unwrap();
    config
}

/// Every file under `dir` with its contents (and so its size), sorted by path.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path.clone());
                files.insert(path, Vec::new());
            } else {
                files.insert(path.clone(), std::fs::read(&path).unwrap());
            }
        }
    }
    files
}

/// Run the CLI off the async runtime (it blocks until the server answers).
async fn cli(args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&args)
    })
    .await
    .unwrap()
}

async fn cli_ok(args: &[&str]) -> String {
    let output = cli(args).await;
    assert!(
        output.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn init_writes_a_data_directory_and_refuses_a_second_time() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let data = data.to_str().unwrap();

    let out = stdout_ok(&[
        "init",
        "--data",
        data,
        "--name",
        "Acme Bars",
        "--public-name",
        "central.example.com",
    ]);
    let token = std::fs::read_to_string(tmp.path().join("data/admin-token")).unwrap();
    assert!(
        out.contains(token.trim_end()),
        "the token is printed once: {out}"
    );

    let again = run(&["init", "--data", data]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("refusing"));

    let missing = run(&[
        "venue",
        "list",
        "--data",
        tmp.path().join("nope").to_str().unwrap(),
    ]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("config"));
}

/// Without a running server, the commands that read or change central's state fail with a
/// sentence that says to start it, and leave the data directory exactly as it was.
#[test]
fn without_the_server_venue_and_enroll_code_fail_and_touch_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    init_with_free_port(&data);
    let d = data.to_str().unwrap();
    let before = snapshot(&data);
    let venue = VenueId::from_bytes([7; 16]).to_string();
    for args in [
        &["venue", "create", "Bar", "--timezone", "UTC", "--data", d][..],
        &["venue", "list", "--data", d][..],
        &["enroll-code", &venue, "--data", d][..],
    ] {
        let out = run(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded without a server");
        assert!(
            err.contains("start it with taplink-central serve"),
            "{args:?}: {err}"
        );
    }
    assert!(snapshot(&data) == before, "the data directory was changed");
}

/// `venue create`, `venue list` and `enroll-code` go through the running server: the venue
/// is visible through its API at once and the printed code enrolls a hub.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn venues_and_enrollment_codes_are_made_through_the_running_server() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let config = init_with_free_port(&data);
    let data_s = data.to_str().unwrap();
    let central = taplink_central::Central::bind(config).await.unwrap();
    let token = std::fs::read_to_string(data.join("admin-token")).unwrap();

    let venue: VenueId = cli_ok(&[
        "venue",
        "create",
        "Bar One",
        "--timezone",
        "Europe/Berlin",
        "--data",
        data_s,
    ])
    .await
    .trim()
    .parse()
    .unwrap();
    let shown = crate::server::http_get(
        central.http_addr(),
        &format!(
            "GET /api/v1/venues/{venue} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
             Authorization: Bearer {}\r\n\r\n",
            token.trim()
        ),
    )
    .await;
    assert!(shown.starts_with("HTTP/1.1 200 OK\r\n"), "{shown}");
    assert!(shown.contains(r#""name":"Bar One""#), "{shown}");
    // The CLI's change is in the audit log, marked as made through the command line.
    let registry = taplink_central::store::Registry::open(&data.join("central.sqlite")).unwrap();
    let log = registry
        .list_audit(&taplink_central::store::AuditQuery {
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    let created = log
        .iter()
        .find(|e| e.action == "POST /api/v1/venues")
        .expect("the venue's creation is recorded");
    assert_eq!(
        (created.via.as_str(), created.actor.as_str()),
        ("cli", "admin_token")
    );

    let bad_tz = cli(&[
        "venue",
        "create",
        "Bar",
        "--timezone",
        "Mars/Base",
        "--data",
        data_s,
    ])
    .await;
    assert!(!bad_tz.status.success());
    let err = String::from_utf8_lossy(&bad_tz.stderr);
    assert!(
        err.contains("time zone") && err.contains("timezone"),
        "{err}"
    );

    let list = cli_ok(&["venue", "list", "--data", data_s]).await;
    assert_eq!(list, format!("{venue}\tEurope/Berlin\tBar One\n"));

    let code: EnrollmentToken = cli_ok(&[
        "enroll-code",
        &venue.to_string(),
        "--data",
        data_s,
        "--ttl",
        "2h",
    ])
    .await
    .trim()
    .parse()
    .unwrap();
    let pem = std::fs::read_to_string(data.join("server.pem")).unwrap();
    assert_eq!(
        code.central,
        Fingerprint::of(&cert_der_from_pem(&pem).unwrap())
    );

    // The code enrolls a hub with the running server.
    let key = taplink_certs::PrivateKey::generate().unwrap();
    let endpoint = taplink_sync_io::net::client_endpoint("127.0.0.1:0".parse().unwrap()).unwrap();
    let enrolled = taplink_sync_io::enroll::request_enrollment(
        &endpoint,
        central.quic_addr(),
        &code,
        key.certificate_request_pem().unwrap(),
        "test hub".to_owned(),
    )
    .await
    .unwrap();
    assert_eq!(enrolled.venue, venue);
    let hubs = central.state().registry.list_hubs(Some(venue)).unwrap();
    assert_eq!(hubs.len(), 1);
    assert_eq!(hubs[0].id, enrolled.hub);

    endpoint.close(0u32.into(), b"done");
    central.shutdown().await.unwrap();
}

/// `kiosk-code` goes through the running server: create, list and revoke work while it
/// runs, and without it the CLI says to start it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kiosk_codes_are_managed_through_the_running_server() {
    use taplink_sync_proto::kiosk_code::KioskCode;

    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let data_s = data.to_str().unwrap().to_owned();
    stdout_ok(&["init", "--data", &data_s]);
    // A free loopback port for the HTTP API, written where the CLI reads it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config_path = data.join("config.json");
    let mut config = taplink_central::Config::load(&config_path).unwrap();
    config.http_listen = format!("127.0.0.1:{port}").parse().unwrap();
    config.quic_listen = "127.0.0.1:0".parse().unwrap();
    std::fs::write(&config_path, config.to_json_pretty()).unwrap();
    let central = taplink_central::Central::bind(config).await.unwrap();
    let venue = cli_ok(&[
        "venue",
        "create",
        "Bar One",
        "--timezone",
        "UTC",
        "--data",
        &data_s,
    ])
    .await
    .trim()
    .to_owned();

    let cli = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run(&args)
        })
    };
    let args = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let created = cli(args(&[
        "kiosk-code",
        "create",
        &venue,
        "--name",
        "Bar screen",
        "--expires-in-hours",
        "48",
        "--data",
        &data_s,
    ]))
    .await
    .unwrap();
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let code: KioskCode = String::from_utf8(created.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let venue_id: VenueId = venue.parse().unwrap();
    let grants = taplink_central::kiosk_codes::list_kiosk_codes(
        &central.state().registry,
        &central.state().docs,
        venue_id,
    )
    .unwrap();
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0].1.code_hash, code.hash());

    let listed = cli(args(&["kiosk-code", "list", &venue, "--data", &data_s]))
        .await
        .unwrap();
    let listed = String::from_utf8(listed.stdout).unwrap();
    let id = grants[0].0.to_string();
    assert!(
        listed.starts_with(&format!("{id}\topen\t")) && listed.ends_with("\t-\tBar screen\n"),
        "{listed}"
    );

    let bad = cli(args(&[
        "kiosk-code",
        "create",
        &venue,
        "--name",
        "",
        "--data",
        &data_s,
    ]))
    .await
    .unwrap();
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("400"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );

    let revoked = cli(args(&[
        "kiosk-code",
        "revoke",
        &venue,
        &id,
        "--data",
        &data_s,
    ]))
    .await
    .unwrap();
    assert!(
        revoked.status.success(),
        "{}",
        String::from_utf8_lossy(&revoked.stderr)
    );
    let listed = cli(args(&["kiosk-code", "list", &venue, "--data", &data_s]))
        .await
        .unwrap();
    assert_eq!(String::from_utf8(listed.stdout).unwrap(), "");

    central.shutdown().await.unwrap();
    let down = cli(args(&["kiosk-code", "list", &venue, "--data", &data_s]))
        .await
        .unwrap();
    assert!(!down.status.success());
    let err = String::from_utf8_lossy(&down.stderr);
    assert!(err.contains("taplink-central serve"), "{err}");
}

/// `user create … --password-stdin` makes the user through the running server (the
/// password never on the command line); the user can then sign in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_are_made_through_the_running_server_with_the_password_on_stdin() {
    use std::io::Write as _;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let config = init_with_free_port(&data);
    let data_s = data.to_str().unwrap().to_owned();
    let central = taplink_central::Central::bind(config).await.unwrap();
    let venue = central
        .state()
        .registry
        .create_venue("The Anchor", "Europe/London", crate::support::now())
        .unwrap()
        .id
        .to_string();
    let create = move |password: &'static str, username: &'static str| {
        let (data_s, venue) = (data_s.clone(), venue.clone());
        tokio::task::spawn_blocking(move || {
            let mut child = Command::new(env!("CARGO_BIN_EXE_taplink-central"))
                .args([
                    "user",
                    "create",
                    "--data",
                    &data_s,
                    "--username",
                    username,
                    "--role",
                    "technician",
                    "--venue",
                    &venue,
                    "--tag",
                    "region:north",
                    "--password-stdin",
                ])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
            child.wait_with_output().unwrap()
        })
    };
    let made = create("a long enough secret", "tech1").await.unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let users = central.state().registry.list_users().unwrap();
    assert_eq!(users.len(), 1);
    assert_eq!(users[0].username, "tech1");
    assert_eq!(
        String::from_utf8(made.stdout).unwrap().trim(),
        users[0].id.to_string()
    );
    assert_eq!(users[0].scope.tags.len(), 1);
    central
        .state()
        .registry
        .sign_in("tech1", "a long enough secret", crate::support::now())
        .unwrap();
    // A refused password is told, naming the field, and nothing is made.
    let short = create("short", "tech2").await.unwrap();
    assert!(!short.status.success());
    assert!(String::from_utf8_lossy(&short.stderr).contains("password"));
    assert_eq!(central.state().registry.list_users().unwrap().len(), 1);
    central.shutdown().await.unwrap();
}
