//! `bench discovery`: how long a kiosk takes to find its hub by mDNS on a venue LAN.
//!
//! Two network namespaces on a bridge (`netns::Lan`), as two hosts of one LAN: the hub's
//! advertiser (`taplink_edge_hub::mdns::Advertiser`) on one, and the kiosk's
//! `discovery::discover` on the other, restricted to the LAN interface as a kiosk
//! configured for it is. Each round is a cold start: a new mDNS daemon, no cache, from
//! starting the daemon until the hub is resolved with a usable address. Needs root (`ip
//! netns`); nothing leaves the namespaces.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use taplink_certs::Fingerprint;
use taplink_edge_hub::mdns::{Advertisement, Advertiser};
use taplink_kiosk::discovery::{Browse, discover};
use taplink_sync_proto::ids::{HubId, VenueId};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::bench::{Table, ms, verdict};
use crate::netns::{LAN_DEV, Lan};

/// Options of `bench discovery`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Cold discoveries to time.
    #[arg(long, default_value_t = 20)]
    pub rounds: usize,
    /// The LAN's subnet number (hosts get 10.77.<subnet>.x).
    #[arg(long, default_value_t = 201)]
    pub subnet: u8,
}

/// What `bench discovery` measured.
#[derive(Debug, Clone)]
pub struct Report {
    /// The options.
    pub args: Args,
    /// Each round's time to the hub, sorted.
    pub times: Vec<Duration>,
}

/// The target: under 1.5 s.
const TARGET: Duration = Duration::from_millis(1500);

/// Run the benchmark.
pub async fn run(args: &Args) -> Result<Report> {
    ensure!(args.rounds > 0, "nothing to measure");
    let mut lan = Lan::new(args.subnet).context("making the LAN (needs root and iproute2)")?;
    let (hub_host, hub_ip) = lan.add_host("hub")?;
    let (kiosk_host, _) = lan.add_host("kio")?;
    let ad = Advertisement {
        hub: HubId::random(),
        venue: VenueId::random(),
        port: 8580,
        fingerprint: Fingerprint::of(b"bench discovery"),
        interface: Some(LAN_DEV.into()),
        addr: Some(IpAddr::V4(hub_ip)),
    };
    let start = ad.clone();
    let advertiser = lan
        .host(hub_host)
        .run_in(move || Advertiser::start(&start))??;
    let browse = Browse {
        interface: Some(LAN_DEV.into()),
        netns: Some(lan.host(kiosk_host).name().to_owned()),
        venue: Some(ad.venue),
        pinned: None,
    };
    let expected = SocketAddr::new(IpAddr::V4(hub_ip), ad.port);
    let mut times = Vec::with_capacity(args.rounds);
    let result = async {
        for round in 0..args.rounds {
            let started = Instant::now();
            let found = discover(&browse, Duration::from_secs(10), &CancellationToken::new())
                .await?
                .with_context(|| format!("round {round}: the hub was not found within 10 s"))?;
            times.push(started.elapsed());
            ensure!(
                found.addr == expected,
                "found {} instead of {expected}",
                found.addr
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(())
    }
    .await;
    advertiser.shutdown().await;
    result?;
    times.sort();
    Ok(Report {
        args: args.clone(),
        times,
    })
}

impl Report {
    fn quantile(&self, q: f64) -> Duration {
        let i = ((self.times.len() - 1) as f64 * q).round() as usize;
        self.times[i]
    }

    /// The figures as a table.
    pub fn table(&self) -> Table {
        let mut t =
            Table::new("bench discovery: a kiosk finding its hub by mDNS on a namespace LAN");
        t.note(format!(
            "{} cold starts of the kiosk's browser (new daemon, empty cache) on eth0 of a bridged LAN",
            self.args.rounds
        ));
        let max = self.quantile(1.0);
        t.row("p50", ms(self.quantile(0.5)), "");
        t.row("p90", ms(self.quantile(0.9)), "");
        t.row(
            "max",
            ms(max),
            format!("< {}: {}", ms(TARGET), verdict(max < TARGET)),
        );
        t
    }
}
