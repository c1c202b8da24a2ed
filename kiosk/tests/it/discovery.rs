//! mDNS discovery over the loopback interface only: a hub advertisement made with the same
//! library the hub uses is found, with its TXT records, and the kiosk's venue filter
//! applies. Neither side ever touches the machine's real interfaces.

use std::time::Duration;

use mdns_sd::{IfKind, ServiceDaemon, ServiceInfo};
use taplink_kiosk::discovery::{Browse, SERVICE_TYPE, discover};
use taplink_sync_proto::ids::{HubId, VenueId};
use tokio_util::sync::CancellationToken;

/// Advertise a hub of `venue` on `lo` only, as the hub does.
fn advertise(venue: VenueId, hub: HubId, port: u16) -> ServiceDaemon {
    let daemon = ServiceDaemon::new().unwrap();
    daemon.disable_interface(IfKind::All).unwrap();
    daemon.enable_interface(IfKind::Name("lo".into())).unwrap();
    let txt = [
        ("venue", venue.to_string()),
        ("hub", hub.to_string()),
        ("api", "1".to_string()),
        ("fp", "sha256:00ff".to_string()),
    ];
    let info = ServiceInfo::new(
        SERVICE_TYPE,
        &format!("taplink-hub-{hub}"),
        &format!("taplink-hub-{hub}.local."),
        "127.0.0.1",
        port,
        &txt[..],
    )
    .unwrap();
    daemon.register(info).unwrap();
    daemon
}

#[tokio::test]
async fn a_hub_advertised_on_loopback_is_found_with_its_txt_records() {
    // Random ids: other tests on this machine may advertise hubs on lo at the same time,
    // and the venue filter must pick ours.
    let venue = VenueId::random();
    let hub = HubId::random();
    let advertiser = advertise(venue, hub, 18_580);
    let browse = Browse {
        interface: Some("lo".into()),
        venue: Some(venue),
    };
    let cancel = CancellationToken::new();
    let found = discover(&browse, Duration::from_secs(20), &cancel)
        .await
        .unwrap()
        .expect("the hub on lo is found");
    assert_eq!(found.addr, "127.0.0.1:18580".parse().unwrap());
    assert_eq!((found.venue, found.hub), (Some(venue), Some(hub)));
    assert_eq!(found.fingerprint.as_deref(), Some("sha256:00ff"));
    assert!(found.instance.starts_with(&format!("taplink-hub-{hub}")));
    println!("discovery on lo took {:?}", found.elapsed);
    let _ = advertiser.shutdown();
}

#[tokio::test]
async fn browsing_stops_at_once_when_cancelled() {
    let browse = Browse {
        interface: Some("lo".into()),
        venue: Some(VenueId::random()),
    };
    let cancel = CancellationToken::new();
    cancel.cancel();
    let found = discover(&browse, Duration::from_secs(600), &cancel)
        .await
        .unwrap();
    assert_eq!(found, None);
}
