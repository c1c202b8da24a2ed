//! mDNS advertisement, over real sockets, inside a network namespace the test creates:
//! mdns-sd joins the multicast group on every interface it can see when its daemon starts
//! (before any interface restriction applies), so both daemons are started from a thread
//! inside a fresh namespace whose only interface is its own `lo`. Nothing reaches the
//! machine's real network, not even an IGMP report. Both are also restricted to `lo`, as a
//! deployment restricts them to its LAN interface.
//!
//! Linux brings `lo` up without the MULTICAST flag, and this works anyway: mdns-sd sends
//! with `IP_MULTICAST_IF` set to the interface's address, which the kernel honours on
//! loopback regardless of the flag (checked on this machine kind, in a fresh network
//! namespace as well), so the test does not need `ip link set lo multicast on`.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use mdns_sd::{ServiceDaemon, ServiceEvent};
use taplink_certs::Fingerprint;
use taplink_edge_hub::mdns::{
    API_VERSION, Advertisement, Advertiser, SERVICE_TYPE, restrict_to_interface,
};
use taplink_simulations::netns::Netns;
use taplink_sync_proto::ids::{HubId, VenueId};

/// The bound on every wait (a resolve on one host takes about a second).
const BOUND: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hub_is_found_on_loopback_with_its_txt_records() {
    let ad = Advertisement {
        hub: HubId::random(),
        venue: VenueId::random(),
        port: 48_580,
        fingerprint: Fingerprint::of(b"a hub certificate"),
        interface: Some("lo".into()),
        addr: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
    };
    let ns = Netns::create("md").unwrap();
    let start = ad.clone();
    let advertiser = ns
        .run_in(move || Advertiser::start(&start))
        .unwrap()
        .unwrap();
    assert_eq!(advertiser.fullname(), ad.fullname());
    assert!(ad.fullname().starts_with("taplink-hub-"));

    let browser = ns.run_in(ServiceDaemon::new).unwrap().unwrap();
    restrict_to_interface(&browser, "lo").unwrap();
    let events = browser.browse(SERVICE_TYPE).unwrap();
    let resolved = tokio::time::timeout(BOUND, async {
        loop {
            match events.recv_async().await.expect("browser stopped") {
                // Other hubs (other tests, a demo) may be advertised on lo too.
                ServiceEvent::ServiceResolved(info) if info.get_fullname() == ad.fullname() => {
                    return info;
                }
                _ => {}
            }
        }
    })
    .await
    .expect("the hub was not resolved on lo within 10 s");

    assert_eq!(resolved.get_port(), ad.port);
    assert!(
        resolved.get_addresses_v4().contains(&Ipv4Addr::LOCALHOST),
        "{:?}",
        resolved.get_addresses()
    );
    let txt = |key| resolved.get_property_val_str(key).map(str::to_owned);
    assert_eq!(txt("venue"), Some(ad.venue.to_string()));
    assert_eq!(txt("hub"), Some(ad.hub.to_string()));
    assert_eq!(txt("api"), Some(API_VERSION.to_owned()));
    assert_eq!(txt("fp"), Some(ad.fingerprint.to_string()));
    assert!(txt("fp").unwrap().starts_with("sha256:"));

    // Shutting down says goodbye: the browser learns the hub is gone.
    advertiser.shutdown().await;
    tokio::time::timeout(BOUND, async {
        loop {
            match events.recv_async().await.expect("browser stopped") {
                ServiceEvent::ServiceRemoved(_, name) if name == ad.fullname() => return,
                _ => {}
            }
        }
    })
    .await
    .expect("no goodbye within 10 s");
    let _ = browser.shutdown();
}
