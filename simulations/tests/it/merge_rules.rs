//! The merge rules of `docs/merge-rules.md`, each across a real WAN outage: a real central
//! and a real hub behind a WAN proxy, edits on both sides through their APIs (central's
//! admin API, the hub's staff API) while the link is cut, then the link healed. After the
//! merge both replicas are identical and the outcome is the documented one; the audit log
//! shows every edit with its author.

use std::time::Duration;

use serde_json::{Value, json};
use taplink_simulations::mesh::{
    CentralNode, enroll_hub, eventually, hub_venue_doc, staff_http, staff_token, start_hub,
};
use taplink_simulations::wan_proxy::WanProxy;
use taplink_sync_proto::doc::{self, MediaMeta, VenueDoc};
use taplink_sync_proto::ids::{ItemId, KioskId, PlaylistId, VenueId};

const WAIT: Duration = Duration::from_secs(30);

async fn at_central(central: &CentralNode, venue: VenueId, ops: Value) {
    let (status, body) = central
        .admin("POST", &format!("/api/v1/venues/{venue}/ops"), Some(&ops))
        .await
        .unwrap();
    assert_eq!(status, 200, "central refused {ops}: {body}");
}

async fn at_hub(hub: &taplink_edge_hub::Hub, staff: &str, op: Value) {
    let (status, body) = staff_http(
        hub.http_addr(),
        staff,
        "POST",
        "/api/v1/venue/ops",
        op.to_string().as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(
        status,
        200,
        "the hub refused {op}: {}",
        String::from_utf8_lossy(&body)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_merge_rules_hold_across_a_real_outage() {
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
    let proxy = WanProxy::start("127.0.0.1:0".parse().unwrap(), central.quic_addr(), 11)
        .await
        .unwrap();
    let hub = start_hub(&dir, Some(proxy.local_addr())).await.unwrap();

    // Before the outage: media, two playlists with an item each, a kiosk on the second.
    let media = central.central.state().blobs.put(b"a poster").unwrap();
    let meta = MediaMeta {
        name: "poster.png".into(),
        content_type: "image/png".into(),
        size: 8,
    };
    central
        .edit_venue(venue, |am| doc::add_media(am, media, &meta))
        .unwrap();
    let (lunch, evening) = (PlaylistId::random(), PlaylistId::random());
    let (item, kiosk, door) = (ItemId::random(), KioskId::random(), KioskId::random());
    at_central(&central, venue, json!([
        { "op": "create_playlist", "id": lunch.to_string(), "name": "Lunch" },
        { "op": "insert_item", "playlist": lunch.to_string(), "item": item.to_string(), "at": "end",
          "media": media.to_string(), "duration_ms": 5000 },
        { "op": "create_playlist", "id": evening.to_string(), "name": "Evening" },
        { "op": "add_kiosk", "id": kiosk.to_string(), "name": "Bar" },
        { "op": "assign_playlist", "kiosk": kiosk.to_string(), "playlist": evening.to_string() },
        { "op": "add_kiosk", "id": door.to_string(), "name": "Door" },
        { "op": "assign_playlist", "kiosk": door.to_string(), "playlist": evening.to_string() },
        { "op": "set_default_playlist", "playlist": lunch.to_string() },
    ])).await;
    eventually(WAIT, || {
        hub_venue_doc(&hub).filter(|d| d.kiosks.contains_key(&kiosk))
    })
    .await
    .unwrap();

    proxy.cut();
    let (from_central, from_hub) = (ItemId::random(), ItemId::random());
    // Rule 1: both sides add an item to Lunch.
    at_central(&central, venue, json!({ "op": "insert_item", "playlist": lunch.to_string(),
        "item": from_central.to_string(), "at": "end", "media": media.to_string(), "duration_ms": 4000 })).await;
    at_hub(&hub, &staff, json!({ "op": "insert_item", "playlist": lunch.to_string(),
        "item": from_hub.to_string(), "at": "end", "media": media.to_string(), "duration_ms": 6000 })).await;
    // Rule 2: both change the first item's duration.
    at_central(
        &central,
        venue,
        json!({ "op": "set_item_duration", "playlist": lunch.to_string(),
        "item": item.to_string(), "duration_ms": 7000 }),
    )
    .await;
    at_hub(
        &hub,
        &staff,
        json!({ "op": "set_item_duration", "playlist": lunch.to_string(),
        "item": item.to_string(), "duration_ms": 9000 }),
    )
    .await;
    // Rule 3: central deletes Evening while the hub renames it and adds to it.
    at_central(
        &central,
        venue,
        json!({ "op": "remove_playlist", "id": evening.to_string() }),
    )
    .await;
    at_hub(
        &hub,
        &staff,
        json!({ "op": "rename_playlist", "id": evening.to_string(), "name": "Late" }),
    )
    .await;
    at_hub(&hub, &staff, json!({ "op": "insert_item", "playlist": evening.to_string(),
        "item": ItemId::random().to_string(), "at": "end", "media": media.to_string(), "duration_ms": 3000 })).await;
    // Rule 4: central removes the kiosk while the hub reassigns it to Lunch.
    at_central(
        &central,
        venue,
        json!({ "op": "remove_kiosk", "id": kiosk.to_string() }),
    )
    .await;
    at_hub(&hub, &staff, json!({ "op": "assign_playlist", "kiosk": kiosk.to_string(), "playlist": lunch.to_string() })).await;
    // While cut, each side sees only its own edits.
    assert!(
        !central
            .venue_doc(venue)
            .unwrap()
            .kiosks
            .contains_key(&kiosk)
    );
    assert!(hub_venue_doc(&hub).unwrap().kiosks.contains_key(&kiosk));

    proxy.heal();
    let merged: VenueDoc = eventually(WAIT, || {
        let (c, h) = (central.venue_doc(venue).ok()?, hub_venue_doc(&hub)?);
        (c == h && c.playlists.get(&lunch).is_some_and(|p| p.items.len() == 3)).then_some(c)
    })
    .await
    .unwrap();

    // 1: both kept, in an order both replicas agree on.
    let order: Vec<ItemId> = {
        let mut items: Vec<_> = merged.playlists[&lunch].items.iter().collect();
        items.sort_by(|(a_id, a), (b_id, b)| a.position.cmp(&b.position).then(a_id.cmp(b_id)));
        items.into_iter().map(|(id, _)| *id).collect()
    };
    assert_eq!(order[0], item);
    assert!(order.contains(&from_central) && order.contains(&from_hub));
    // 2: one duration wins, the same everywhere.
    let duration = merged.playlists[&lunch].items[&item].duration_ms;
    assert!(duration == 7000 || duration == 9000, "{duration}");
    // 3: the deleted playlist stays deleted; the document is whole, and a kiosk that played
    // it falls back to the venue default.
    assert!(!merged.playlists.contains_key(&evening));
    assert_eq!(
        taplink_sync_proto::manifest::playlist_source(&merged, &merged.kiosks[&door]),
        Some((
            lunch,
            taplink_sync_proto::manifest::PlaylistSource::VenueDefault
        ))
    );
    // 4: the removed kiosk stays removed.
    assert!(!merged.kiosks.contains_key(&kiosk));
    // Every manifest still computes.
    for k in merged.kiosks.keys() {
        taplink_sync_proto::manifest::manifest(&merged, *k, central.central.state().now()).unwrap();
    }
    println!(
        "merge outcomes: order {:?} (central's {from_central}, hub's {from_hub}); duration {duration}",
        order
    );

    // The audit log shows both duration changes, by their authors.
    let audit = eventually(WAIT, || {
        let state = central.central.state();
        let entries = state
            .registry
            .list_audit(&taplink_central::store::AuditQuery {
                venue: Some(venue),
                venues: None,
                actor: None,
                from_ms: None,
                to_ms: None,
                before_seq: None,
                limit: 200,
            })
            .ok()?;
        let durations: Vec<_> = entries
            .into_iter()
            .filter(|e| e.detail.to_string().contains("set_item_duration"))
            .collect();
        (durations.len() == 2).then_some(durations)
    })
    .await
    .unwrap();
    let mut origins: Vec<&str> = audit.iter().map(|e| e.origin.as_str()).collect();
    origins.sort_unstable();
    assert!(
        origins[0] == "central" && origins[1].starts_with("hub:"),
        "{origins:?}"
    );
    hub.shutdown().await.unwrap();
}
