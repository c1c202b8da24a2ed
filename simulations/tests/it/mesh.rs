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
        hub.shutdown().await;
    }
    central.central.shutdown().await.unwrap();
}
