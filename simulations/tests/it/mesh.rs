//! A real central and real hubs in one process on loopback: routing of edits, media and
//! telemetry, and the refusals.

use std::time::Duration;

use taplink_simulations::mesh::{
    CentralNode, edit_at_hub, enroll_hub, eventually, hub_venue_doc, start_hub,
};
use taplink_sync_proto::doc;
use taplink_sync_proto::ids::KioskId;

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn central_and_two_hubs_route_edits_to_the_right_venue() {
    let tmp = tempfile::tempdir().unwrap();
    let central = CentralNode::start(&tmp.path().join("central"))
        .await
        .unwrap();
    let anchor = central.create_venue("The Anchor", "Europe/London").unwrap();
    let crown = central.create_venue("The Crown", "Europe/Berlin").unwrap();
    let mut hubs = Vec::new();
    for (name, venue) in [("hub-a", anchor), ("hub-b", crown)] {
        let dir = tmp.path().join(name);
        enroll_hub(
            &dir,
            central.quic_addr(),
            &central.enrollment_token(venue).unwrap(),
        )
        .await
        .unwrap();
        hubs.push(start_hub(&dir, None).await.unwrap());
    }
    let (hub_a, hub_b) = (&hubs[0], &hubs[1]);
    assert_eq!(hub_a.ids().venue, anchor);
    eventually(WAIT, || {
        hub_venue_doc(hub_a).filter(|d| d.settings.name == "The Anchor")
    })
    .await
    .unwrap();
    eventually(WAIT, || {
        hub_venue_doc(hub_b).filter(|d| d.settings.name == "The Crown")
    })
    .await
    .unwrap();
    let state = central.central.state();
    eventually(WAIT, || (state.online.len() == 2).then_some(()))
        .await
        .unwrap();
    assert!(state.online.contains(hub_a.ids().hub) && state.online.contains(hub_b.ids().hub));
    let listed = state.registry.list_hubs(None).unwrap();
    assert!(listed.iter().all(|h| {
        h.last_seen.is_some()
            && h.software
                .as_deref()
                .is_some_and(|s| s.starts_with("taplink-hub"))
    }));

    // An edit at central reaches the right hub, and only it.
    let kiosk = KioskId::random();
    central
        .edit_venue(anchor, |am| doc::add_kiosk(am, kiosk, "Bar screen"))
        .unwrap();
    eventually(WAIT, || {
        hub_venue_doc(hub_a).filter(|d| d.kiosks.contains_key(&kiosk))
    })
    .await
    .unwrap();
    assert!(
        hub_b
            .docs()
            .list()
            .iter()
            .all(|d| *d != taplink_sync_proto::wire::DocId::Venue(anchor))
    );
    assert!(hub_venue_doc(hub_b).unwrap().kiosks.is_empty());

    // An edit at a hub reaches central.
    edit_at_hub(hub_b, |am| doc::rename_venue(am, "The Crown & Anchor")).unwrap();
    eventually(WAIT, || {
        central
            .venue_doc(crown)
            .ok()
            .filter(|d| d.settings.name == "The Crown & Anchor")
    })
    .await
    .unwrap();
    for hub in hubs {
        hub.shutdown().await.unwrap();
    }
    central.central.shutdown().await.unwrap();
}

mod refusals {
    use std::collections::BTreeMap;
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::time::Duration;

    use taplink_certs::tls::client_config;
    use taplink_certs::{Fingerprint, HubIdentity, OrgCa, Validity};
    use taplink_simulations::mesh::{
        CentralNode, enroll_hub, eventually, hub_venue_doc, start_hub,
    };
    use taplink_sync_io::docs::Documents;
    use taplink_sync_io::docstore::DocDb;
    use taplink_sync_io::driver::{AppLink, ConnectionParams, Inbound, drive};
    use taplink_sync_io::net;
    use taplink_sync_proto::doc;
    use taplink_sync_proto::enroll_token::{EnrollmentSecret, EnrollmentToken};
    use taplink_sync_proto::ids::KioskId;
    use taplink_sync_proto::session::{Access, SessionConfig};
    use taplink_sync_proto::wire::{DocId, ErrorCode, Message, PeerIdentity};
    use tokio::sync::mpsc;
    use tokio_util::sync::CancellationToken;

    const WAIT: Duration = Duration::from_secs(20);

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn enrollment_succeeds_once_and_refuses_bad_codes_with_a_reason() {
        let tmp = tempfile::tempdir().unwrap();
        let central = CentralNode::start(&tmp.path().join("central"))
            .await
            .unwrap();
        let venue = central.create_venue("The Anchor", "Europe/London").unwrap();
        let token = central.enrollment_token(venue).unwrap();
        let err_of = |e: anyhow::Error| format!("{e:#}");

        enroll_hub(&tmp.path().join("ok"), central.quic_addr(), &token)
            .await
            .unwrap();
        let again = enroll_hub(&tmp.path().join("again"), central.quic_addr(), &token)
            .await
            .unwrap_err();
        assert!(err_of(again).contains("already used"), "reused code");

        let wrong = EnrollmentToken {
            secret: EnrollmentSecret::random(),
            central: token.central,
        };
        let err = err_of(
            enroll_hub(&tmp.path().join("wrong"), central.quic_addr(), &wrong)
                .await
                .unwrap_err(),
        );
        assert!(err.contains("unknown enrollment code"), "{err}");

        let state = central.central.state();
        let past = state.now() - chrono::TimeDelta::hours(2);
        let expired = state
            .registry
            .create_enrollment_code(venue, chrono::TimeDelta::hours(1), past)
            .unwrap();
        let expired = EnrollmentToken {
            secret: expired.secret,
            central: token.central,
        };
        let err = err_of(
            enroll_hub(&tmp.path().join("expired"), central.quic_addr(), &expired)
                .await
                .unwrap_err(),
        );
        assert!(err.contains("expired"), "{err}");

        // A token pinning another certificate: the hub refuses to talk to this "central".
        let fresh = central.enrollment_token(venue).unwrap();
        let pinned_elsewhere = EnrollmentToken {
            secret: fresh.secret.clone(),
            central: Fingerprint::of(b"someone else"),
        };
        let err = err_of(
            enroll_hub(
                &tmp.path().join("mitm"),
                central.quic_addr(),
                &pinned_elsewhere,
            )
            .await
            .unwrap_err(),
        );
        assert!(
            err.contains("fingerprint") || err.contains("certificate"),
            "{err}"
        );
        // The refused attempt did not use the code up.
        enroll_hub(&tmp.path().join("fresh"), central.quic_addr(), &fresh)
            .await
            .unwrap();
        assert_eq!(state.registry.list_hubs(Some(venue)).unwrap().len(), 2);
        central.central.shutdown().await.unwrap();
    }

    /// Connect to central as a hub with this identity and these documents; returns what
    /// the driver reports.
    async fn rogue_session(
        central: &CentralNode,
        tls: rustls::ClientConfig,
        ids: HubIdentity,
        docs: BTreeMap<DocId, Access>,
        store: Arc<Documents>,
    ) -> anyhow::Result<(mpsc::Receiver<Inbound>, CancellationToken)> {
        let endpoint = net::client_endpoint(SocketAddr::from(([127, 0, 0, 1], 0)))?;
        let conn = endpoint
            .connect_with(net::client_config(tls)?, central.quic_addr(), "localhost")?
            .await?;
        // Dropping the sender at once is fine: the driver stops polling a closed channel.
        let (_, to_peer) = mpsc::channel(1);
        let (from_peer, inbound) = mpsc::channel(64);
        let cancel = CancellationToken::new();
        let params = ConnectionParams {
            session: SessionConfig::new(
                PeerIdentity::Hub {
                    hub: ids.hub,
                    venue: ids.venue,
                },
                PeerIdentity::Central,
                "rogue",
                docs,
            ),
            peer_key: "central".into(),
            origin: 1,
            dialer: true,
        };
        tokio::spawn(drive(
            conn,
            params,
            store,
            AppLink { to_peer, from_peer },
            None,
            cancel.clone(),
        ));
        Ok((inbound, cancel))
    }

    fn scratch_docs(dir: &std::path::Path, ids: &[DocId]) -> Arc<Documents> {
        let db = DocDb::open(&dir.join("rogue.sqlite")).unwrap();
        let docs = Arc::new(Documents::open(Arc::new(db), automerge::ActorId::random()).unwrap());
        for id in ids {
            docs.create(*id, automerge::AutoCommit::new()).unwrap();
        }
        docs
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_hub_certificate_from_another_ca_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let central = CentralNode::start(&tmp.path().join("central"))
            .await
            .unwrap();
        let venue = central.create_venue("The Anchor", "Europe/London").unwrap();
        let now = taplink_simulations::mesh::system_now();
        let other_ca = OrgCa::create(
            "Other Org",
            Validity::new(now, time::Duration::days(30)).unwrap(),
        )
        .unwrap();
        // The identity of a real, enrolled hub, so that only the CA check can stop it.
        let dir = tmp.path().join("real-hub");
        enroll_hub(
            &dir,
            central.quic_addr(),
            &central.enrollment_token(venue).unwrap(),
        )
        .await
        .unwrap();
        let ids: HubIdentity = taplink_edge_hub::identity::load(&dir).unwrap().ids;
        let forged = other_ca
            .issue_hub_cert(ids, Validity::new(now, time::Duration::days(1)).unwrap())
            .unwrap();
        // It trusts central's real CA, so only central's check can stop it.
        let tls = client_config(
            vec![forged.cert.der().clone()],
            forged.key.to_der(),
            central.central.state().pki.ca.cert_der(),
        )
        .unwrap();
        let store = scratch_docs(tmp.path(), &[DocId::Venue(venue)]);
        let docs = BTreeMap::from([(DocId::Venue(venue), Access::Write)]);
        // The handshake may look complete to the client; the refusal shows on first use.
        if let Ok((mut inbound, _cancel)) =
            rogue_session(&central, tls, ids, docs, store.clone()).await
        {
            let established = tokio::time::timeout(Duration::from_secs(5), async {
                while let Some(msg) = inbound.recv().await {
                    if matches!(msg, Inbound::Established(_)) {
                        return true;
                    }
                }
                false
            })
            .await
            .unwrap_or(false);
            assert!(!established, "a foreign hub got a session");
        }
        let got = store
            .read(DocId::Venue(venue), |am| doc::load_venue(am).is_ok())
            .unwrap();
        assert!(!got, "the foreign hub received the venue document");
        central.central.shutdown().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_hub_asking_for_another_venues_document_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let central = CentralNode::start(&tmp.path().join("central"))
            .await
            .unwrap();
        let anchor = central.create_venue("The Anchor", "Europe/London").unwrap();
        let crown = central.create_venue("The Crown", "Europe/Berlin").unwrap();
        let dir = tmp.path().join("hub-a");
        enroll_hub(
            &dir,
            central.quic_addr(),
            &central.enrollment_token(anchor).unwrap(),
        )
        .await
        .unwrap();
        // The Anchor's real hub identity, asking for The Crown's document.
        let identity = taplink_edge_hub::identity::load(&dir).unwrap();
        let tls = client_config(
            identity.chain.clone(),
            identity.key.clone_key(),
            &identity.ca,
        )
        .unwrap();
        let store = scratch_docs(tmp.path(), &[DocId::Venue(crown)]);
        let docs = BTreeMap::from([(DocId::Venue(crown), Access::Write)]);
        let (mut inbound, cancel) = rogue_session(&central, tls, identity.ids, docs, store.clone())
            .await
            .unwrap();
        let refusal = tokio::time::timeout(WAIT, async {
            loop {
                match inbound.recv().await {
                    Some(Inbound::Message(Message::Error { code, reason })) => {
                        return (code, reason);
                    }
                    Some(_) => {}
                    None => panic!("connection ended without a refusal"),
                }
            }
        })
        .await
        .unwrap();
        assert_eq!(refusal.0, ErrorCode::Forbidden, "{}", refusal.1);
        assert!(
            !store
                .read(DocId::Venue(crown), |am| doc::load_venue(am).is_ok())
                .unwrap()
        );
        assert_eq!(central.venue_doc(crown).unwrap().settings.name, "The Crown");
        cancel.cancel();
        central.central.shutdown().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_revoked_hub_is_cut_off_and_cannot_come_back() {
        let tmp = tempfile::tempdir().unwrap();
        let central = CentralNode::start(&tmp.path().join("central"))
            .await
            .unwrap();
        let venue = central.create_venue("The Anchor", "Europe/London").unwrap();
        let dir = tmp.path().join("hub");
        enroll_hub(
            &dir,
            central.quic_addr(),
            &central.enrollment_token(venue).unwrap(),
        )
        .await
        .unwrap();
        let hub = start_hub(&dir, None).await.unwrap();
        let mut uplink = hub.uplink();
        eventually(WAIT, || hub_venue_doc(&hub)).await.unwrap();
        tokio::time::timeout(WAIT, uplink.wait_for(|s| s.connected))
            .await
            .unwrap()
            .unwrap();

        let state = central.central.state();
        state
            .registry
            .revoke_hub(hub.ids().hub, state.now())
            .unwrap();
        state.notify_hub_revoked(hub.ids().hub);
        tokio::time::timeout(WAIT, uplink.wait_for(|s| !s.connected))
            .await
            .unwrap()
            .unwrap();
        eventually(WAIT, || {
            (!state.online.contains(hub.ids().hub)).then_some(())
        })
        .await
        .unwrap();

        // It keeps trying (with backoff) and is refused every time: nothing more reaches it.
        let kiosk = KioskId::random();
        central
            .edit_venue(venue, |am| doc::add_kiosk(am, kiosk, "Door"))
            .unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(!uplink.borrow().connected);
        assert!(!hub_venue_doc(&hub).unwrap().kiosks.contains_key(&kiosk));
        hub.shutdown().await.unwrap();
        central.central.shutdown().await.unwrap();
    }
}

mod flows {
    use std::time::Duration;

    use taplink_simulations::mesh::{
        CentralNode, approve_pairing, enroll_hub, eventually, http, staff_http, staff_token,
        start_hub,
    };
    use taplink_sync_proto::doc::{self, MediaMeta};
    use taplink_sync_proto::ids::MediaHash;

    const WAIT: Duration = Duration::from_secs(30);

    fn bytes(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn media_flows_both_ways_and_telemetry_is_stored_once() {
        let tmp = tempfile::tempdir().unwrap();
        let central = CentralNode::start(&tmp.path().join("central"))
            .await
            .unwrap();
        let venue = central.create_venue("The Anchor", "Europe/London").unwrap();
        let dir = tmp.path().join("hub");
        enroll_hub(
            &dir,
            central.quic_addr(),
            &central.enrollment_token(venue).unwrap(),
        )
        .await
        .unwrap();
        let staff = staff_token(&dir).unwrap();
        let hub = start_hub(&dir, None).await.unwrap();
        let api = hub.http_addr();
        eventually(WAIT, || taplink_simulations::mesh::hub_venue_doc(&hub))
            .await
            .unwrap();

        // Central's admins add media: the hub fetches it and serves it on the LAN.
        let down = bytes(1_500_000, 1);
        let state = central.central.state();
        let down_hash = state.blobs.put(&down).unwrap();
        let meta = MediaMeta {
            name: "menu.png".into(),
            content_type: "image/png".into(),
            size: down.len() as u64,
        };
        central
            .edit_venue(venue, |am| doc::add_media(am, down_hash, &meta))
            .unwrap();
        eventually(WAIT, || hub.blobs().has(&down_hash).ok().filter(|h| *h))
            .await
            .unwrap();
        let (status, body) = staff_http(
            api,
            &staff,
            "GET",
            &format!("/api/v1/media/{down_hash}"),
            b"",
        )
        .await
        .unwrap();
        assert_eq!(status, 200);
        assert_eq!(MediaHash::of(&body), down_hash);

        // Store staff upload at the hub: central fetches it.
        let mut up = bytes(700_000, 9);
        up[..4].copy_from_slice(&[0xFF, 0xD8, 0xFF, 0xE0]);
        let (status, body) = taplink_simulations::mesh::http_with(
            api,
            "PUT",
            "/api/v1/media?name=promo.jpg",
            &[
                ("Authorization", &format!("Bearer {staff}")),
                ("Content-Type", "image/jpeg"),
            ],
            &up,
        )
        .await
        .unwrap();
        assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
        let up_hash = MediaHash::of(&up);
        eventually(WAIT, || state.blobs.has(&up_hash).ok().filter(|h| *h))
            .await
            .unwrap();
        assert_eq!(state.blobs.read_range(&up_hash, 0, up.len()).unwrap(), up);
        assert_eq!(
            central.venue_doc(venue).unwrap().media[&up_hash].name,
            "promo.jpg"
        );

        // Telemetry from a kiosk paired on the LAN: sent twice (a retry), stored once.
        let (status, body) = http(api, "POST", "/api/v1/pairings", br#"{"device":"t"}"#)
            .await
            .unwrap();
        assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
        let pairing: serde_json::Value = serde_json::from_slice(&body).unwrap();
        approve_pairing(api, &staff, pairing["code"].as_str().unwrap(), "Bar")
            .await
            .unwrap();
        let path = format!("/api/v1/pairings/{}", pairing["pairing"].as_str().unwrap());
        let (_, body) = http(api, "GET", &path, b"").await.unwrap();
        let token = serde_json::from_slice::<serde_json::Value>(&body).unwrap()["token"]
            .as_str()
            .unwrap()
            .to_owned();
        let now_ms = taplink_sync_proto::clock::Clock::now(&taplink_sync_proto::clock::SystemClock)
            .timestamp_millis();
        let events: Vec<serde_json::Value> = (0..3u8)
            .map(|n| {
                serde_json::json!({
                    "id": format!("{:032x}", u128::from(n) + 1),
                    "at_ms": now_ms + i64::from(n),
                    "kind": {"Heartbeat": {
                        "on_screen": down_hash, "manifest_version": "v1",
                        "disk_free_bytes": 1u64 << 30, "temperature_mc": 48_000,
                        "uptime_s": 60, "software": "kiosk-test"
                    }}
                })
            })
            .collect();
        let json = serde_json::to_vec(&events).unwrap();
        for _ in 0..2 {
            let (status, _) = staff_http(api, &token, "POST", "/api/v1/kiosk/events", &json)
                .await
                .unwrap();
            assert_eq!(status, 200);
        }
        eventually(WAIT, || {
            (state.registry.telemetry_count().unwrap() == 3).then_some(())
        })
        .await
        .unwrap();
        eventually(WAIT, || {
            (hub.outbox().pending().unwrap() == 0).then_some(())
        })
        .await
        .unwrap();
        assert_eq!(state.registry.telemetry_count().unwrap(), 3);

        // Bad input is refused with a reason and loses nothing.
        let (status, body) = staff_http(
            api,
            &staff,
            "POST",
            "/api/v1/venue/ops",
            br#"{"op":"add_kiosk","id":"nope","name":"x"}"#,
        )
        .await
        .unwrap();
        assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
        assert!(String::from_utf8_lossy(&body).contains("kiosk id"));
        hub.shutdown().await.unwrap();
        central.central.shutdown().await.unwrap();
    }
}

mod outage {
    use std::collections::BTreeSet;
    use std::time::Duration;

    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use taplink_simulations::mesh::{
        CentralNode, edit_at_hub, enroll_hub, eventually, hub_venue_doc, start_hub,
    };
    use taplink_simulations::wan_proxy::WanProxy;
    use taplink_sync_proto::doc::{self, MediaMeta, Placement, VenueDoc};
    use taplink_sync_proto::ids::{ItemId, KioskId, MediaHash, PlaylistId};

    const WAIT: Duration = Duration::from_secs(60);

    /// One edit, decided against one side's view of the document.
    type Edit = Box<dyn FnOnce(&mut automerge::AutoCommit) -> Result<(), doc::DocOpError>>;

    /// Everything an acknowledged edit added; all of it must exist after the merge.
    #[derive(Default)]
    struct Added {
        kiosks: BTreeSet<KioskId>,
        items: BTreeSet<ItemId>,
        playlists: BTreeSet<PlaylistId>,
    }

    fn random_edit(
        rng: &mut StdRng,
        view: &VenueDoc,
        shared: PlaylistId,
        media: MediaHash,
        added: &mut Added,
    ) -> impl FnOnce(&mut automerge::AutoCommit) -> Result<(), doc::DocOpError> + use<> {
        let kiosks: Vec<KioskId> = view.kiosks.keys().copied().collect();
        let items: Vec<ItemId> = view
            .playlists
            .get(&shared)
            .map(|p| p.items.keys().copied().collect())
            .unwrap_or_default();
        let choice = rng.random_range(0..6);
        let pick_kiosk = (!kiosks.is_empty()).then(|| kiosks[rng.random_range(0..kiosks.len())]);
        let pick_item = (!items.is_empty()).then(|| items[rng.random_range(0..items.len())]);
        let n: u32 = rng.random();
        let op: Edit = match (choice, pick_kiosk, pick_item) {
            (1, Some(k), _) => Box::new(move |am| doc::rename_kiosk(am, k, &format!("kiosk {n}"))),
            (2, _, after) => {
                let item = ItemId::random();
                added.items.insert(item);
                let at = after.map_or(Placement::Front, Placement::After);
                Box::new(move |am| {
                    doc::insert_item(
                        am,
                        shared,
                        item,
                        at,
                        media,
                        1000 + u64::from(n % 9000),
                        None,
                    )
                })
            }
            (3, _, Some(i)) => Box::new(move |am| doc::move_item(am, shared, i, Placement::End)),
            (4, _, Some(i)) => {
                Box::new(move |am| doc::set_item_duration(am, shared, i, 500 + u64::from(n % 5000)))
            }
            (5, _, _) => {
                let p = PlaylistId::random();
                added.playlists.insert(p);
                Box::new(move |am| doc::create_playlist(am, p, &format!("list {n}")))
            }
            _ => {
                let k = KioskId::random();
                added.kiosks.insert(k);
                Box::new(move |am| doc::add_kiosk(am, k, &format!("new {n}")))
            }
        };
        op
    }

    async fn outage_round(seed: u64, restart_hub_while_cut: bool) {
        let tmp = tempfile::tempdir().unwrap();
        let central = CentralNode::start(&tmp.path().join("central"))
            .await
            .unwrap();
        let venue = central.create_venue("The Anchor", "Europe/London").unwrap();
        let dir = tmp.path().join("hub");
        enroll_hub(
            &dir,
            central.quic_addr(),
            &central.enrollment_token(venue).unwrap(),
        )
        .await
        .unwrap();
        let proxy = WanProxy::start("127.0.0.1:0".parse().unwrap(), central.quic_addr(), seed)
            .await
            .unwrap();
        let mut hub = start_hub(&dir, Some(proxy.local_addr())).await.unwrap();

        // A shared playlist with one media file, synced before the outage.
        let media = central.central.state().blobs.put(b"a poster").unwrap();
        let shared = PlaylistId::random();
        let meta = MediaMeta {
            name: "poster.png".into(),
            content_type: "image/png".into(),
            size: 8,
        };
        central
            .edit_venue(venue, |am| doc::add_media(am, media, &meta))
            .unwrap();
        central
            .edit_venue(venue, |am| doc::create_playlist(am, shared, "Evening"))
            .unwrap();
        eventually(WAIT, || {
            hub_venue_doc(&hub).filter(|d| d.playlists.contains_key(&shared))
        })
        .await
        .unwrap();

        proxy.cut();
        let mut rng = StdRng::seed_from_u64(seed);
        let mut added = Added::default();
        for round in 0..60 {
            if restart_hub_while_cut && round == 30 {
                hub.shutdown().await.unwrap();
                hub = start_hub(&dir, Some(proxy.local_addr())).await.unwrap();
            }
            if rng.random_bool(0.5) {
                let view = central.venue_doc(venue).unwrap();
                let edit = random_edit(&mut rng, &view, shared, media, &mut added);
                central.edit_venue(venue, edit).unwrap();
            } else {
                let view = hub_venue_doc(&hub).unwrap();
                let edit = random_edit(&mut rng, &view, shared, media, &mut added);
                edit_at_hub(&hub, edit).unwrap();
            }
            if rng.random_bool(0.1) {
                tokio::time::sleep(Duration::from_millis(rng.random_range(0..100))).await;
            }
        }
        // The cut really separated them: both sides diverged, and the proxy dropped traffic.
        assert_ne!(
            central.venue_doc(venue).unwrap(),
            hub_venue_doc(&hub).unwrap(),
            "seed {seed}"
        );
        proxy.heal();
        let merged = eventually(WAIT, || {
            let at_central = central.venue_doc(venue).ok()?;
            let at_hub = hub_venue_doc(&hub)?;
            (at_central == at_hub).then_some(at_hub)
        })
        .await
        .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        let items: BTreeSet<ItemId> = merged.playlists[&shared].items.keys().copied().collect();
        for k in &added.kiosks {
            assert!(merged.kiosks.contains_key(k), "seed {seed}: kiosk {k} lost");
        }
        for p in &added.playlists {
            assert!(
                merged.playlists.contains_key(p),
                "seed {seed}: playlist {p} lost"
            );
        }
        assert_eq!(items, added.items, "seed {seed}: items lost or invented");
        // Order is a total order with each item once (no duplicate from concurrent moves).
        assert_eq!(
            doc::ordered_items(&merged.playlists[&shared]).len(),
            items.len()
        );
        let stats = proxy.stats();
        assert!(
            stats.to_upstream.dropped() + stats.to_client.dropped() > 0,
            "seed {seed}: nothing was cut"
        );
        hub.shutdown().await.unwrap();
        proxy.shutdown().await;
        central.central.shutdown().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_edits_through_a_wan_cut_all_survive_the_merge() {
        for seed in 0..8 {
            outage_round(seed, false).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_hub_restarted_while_offline_merges_everything_when_the_link_returns() {
        for seed in 10..13 {
            outage_round(seed, true).await;
        }
    }
}

/// Status never lies: `synced` is withdrawn at the first edit central has not acknowledged,
/// a cut link is reported within seconds at both ends (not at QUIC's idle timeout), and
/// after the heal the hub's `/healthz` and central's hub record show the same heads with
/// a `last_sync` taken at that quiescent point.
mod status {
    use std::time::Duration;

    use tokio::time::Instant;

    use taplink_simulations::mesh::{
        CentralNode, Target, edit_at_hub, enroll_hub, eventually, http, start_hub,
    };
    use taplink_simulations::wan_proxy::WanProxy;
    use taplink_sync_proto::doc;
    use taplink_sync_proto::ids::KioskId;

    const WAIT: Duration = Duration::from_secs(30);
    /// Generous against a 6 s liveness deadline, far below the 30 s QUIC idle timeout
    /// (plus a 10 s keep-alive) that used to decide.
    const REPORTED_WITHIN: Duration = Duration::from_secs(15);

    async fn healthz(hub: &taplink_edge_hub::Hub) -> serde_json::Value {
        let (status, body) = http(Target::of(hub), "GET", "/healthz", b"").await.unwrap();
        assert_eq!(status, 200);
        serde_json::from_slice(&body).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cut_link_is_reported_within_seconds_and_synced_is_proven() {
        let tmp = tempfile::tempdir().unwrap();
        let central = CentralNode::start(&tmp.path().join("central"))
            .await
            .unwrap();
        let venue = central.create_venue("The Anchor", "Europe/London").unwrap();
        let dir = tmp.path().join("hub");
        enroll_hub(
            &dir,
            central.quic_addr(),
            &central.enrollment_token(venue).unwrap(),
        )
        .await
        .unwrap();
        let proxy = WanProxy::start("127.0.0.1:0".parse().unwrap(), central.quic_addr(), 1)
            .await
            .unwrap();
        let hub = start_hub(&dir, Some(proxy.local_addr())).await.unwrap();
        let hub_id = hub.ids().hub;
        let record = format!("/api/v1/hubs/{hub_id}");

        // In sync: both ends show the same heads.
        let mut status = hub.uplink();
        let in_sync_by = Instant::now();
        let synced_heads = loop {
            let at_hub = healthz(&hub).await;
            let (_, at_central) = central.admin("GET", &record, None).await.unwrap();
            if at_hub["synced"] == true && at_central["heads"] == at_hub["heads"] {
                assert_eq!(at_hub["central"], "connected");
                assert_eq!(at_central["online"], true);
                break at_hub["heads"].clone();
            }
            // Central records the heads just after its session proves them, possibly after
            // the hub's last status change: look again shortly either way.
            assert!(in_sync_by.elapsed() < WAIT, "hub never in sync");
            let _ = tokio::time::timeout(Duration::from_millis(50), status.changed()).await;
        };
        assert!(synced_heads.as_object().is_some_and(|m| m.len() == 2));

        // The link dies. An edit made now is not acknowledged: `synced` goes at once.
        proxy.cut();
        let cut_at = Instant::now();
        edit_at_hub(&hub, |am| doc::add_kiosk(am, KioskId::random(), "Till")).unwrap();
        eventually(Duration::from_secs(5), || {
            (!status.borrow().synced).then_some(())
        })
        .await
        .expect("an unacknowledged edit left `synced` true");
        assert_eq!(healthz(&hub).await["synced"], false);

        // Both ends report the dead link within seconds.
        eventually(REPORTED_WITHIN, || {
            (!status.borrow().connected).then_some(())
        })
        .await
        .expect("the hub still claims a connection to central");
        let state = central.central.state();
        eventually(REPORTED_WITHIN, || {
            (!state.online.contains(hub_id)).then_some(())
        })
        .await
        .expect("central still lists the hub online");
        let noticed = cut_at.elapsed();
        assert!(noticed < REPORTED_WITHIN, "noticed after {noticed:?}");
        assert_eq!(healthz(&hub).await["central"], "disconnected");

        // Heal: the record's heads and last_sync come from the same quiescent point, the
        // one after the merge, and equal the hub's.
        proxy.heal();
        let healed = eventually(WAIT, || {
            let s = status.borrow();
            (s.connected && s.synced).then_some(())
        });
        healed.await.expect("no resync after the heal");
        let at_hub = healthz(&hub).await;
        let (_, at_central) =
            eventually_json(&central, &record, |c| c["heads"] == at_hub["heads"]).await;
        assert_ne!(at_hub["heads"], synced_heads, "the merge moved the heads");
        assert!(at_central["last_sync"].is_string());
        hub.shutdown().await.unwrap();
        proxy.shutdown().await;
        central.central.shutdown().await.unwrap();
    }

    async fn eventually_json(
        central: &CentralNode,
        path: &str,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> (u16, serde_json::Value) {
        let deadline = Instant::now() + WAIT;
        loop {
            let (status, json) = central.admin("GET", path, None).await.unwrap();
            if done(&json) {
                return (status, json);
            }
            assert!(
                Instant::now() < deadline,
                "central's record never matched: {json}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// `taplink-hub enroll --central HOST:PORT` takes a DNS name: it is stored as given (not
/// as the address it resolved to), names central's certificate, and the uplink resolves
/// it again to connect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_enrolled_by_dns_name_keeps_the_name_and_syncs() {
    let tmp = tempfile::tempdir().unwrap();
    let central = CentralNode::start(&tmp.path().join("central"))
        .await
        .unwrap();
    let venue = central.create_venue("The Anchor", "Europe/London").unwrap();
    let dir = tmp.path().join("hub");
    let by_name: taplink_sync_io::net::PeerAddr =
        format!("localhost:{}", central.quic_addr().port())
            .parse()
            .unwrap();
    taplink_edge_hub::identity::enroll(&dir, &by_name, &central.enrollment_token(venue).unwrap())
        .await
        .unwrap();
    let config = taplink_edge_hub::Config::load(&dir).unwrap();
    assert_eq!(config.central_addr.to_string(), by_name.to_string());
    let on_disk: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("hub.json")).unwrap()).unwrap();
    assert_eq!(on_disk["central_addr"], by_name.to_string());
    assert_eq!(config.central_name(), "localhost");
    let hub = start_hub(&dir, None).await.unwrap();
    eventually(WAIT, || {
        hub_venue_doc(&hub).filter(|d| d.settings.name == "The Anchor")
    })
    .await
    .unwrap();
    hub.shutdown().await.unwrap();
    central.central.shutdown().await.unwrap();
}
