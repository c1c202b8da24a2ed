//! The session driver and blob transfers over real QUIC on loopback, with mutual TLS from
//! an org CA: a "central" node and a "hub" node, each with its own documents and blobs.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use automerge::AutoCommit;
use taplink_certs::tls::{ClientAuth, client_config, server_config};
use taplink_certs::{HubIdentity, OrgCa, ServerSan, Validity};
use taplink_sync_io::blobs::BlobStore;
use taplink_sync_io::docs::Documents;
use taplink_sync_io::docstore::DocDb;
use taplink_sync_io::driver::{AppLink, ConnectionParams, DriverEnd, Inbound, drive};
use taplink_sync_io::net;
use taplink_sync_io::transfer::{BlobServer, Fetched, TransferError, fetch_blob};
use taplink_sync_proto::doc::{self, MediaMeta, load_venue};
use taplink_sync_proto::ids::{HubId, KioskId, MediaHash, VenueId};
use taplink_sync_proto::session::{Access, SessionConfig};
use taplink_sync_proto::wire::{DocId, ErrorCode, Message, PeerIdentity};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(20);

struct Node {
    _dir: tempfile::TempDir,
    docs: Arc<Documents>,
    blobs: Arc<BlobStore>,
}

fn node() -> Node {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(DocDb::open(&dir.path().join("docs.sqlite")).unwrap());
    let docs = Arc::new(Documents::open(db, automerge::ActorId::random()).unwrap());
    let blobs = Arc::new(BlobStore::open(&dir.path().join("media")).unwrap());
    Node {
        _dir: dir,
        docs,
        blobs,
    }
}

struct Pair {
    central: Node,
    hub: Node,
    venue: DocId,
    ids: HubIdentity,
    server: quinn::Endpoint,
    client: quinn::Endpoint,
    client_config: quinn::ClientConfig,
}

fn pair() -> Pair {
    // Real time: rustls checks the certificates against the system clock.
    let now = taplink_certs::offset_date_time(taplink_sync_proto::clock::Clock::now(
        &taplink_sync_proto::clock::SystemClock,
    ));
    let ca = OrgCa::create(
        "Test Org",
        Validity::new(now, time::Duration::days(30)).unwrap(),
    )
    .unwrap();
    let server_cert = ca
        .issue_server_cert(
            &["localhost".parse::<ServerSan>().unwrap()],
            Validity::new(now, time::Duration::days(10)).unwrap(),
        )
        .unwrap();
    let ids = HubIdentity {
        hub: HubId::random(),
        venue: VenueId::random(),
    };
    let hub_cert = ca
        .issue_hub_cert(ids, Validity::new(now, time::Duration::days(10)).unwrap())
        .unwrap();
    let tls = server_config(
        vec![server_cert.cert.der().clone()],
        server_cert.key.to_der(),
        ca.cert_der(),
        vec![],
        ClientAuth::Required,
    )
    .unwrap();
    let server = net::server_endpoint(SocketAddr::from(([127, 0, 0, 1], 0)), tls).unwrap();
    let client = net::client_endpoint(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let client_tls = client_config(
        vec![hub_cert.cert.der().clone()],
        hub_cert.key.to_der(),
        ca.cert_der(),
    )
    .unwrap();
    let client_config = net::client_config(client_tls).unwrap();

    let venue = DocId::Venue(ids.venue);
    let central = node();
    let hub = node();
    central
        .docs
        .create(
            venue,
            doc::new_venue_doc("The Anchor", "Europe/London").unwrap(),
        )
        .unwrap();
    central
        .docs
        .create(
            DocId::Org,
            doc::new_org_doc("Europe/London", 10_000).unwrap(),
        )
        .unwrap();
    hub.docs.create(venue, AutoCommit::new()).unwrap();
    hub.docs.create(DocId::Org, AutoCommit::new()).unwrap();
    Pair {
        central,
        hub,
        venue,
        ids,
        server,
        client,
        client_config,
    }
}

struct Running {
    central_in: mpsc::Receiver<Inbound>,
    hub_in: mpsc::Receiver<Inbound>,
    hub_out: mpsc::Sender<Message>,
    central_out: mpsc::Sender<Message>,
    central_conn: quinn::Connection,
    hub_conn: quinn::Connection,
    cancel: CancellationToken,
    hub_end: tokio::task::JoinHandle<DriverEnd>,
}

async fn connect(p: &Pair, allow_hub_blob: Option<MediaHash>) -> Running {
    let accept = p.server.accept();
    let connecting = p
        .client
        .connect_with(
            p.client_config.clone(),
            p.server.local_addr().unwrap(),
            "localhost",
        )
        .unwrap();
    let (hub_conn, central_conn) = tokio::join!(connecting, async { accept.await.unwrap().await });
    let (hub_conn, central_conn) = (hub_conn.unwrap(), central_conn.unwrap());
    let cancel = CancellationToken::new();
    let hub_peer = PeerIdentity::Hub {
        hub: p.ids.hub,
        venue: p.ids.venue,
    };

    let (central_out, to_peer) = mpsc::channel(8);
    let (from_peer, central_in) = mpsc::channel(64);
    let central_params = ConnectionParams {
        session: SessionConfig::new(
            PeerIdentity::Central,
            hub_peer.clone(),
            "central-test",
            BTreeMap::from([(p.venue, Access::Write), (DocId::Org, Access::Read)]),
        ),
        peer_key: p.ids.hub.to_string(),
        origin: 2,
        dialer: false,
    };
    let policy = Arc::new(move |h: &MediaHash| Some(*h) == allow_hub_blob);
    tokio::spawn(drive(
        central_conn.clone(),
        central_params,
        p.central.docs.clone(),
        AppLink { to_peer, from_peer },
        Some(BlobServer::new(p.central.blobs.clone(), policy)),
        cancel.clone(),
    ));

    let (hub_out, to_peer) = mpsc::channel(8);
    let (from_peer, hub_in) = mpsc::channel(64);
    let hub_params = ConnectionParams {
        session: SessionConfig::new(
            hub_peer,
            PeerIdentity::Central,
            "hub-test",
            BTreeMap::from([(p.venue, Access::Write), (DocId::Org, Access::Write)]),
        ),
        peer_key: "central".into(),
        origin: 1,
        dialer: true,
    };
    let hub_end = tokio::spawn(drive(
        hub_conn.clone(),
        hub_params,
        p.hub.docs.clone(),
        AppLink { to_peer, from_peer },
        Some(BlobServer::new(
            p.hub.blobs.clone(),
            Arc::new(|_: &MediaHash| true),
        )),
        cancel.clone(),
    ));
    Running {
        central_in,
        hub_in,
        hub_out,
        central_out,
        central_conn,
        hub_conn,
        cancel,
        hub_end,
    }
}

async fn until(rx: &mut mpsc::Receiver<Inbound>, mut f: impl FnMut(&Inbound) -> bool) -> Inbound {
    tokio::time::timeout(WAIT, async {
        loop {
            let msg = rx.recv().await.expect("driver stopped");
            if f(&msg) {
                return msg;
            }
        }
    })
    .await
    .expect("timed out waiting for the driver")
}

fn venue_of(node: &Node, venue: DocId) -> doc::VenueDoc {
    node.docs.read(venue, |am| load_venue(am)).unwrap().unwrap()
}

#[tokio::test]
async fn documents_sync_and_changes_are_pushed_both_ways() {
    let p = pair();
    let mut r = connect(&p, None).await;
    until(&mut r.hub_in, |m| matches!(m, Inbound::Sync(s) if s.synced)).await;
    assert_eq!(venue_of(&p.hub, p.venue).settings.name, "The Anchor");

    // An edit at central reaches the connected hub without any poll.
    let kiosk = KioskId::random();
    p.central
        .docs
        .edit(p.venue, |am| doc::add_kiosk(am, kiosk, "Bar"))
        .unwrap();
    until(
        &mut r.hub_in,
        |m| matches!(m, Inbound::DocChanged(d) if *d == p.venue),
    )
    .await;
    assert_eq!(venue_of(&p.hub, p.venue).kiosks[&kiosk].name, "Bar");

    // And an edit at the hub reaches central.
    p.hub
        .docs
        .edit(p.venue, |am| doc::rename_kiosk(am, kiosk, "Bar left"))
        .unwrap();
    until(
        &mut r.central_in,
        |m| matches!(m, Inbound::DocChanged(d) if *d == p.venue),
    )
    .await;
    assert_eq!(
        venue_of(&p.central, p.venue).kiosks[&kiosk].name,
        "Bar left"
    );

    // What central applied is durable: a fresh load from its database has it.
    let reloaded = p.central.docs.db().load(p.venue).unwrap().unwrap();
    assert_eq!(
        load_venue(&reloaded).unwrap().kiosks[&kiosk].name,
        "Bar left"
    );
    r.cancel.cancel();
}

#[tokio::test]
async fn a_hub_cannot_change_the_org_document() {
    let p = pair();
    let mut r = connect(&p, None).await;
    until(&mut r.hub_in, |m| matches!(m, Inbound::Sync(s) if s.synced)).await;
    let before = p
        .central
        .docs
        .read(DocId::Org, |am| am.get_heads())
        .unwrap();
    p.hub
        .docs
        .edit(DocId::Org, |am| {
            doc::set_org_defaults(
                am,
                &doc::OrgDefaults {
                    timezone: "UTC".into(),
                    item_duration_ms: 1,
                },
            )
        })
        .unwrap();
    // The venue document keeps syncing meanwhile.
    let kiosk = KioskId::random();
    p.hub
        .docs
        .edit(p.venue, |am| doc::add_kiosk(am, kiosk, "Door"))
        .unwrap();
    until(
        &mut r.central_in,
        |m| matches!(m, Inbound::DocChanged(d) if *d == p.venue),
    )
    .await;
    assert!(venue_of(&p.central, p.venue).kiosks.contains_key(&kiosk));
    assert_eq!(
        p.central
            .docs
            .read(DocId::Org, |am| am.get_heads())
            .unwrap(),
        before
    );
    r.cancel.cancel();
}

#[tokio::test]
async fn telemetry_and_acks_travel_on_the_control_stream() {
    let p = pair();
    let mut r = connect(&p, None).await;
    until(&mut r.hub_in, |m| matches!(m, Inbound::Established(_))).await;
    r.hub_out
        .send(Message::TelemetryBatch {
            batch: 7,
            events: vec![],
        })
        .await
        .unwrap();
    until(&mut r.central_in, |m| {
        matches!(
            m,
            Inbound::Message(Message::TelemetryBatch { batch: 7, .. })
        )
    })
    .await;
    r.central_out
        .send(Message::TelemetryAck {
            batch: 7,
            stored: 0,
        })
        .await
        .unwrap();
    until(&mut r.hub_in, |m| {
        matches!(m, Inbound::Message(Message::TelemetryAck { batch: 7, .. }))
    })
    .await;
    r.cancel.cancel();
}

fn media(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

#[tokio::test]
async fn blobs_transfer_verified_and_resume_after_a_cut() {
    let p = pair();
    let data = media(3 * 1024 * 1024 + 123);
    let hash = p.central.blobs.put(&data).unwrap();
    let r = connect(&p, Some(hash)).await;

    // Cut the first attempt part-way: take one chunk by hand and drop the stream.
    {
        let mut partial = p.hub.blobs.partial(hash, data.len() as u64).unwrap();
        partial.write_chunk(0, &data[..700_000]).unwrap();
        partial.sync().unwrap();
    }
    assert!(
        !p.hub.blobs.has(&hash).unwrap(),
        "a partial blob is never visible"
    );
    let fetched = fetch_blob(&r.hub_conn, &p.hub.blobs, hash, data.len() as u64)
        .await
        .unwrap();
    assert_eq!(
        fetched,
        Fetched::Stored {
            transferred: data.len() as u64 - 700_000,
            resumed_from: 700_000
        }
    );
    assert_eq!(p.hub.blobs.read_range(&hash, 0, data.len()).unwrap(), data);
    assert_eq!(
        fetch_blob(&r.hub_conn, &p.hub.blobs, hash, data.len() as u64)
            .await
            .unwrap(),
        Fetched::AlreadyPresent
    );
    r.cancel.cancel();
}

#[tokio::test]
async fn a_large_blob_streams_in_full_size_datagrams() {
    let p = pair();
    // Several fsync windows of the fetcher's flusher thread, and a partial last one.
    let data = media(5 * 4 * 1024 * 1024 + 4321);
    let hash = p.central.blobs.put(&data).unwrap();
    let r = connect(&p, Some(hash)).await;

    let fetched = fetch_blob(&r.hub_conn, &p.hub.blobs, hash, data.len() as u64)
        .await
        .unwrap();
    assert_eq!(
        fetched,
        Fetched::Stored {
            transferred: data.len() as u64,
            resumed_from: 0
        }
    );
    assert_eq!(p.hub.blobs.read_range(&hash, 0, data.len()).unwrap(), data);

    // Loopback carries the largest datagrams Taplink allows. Had a batch of them exceeded one
    // UDP send, the kernel would have refused it and path-MTU discovery fallen to 1,200.
    let deadline = tokio::time::Instant::now() + WAIT;
    while r.central_conn.stats().path.current_mtu != net::MAX_UDP_PAYLOAD {
        assert!(
            tokio::time::Instant::now() < deadline,
            "path MTU stuck at {}",
            r.central_conn.stats().path.current_mtu
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    r.cancel.cancel();
}

#[tokio::test]
async fn a_corrupt_resume_is_discarded_and_fetched_again() {
    let p = pair();
    let data = media(600_000);
    let hash = p.central.blobs.put(&data).unwrap();
    let r = connect(&p, Some(hash)).await;
    {
        // A partial whose bytes are wrong (e.g. a torn write after power loss).
        let mut partial = p.hub.blobs.partial(hash, data.len() as u64).unwrap();
        partial.write_chunk(0, &vec![0u8; 300_000]).unwrap();
        partial.sync().unwrap();
    }
    let err = fetch_blob(&r.hub_conn, &p.hub.blobs, hash, data.len() as u64)
        .await
        .unwrap_err();
    assert!(matches!(err, TransferError::Blob(_)), "{err}");
    assert!(!p.hub.blobs.has(&hash).unwrap());
    let again = fetch_blob(&r.hub_conn, &p.hub.blobs, hash, data.len() as u64)
        .await
        .unwrap();
    assert_eq!(
        again,
        Fetched::Stored {
            transferred: data.len() as u64,
            resumed_from: 0
        }
    );
    assert_eq!(p.hub.blobs.read_range(&hash, 0, data.len()).unwrap(), data);
    r.cancel.cancel();
}

#[tokio::test]
async fn blobs_outside_the_policy_are_refused() {
    let p = pair();
    let secret = p.central.blobs.put(b"another venue's menu").unwrap();
    let r = connect(&p, None).await;
    let err = fetch_blob(&r.hub_conn, &p.hub.blobs, secret, 20)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            TransferError::Refused {
                code: ErrorCode::Forbidden,
                ..
            }
        ),
        "{err}"
    );
    assert!(!p.hub.blobs.has(&secret).unwrap());
    r.cancel.cancel();
}

#[tokio::test]
async fn media_added_at_the_hub_flows_up_to_central() {
    let p = pair();
    let mut r = connect(&p, None).await;
    until(&mut r.hub_in, |m| matches!(m, Inbound::Sync(s) if s.synced)).await;
    let data = media(200_000);
    let hash = p.hub.blobs.put(&data).unwrap();
    let meta = MediaMeta {
        name: "menu.png".into(),
        content_type: "image/png".into(),
        size: data.len() as u64,
    };
    p.hub
        .docs
        .edit(p.venue, |am| doc::add_media(am, hash, &meta))
        .unwrap();
    until(&mut r.central_in, |m| matches!(m, Inbound::DocChanged(_))).await;
    // Central fetches what the venue document references and it lacks.
    let fetched = fetch_blob(&r.central_conn, &p.central.blobs, hash, meta.size)
        .await
        .unwrap();
    assert!(matches!(fetched, Fetched::Stored { .. }));
    assert_eq!(
        p.central.blobs.read_range(&hash, 0, data.len()).unwrap(),
        data
    );
    r.cancel.cancel();
    let end = r.hub_end.await.unwrap();
    assert!(
        matches!(end, DriverEnd::Cancelled | DriverEnd::Failed(_)),
        "{end}"
    );
}

/// `synced` is proven at both ends: it turns false at the first edit the peer has not
/// acknowledged, and true again only with the heads both sides hold, which are then the
/// same at both ends.
#[tokio::test]
async fn sync_state_is_proven_and_reports_the_common_heads() {
    let p = pair();
    let mut r = connect(&p, None).await;
    let first = until(&mut r.hub_in, |m| matches!(m, Inbound::Sync(s) if s.synced)).await;
    let Inbound::Sync(first) = first else {
        unreachable!()
    };
    let heads_at = |node: &Node| {
        node.docs
            .read(p.venue, |am| {
                am.get_heads().iter().map(|h| h.0).collect::<Vec<_>>()
            })
            .unwrap()
    };
    assert_eq!(first.heads[&p.venue], heads_at(&p.hub));
    assert_eq!(first.heads[&p.venue], heads_at(&p.central));

    // A local edit at the hub: not synced until central has it.
    p.hub
        .docs
        .edit(p.venue, |am| doc::add_kiosk(am, KioskId::random(), "Till"))
        .unwrap();
    let unsynced = until(&mut r.hub_in, |m| matches!(m, Inbound::Sync(_))).await;
    assert_eq!(
        unsynced,
        Inbound::Sync(taplink_sync_io::driver::SyncState {
            synced: false,
            heads: first.heads.clone()
        }),
        "the first report after an edit withdraws `synced`"
    );
    let Inbound::Sync(again) =
        until(&mut r.hub_in, |m| matches!(m, Inbound::Sync(s) if s.synced)).await
    else {
        unreachable!()
    };
    assert_ne!(again.heads[&p.venue], first.heads[&p.venue]);
    assert_eq!(again.heads[&p.venue], heads_at(&p.hub));
    assert_eq!(again.heads[&p.venue], heads_at(&p.central));
    // Central reaches the same quiescent point with the same heads.
    let Inbound::Sync(at_central) = until(&mut r.central_in, |m| {
        matches!(m, Inbound::Sync(s) if s.synced && s.heads.get(&p.venue) == again.heads.get(&p.venue))
    })
    .await
    else {
        unreachable!()
    };
    assert_eq!(at_central.heads[&p.venue], again.heads[&p.venue]);
    r.cancel.cancel();
}

/// `peer::run` puts a connection's session driver and media fetcher on the node's task
/// tracker (so a node's shutdown waits for a document append or a blob write in
/// progress), and reports to the node only what concerns it.
#[tokio::test]
async fn the_peer_runtime_runs_on_the_nodes_tracker_and_reports_the_session() {
    use taplink_sync_io::peer::{self, PeerEvent, PeerParams};
    let p = pair();
    let accept = p.server.accept();
    let connecting = p
        .client
        .connect_with(
            p.client_config.clone(),
            p.server.local_addr().unwrap(),
            "localhost",
        )
        .unwrap();
    let (hub_conn, central_conn) = tokio::join!(connecting, async { accept.await.unwrap().await });
    let (hub_conn, central_conn) = (hub_conn.unwrap(), central_conn.unwrap());
    let hub_peer = PeerIdentity::Hub {
        hub: p.ids.hub,
        venue: p.ids.venue,
    };
    let params = |node: &Node, session, peer_key: &str, origin, dialer| PeerParams {
        connection: ConnectionParams {
            session,
            peer_key: peer_key.into(),
            origin,
            dialer,
        },
        docs: node.docs.clone(),
        blobs: node.blobs.clone(),
        serve: Arc::new(|_: &MediaHash| true),
        fetch_for: p.venue,
        quota: None,
        on_fetched: Arc::new(|_| {}),
    };
    let tasks = tokio_util::task::TaskTracker::new();
    let cancel = CancellationToken::new();
    let mut at_central = peer::run(
        central_conn,
        params(
            &p.central,
            SessionConfig::new(
                PeerIdentity::Central,
                hub_peer.clone(),
                "central-test",
                BTreeMap::from([(p.venue, Access::Write), (DocId::Org, Access::Read)]),
            ),
            "hub",
            2,
            false,
        ),
        &tasks,
        &cancel,
    );
    let mut at_hub = peer::run(
        hub_conn,
        params(
            &p.hub,
            SessionConfig::new(
                hub_peer,
                PeerIdentity::Central,
                "hub-test",
                BTreeMap::from([(p.venue, Access::Write), (DocId::Org, Access::Write)]),
            ),
            "central",
            1,
            true,
        ),
        &tasks,
        &cancel,
    );
    // Driver and fetcher of each side, on the tracker.
    assert_eq!(tasks.len(), 4);
    let established = tokio::time::timeout(WAIT, at_hub.next()).await.unwrap();
    assert!(matches!(established, PeerEvent::Established(h) if h.software == "central-test"));
    loop {
        match tokio::time::timeout(WAIT, at_hub.next()).await.unwrap() {
            PeerEvent::Sync(s) if s.synced => break,
            PeerEvent::Ended(why) => panic!("ended: {why}"),
            _ => {}
        }
    }
    assert_eq!(venue_of(&p.hub, p.venue).settings.name, "The Anchor");
    // The node's messages go through; the peer's reach its node.
    assert!(
        at_hub
            .send(Message::TelemetryBatch {
                batch: 3,
                events: vec![]
            })
            .await
    );
    loop {
        match tokio::time::timeout(WAIT, at_central.next()).await.unwrap() {
            PeerEvent::Message(Message::TelemetryBatch { batch: 3, .. }) => break,
            PeerEvent::Ended(why) => panic!("ended: {why}"),
            _ => {}
        }
    }
    // Shutdown: cancel, then the tracker empties only once every task has finished.
    cancel.cancel();
    tasks.close();
    tokio::time::timeout(WAIT, tasks.wait()).await.unwrap();
    assert!(tasks.is_empty());
    assert!(matches!(at_hub.next().await, PeerEvent::Ended(_)));
}
