//! A small HTTP/1.1 load tool for the LAN benchmarks: many keep-alive connections, each
//! asking one request over and over (a closed loop, like `wrk`), for a bounded time. The
//! same tool drives the hub and nginx, so the two are measured alike.
//!
//! Each connection first sends its request once as is, to learn the response's `ETag`,
//! then repeats it with `If-None-Match: <etag>` (a kiosk polling an unchanged manifest),
//! switching to the new `ETag` whenever a `200` brings one (a kiosk following a change).
//! Only responses that complete inside the measuring window count; latencies are from the
//! request's first byte written to the response's last byte read.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::mesh::Target;

/// Largest response head or body the tool reads.
const MAX_RESPONSE: usize = 1024 * 1024;

/// One connection's request: the request line and headers, without the blank line that
/// ends them (the tool adds `If-None-Match` and the end).
#[derive(Debug, Clone)]
pub struct Request {
    /// `GET /path HTTP/1.1\r\nHost: …\r\n…` — each header line ending in `\r\n`.
    pub head: String,
}

impl Request {
    /// A `GET` of `path` with extra header lines (e.g. `Authorization: Bearer …`).
    pub fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Request {
        let mut head = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n");
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        Request { head }
    }
}

/// What a load run measured.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// Responses completed in the window, by status.
    pub by_status: BTreeMap<u16, u64>,
    /// Connections that failed (reset, closed, malformed answer).
    pub errors: u64,
    /// The first error seen, if any.
    pub first_error: Option<String>,
    /// The measuring window.
    pub window: Duration,
    /// Latencies of the counted responses, in microseconds, sorted.
    pub latencies_us: Vec<u32>,
    /// CPU time the server's processes used during the window (user + system).
    pub server_cpu: Duration,
}

impl LoadReport {
    /// Responses per second in the window.
    pub fn rate(&self) -> f64 {
        self.by_status.values().sum::<u64>() as f64 / self.window.as_secs_f64()
    }

    /// The `q` quantile (0..=1) of the latencies.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.latencies_us.is_empty() {
            return Duration::ZERO;
        }
        let i = ((self.latencies_us.len() - 1) as f64 * q).round() as usize;
        Duration::from_micros(u64::from(self.latencies_us[i]))
    }

    /// Server CPU per response in the window.
    pub fn cpu_per_response(&self) -> Duration {
        let n = self.by_status.values().sum::<u64>().max(1);
        self.server_cpu / u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// How many responses had `status`.
    pub fn count(&self, status: u16) -> u64 {
        self.by_status.get(&status).copied().unwrap_or(0)
    }
}

/// Run one connection per request against `addr`: `warmup` first (not counted), then
/// `window` measured. `server` lists the server's processes (their children are counted
/// too), whose CPU time over the window is reported.
pub async fn run(
    target: impl Into<Target>,
    requests: Vec<Request>,
    warmup: Duration,
    window: Duration,
    server: &[u32],
) -> Result<LoadReport> {
    let start = Instant::now() + Duration::from_millis(200);
    let from = start + warmup;
    let until = from + window;
    let target = target.into();
    // One TLS configuration for every connection, pinned to the server's certificate.
    let tls = target
        .tls
        .map(|fp| {
            taplink_certs::tls::lan_client_config(taplink_certs::tls::HubPin::Exact(fp))
                .map(|c| tokio_rustls::TlsConnector::from(std::sync::Arc::new(c)))
        })
        .transpose()?;
    let mut tasks = tokio::task::JoinSet::new();
    for request in requests {
        tasks.spawn(connection(
            target.addr,
            tls.clone(),
            request,
            start,
            from,
            until,
        ));
    }
    tokio::time::sleep_until(from).await;
    let cpu_from = cpu_of_tree(server)?;
    tokio::time::sleep_until(until).await;
    let server_cpu = cpu_of_tree(server)?.saturating_sub(cpu_from);
    let mut report = LoadReport {
        window,
        server_cpu,
        ..LoadReport::default()
    };
    while let Some(joined) = tasks.join_next().await {
        match joined.context("load connection panicked")? {
            Ok(one) => {
                for (status, n) in one.by_status {
                    *report.by_status.entry(status).or_default() += n;
                }
                report.latencies_us.extend(one.latencies_us);
            }
            Err(e) => {
                report.errors += 1;
                report.first_error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }
    report.latencies_us.sort_unstable();
    Ok(report)
}

/// CPU time used so far by `pids` and their children.
fn cpu_of_tree(pids: &[u32]) -> Result<Duration> {
    let mut total = Duration::ZERO;
    for &pid in pids {
        total += crate::bench::procs::cpu_time(pid)?;
        for child in crate::bench::procs::children(pid)? {
            total += crate::bench::procs::cpu_time(child)?;
        }
    }
    Ok(total)
}

/// One connection that sends its request once, then `n` conditional repeats (bounded by
/// count, not time): the latency of each repeat.
pub async fn run_count(
    target: impl Into<Target>,
    requests: Vec<Request>,
    n: usize,
) -> Result<LoadReport> {
    let target = target.into();
    let request = requests.into_iter().next().context("no request")?;
    let tcp = TcpStream::connect(target.addr).await?;
    tcp.set_nodelay(true)?;
    let started = Instant::now();
    let one = match target.tls {
        None => repeats(tcp, request, n).await?,
        Some(fp) => {
            let tls = taplink_certs::tls::lan_client_config(taplink_certs::tls::HubPin::Exact(fp))?;
            let name = rustls::pki_types::ServerName::IpAddress(target.addr.ip().into());
            let stream = tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls))
                .connect(name, tcp)
                .await?;
            repeats(stream, request, n).await?
        }
    };
    let mut report = LoadReport {
        window: started.elapsed(),
        by_status: one.by_status,
        latencies_us: one.latencies_us,
        ..LoadReport::default()
    };
    report.latencies_us.sort_unstable();
    Ok(report)
}

async fn repeats<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    request: Request,
    n: usize,
) -> Result<OneConnection> {
    let mut buf = Vec::with_capacity(4096);
    let first = format!("{}\r\n", request.head);
    let (_, etag) = exchange(&mut stream, first.as_bytes(), &mut buf).await?;
    let etag = etag.context("the first answer has no ETag")?;
    let next = format!("{}If-None-Match: {etag}\r\n\r\n", request.head).into_bytes();
    let mut one = OneConnection {
        by_status: BTreeMap::new(),
        latencies_us: Vec::with_capacity(n),
    };
    for _ in 0..n {
        let sent = Instant::now();
        let (status, _) = exchange(&mut stream, &next, &mut buf).await?;
        *one.by_status.entry(status).or_default() += 1;
        one.latencies_us
            .push(u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX));
    }
    Ok(one)
}

struct OneConnection {
    by_status: BTreeMap<u16, u64>,
    latencies_us: Vec<u32>,
}

async fn connection(
    addr: SocketAddr,
    tls: Option<tokio_rustls::TlsConnector>,
    request: Request,
    start: Instant,
    from: Instant,
    until: Instant,
) -> Result<OneConnection> {
    tokio::time::sleep_until(start).await;
    let tcp = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connect to {addr}"))?;
    tcp.set_nodelay(true)?;
    match tls {
        None => polls(tcp, request, from, until).await,
        Some(tls) => {
            let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
            let stream = tls
                .connect(name, tcp)
                .await
                .with_context(|| format!("TLS handshake with {addr}"))?;
            polls(stream, request, from, until).await
        }
    }
}

/// One connection's closed loop of polls.
async fn polls<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    request: Request,
    from: Instant,
    until: Instant,
) -> Result<OneConnection> {
    let mut buf = Vec::with_capacity(4096);
    let first = format!("{}\r\n", request.head);
    let (status, etag) = exchange(&mut stream, first.as_bytes(), &mut buf).await?;
    if status != 200 {
        bail!("the first request got {status}, not 200");
    }
    let etag = etag.context("the first answer has no ETag")?;
    let conditional = |etag: &str| format!("{}If-None-Match: {etag}\r\n\r\n", request.head);
    let mut next = conditional(&etag).into_bytes();
    let mut one = OneConnection {
        by_status: BTreeMap::new(),
        latencies_us: Vec::new(),
    };
    loop {
        let sent = Instant::now();
        if sent >= until {
            return Ok(one);
        }
        let (status, etag) = exchange(&mut stream, &next, &mut buf).await?;
        let done = Instant::now();
        // A changed resource: poll for the new version from now on, as a kiosk would.
        if let (200, Some(etag)) = (status, etag) {
            next = conditional(&etag).into_bytes();
        }
        if done >= from && done < until {
            *one.by_status.entry(status).or_default() += 1;
            let us = u32::try_from((done - sent).as_micros()).unwrap_or(u32::MAX);
            one.latencies_us.push(us);
        }
    }
}

/// Write one request and read its response; returns the status and the `ETag`.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    request: &[u8],
    buf: &mut Vec<u8>,
) -> Result<(u16, Option<String>)> {
    stream.write_all(request).await?;
    buf.clear();
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX_RESPONSE {
            bail!("response head over {MAX_RESPONSE} bytes");
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            bail!("the server closed the connection");
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&buf[..head_end]).context("response head is not UTF-8")?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("response without a status")?;
    let mut length = 0usize;
    let mut etag = None;
    for line in head.split("\r\n").skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = value.parse().context("bad Content-Length")?;
        } else if name.eq_ignore_ascii_case("etag") {
            etag = Some(value.to_owned());
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            bail!("chunked responses are not supported by the load tool");
        }
    }
    if length > MAX_RESPONSE {
        bail!("response body over {MAX_RESPONSE} bytes");
    }
    // 304 has no body whatever Content-Length says (RFC 9110 §15.4.5).
    let body = if status == 304 { 0 } else { length };
    let mut have = buf.len() - head_end;
    while have < body {
        let mut chunk = [0u8; 16 * 1024];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            bail!("the server closed the connection mid-body");
        }
        have += n;
    }
    if have > body {
        bail!("the server sent more than one response (pipelining is not used)");
    }
    Ok((status, etag))
}
