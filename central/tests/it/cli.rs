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
