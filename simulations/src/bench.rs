//! The benchmarks of `taplink-sim bench <name>`: blob transfer against a plain TCP copy,
//! reconvergence after an outage, warm resync, a mass reconnect to one central, and on
//! the venue side the manifest polls against nginx, memory, change-to-screen and mDNS
//! discovery (these run the real `taplink-hub` / `taplink-kiosk` binaries: build them
//! first, as `scripts/bench.sh` does); at central, what a sign-in costs, every list page
//! at fleet scale, a password-guessing run against the login throttle, and the dashboard's
//! pages at fleet scale.
//!
//! Each bench prints its figures as a small table next to its target and returns them, so
//! tests can run the same code at a small size. Everything runs on 127.0.0.1, every loop
//! is bounded in count and in time, and figures only mean something from a `--release`
//! build (a debug build is tens of times slower).

pub mod blob;
pub mod clock;
pub mod cpu;
pub mod dashboard;
pub mod discovery;
pub mod flood;
pub mod guess;
pub mod hub_rig;
pub mod lists;
pub mod load;
pub mod login;
pub mod manifest;
pub mod memory;
pub mod procs;
pub mod reconnect;
pub mod reconverge;
pub mod screen;
pub mod simhub;
pub mod venue_history;
pub mod warm;

use std::fmt;

/// One benchmark to run.
#[derive(Debug, clap::Subcommand)]
pub enum Bench {
    /// Blob transfer central → hub over QUIC against a plain TCP copy of the same file.
    Blob(blob::Args),
    /// Reconvergence after an outage with offline edits on both sides: bytes and CPU.
    Reconverge(reconverge::Args),
    /// Warm resync of an unchanged venue document after a reconnect: bytes.
    Warm(warm::Args),
    /// Many hubs reconnecting at once to one central after a regional outage.
    Reconnect(reconnect::Args),
    /// Conditional manifest requests (304) at the hub against nginx, many kiosks at once.
    Manifest(manifest::Args),
    /// Resident memory of the hub with many kiosks long-polling, and of a kiosk agent.
    Memory(memory::Args),
    /// Change-to-screen: an edit at central or at the hub until kiosks hold it.
    Screen(screen::Args),
    /// A kiosk finding its hub by mDNS on a namespace LAN (needs root).
    Discovery(discovery::Args),
    /// The hub under a flood of idle and slow connections and a guessing run.
    Flood(flood::Args),
    /// What a sign-in at central costs (argon2id), and one permission check.
    Login(login::Args),
    /// Every list page of central's API at fleet scale (1,000 venues, 20,000 kiosks,
    /// 50,000 audit entries), as an admin and as a technician scoped by tag.
    Lists(lists::Args),
    /// A password-guessing run at central's login while another account signs in.
    Guess(guess::Args),
    /// The dashboard's fleet overview and a venue page at fleet scale (the fleet of
    /// `lists`, with hubs online, heartbeats and alerts), as an admin with a session.
    Dashboard(dashboard::Args),
}

/// The `q` quantile (0..=1) of `sorted` latencies (zero when there are none).
pub fn quantile(sorted: &[std::time::Duration], q: f64) -> std::time::Duration {
    if sorted.is_empty() {
        return std::time::Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// A keep-alive HTTP client for a node's plain-HTTP API on loopback, connecting from
/// `local` if given (any 127/8 address on Linux, so one machine can play several clients).
pub fn http_client(local: Option<std::net::IpAddr>) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .use_preconfigured_tls(taplink_certs::tls::plain_http_client_config())
        .local_address(local)
        .pool_max_idle_per_host(1)
        .timeout(std::time::Duration::from_secs(30))
        .build()?)
}

/// `POST /api/v1/auth/login` with `client`: the session cookie (`name=value`) if it
/// succeeded, and the status.
pub async fn sign_in(
    client: &reqwest::Client,
    base: &str,
    username: &str,
    password: &str,
) -> anyhow::Result<(Option<String>, u16)> {
    let answer = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&serde_json::json!({ "username": username, "password": password }))
        .send()
        .await?;
    let status = answer.status().as_u16();
    let cookie = answer
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("taplink_session="))
        .and_then(|v| v.split(';').next())
        .map(str::to_owned);
    // Read the body so that the connection can be reused.
    answer.bytes().await?;
    Ok((cookie.filter(|_| status == 200), status))
}

/// Run one benchmark and print its table.
pub async fn run(bench: Bench) -> anyhow::Result<()> {
    let table = match bench {
        Bench::Blob(args) => blob::run(&args).await?.table(),
        Bench::Reconverge(args) => tokio::task::spawn_blocking(move || reconverge::run(&args))
            .await??
            .table(),
        Bench::Warm(args) => warm::run(&args).await?.table(),
        Bench::Reconnect(args) => reconnect::run(&args).await?.table(),
        Bench::Manifest(args) => manifest::run(&args).await?.table(),
        Bench::Memory(args) => memory::run(&args).await?.table(),
        Bench::Screen(args) => screen::run(&args).await?.table(),
        Bench::Discovery(args) => discovery::run(&args).await?.table(),
        Bench::Flood(args) => flood::run(&args).await?.table(),
        Bench::Login(args) => tokio::task::spawn_blocking(move || login::run(&args))
            .await??
            .table(),
        Bench::Lists(args) => lists::run(&args).await?.table(),
        Bench::Guess(args) => guess::run(&args).await?.table(),
        Bench::Dashboard(args) => dashboard::run(&args).await?.table(),
    };
    println!("{table}");
    Ok(())
}

/// A printable table of figures: what, figure, target.
#[derive(Debug, Clone, Default)]
pub struct Table {
    /// What was measured, in one line.
    pub title: String,
    /// Setup notes printed under the title.
    pub notes: Vec<String>,
    /// Rows: what, figure, target (empty when there is none).
    pub rows: Vec<[String; 3]>,
}

impl Table {
    /// An empty table with a title.
    pub fn new(title: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            ..Self::default()
        }
    }

    /// Add a setup note.
    pub fn note(&mut self, note: impl Into<String>) -> &mut Self {
        self.notes.push(note.into());
        self
    }

    /// Add a row.
    pub fn row(
        &mut self,
        what: impl Into<String>,
        figure: impl Into<String>,
        target: impl Into<String>,
    ) -> &mut Self {
        self.rows.push([what.into(), figure.into(), target.into()]);
        self
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.title)?;
        for note in &self.notes {
            writeln!(f, "  {note}")?;
        }
        let header = ["what".to_owned(), "figure".to_owned(), "target".to_owned()];
        let mut widths = [0usize; 3];
        for row in std::iter::once(&header).chain(&self.rows) {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |f: &mut fmt::Formatter<'_>, row: &[String; 3]| {
            writeln!(
                f,
                "| {:<w0$} | {:>w1$} | {:<w2$} |",
                row[0],
                row[1],
                row[2],
                w0 = widths[0],
                w1 = widths[1],
                w2 = widths[2]
            )
        };
        line(f, &header)?;
        writeln!(
            f,
            "|{}|{}|{}|",
            "-".repeat(widths[0] + 2),
            "-".repeat(widths[1] + 2),
            "-".repeat(widths[2] + 2)
        )?;
        for row in &self.rows {
            line(f, row)?;
        }
        Ok(())
    }
}

/// `bytes` as KiB with one decimal.
pub fn kib(bytes: u64) -> String {
    format!("{:.1} KiB", bytes as f64 / 1024.0)
}

/// A duration in milliseconds with one decimal.
pub fn ms(d: std::time::Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// Whether a figure met its target, for the last column.
pub fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT met" }
}

/// Central's session configuration for a hub of `venue`, as `taplink_central::sync` builds
/// it: the venue document read-write, the org document read-only.
pub fn central_session(
    hub: taplink_sync_proto::ids::HubId,
    venue: taplink_sync_proto::ids::VenueId,
) -> taplink_sync_proto::session::SessionConfig {
    use taplink_sync_proto::session::{Access, SessionConfig};
    use taplink_sync_proto::wire::{DocId, PeerIdentity};
    SessionConfig::new(
        PeerIdentity::Central,
        PeerIdentity::Hub { hub, venue },
        "taplink-central bench",
        std::collections::BTreeMap::from([
            (DocId::Venue(venue), Access::Write),
            (DocId::Org, Access::Read),
        ]),
    )
}

/// A hub's session configuration, as the hub's uplink builds it.
pub fn hub_session(
    hub: taplink_sync_proto::ids::HubId,
    venue: taplink_sync_proto::ids::VenueId,
) -> taplink_sync_proto::session::SessionConfig {
    use taplink_sync_proto::session::{Access, SessionConfig};
    use taplink_sync_proto::wire::{DocId, PeerIdentity};
    SessionConfig::new(
        PeerIdentity::Hub { hub, venue },
        PeerIdentity::Central,
        "taplink-hub bench",
        std::collections::BTreeMap::from([
            (DocId::Venue(venue), Access::Write),
            (DocId::Org, Access::Write),
        ]),
    )
}
