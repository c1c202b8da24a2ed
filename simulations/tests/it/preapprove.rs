//! Pairing pre-approved by central, end to end over real sockets on loopback: an admin
//! makes kiosk codes with central's HTTP API, they reach the hub by sync, the WAN is cut,
//! and a real kiosk agent pairs with its code and no staff; wrong, used, expired and
//! revoked codes are refused; central learns of the kiosk once the WAN is back.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use taplink_kiosk::Kiosk;
use taplink_kiosk::state::Phase;
use taplink_simulations::mesh::{
    CentralNode, enroll_hub, eventually, http, hub_venue_doc, start_hub, test_kiosk_config,
};
use taplink_simulations::wan_proxy::WanProxy;
use taplink_sync_proto::doc::{self, KioskGrant};
use taplink_sync_proto::ids::{GrantId, KioskId};
use taplink_sync_proto::kiosk_code::KioskCode;

const WAIT: Duration = Duration::from_secs(30);

async fn kiosk(dir: &std::path::Path, hub: SocketAddr, pair_code: &str) -> Kiosk {
    let mut config = test_kiosk_config(dir, hub);
    config.pair_code = Some(pair_code.to_owned());
    Kiosk::bind(config).await.unwrap()
}

fn paired(k: &Kiosk) -> Option<KioskId> {
    match k.status().phase {
        Phase::Paired { kiosk, .. } => Some(kiosk),
        _ => None,
    }
}

/// `POST /api/v1/pairings` with a kiosk code, as a kiosk would send it.
async fn pair_with(hub: SocketAddr, code: &str) -> (u16, String) {
    let body = json!({"device": "technician's laptop", "provisioning_code": code});
    let (status, answer) = http(hub, "POST", "/api/v1/pairings", body.to_string().as_bytes())
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&answer).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kiosk_code_from_central_pairs_a_kiosk_at_the_hub_with_the_wan_down() {
    let tmp = tempfile::tempdir().unwrap();
    let central = CentralNode::start(&tmp.path().join("central"))
        .await
        .unwrap();
    let venue = central.create_venue("The Anchor", "Europe/London").unwrap();
    let hub_dir = tmp.path().join("hub");
    enroll_hub(
        &hub_dir,
        central.quic_addr(),
        &central.enrollment_token(venue).unwrap(),
    )
    .await
    .unwrap();
    let wan = WanProxy::start("127.0.0.1:0".parse().unwrap(), central.quic_addr(), 7)
        .await
        .unwrap();
    let hub = start_hub(&hub_dir, Some(wan.local_addr())).await.unwrap();
    let api = hub.http_addr();

    // An admin makes three codes at central, and revokes one of them.
    let codes = format!("/api/v1/venues/{venue}/kiosk-codes");
    let create = |name: &str| json!({"name": name, "group": "bar", "expires_in_hours": 24});
    let (status, good) = central
        .admin("POST", &codes, Some(&create("Bar screen")))
        .await
        .unwrap();
    assert_eq!(status, 201, "{good}");
    let good_code: KioskCode = good["code"].as_str().unwrap().parse().unwrap();
    let good_id: GrantId = good["id"].as_str().unwrap().parse().unwrap();
    let (status, spare) = central
        .admin("POST", &codes, Some(&create("Spare")))
        .await
        .unwrap();
    assert_eq!(status, 201, "{spare}");
    let (status, _) = central
        .admin(
            "DELETE",
            &format!("{codes}/{}", spare["id"].as_str().unwrap()),
            None,
        )
        .await
        .unwrap();
    assert_eq!(status, 204);
    // An expired code, as it is once its time has passed (the API makes only future ones).
    let expired_code = KioskCode::random();
    let expired_id = GrantId::random();
    let now_ms = taplink_simulations::mesh::system_now().unix_timestamp() * 1000;
    let expired = KioskGrant {
        code_hash: expired_code.hash(),
        name: "Too late".into(),
        group: None,
        playlist: None,
        created_at_ms: now_ms - 7_200_000,
        expires_at_ms: now_ms - 3_600_000,
        consumed_by: None,
        consumed_at_ms: None,
    };
    central
        .edit_venue(venue, |am| {
            doc::add_kiosk_grant(am, expired_id, &expired, now_ms - 5_400_000)
        })
        .unwrap();
    // Everything reaches the hub by the normal sync (the revoked code as its absence).
    let spare_id: GrantId = spare["id"].as_str().unwrap().parse().unwrap();
    eventually(WAIT, || {
        hub_venue_doc(&hub).filter(|d| {
            d.kiosk_grants.contains_key(&good_id)
                && d.kiosk_grants.contains_key(&expired_id)
                && !d.kiosk_grants.contains_key(&spare_id)
        })
    })
    .await
    .unwrap();

    // The WAN goes down. A technician starts the kiosk with its code; nobody approves it.
    wan.cut();
    let k1 = kiosk(&tmp.path().join("k1"), api, &good_code.to_string()).await;
    let id1 = eventually(WAIT, || paired(&k1)).await.unwrap();
    let at_hub = hub_venue_doc(&hub).unwrap();
    assert_eq!(at_hub.kiosks[&id1].name, "Bar screen");
    assert_eq!(at_hub.kiosks[&id1].group.as_deref(), Some("bar"));
    assert_eq!(at_hub.kiosk_grants[&good_id].consumed_by, Some(id1));
    // The kiosk follows its manifest with the token it collected.
    eventually(WAIT, || k1.status().manifest.map(drop))
        .await
        .unwrap();
    // The hub tried to tell central at once, and the cut WAN dropped it.
    tokio::time::timeout(WAIT, wan.wait_for_stats(|s| s.to_upstream.dropped_down > 0))
        .await
        .unwrap();
    assert!(
        !central.venue_doc(venue).unwrap().kiosks.contains_key(&id1),
        "central cannot know yet: the WAN is cut"
    );

    // Refusals, with the reason, and nothing added.
    for (code, status, says) in [
        (good_code.to_string(), 410, "already used"),
        (expired_code.to_string(), 410, "expired"),
        (spare["code"].as_str().unwrap().to_owned(), 404, "revoked"),
        (KioskCode::random().to_string(), 404, "unknown kiosk code"),
        ("not-a-code".to_owned(), 400, "provisioning_code"),
    ] {
        let (got, answer) = pair_with(api, &code).await;
        assert_eq!(got, status, "{says}: {answer}");
        assert!(answer.contains(says), "{says}: {answer}");
    }
    // A second kiosk given the spent code says why on its screen and shows a code for
    // staff instead.
    let k2 = kiosk(&tmp.path().join("k2"), api, &good_code.to_string()).await;
    let refused = eventually(WAIT, || {
        let s = k2.status();
        matches!(s.phase, Phase::Pairing { .. })
            .then_some(s.pair_code_refused)
            .flatten()
    })
    .await
    .unwrap();
    assert!(refused.contains("already used"), "{refused}");
    assert_eq!(hub_venue_doc(&hub).unwrap().kiosks.len(), 1);

    // The WAN returns: central learns of the kiosk and of the used code.
    wan.heal();
    let at_central = eventually(WAIT, || {
        central
            .venue_doc(venue)
            .ok()
            .filter(|d| d.kiosks.contains_key(&id1))
    })
    .await
    .unwrap();
    assert_eq!(at_central.kiosks[&id1].name, "Bar screen");
    assert_eq!(at_central.kiosk_grants[&good_id].consumed_by, Some(id1));
    let (status, listed) = central.admin("GET", &codes, None).await.unwrap();
    assert_eq!(status, 200);
    let listed: Vec<Value> = listed["kiosk_codes"].as_array().unwrap().clone();
    let entry = listed
        .iter()
        .find(|c| c["id"] == good_id.to_string())
        .unwrap();
    assert_eq!(entry["state"], "used");
    assert_eq!(entry["kiosk"], id1.to_string());
    let states: Vec<&str> = listed
        .iter()
        .map(|c| c["state"].as_str().unwrap())
        .collect();
    assert_eq!(states.len(), 2, "{listed:?}");
    assert!(states.contains(&"expired"), "{listed:?}");

    k1.shutdown().await.unwrap();
    k2.shutdown().await.unwrap();
    hub.shutdown().await.unwrap();
    wan.shutdown().await;
    central.central.shutdown().await.unwrap();
}
