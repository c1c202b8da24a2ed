//! mDNS discovery inside a network namespace the test creates (its only interface is its
//! own `lo`): a hub advertisement made with the same library the hub uses is found, with
//! its TXT records, and the kiosk's venue filter applies. mdns-sd joins its group on every
//! interface it sees when its daemon starts, so both daemons start inside the namespace and
//! neither ever touches the machine's real interfaces.

use std::time::Duration;

use mdns_sd::{IfKind, ServiceDaemon, ServiceInfo};
use taplink_kiosk::discovery::{Browse, SERVICE_TYPE, discover};
use taplink_sync_proto::ids::{HubId, VenueId};
use tokio_util::sync::CancellationToken;

/// A network namespace for one test, deleted on drop.
struct Netns(String);

impl Netns {
    fn create(tag: &str) -> Netns {
        let name = format!("tlk{}{tag}", std::process::id());
        let status = std::process::Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap();
        assert!(
            status.success(),
            "ip netns add {name} (the tests run as root)"
        );
        let up = std::process::Command::new("ip")
            .args(["-n", &name, "link", "set", "lo", "up"])
            .status()
            .unwrap();
        assert!(up.success());
        Netns(name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.0])
            .status();
    }
}

/// Advertise a hub of `venue` on `lo` only, as the hub does, from inside `ns`.
fn advertise(ns: &Netns, venue: VenueId, hub: HubId, port: u16) -> ServiceDaemon {
    let daemon = taplink_sync_io::netns::run_in_netns(&ns.0, ServiceDaemon::new)
        .unwrap()
        .unwrap();
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
    let ns = Netns::create("d");
    let advertiser = advertise(&ns, venue, hub, 18_580);
    let browse = Browse {
        interface: Some("lo".into()),
        netns: Some(ns.0.clone()),
        venue: Some(venue),
        pinned: None,
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
    let ns = Netns::create("c");
    let browse = Browse {
        interface: Some("lo".into()),
        netns: Some(ns.0.clone()),
        venue: Some(VenueId::random()),
        pinned: None,
    };
    let cancel = CancellationToken::new();
    cancel.cancel();
    let found = discover(&browse, Duration::from_secs(600), &cancel)
        .await
        .unwrap();
    assert_eq!(found, None);
}
