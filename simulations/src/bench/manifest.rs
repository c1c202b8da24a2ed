//! `bench manifest`: how fast the hub answers kiosks polling an unchanged manifest
//! (`If-None-Match` → `304`), side by side with nginx serving the same manifest as a static
//! file with its `ETag`, driven by the same load tool with the same number of connections.
//!
//! The hub is the real `taplink-hub` binary with as many paired kiosks as connections (each
//! connection polls with its own kiosk's token). nginx (Debian's package) runs with its
//! defaults for this machine (`worker_processes auto`), access log off, and keep-alive
//! connections never closed by a request count (nginx closes them after 1,000 requests by
//! default; the hub never does). The two servers
//! take turns, `rounds` times each, so that drift in the machine's load hits both; the
//! load tool runs in this process.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};

use crate::bench::hub_rig::HubRig;
use crate::bench::load::{self, LoadReport, Request};
use crate::bench::procs::{Proc, free_addr, until};
use crate::bench::{Table, ms, verdict};
use crate::mesh::{Target, http};

/// Options of `bench manifest`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Concurrent kiosks (connections), each polling with its own token.
    #[arg(long, default_value_t = 500)]
    pub kiosks: usize,
    /// Seconds measured per turn.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Seconds of warm-up before each measured turn.
    #[arg(long, default_value_t = 2)]
    pub warmup: u64,
    /// Turns per server.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Both servers over HTTPS (TLS 1.3, the hub's own certificate and key for both), as
    /// kiosks reach a hub in a venue; plain HTTP otherwise.
    #[arg(long)]
    pub tls: bool,
}

/// What `bench manifest` measured: one load report per turn and server.
#[derive(Debug, Clone)]
pub struct Report {
    /// The options.
    pub args: Args,
    /// The hub's turns.
    pub hub: Vec<LoadReport>,
    /// nginx's turns.
    pub nginx: Vec<LoadReport>,
    /// The manifest's size in bytes (what a `200` would carry).
    pub manifest_bytes: usize,
}

const PATH: &str = "/api/v1/kiosk/manifest";

/// Run the benchmark.
pub async fn run(args: &Args) -> Result<Report> {
    ensure!(
        args.kiosks > 0 && args.rounds > 0 && args.seconds > 0,
        "nothing to measure"
    );
    let rig = HubRig::start_with(args.tls).await?;
    let paired = rig.pair(args.kiosks).await?;
    let token = &paired[0].token;
    let auth = format!("Bearer {token}");
    // The manifest as the first kiosk gets it: nginx serves these bytes.
    let manifest = fetch(rig.target, &auth).await?;

    let www = rig.dir.path().join("www");
    let file = www.join(PATH.trim_start_matches('/'));
    std::fs::create_dir_all(file.parent().context("manifest path")?)?;
    std::fs::write(&file, &manifest)?;
    let nginx_addr = free_addr()?;
    let tls = args
        .tls
        .then(|| (rig.hub_dir.join("hub.pem"), rig.hub_dir.join("hub.key")));
    let nginx_proc = start_nginx(rig.dir.path(), &www, nginx_addr, tls.as_ref()).await?;
    // nginx presents the hub's certificate: the same pin reaches both.
    let nginx_target = Target {
        addr: nginx_addr,
        tls: rig.target.tls,
    };

    let hub_requests: Vec<Request> = paired
        .iter()
        .map(|p| {
            Request::get(
                rig.addr,
                PATH,
                &[("Authorization", &format!("Bearer {}", p.token))],
            )
        })
        .collect();
    // The same request lines and header sizes: nginx ignores the token.
    let nginx_requests: Vec<Request> = paired
        .iter()
        .map(|p| {
            Request::get(
                nginx_addr,
                PATH,
                &[("Authorization", &format!("Bearer {}", p.token))],
            )
        })
        .collect();
    let warmup = Duration::from_secs(args.warmup);
    let window = Duration::from_secs(args.seconds);
    let mut report = Report {
        args: args.clone(),
        hub: Vec::new(),
        nginx: Vec::new(),
        manifest_bytes: manifest.len(),
    };
    for _ in 0..args.rounds {
        let hub = load::run(
            rig.target,
            hub_requests.clone(),
            warmup,
            window,
            &[rig.hub.pid()],
        )
        .await?;
        check(&hub, "hub")?;
        report.hub.push(hub);
        let nginx = load::run(
            nginx_target,
            nginx_requests.clone(),
            warmup,
            window,
            &[nginx_proc.pid()],
        )
        .await?;
        check(&nginx, "nginx")?;
        report.nginx.push(nginx);
    }
    Ok(report)
}

/// Every counted answer must be a 304, and no connection may have failed.
fn check(report: &LoadReport, server: &str) -> Result<()> {
    if report.errors > 0 {
        bail!(
            "{server}: {} connections failed, first: {}",
            report.errors,
            report.first_error.as_deref().unwrap_or("?")
        );
    }
    let all: u64 = report.by_status.values().sum();
    ensure!(
        all > 0 && report.count(304) == all,
        "{server}: expected only 304s, got {:?}",
        report.by_status
    );
    Ok(())
}

/// One GET of the manifest; its body.
async fn fetch(target: Target, auth: &str) -> Result<Vec<u8>> {
    let (status, body) =
        crate::mesh::http_with(target, "GET", PATH, &[("Authorization", auth)], b"").await?;
    ensure!(
        status == 200,
        "manifest: {status} {}",
        String::from_utf8_lossy(&body)
    );
    Ok(body)
}

/// Start nginx serving `www` on `addr`, with its state under `dir`; over TLS 1.3 with
/// the certificate and key files `tls` when given.
async fn start_nginx(
    dir: &Path,
    www: &Path,
    addr: std::net::SocketAddr,
    tls: Option<&(std::path::PathBuf, std::path::PathBuf)>,
) -> Result<Proc> {
    let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .context("nginx is not installed: `apt-get install nginx` (scripts/bench.sh does)")?;
    // nginx's workers run as an unprivileged user when started as root: let them read.
    for d in [dir, www] {
        std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    }
    let state = dir.join("nginx");
    std::fs::create_dir_all(&state)?;
    let conf = state.join("nginx.conf");
    let s = state.display();
    std::fs::write(
        &conf,
        format!(
            "worker_processes auto;
pid {s}/nginx.pid;
error_log {s}/error.log warn;
daemon off;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    client_body_temp_path {s}/body;
    proxy_temp_path {s}/proxy;
    fastcgi_temp_path {s}/fastcgi;
    uwsgi_temp_path {s}/uwsgi;
    scgi_temp_path {s}/scgi;
    default_type application/json;
    server {{
        listen {addr}{ssl};
        {certs}
        root {www};
    }}
}}
",
            www = www.display(),
            ssl = if tls.is_some() { " ssl" } else { "" },
            certs = tls.map_or_else(String::new, |(cert, key)| format!(
                "ssl_certificate {}; ssl_certificate_key {}; ssl_protocols TLSv1.3; ssl_session_cache off;",
                cert.display(),
                key.display()
            )),
        ),
    )?;
    let conf = conf.display().to_string();
    let mut proc = Proc::spawn_command(
        Command::new(nginx),
        &["-c", &conf, "-p", &s.to_string()],
        &state.join("stdout.log"),
    )?;
    let target = Target {
        addr,
        tls: match tls {
            Some((cert, _)) => Some(taplink_certs::Fingerprint::of(
                &taplink_certs::cert_der_from_pem(&std::fs::read_to_string(cert)?)?,
            )),
            None => None,
        },
    };
    until(Duration::from_secs(10), "nginx answering", async || {
        http(target, "GET", PATH, b"")
            .await
            .ok()
            .filter(|(status, _)| *status == 200)
    })
    .await?;
    proc.check_running()?;
    Ok(proc)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

impl Report {
    /// Median rate of a server's turns.
    pub fn rate(turns: &[LoadReport]) -> f64 {
        median(turns.iter().map(LoadReport::rate).collect())
    }

    /// Median of a quantile over a server's turns.
    pub fn quantile(turns: &[LoadReport], q: f64) -> Duration {
        Duration::from_secs_f64(median(
            turns.iter().map(|t| t.quantile(q).as_secs_f64()).collect(),
        ))
    }

    /// The figures as a table.
    pub fn table(&self) -> Table {
        let mut t = Table::new(format!(
            "bench manifest: conditional manifest requests (304), hub vs nginx, {} concurrent kiosks, {}",
            self.args.kiosks,
            if self.args.tls {
                "HTTPS (TLS 1.3) on both"
            } else {
                "plain HTTP"
            }
        ));
        t.note(format!(
            "{} turns each, alternating, {} s measured after {} s warm-up; medians of the turns; manifest {} bytes",
            self.args.rounds, self.args.seconds, self.args.warmup, self.manifest_bytes
        ));
        t.note(
            "one keep-alive connection per kiosk, closed loop; the load tool shares the machine",
        );
        let hub = Self::rate(&self.hub);
        let nginx = Self::rate(&self.nginx);
        for (name, turns) in [("hub", &self.hub), ("nginx", &self.nginx)] {
            t.row(
                format!("{name}: 304s per second"),
                format!("{:.0}", Self::rate(turns)),
                "",
            );
            t.row(
                format!("{name}: latency p50 / p99"),
                format!(
                    "{} / {}",
                    ms(Self::quantile(turns, 0.5)),
                    ms(Self::quantile(turns, 0.99))
                ),
                "",
            );
        }
        let cpu = |turns: &[LoadReport]| {
            median(
                turns
                    .iter()
                    .map(|t| t.cpu_per_response().as_secs_f64() * 1e6)
                    .collect(),
            )
        };
        t.row(
            "hub: server CPU per 304",
            format!("{:.1} µs", cpu(&self.hub)),
            "",
        );
        t.row(
            "nginx: server CPU per 304 (master and workers)",
            format!("{:.1} µs", cpu(&self.nginx)),
            "",
        );
        t.row(
            "hub / nginx, 304s per second",
            format!("{:.0} %", hub / nginx * 100.0),
            format!("≥ 100 %: {}", verdict(hub >= nginx)),
        );
        t
    }
}
