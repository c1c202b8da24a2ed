//! Sync sessions driven against each other through the deterministic harness.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use automerge::sync::SyncDoc;
use automerge::transaction::Transactable;
use automerge::{AutoCommit, ROOT, ReadDoc};
use taplink_sync_proto::harness::{Harness, LinkConfig, Peer, Side};
use taplink_sync_proto::ids::{HubId, VenueId};
use taplink_sync_proto::session::{Access, Event, Session, SessionConfig};
use taplink_sync_proto::wire::{
    DocId, ErrorCode, Hello, Message, PROTOCOL_VERSION, PeerIdentity, encode_frame,
};

const LIMIT: Duration = Duration::from_secs(600);

struct Setup {
    venue: DocId,
    hub: PeerIdentity,
    origin_venue: AutoCommit,
    origin_org: AutoCommit,
}

fn setup() -> Setup {
    let venue_id = VenueId::from_bytes([7; 16]);
    let mut origin_venue = AutoCommit::new();
    origin_venue.put(ROOT, "name", "The Anchor").unwrap();
    let mut origin_org = AutoCommit::new();
    origin_org.put(ROOT, "org", "Taplink Demo").unwrap();
    Setup {
        venue: DocId::Venue(venue_id),
        hub: PeerIdentity::Hub {
            hub: HubId::from_bytes([9; 16]),
            venue: venue_id,
        },
        origin_venue,
        origin_org,
    }
}

/// Central (side A) and a hub (side B), both holding the venue and org documents as
/// forked from one origin, as enrollment leaves them.
fn harness(s: &mut Setup, link: LinkConfig, seed: u64) -> Harness {
    let hub_docs = BTreeMap::from([
        (s.venue, s.origin_venue.fork()),
        (DocId::Org, s.origin_org.fork()),
    ]);
    harness_with_hub_docs(s, hub_docs, link, seed)
}

/// Central (side A) holding the origin's documents, and a hub (side B) holding `hub_docs`.
fn harness_with_hub_docs(
    s: &mut Setup,
    hub_docs: BTreeMap<DocId, AutoCommit>,
    link: LinkConfig,
    seed: u64,
) -> Harness {
    let now = start();
    let central_docs = BTreeMap::from([
        (s.venue, s.origin_venue.fork()),
        (DocId::Org, s.origin_org.fork()),
    ]);
    let central = SessionConfig::new(
        PeerIdentity::Central,
        s.hub.clone(),
        "central-test",
        BTreeMap::from([(s.venue, Access::Write), (DocId::Org, Access::Read)]),
    );
    let hub = SessionConfig::new(
        s.hub.clone(),
        PeerIdentity::Central,
        "hub-test",
        BTreeMap::from([(s.venue, Access::Write), (DocId::Org, Access::Write)]),
    );
    Harness::new(
        Peer::new(central, central_docs, now),
        Peer::new(hub, hub_docs, now),
        link,
        seed,
        now,
    )
}

fn put(key: String, value: i64) -> impl FnOnce(&mut AutoCommit) {
    move |d| {
        d.put(ROOT, key, value).unwrap();
    }
}

fn assert_converged(h: &mut Harness, doc: DocId) {
    let a = h.a.docs.get_mut(&doc).unwrap();
    let b = h.b.docs.get_mut(&doc).unwrap();
    let mut ha = a.get_heads();
    let mut hb = b.get_heads();
    ha.sort();
    hb.sort();
    assert_eq!(ha, hb, "{doc} heads differ");
    assert_eq!(
        a.hydrate(ROOT, None).unwrap(),
        b.hydrate(ROOT, None).unwrap(),
        "{doc} contents differ"
    );
}

fn keys(h: &mut Harness, side: Side, doc: DocId) -> Vec<String> {
    h.peer(side).docs[&doc].keys(ROOT).collect()
}

#[test]
fn concurrent_edits_converge_on_a_clean_link() {
    let mut s = setup();
    let mut h = harness(&mut s, LinkConfig::default(), 1);
    h.run_until_synced(LIMIT).expect("initial sync");
    for i in 0..20 {
        h.edit(Side::A, s.venue, put(format!("central-{i}"), i));
        h.edit(Side::B, s.venue, put(format!("hub-{i}"), i));
    }
    h.run_until_synced(LIMIT).expect("converges");
    assert_converged(&mut h, s.venue);
    assert_eq!(keys(&mut h, Side::A, s.venue).len(), 41);
    assert!(
        h.a.events
            .iter()
            .any(|e| matches!(e, Event::DocChanged { doc } if *doc == s.venue))
    );
}

#[test]
fn edits_are_pushed_at_once_not_on_a_timer() {
    let mut s = setup();
    let mut h = harness(&mut s, LinkConfig::default(), 2);
    h.run_until_synced(LIMIT).expect("initial sync");
    let before = h.now;
    h.edit(Side::A, s.venue, put("pushed".into(), 1));
    let took = h.run_until_synced(LIMIT).expect("converges");
    // Latency is 20 ms one way; one round trip and a confirmation, no timer involved.
    assert!(took <= Duration::from_millis(100), "took {took:?}");
    assert_eq!(h.now - before, took);
    assert!(keys(&mut h, Side::B, s.venue).contains(&"pushed".to_string()));
}

#[test]
fn converges_with_twenty_percent_loss_and_reordering() {
    for seed in 0..32 {
        let mut s = setup();
        let link = LinkConfig {
            latency: Duration::from_millis(30),
            jitter: Duration::from_millis(80),
            loss: 0.2,
        };
        let mut h = harness(&mut s, link, seed);
        for i in 0..30 {
            let side = if i % 3 == 0 { Side::A } else { Side::B };
            h.edit(side, s.venue, put(format!("k{i}"), i));
            h.run_for(Duration::from_millis(15));
        }
        h.run_until_synced(LIMIT)
            .unwrap_or_else(|| panic!("seed {seed}: no convergence under loss"));
        assert_converged(&mut h, s.venue);
        assert_converged(&mut h, DocId::Org);
        assert_eq!(keys(&mut h, Side::A, s.venue).len(), 31, "seed {seed}");
        assert_eq!(keys(&mut h, Side::B, s.venue).len(), 31, "seed {seed}");
    }
}

#[test]
fn partition_then_heal_merges_both_sides() {
    for seed in 0..6 {
        let mut s = setup();
        let mut h = harness(&mut s, LinkConfig::default(), seed);
        h.run_until_synced(LIMIT).expect("initial sync");
        h.set_partitioned(true);
        for i in 0..25 {
            h.edit(Side::A, s.venue, put(format!("central-{i}"), i));
            h.edit(Side::B, s.venue, put(format!("hub-{i}"), i));
            h.edit(Side::A, s.venue, put("contested".into(), i));
            h.edit(Side::B, s.venue, put("contested".into(), 100 + i));
            h.run_for(Duration::from_secs(7));
        }
        h.edit(Side::A, DocId::Org, put("org-setting".into(), 5));
        assert!(
            h.run_until_synced(Duration::from_secs(60)).is_none(),
            "cannot sync while cut"
        );
        h.set_partitioned(false);
        h.run_until_synced(LIMIT)
            .unwrap_or_else(|| panic!("seed {seed}: no convergence after heal"));
        assert_converged(&mut h, s.venue);
        assert_converged(&mut h, DocId::Org);
        // 50 distinct keys + "contested" + the origin's "name".
        assert_eq!(keys(&mut h, Side::B, s.venue).len(), 52);
    }
}

/// A venue document with a realistic history: 2,000 changes.
fn big_setup() -> Setup {
    let mut s = setup();
    for i in 0..2000 {
        s.origin_venue
            .put(ROOT, format!("item-{}", i % 300), i)
            .unwrap();
        s.origin_venue.commit();
    }
    s
}

#[test]
fn warm_resync_after_one_change_sends_under_2_kb() {
    let mut s = big_setup();
    let mut h = harness(&mut s, LinkConfig::default(), 3);
    h.run_until_synced(LIMIT).expect("initial sync");
    h.reconnect();
    h.run_until_synced(LIMIT).expect("resync");
    h.edit(Side::B, s.venue, put("offline-edit".into(), 1));
    // The edit happened while disconnected: the new connection must find it.
    h.set_partitioned(true);
    h.run_for(Duration::from_millis(50));
    h.set_partitioned(false);
    h.reconnect();
    let before = h.bytes_sent();
    h.run_until_synced(LIMIT).expect("warm resync");
    let bytes = h.bytes_sent() - before;
    assert_converged(&mut h, s.venue);
    assert!(keys(&mut h, Side::A, s.venue).contains(&"offline-edit".to_string()));
    eprintln!("figure: warm resync after one change of a 2,000-change document: {bytes} bytes");
    assert!(
        bytes < 2048,
        "warm resync after one change sent {bytes} bytes"
    );
}

#[test]
fn offline_edits_on_both_sides_travel_as_bundles() {
    let mut s = big_setup();
    let mut h = harness(&mut s, LinkConfig::default(), 7);
    h.run_until_synced(LIMIT).expect("initial sync");
    // An outage: both sides edit with no session, then reconnect.
    for (side, prefix) in [(Side::A, "central"), (Side::B, "hub")] {
        let doc = h.peer(side).docs.get_mut(&s.venue).unwrap();
        for i in 0..200 {
            doc.put(ROOT, format!("{prefix}-offline-{}", i % 50), i)
                .unwrap();
            doc.commit();
        }
    }
    h.reconnect();
    let before = h.bytes_sent();
    h.run_until_synced(LIMIT).expect("reconverges");
    let bytes = h.bytes_sent() - before;
    assert_converged(&mut h, s.venue);
    let a = h.a.docs.get_mut(&s.venue).unwrap();
    assert_eq!(a.get_changes(&[]).len(), 2000 + 400);
    // As separate change chunks these 400 changes are over 100 bytes each; as one
    // bundle per direction, a small fraction of that.
    eprintln!("figure: 200 offline changes on each side of a 2,000-change document: {bytes} bytes");
    assert!(bytes < 400 * 40, "reconvergence sent {bytes} bytes");
}

#[test]
fn warm_resync_of_unchanged_documents_sends_only_hellos() {
    let mut s = big_setup();
    let mut h = harness(&mut s, LinkConfig::default(), 4);
    h.run_until_synced(LIMIT).expect("initial sync");
    let before = h.bytes_sent();
    let frames_before = h.a.frames_sent + h.b.frames_sent;
    h.reconnect();
    h.run_until_synced(LIMIT).expect("resync");
    let bytes = h.bytes_sent() - before;
    assert_eq!(
        h.a.frames_sent + h.b.frames_sent - frames_before,
        2,
        "two hellos only"
    );
    eprintln!("figure: warm resync of an unchanged 2,000-change document: {bytes} bytes");
    assert!(bytes < 512, "unchanged warm resync sent {bytes} bytes");
}

#[test]
fn hub_changes_to_the_org_document_are_refused_and_the_rest_continues() {
    let mut s = setup();
    let mut h = harness(&mut s, LinkConfig::default(), 5);
    h.run_until_synced(LIMIT).expect("initial sync");
    let central_org_before = h.a.docs.get_mut(&DocId::Org).unwrap().get_heads();
    // A tampered hub writes the org document anyway and pushes it with a fresh state.
    let rogue = {
        let org = h.b.docs.get_mut(&DocId::Org).unwrap();
        org.put(ROOT, "org", "hijacked").unwrap();
        org.commit();
        // It pretends central has nothing, so its next sync message carries every change.
        let mut state = automerge::sync::State::new();
        org.sync().generate_sync_message(&mut state).unwrap();
        let nothing = AutoCommit::new()
            .sync()
            .generate_sync_message(&mut automerge::sync::State::new())
            .unwrap();
        org.sync()
            .receive_sync_message(&mut state, nothing)
            .unwrap();
        org.sync().generate_sync_message(&mut state).unwrap()
    };
    assert!(!rogue.changes.is_empty());
    let now = h.now;
    h.a.session.handle_message(
        now,
        Message::DocSync {
            doc: DocId::Org,
            data: rogue.encode(),
        },
        &mut h.a.docs,
    );
    let refusal = h.a.session.poll_event();
    assert!(
        matches!(
            &refusal,
            Some(Event::Refused {
                doc: Some(DocId::Org),
                code: ErrorCode::Forbidden,
                ..
            })
        ),
        "{refusal:?}"
    );
    assert_eq!(
        h.a.docs.get_mut(&DocId::Org).unwrap().get_heads(),
        central_org_before
    );
    assert!(matches!(
        h.a.session.poll_transmit(),
        Some(Message::Error {
            code: ErrorCode::Forbidden,
            ..
        })
    ));
    // The venue document still syncs on the same session.
    h.edit(Side::B, s.venue, put("still-works".into(), 1));
    h.run_for(Duration::from_secs(1));
    assert!(keys(&mut h, Side::A, s.venue).contains(&"still-works".to_string()));
    assert_eq!(
        h.a.docs[&DocId::Org]
            .get(ROOT, "org")
            .unwrap()
            .unwrap()
            .0
            .into_string()
            .ok(),
        Some("Taplink Demo".to_owned())
    );
}

#[test]
fn another_venues_document_is_refused() {
    let mut s = setup();
    let mut h = harness(&mut s, LinkConfig::default(), 6);
    h.run_until_synced(LIMIT).expect("initial sync");
    let other = DocId::Venue(VenueId::from_bytes([1; 16]));
    let mut state = automerge::sync::State::new();
    let msg = AutoCommit::new()
        .sync()
        .generate_sync_message(&mut state)
        .unwrap();
    let now = h.now;
    h.a.session.handle_message(
        now,
        Message::DocSync {
            doc: other,
            data: msg.encode(),
        },
        &mut h.a.docs,
    );
    assert!(matches!(
        h.a.session.poll_event(),
        Some(Event::Refused { doc: Some(d), code: ErrorCode::Forbidden, .. }) if d == other
    ));
    assert!(h.a.session.is_established());
}

#[test]
fn malformed_sync_payload_is_refused_without_harm() {
    let mut s = setup();
    let mut h = harness(&mut s, LinkConfig::default(), 7);
    h.run_until_synced(LIMIT).expect("initial sync");
    let now = h.now;
    h.a.session.handle_message(
        now,
        Message::DocSync {
            doc: s.venue,
            data: vec![0x42, 1, 2, 3],
        },
        &mut h.a.docs,
    );
    assert!(matches!(
        h.a.session.poll_event(),
        Some(Event::Refused {
            code: ErrorCode::Malformed,
            ..
        })
    ));
    h.edit(Side::B, s.venue, put("after".into(), 1));
    h.run_until_synced(LIMIT).expect("still syncs");
    assert_converged(&mut h, s.venue);
}

fn lone_central(s: &Setup, now: Instant) -> (Session, BTreeMap<DocId, AutoCommit>) {
    let mut docs = BTreeMap::from([(s.venue, s.origin_venue.clone())]);
    let config = SessionConfig::new(
        PeerIdentity::Central,
        s.hub.clone(),
        "central-test",
        BTreeMap::from([(s.venue, Access::Write)]),
    );
    let mut session = Session::new(config, &BTreeMap::new(), &mut docs, now);
    assert!(matches!(session.poll_transmit(), Some(Message::Hello(_))));
    (session, docs)
}

#[test]
fn a_hello_with_the_wrong_identity_closes_the_session() {
    let s = setup();
    let now = start();
    let (mut session, mut docs) = lone_central(&s, now);
    let impostor = PeerIdentity::Hub {
        hub: HubId::from_bytes([2; 16]),
        venue: VenueId::from_bytes([7; 16]),
    };
    let hello = Hello {
        protocol: PROTOCOL_VERSION,
        software: "x".into(),
        identity: impostor,
        docs: vec![],
    };
    session.handle_message(now, Message::Hello(hello), &mut docs);
    assert!(session.is_closed());
    assert!(matches!(
        session.poll_transmit(),
        Some(Message::Error {
            code: ErrorCode::Unauthorized,
            ..
        })
    ));
    assert!(matches!(
        session.poll_event(),
        Some(Event::Closed {
            code: ErrorCode::Unauthorized,
            ..
        })
    ));
}

#[test]
fn a_newer_protocol_version_is_refused_with_a_reason() {
    let s = setup();
    let now = start();
    let (mut session, mut docs) = lone_central(&s, now);
    let hello = Hello {
        protocol: PROTOCOL_VERSION + 1,
        software: "x".into(),
        identity: s.hub.clone(),
        docs: vec![],
    };
    session.handle_message(now, Message::Hello(hello), &mut docs);
    match session.poll_event() {
        Some(Event::Closed {
            code: ErrorCode::UnsupportedVersion,
            reason,
        }) => {
            assert!(reason.contains("protocol version 2"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_silent_peer_times_out_the_handshake() {
    let s = setup();
    let now = start();
    let (mut session, mut docs) = lone_central(&s, now);
    let deadline = session.poll_timeout().unwrap();
    assert_eq!(deadline, now + Duration::from_secs(10));
    session.handle_timeout(deadline, &mut docs);
    assert!(session.is_closed());
    assert_eq!(session.poll_timeout(), None);
}

#[test]
fn messages_that_overtake_the_hello_are_kept_for_after_it() {
    let s = setup();
    let now = start();
    let (mut session, mut docs) = lone_central(&s, now);
    let ack = Message::TelemetryAck {
        batch: 1,
        stored: 0,
    };
    session.handle_message(now, ack.clone(), &mut docs);
    assert_eq!(session.poll_event(), None);
    let hello = Hello {
        protocol: PROTOCOL_VERSION,
        software: "x".into(),
        identity: s.hub.clone(),
        docs: vec![],
    };
    session.handle_message(now, Message::Hello(hello), &mut docs);
    assert!(matches!(
        session.poll_event(),
        Some(Event::Established { .. })
    ));
    assert_eq!(session.poll_event(), Some(Event::Application(ack)));
}

#[test]
fn a_flood_before_the_hello_closes_the_session() {
    let s = setup();
    let now = start();
    let (mut session, mut docs) = lone_central(&s, now);
    for batch in 0..=taplink_sync_proto::session::MAX_EARLY_MESSAGES as u64 {
        session.handle_message(now, Message::TelemetryAck { batch, stored: 0 }, &mut docs);
    }
    assert!(matches!(
        session.poll_event(),
        Some(Event::Closed {
            code: ErrorCode::Malformed,
            ..
        })
    ));
    assert!(session.is_closed());
}

#[test]
fn blob_and_telemetry_messages_pass_through_to_the_owner() {
    let mut s = setup();
    let mut h = harness(&mut s, LinkConfig::default(), 8);
    h.run_until_synced(LIMIT).expect("initial sync");
    let now = h.now;
    let ack = Message::TelemetryAck {
        batch: 3,
        stored: 2,
    };
    h.b.session.handle_message(now, ack.clone(), &mut h.b.docs);
    assert_eq!(
        h.b.session.poll_event(),
        Some(Event::Application(ack.clone()))
    );
    assert!(encode_frame(&ack).is_ok());
}

/// A hub that starts empty asks for central's heads before central's first answer (the
/// whole document) reaches it; automerge alone would answer that request with the whole
/// document again.
#[test]
fn an_empty_hub_gets_the_whole_document_once() {
    let mut s = big_setup();
    let hub_docs = BTreeMap::from([
        (s.venue, AutoCommit::new()),
        (DocId::Org, AutoCommit::new()),
    ]);
    let mut h = harness_with_hub_docs(&mut s, hub_docs, LinkConfig::default(), 1);
    h.record_trace = true;
    h.run_until_synced(LIMIT).expect("initial sync");
    let venue = format!("DocSync {}", s.venue);
    let carrying: Vec<&String> = h
        .trace
        .iter()
        .filter(|l| l.contains("A->B") && l.contains(&venue) && !l.contains("changes=0"))
        .collect();
    assert_eq!(
        carrying.len(),
        1,
        "the venue document went more than once: {carrying:#?}"
    );
    let saved = s.origin_venue.clone().save().len() as u64;
    eprintln!(
        "figure: initial sync of an empty hub, {saved}-byte saved document: {} bytes",
        h.bytes_sent()
    );
    let (mut central_venue, mut hub_venue) = (
        h.a.docs.get_mut(&s.venue).unwrap().clone(),
        h.b.docs.get_mut(&s.venue).unwrap().clone(),
    );
    assert_eq!(central_venue.get_heads(), hub_venue.get_heads());
}

/// A starting point for the sessions' virtual time: tokio's clock, since nothing in the
/// workspace reads std's `Instant::now` (see `taplink_sync_proto::clock`).
fn start() -> Instant {
    tokio::time::Instant::now().into_std()
}
