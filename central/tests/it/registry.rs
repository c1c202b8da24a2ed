//! The registry database: schema, venues, enrollment codes, hubs, tokens, telemetry.

use std::sync::{Arc, Barrier};

use chrono::TimeDelta;
use taplink_central::enroll_token::EnrollmentSecret;
use taplink_central::store::{
    Counts, EnrollError, OpenError, Registry, RegistryError, SCHEMA_VERSION,
};
use taplink_central::truncate_to_ms;
use taplink_central::venue::{CreateVenueError, create_venue};
use taplink_sync_proto::doc::DocOpError;
use taplink_sync_proto::ids::{KioskId, MediaHash, VenueId};
use taplink_sync_proto::wire::{
    DocHeads, DocId, Heartbeat, ProofOfPlay, TelemetryEvent, TelemetryKind,
};

use crate::support::{at, cert_of, hub, registry, t0};

#[test]
fn create_migrates_to_the_current_schema_in_wal_mode_and_reopening_keeps_data() {
    let (dir, reg) = registry();
    let path = reg.path().to_owned();
    let venue = reg.create_venue("Bar One", "Europe/Berlin", t0()).unwrap();
    drop(reg);

    // Inspecting the file from outside the registry is the point of this test.
    let raw = rusqlite::Connection::open(&path).unwrap();
    let version: u32 = raw
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    let mode: String = raw
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let mut tables: Vec<String> = raw
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    tables.sort();
    assert_eq!(
        tables,
        [
            "admin_tokens",
            "alerts",
            "api_tokens",
            "audit",
            "audit_cursors",
            "catalog_kiosks",
            "catalog_media",
            "catalog_media_uses",
            "enrollment_codes",
            "hubs",
            "play_rollups",
            "rosters",
            "sessions",
            "telemetry",
            "users",
            "venues"
        ]
    );
    drop(raw);

    let reg = Registry::open(&path).unwrap();
    assert_eq!(reg.list_venues().unwrap(), vec![venue]);
    drop(dir);
}

#[test]
fn open_needs_an_existing_database_and_create_refuses_one() {
    let (dir, reg) = registry();
    let path = reg.path().to_owned();
    drop(reg);
    assert!(matches!(
        Registry::create(&path),
        Err(OpenError::AlreadyExists { .. })
    ));
    let missing = dir.path().join("nope.sqlite");
    let err = Registry::open(&missing).unwrap_err();
    assert!(matches!(err, OpenError::Missing { .. }));
    assert!(err.to_string().contains("taplink-central init"), "{err}");
    assert!(!missing.exists(), "open must not create a database");
}

#[test]
fn a_database_from_a_newer_central_is_refused() {
    let (_dir, reg) = registry();
    let path = reg.path().to_owned();
    drop(reg);
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    drop(raw);
    let err = Registry::open(&path).unwrap_err();
    match &err {
        OpenError::Db(taplink_sync_io::sqlite::OpenError::NewerSchema {
            found, supported, ..
        }) => {
            assert_eq!(*found, i64::from(SCHEMA_VERSION) + 1);
            assert_eq!(*supported, i64::from(SCHEMA_VERSION));
        }
        other => panic!("expected NewerSchema, got {other:?}"),
    }
    assert!(err.to_string().contains("newer"), "{err}");
}

#[test]
fn venues_are_validated_listed_in_creation_order_and_fetched() {
    let (_dir, reg) = registry();
    let long_ok = "é".repeat(100);
    let too_long = "é".repeat(101);
    for bad in ["", "  ", "a\nb", too_long.as_str()] {
        let err = reg.create_venue(bad, "UTC", t0()).unwrap_err();
        assert!(
            matches!(err, RegistryError::Invalid { field: "name", .. }),
            "{bad:?}: {err:?}"
        );
    }
    for bad in ["", "Europe Berlin", "Europe/Berlin;DROP", &"A".repeat(65)] {
        let err = reg.create_venue("Bar", bad, t0()).unwrap_err();
        assert!(
            matches!(
                err,
                RegistryError::Invalid {
                    field: "timezone",
                    ..
                }
            ),
            "{bad:?}: {err:?}"
        );
    }
    assert!(reg.list_venues().unwrap().is_empty());

    let b = reg
        .create_venue(&long_ok, "Asia/Tokyo", at(TimeDelta::seconds(1)))
        .unwrap();
    let a = reg.create_venue("Bar One", "Europe/Berlin", t0()).unwrap();
    assert_eq!(a.created_at, t0());
    assert_eq!(reg.list_venues().unwrap(), vec![a.clone(), b.clone()]);
    assert_eq!(reg.venue(b.id).unwrap(), Some(b));
    assert_eq!(reg.venue(VenueId::from_bytes([0; 16])).unwrap(), None);
    assert_eq!(
        reg.counts().unwrap(),
        Counts {
            venues: 2,
            ..Counts::default()
        }
    );
}

#[test]
fn creating_a_venue_checks_the_time_zone_database_and_makes_its_document() {
    let (dir, reg) = registry();
    let db = taplink_sync_io::docstore::DocDb::open(&dir.path().join("docs.sqlite")).unwrap();
    let docs = taplink_sync_io::docs::Documents::open(
        std::sync::Arc::new(db),
        automerge::ActorId::random(),
    )
    .unwrap();
    let err = create_venue(&reg, &docs, "Bar", "Mars/Olympus_Mons", t0()).unwrap_err();
    assert!(
        matches!(
            err,
            CreateVenueError::Invalid(DocOpError::UnknownTimezone(_))
        ),
        "{err:?}"
    );
    assert!(reg.list_venues().unwrap().is_empty(), "nothing is stored");
    assert!(docs.list().is_empty(), "no document either");

    let new = create_venue(&reg, &docs, "Bar", "America/New_York", t0()).unwrap();
    let doc = docs
        .read(taplink_sync_proto::wire::DocId::Venue(new.id), |am| {
            taplink_sync_proto::doc::load_venue(am)
        })
        .unwrap()
        .unwrap();
    assert_eq!(doc.settings.name, "Bar");
    assert_eq!(doc.settings.timezone, "America/New_York");
    assert_eq!(reg.venue(new.id).unwrap(), Some(new));
}

#[test]
fn an_enrollment_code_is_redeemed_once_before_it_expires() {
    let (_dir, reg) = registry();
    let venue = reg.create_venue("Bar", "UTC", t0()).unwrap().id;
    let code = reg
        .create_enrollment_code(venue, TimeDelta::hours(1), t0())
        .unwrap();
    assert_eq!(code.venue, venue);
    assert_eq!(code.expires_at, at(TimeDelta::hours(1)));

    // Redeemable up to the last millisecond before expiry.
    let used_at = at(TimeDelta::hours(1) - TimeDelta::milliseconds(1));
    assert_eq!(
        reg.redeem_enrollment_code(&code.secret, hub(1), used_at)
            .unwrap(),
        venue
    );
    match reg.redeem_enrollment_code(&code.secret, hub(2), at(TimeDelta::minutes(1) * 61)) {
        Err(EnrollError::AlreadyUsed { at }) => assert_eq!(at, used_at),
        other => panic!("expected AlreadyUsed, got {other:?}"),
    }

    let unknown = EnrollmentSecret::random();
    assert!(matches!(
        reg.redeem_enrollment_code(&unknown, hub(3), t0()),
        Err(EnrollError::Unknown)
    ));
}

#[test]
fn an_expired_enrollment_code_is_refused_with_its_expiry_time() {
    let (_dir, reg) = registry();
    let venue = reg.create_venue("Bar", "UTC", t0()).unwrap().id;
    let code = reg
        .create_enrollment_code(venue, TimeDelta::hours(1), t0())
        .unwrap();
    let err = reg
        .redeem_enrollment_code(&code.secret, hub(1), at(TimeDelta::hours(1)))
        .unwrap_err();
    match &err {
        EnrollError::Expired { at: when } => assert_eq!(*when, at(TimeDelta::hours(1))),
        other => panic!("expected Expired, got {other:?}"),
    }
    assert!(err.to_string().contains("2026-03-01T13:00:00Z"), "{err}");
    // Refusing an expired code does not use it up: it stays expired, not "used".
    assert!(matches!(
        reg.redeem_enrollment_code(&code.secret, hub(1), at(TimeDelta::days(1))),
        Err(EnrollError::Expired { .. })
    ));
}

#[test]
fn enrollment_codes_need_a_known_venue_and_a_positive_lifetime() {
    let (_dir, reg) = registry();
    let ghost = VenueId::from_bytes([5; 16]);
    assert!(matches!(
        reg.create_enrollment_code(ghost, TimeDelta::hours(1), t0()),
        Err(RegistryError::UnknownVenue { venue }) if venue == ghost
    ));
    let venue = reg.create_venue("Bar", "UTC", t0()).unwrap().id;
    assert!(matches!(
        reg.create_enrollment_code(venue, TimeDelta::zero(), t0()),
        Err(RegistryError::Invalid { field: "ttl", .. })
    ));
}

/// Two redeems of one code race from two threads; exactly one may win. Run over separate
/// connections (two `Registry` values on one file, like the CLI next to the server) and
/// over one shared `Registry`.
#[test]
fn concurrent_redeems_of_one_code_let_exactly_one_win() {
    let (_dir, reg) = registry();
    let path = reg.path().to_owned();
    let venue = reg.create_venue("Bar", "UTC", t0()).unwrap().id;
    let other = Arc::new(Registry::open(&path).unwrap());
    let reg = Arc::new(reg);

    for round in 0..8u8 {
        let code = reg
            .create_enrollment_code(venue, TimeDelta::hours(1), t0())
            .unwrap();
        let second = if round % 2 == 0 {
            other.clone()
        } else {
            reg.clone()
        };
        let barrier = Arc::new(Barrier::new(2));
        let handles: Vec<_> = [(reg.clone(), 1u8), (second, 2u8)]
            .into_iter()
            .map(|(r, n)| {
                let secret = code.secret.clone();
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    barrier.wait();
                    r.redeem_enrollment_code(&secret, hub(n), at(TimeDelta::minutes(1)))
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let wins = results.iter().filter(|r| r.is_ok()).count();
        let used = results
            .iter()
            .filter(|r| matches!(r, Err(EnrollError::AlreadyUsed { .. })))
            .count();
        assert_eq!((wins, used), (1, 1), "round {round}: {results:?}");
    }
}

#[test]
fn hubs_are_recorded_listed_revoked_and_their_serials_listed() {
    let (_dir, reg) = registry();
    let v1 = reg.create_venue("One", "UTC", t0()).unwrap().id;
    let v2 = reg.create_venue("Two", "UTC", t0()).unwrap().id;
    let (s1, f1) = cert_of(1);
    let (s2, f2) = cert_of(2);
    let h1 = reg.record_hub(hub(1), v1, &s1, f1, t0()).unwrap();
    let h2 = reg
        .record_hub(hub(2), v2, &s2, f2, at(TimeDelta::seconds(1)))
        .unwrap();
    assert_eq!(
        (
            h1.venue,
            &h1.cert_serial,
            h1.cert_fingerprint,
            h1.enrolled_at
        ),
        (v1, &s1, f1, t0())
    );
    assert_eq!(h1.revoked_at, None);
    assert_eq!(reg.hub(hub(1)).unwrap(), Some(h1.clone()));
    assert_eq!(reg.list_hubs(None).unwrap(), vec![h1.clone(), h2.clone()]);
    assert_eq!(reg.list_hubs(Some(v2)).unwrap(), vec![h2.clone()]);

    let (s3, f3) = cert_of(3);
    assert!(matches!(
        reg.record_hub(hub(1), v1, &s3, f3, t0()),
        Err(RegistryError::HubExists { .. })
    ));
    assert!(matches!(
        reg.record_hub(hub(3), VenueId::from_bytes([7; 16]), &s3, f3, t0()),
        Err(RegistryError::UnknownVenue { .. })
    ));

    assert!(reg.revoked_serials().unwrap().is_empty());
    let revoked = reg.revoke_hub(hub(2), at(TimeDelta::minutes(1))).unwrap();
    assert_eq!(revoked.revoked_at, Some(at(TimeDelta::minutes(1))));
    // A second revocation keeps the first time.
    let again = reg.revoke_hub(hub(2), at(TimeDelta::hours(1))).unwrap();
    assert_eq!(again.revoked_at, Some(at(TimeDelta::minutes(1))));
    let serials = reg.revoked_serials().unwrap();
    assert_eq!(serials.len(), 1);
    assert_eq!(serials[0].serial, s2);
    assert_eq!(
        serials[0].revoked_at,
        taplink_certs::offset_date_time(at(TimeDelta::minutes(1)))
    );
    assert!(matches!(
        reg.revoke_hub(hub(9), t0()),
        Err(RegistryError::UnknownHub { .. })
    ));
    assert_eq!(
        reg.counts().unwrap(),
        Counts {
            venues: 2,
            active_hubs: 1,
            revoked_hubs: 1
        }
    );
}

#[test]
fn touching_a_hub_updates_only_what_is_given() {
    let (_dir, reg) = registry();
    let v = reg.create_venue("One", "UTC", t0()).unwrap().id;
    let (s, f) = cert_of(1);
    reg.record_hub(hub(1), v, &s, f, t0()).unwrap();
    let heads = vec![
        DocHeads {
            doc: DocId::Org,
            heads: vec![[3; 32]],
        },
        DocHeads {
            doc: DocId::Venue(v),
            heads: vec![[4; 32], [5; 32]],
        },
    ];
    reg.touch_hub(
        hub(1),
        at(TimeDelta::minutes(1)),
        Some("taplink-hub 0.1.0"),
        Some(&heads),
        Some(at(TimeDelta::minutes(1))),
    )
    .unwrap();
    reg.touch_hub(hub(1), at(TimeDelta::hours(1)), None, None, None)
        .unwrap();
    let h = reg.hub(hub(1)).unwrap().unwrap();
    assert_eq!(h.last_seen, Some(at(TimeDelta::hours(1))));
    assert_eq!(h.last_sync, Some(at(TimeDelta::minutes(1))));
    assert_eq!(h.software.as_deref(), Some("taplink-hub 0.1.0"));
    assert_eq!(h.heads, Some(heads));

    let long = "x".repeat(500);
    reg.touch_hub(hub(1), at(TimeDelta::hours(1)), Some(&long), None, None)
        .unwrap();
    assert_eq!(
        reg.hub(hub(1)).unwrap().unwrap().software.unwrap().len(),
        200
    );
    assert!(matches!(
        reg.touch_hub(hub(2), t0(), None, None, None),
        Err(RegistryError::UnknownHub { .. })
    ));
}

#[test]
fn admin_tokens_are_checked_by_hash() {
    let (_dir, reg) = registry();
    let token = reg.bootstrap_admin_token("bootstrap", t0()).unwrap();
    assert!(token.as_str().starts_with("tla1-"));
    assert_eq!(token.as_str().len(), 5 + 52);
    assert!(reg.check_admin_token(token.as_str()).unwrap());
    let other = reg.bootstrap_admin_token("second", t0()).unwrap();
    assert_ne!(token, other);
    assert!(reg.check_admin_token(other.as_str()).unwrap());

    let mut wrong = token.as_str().to_owned();
    // Change the last character to a different one (it may already be '0').
    let last = wrong.pop().unwrap();
    wrong.push(if last == '0' { '1' } else { '0' });
    for bad in [wrong.as_str(), "", "tla1-", &"x".repeat(10_000)] {
        assert!(!reg.check_admin_token(bad).unwrap(), "{bad:?}");
    }
    assert!(!format!("{token:?}").contains(token.as_str()));
    assert!(matches!(
        reg.bootstrap_admin_token(" ", t0()),
        Err(RegistryError::Invalid { field: "name", .. })
    ));
}

fn event(n: u8, kind: TelemetryKind) -> TelemetryEvent {
    TelemetryEvent {
        id: [n; 16],
        kiosk: Some(KioskId::from_bytes([n; 16])),
        at_ms: 1_772_366_400_000 + i64::from(n),
        kind,
    }
}

fn heartbeat() -> TelemetryKind {
    TelemetryKind::Heartbeat(Heartbeat {
        on_screen: Some(MediaHash::of(b"ad")),
        manifest_version: "v1".into(),
        disk_free_bytes: 1 << 30,
        temperature_mc: Some(48_000),
        uptime_s: 3600,
        software: "taplink-kiosk 0.1.0".into(),
    })
}

fn proof_of_play() -> TelemetryKind {
    TelemetryKind::ProofOfPlay(ProofOfPlay {
        playlist: taplink_sync_proto::ids::PlaylistId::from_bytes([1; 16]),
        item: taplink_sync_proto::ids::ItemId::from_bytes([2; 16]),
        media: MediaHash::of(b"ad"),
        started_ms: 1_772_366_400_000,
        duration_ms: 10_000,
    })
}

#[test]
fn telemetry_is_stored_once_per_event_id() {
    let (_dir, reg) = registry();
    let v = reg.create_venue("One", "UTC", t0()).unwrap().id;
    let (s, f) = cert_of(1);
    reg.record_hub(hub(1), v, &s, f, t0()).unwrap();

    let batch = vec![
        event(1, heartbeat()),
        event(2, proof_of_play()),
        event(3, heartbeat()),
    ];
    assert_eq!(reg.store_telemetry(hub(1), &batch, t0()).unwrap(), 3);
    assert_eq!(reg.store_telemetry(hub(1), &batch, t0()).unwrap(), 0);
    assert_eq!(reg.telemetry_count().unwrap(), 3);

    let mixed = vec![event(3, heartbeat()), event(4, proof_of_play())];
    assert_eq!(reg.store_telemetry(hub(1), &mixed, t0()).unwrap(), 1);
    assert_eq!(reg.telemetry_count().unwrap(), 4);
    assert_eq!(reg.store_telemetry(hub(1), &[], t0()).unwrap(), 0);

    assert!(matches!(
        reg.store_telemetry(hub(2), &[event(9, heartbeat())], t0()),
        Err(RegistryError::UnknownHub { .. })
    ));
    assert_eq!(reg.telemetry_count().unwrap(), 4);
}

#[test]
fn times_are_kept_to_the_millisecond() {
    let (_dir, reg) = registry();
    let now = t0() + TimeDelta::nanoseconds(123_456_789);
    let v = reg.create_venue("One", "UTC", now).unwrap();
    assert_eq!(v.created_at, truncate_to_ms(now));
    assert_eq!(
        reg.venue(v.id).unwrap().unwrap().created_at,
        truncate_to_ms(now)
    );
}
