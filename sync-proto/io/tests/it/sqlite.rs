//! The one SQLite opener every store uses: WAL checked, schema migrations applied once and
//! atomically, newer schemas refused.

use std::path::Path;
use std::sync::{Arc, Barrier};

use taplink_sync_io::sqlite::{OpenError, Options, open};

/// A schema in two steps; applying either twice would fail (`CREATE TABLE` of an existing
/// table), and the second records that it ran.
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE a (x INTEGER NOT NULL) STRICT;",
    "CREATE TABLE b (x INTEGER NOT NULL) STRICT; INSERT INTO a (x) VALUES (1);",
];

fn user_version(path: &Path) -> i64 {
    rusqlite::Connection::open(path)
        .unwrap()
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap()
}

#[test]
fn a_new_file_is_created_private_wal_full_and_migrated() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite");
    let conn = open(&path, MIGRATIONS, &Options::default()).unwrap();
    let mode: String = conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    // 2 is FULL.
    let sync: i64 = conn
        .pragma_query_value(None, "synchronous", |r| r.get(0))
        .unwrap();
    assert_eq!((mode.as_str(), sync), ("wal", 2));
    assert_eq!(user_version(&path), 2);
    let perms = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(perms & 0o777, 0o600);
}

#[test]
fn missing_migrations_are_applied_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite");
    drop(open(&path, &MIGRATIONS[..1], &Options::default()).unwrap());
    assert_eq!(user_version(&path), 1);
    drop(open(&path, MIGRATIONS, &Options::default()).unwrap());
    let conn = open(&path, MIGRATIONS, &Options::default()).unwrap();
    let rows: i64 = conn
        .query_row("SELECT count(*) FROM a", [], |r| r.get(0))
        .unwrap();
    assert_eq!((rows, user_version(&path)), (1, 2));
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite");
    drop(open(&path, MIGRATIONS, &Options::default()).unwrap());
    rusqlite::Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", 3)
        .unwrap();
    let err = open(&path, MIGRATIONS, &Options::default()).unwrap_err();
    assert!(
        matches!(
            err,
            OpenError::NewerSchema {
                found: 3,
                supported: 2,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("newer"), "{err}");
    assert_eq!(user_version(&path), 3, "a refused file is left alone");
}

#[test]
fn a_failing_migration_leaves_the_version_and_the_schema_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite");
    drop(open(&path, &MIGRATIONS[..1], &Options::default()).unwrap());
    // Step 2 succeeds, step 3 fails: neither may stay applied.
    let broken = [
        MIGRATIONS[0],
        MIGRATIONS[1],
        "INSERT INTO no_such_table VALUES (1);",
    ];
    let err = open(&path, &broken, &Options::default()).unwrap_err();
    assert!(
        matches!(err, OpenError::Migrate { version: 3, .. }),
        "{err}"
    );
    assert_eq!(user_version(&path), 1);
    let tables: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'b'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(tables, 0, "migration 2 was rolled back with 3");
    // Fixed software migrates it normally.
    drop(open(&path, MIGRATIONS, &Options::default()).unwrap());
    assert_eq!(user_version(&path), 2);
}

#[test]
fn a_database_that_cannot_be_wal_is_refused() {
    // An in-memory database reports journal mode "memory" whatever is asked for, as a
    // file system without shared memory would report "delete".
    let options = Options {
        create: false,
        ..Options::default()
    };
    let err = open(Path::new(":memory:"), MIGRATIONS, &options).unwrap_err();
    assert!(
        matches!(&err, OpenError::NoWal { mode, .. } if mode == "memory"),
        "{err}"
    );
}

#[test]
fn without_create_a_missing_file_is_an_error_and_stays_missing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing.sqlite");
    let options = Options {
        create: false,
        ..Options::default()
    };
    assert!(matches!(
        open(&path, MIGRATIONS, &options),
        Err(OpenError::Sqlite { step: "open", .. })
    ));
    assert!(!path.exists());
}

#[test]
fn concurrent_openers_of_a_fresh_file_migrate_it_once() {
    for round in 0..10 {
        let dir = tempfile::tempdir().unwrap();
        let path = Arc::new(dir.path().join("db.sqlite"));
        let openers = 4;
        let barrier = Arc::new(Barrier::new(openers));
        let threads: Vec<_> = (0..openers)
            .map(|_| {
                let (path, barrier) = (path.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    open(&path, MIGRATIONS, &Options::default()).map(drop)
                })
            })
            .collect();
        for thread in threads {
            // A second migration would fail on `CREATE TABLE`: every opener must succeed.
            thread.join().unwrap().unwrap();
        }
        let rows: i64 = rusqlite::Connection::open(&*path)
            .unwrap()
            .query_row("SELECT count(*) FROM a", [], |r| r.get(0))
            .unwrap();
        assert_eq!((rows, user_version(&path)), (1, 2), "round {round}");
    }
}
