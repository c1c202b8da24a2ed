//! Finding the venue's hub by mDNS: browse `_taplink._tcp.local.` and take the first hub
//! that resolves with a usable address (and, once the kiosk is paired, the right venue).
//!
//! The address rule follows `docs/kiosk-api.md`: an address seen on the interface we
//! browse on, never loopback unless we browse on loopback (the demo and tests do). IPv4 is
//! preferred; an IPv6 link-local address is used only with its scope. When an interface is
//! named, every other interface is disabled in the mDNS daemon *before* it sends anything,
//! so a test or demo on `lo` never touches the machine's real networks.

use std::net::{IpAddr, SocketAddr, SocketAddrV6};
use std::time::Duration;

use mdns_sd::{IfKind, ResolvedService, ScopedIp, ServiceDaemon, ServiceEvent};
use taplink_sync_proto::ids::{HubId, VenueId};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// The DNS-SD service type hubs advertise.
pub const SERVICE_TYPE: &str = "_taplink._tcp.local.";

/// The API version this agent speaks (TXT `api`).
pub const API_VERSION: &str = "1";

/// Why browsing could not even start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// The mDNS daemon failed (no multicast socket, unknown interface…).
    #[error("mDNS: {action}: {source}")]
    Mdns {
        /// What we tried.
        action: &'static str,
        /// Why.
        source: mdns_sd::Error,
    },
    /// The configured network namespace could not be used.
    #[error("mDNS namespace: {0}")]
    Netns(String),
}

/// A hub found on the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundHub {
    /// Where its HTTP API is.
    pub addr: SocketAddr,
    /// Its DNS-SD instance name.
    pub instance: String,
    /// TXT `venue`.
    pub venue: Option<VenueId>,
    /// TXT `hub`.
    pub hub: Option<HubId>,
    /// TXT `fp`: the fingerprint of its certificate (`sha256:<hex>`).
    pub fingerprint: Option<String>,
    /// How long the browse took until this hub resolved.
    pub elapsed: Duration,
}

/// What to look for.
#[derive(Debug, Clone, Default)]
pub struct Browse {
    /// Only this interface (e.g. `lo`); `None`: all of them.
    pub interface: Option<String>,
    /// Start the browser inside this network namespace (see the config).
    pub netns: Option<String>,
    /// Only hubs of this venue (a paired kiosk is bound to its venue).
    pub venue: Option<VenueId>,
    /// Only the hub whose certificate has this fingerprint (a paired kiosk is pinned to
    /// the hub it paired with; an impostor advertising the same venue is passed over).
    pub pinned: Option<taplink_certs::Fingerprint>,
}

/// One resolved address and where it was seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The address.
    pub ip: IpAddr,
    /// Interfaces (names) it was seen on.
    pub interfaces: Vec<String>,
    /// The IPv6 scope (interface index), when known.
    pub scope_id: Option<u32>,
}

impl Candidate {
    fn from_scoped(ip: &ScopedIp) -> Option<Self> {
        match ip {
            ScopedIp::V4(v4) => Some(Self {
                ip: IpAddr::V4(*v4.addr()),
                interfaces: v4.interface_ids().iter().map(|i| i.name.clone()).collect(),
                scope_id: None,
            }),
            ScopedIp::V6(v6) => Some(Self {
                ip: IpAddr::V6(*v6.addr()),
                interfaces: vec![v6.scope_id().name.clone()],
                scope_id: Some(v6.scope_id().index).filter(|i| *i != 0),
            }),
            // `ScopedIp` is non-exhaustive; an address family we do not know is unusable.
            _ => None,
        }
    }
}

/// The address to use among `candidates` (see the module docs), or `None`.
pub fn pick_address(
    candidates: &[Candidate],
    interface: Option<&str>,
    on_loopback: bool,
    port: u16,
) -> Option<SocketAddr> {
    let mut usable: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| interface.is_none_or(|name| c.interfaces.iter().any(|i| i == name)))
        .filter(|c| on_loopback || !c.ip.is_loopback())
        .filter(|c| match c.ip {
            IpAddr::V6(v6) => !v6.is_unicast_link_local() || c.scope_id.is_some(),
            IpAddr::V4(_) => true,
        })
        .collect();
    // Candidates arrive in a hash set's order: sort for a stable choice, IPv4 first.
    usable.sort_by_key(|c| (c.ip.is_ipv6(), c.ip));
    let best = usable.first()?;
    Some(match best.ip {
        IpAddr::V6(v6) if v6.is_unicast_link_local() => {
            SocketAddr::V6(SocketAddrV6::new(v6, port, 0, best.scope_id.unwrap_or(0)))
        }
        ip => SocketAddr::new(ip, port),
    })
}

/// TXT records of a hub, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubTxt {
    /// `venue`.
    pub venue: Option<VenueId>,
    /// `hub`.
    pub hub: Option<HubId>,
    /// `fp`.
    pub fingerprint: Option<String>,
}

/// Read a hub's TXT records; `Err` with a reason when this hub is not for us (another API
/// version, or another venue than `want_venue`).
pub fn check_txt<'a>(
    get: impl Fn(&str) -> Option<&'a str>,
    want_venue: Option<VenueId>,
) -> Result<HubTxt, String> {
    match get("api") {
        Some(API_VERSION) => {}
        Some(other) => return Err(format!("speaks API {other:?}, we speak {API_VERSION}")),
        None => return Err("has no api TXT record".into()),
    }
    let venue = get("venue").and_then(|v| v.parse::<VenueId>().ok());
    if let Some(want) = want_venue
        && venue != Some(want)
    {
        return Err(format!(
            "serves venue {}, this kiosk belongs to {want}",
            get("venue").unwrap_or("(none)")
        ));
    }
    Ok(HubTxt {
        venue,
        hub: get("hub").and_then(|h| h.parse().ok()),
        fingerprint: get("fp").map(str::to_owned),
    })
}

/// Whether `name` is a loopback interface (Linux: the IFF_LOOPBACK flag in sysfs).
fn is_loopback_interface(name: &str) -> bool {
    const IFF_LOOPBACK: u32 = 0x8;
    std::fs::read_to_string(format!("/sys/class/net/{name}/flags"))
        .ok()
        .and_then(|f| u32::from_str_radix(f.trim().trim_start_matches("0x"), 16).ok())
        .map_or(name == "lo", |flags| flags & IFF_LOOPBACK != 0)
}

/// Browse until a matching hub resolves, `timeout` passes (`Ok(None)`), or `cancel` fires
/// (`Ok(None)`).
pub async fn discover(
    browse: &Browse,
    timeout: Duration,
    cancel: &CancellationToken,
) -> Result<Option<FoundHub>, DiscoveryError> {
    let mdns = |action| move |source| DiscoveryError::Mdns { action, source };
    let started = Instant::now();
    let daemon = match &browse.netns {
        None => ServiceDaemon::new().map_err(mdns("start daemon"))?,
        Some(ns) => taplink_sync_io::netns::run_in_netns(ns, ServiceDaemon::new)
            .map_err(|e| DiscoveryError::Netns(e.to_string()))?
            .map_err(mdns("start daemon"))?,
    };
    let result = async {
        if let Some(name) = &browse.interface {
            // Commands are handled in order, so no query leaves on another interface.
            daemon
                .disable_interface(IfKind::All)
                .map_err(mdns("disable interfaces"))?;
            daemon
                .enable_interface(IfKind::Name(name.clone()))
                .map_err(mdns("enable interface"))?;
        }
        let on_loopback = browse
            .interface
            .as_deref()
            .is_some_and(is_loopback_interface);
        let events = daemon.browse(SERVICE_TYPE).map_err(mdns("browse"))?;
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        loop {
            let event = tokio::select! {
                biased;
                _ = cancel.cancelled() => return Ok(None),
                _ = &mut deadline => return Ok(None),
                event = events.recv_async() => match event {
                    Ok(event) => event,
                    // The daemon stopped: nothing more will come.
                    Err(_) => return Ok(None),
                },
            };
            let ServiceEvent::ServiceResolved(service) = event else {
                continue;
            };
            if let Some(found) = accept(&service, browse, on_loopback, started) {
                return Ok(Some(found));
            }
        }
    }
    .await;
    // Stop the daemon thread; its status answer is not needed.
    let _ = daemon.shutdown();
    result
}

/// The hub `service` describes, if it is one for us.
fn accept(
    service: &ResolvedService,
    browse: &Browse,
    on_loopback: bool,
    started: Instant,
) -> Option<FoundHub> {
    let txt = match check_txt(|k| service.get_property_val_str(k), browse.venue) {
        Ok(txt) => txt,
        Err(reason) => {
            debug!(instance = %service.fullname, %reason, "ignoring a hub");
            return None;
        }
    };
    if let Some(pinned) = browse.pinned {
        let advertised = txt.fingerprint.as_deref().and_then(|f| f.parse().ok());
        if advertised != Some(pinned) {
            warn!(instance = %service.fullname, advertised = ?txt.fingerprint, %pinned, "ignoring a hub whose certificate is not the one this kiosk paired with");
            return None;
        }
    }
    let candidates: Vec<Candidate> = service
        .addresses
        .iter()
        .filter_map(Candidate::from_scoped)
        .collect();
    let Some(addr) = pick_address(
        &candidates,
        browse.interface.as_deref(),
        on_loopback,
        service.port,
    ) else {
        debug!(instance = %service.fullname, ?candidates, "ignoring a hub without a usable address");
        return None;
    };
    let elapsed = started.elapsed();
    info!(
        instance = %service.fullname,
        %addr,
        venue = ?txt.venue,
        discovery_ms = elapsed.as_millis() as u64,
        "found hub"
    );
    Some(FoundHub {
        addr,
        instance: service.fullname.clone(),
        venue: txt.venue,
        hub: txt.hub,
        fingerprint: txt.fingerprint,
        elapsed,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn cand(ip: &str, iface: &str, scope: Option<u32>) -> Candidate {
        Candidate {
            ip: ip.parse().unwrap(),
            interfaces: vec![iface.into()],
            scope_id: scope,
        }
    }

    #[test]
    fn loopback_is_skipped_unless_browsing_on_loopback() {
        let cands = [
            cand("127.0.0.1", "lo", None),
            cand("192.168.1.20", "eth0", None),
        ];
        assert_eq!(
            pick_address(&cands, None, false, 8580),
            Some("192.168.1.20:8580".parse().unwrap())
        );
        assert_eq!(
            pick_address(&cands, Some("lo"), true, 8580),
            Some("127.0.0.1:8580".parse().unwrap())
        );
        assert_eq!(
            pick_address(&cands[..1], None, false, 8580),
            None,
            "only loopback, not browsing on it"
        );
    }

    #[test]
    fn only_addresses_seen_on_the_browsed_interface_count_and_ipv4_wins() {
        let cands = [
            cand("10.0.0.5", "wlan0", None),
            cand("fd00::5", "eth0", Some(2)),
            cand("192.168.1.20", "eth0", None),
        ];
        assert_eq!(
            pick_address(&cands, Some("eth0"), false, 1),
            Some("192.168.1.20:1".parse().unwrap())
        );
        assert_eq!(
            pick_address(&cands, Some("wlan0"), false, 1),
            Some("10.0.0.5:1".parse().unwrap())
        );
        assert_eq!(pick_address(&cands, Some("eth1"), false, 1), None);
    }

    #[test]
    fn link_local_ipv6_needs_its_scope() {
        assert_eq!(
            pick_address(&[cand("fe80::1", "eth0", None)], None, false, 80),
            None
        );
        let picked = pick_address(&[cand("fe80::1", "eth0", Some(3))], None, false, 80).unwrap();
        match picked {
            SocketAddr::V6(v6) => assert_eq!((v6.scope_id(), v6.port()), (3, 80)),
            other => panic!("{other}"),
        }
    }

    #[test]
    fn txt_records_select_the_api_version_and_the_venue() {
        let venue = VenueId::from_bytes([7; 16]);
        let hub = HubId::from_bytes([8; 16]);
        let (venue_text, hub_text) = (venue.to_string(), hub.to_string());
        let txt: HashMap<&str, &str> = [
            ("api", "1"),
            ("venue", venue_text.as_str()),
            ("hub", hub_text.as_str()),
            ("fp", "sha256:00ff"),
        ]
        .into();
        let get = |k: &str| txt.get(k).copied();
        let ok = check_txt(get, None).unwrap();
        assert_eq!((ok.venue, ok.hub), (Some(venue), Some(hub)));
        assert_eq!(ok.fingerprint.as_deref(), Some("sha256:00ff"));
        assert_eq!(check_txt(get, Some(venue)).unwrap(), ok);
        let other = VenueId::from_bytes([1; 16]);
        assert!(check_txt(get, Some(other)).unwrap_err().contains("venue"));

        let v2: HashMap<&str, &str> = [("api", "2"), ("venue", venue_text.as_str())].into();
        assert!(
            check_txt(|k| v2.get(k).copied(), None)
                .unwrap_err()
                .contains("API")
        );
        assert!(check_txt(|_| None, None).is_err());
    }

    #[test]
    fn lo_is_a_loopback_interface() {
        assert!(is_loopback_interface("lo"));
        assert!(!is_loopback_interface("no-such-interface0"));
    }
}
