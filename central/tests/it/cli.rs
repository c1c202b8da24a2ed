//! The `taplink-central` command line, run as a process.

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

#[test]
fn init_venue_and_enroll_code_work_on_a_data_directory() {
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

    let venue: VenueId = stdout_ok(&[
        "venue",
        "create",
        "Bar One",
        "--timezone",
        "Europe/Berlin",
        "--data",
        data,
    ])
    .trim()
    .parse()
    .unwrap();
    let bad_tz = run(&[
        "venue",
        "create",
        "Bar",
        "--timezone",
        "Mars/Base",
        "--data",
        data,
    ]);
    assert!(!bad_tz.status.success());
    assert!(String::from_utf8_lossy(&bad_tz.stderr).contains("time zone"));

    let list = stdout_ok(&["venue", "list", "--data", data]);
    assert_eq!(list, format!("{venue}\tEurope/Berlin\tBar One\n"));

    let code: EnrollmentToken = stdout_ok(&[
        "enroll-code",
        &venue.to_string(),
        "--data",
        data,
        "--ttl",
        "2h",
    ])
    .trim()
    .parse()
    .unwrap();
    let pem = std::fs::read_to_string(tmp.path().join("data/server.pem")).unwrap();
    assert_eq!(
        code.central,
        Fingerprint::of(&cert_der_from_pem(&pem).unwrap())
    );

    let missing = run(&[
        "venue",
        "list",
        "--data",
        tmp.path().join("nope").to_str().unwrap(),
    ]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("config"));
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
    let venue = stdout_ok(&[
        "venue",
        "create",
        "Bar One",
        "--timezone",
        "UTC",
        "--data",
        &data_s,
    ])
    .trim()
    .to_owned();
    let central = taplink_central::Central::bind(config).await.unwrap();

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
