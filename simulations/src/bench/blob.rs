//! `bench blob`: one media file central → hub over QUIC on loopback, against a plain TCP
//! copy of the same file on the same machine, in one run.
//!
//! - TCP: a tokio `TcpListener` serves the blob's bytes (opened from central's blob store)
//!   to a client that writes them to a file and fsyncs it at the end: a fair "plain copy",
//!   with no encryption, framing or hashing.
//! - QUIC: `taplink_sync_io::transfer::fetch_blob` over a mutual-TLS connection from the
//!   org CA, served by a `BlobServer`, into a hub `BlobStore`: frames, TLS 1.3 encryption,
//!   the partial file with an fsync every 4 MiB, BLAKE3 verification, the final fsync,
//!   rename and index row.
//!
//! Rounds alternate TCP and QUIC so that both see the same machine; the source file is in
//! the page cache for both. A first round of each is not counted (the first copy onto the
//! filesystem runs cold), and the filesystem is synced between transfers so that one
//! round's clean-up does not land in the next one's time.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use taplink_certs::tls::{ClientAuth, client_config, server_config};
use taplink_certs::{HubIdentity, OrgCa, ServerSan, Validity};
use taplink_sync_io::blobs::BlobStore;
use taplink_sync_io::frames::FrameReader;
use taplink_sync_io::net;
use taplink_sync_io::transfer::{BlobServer, Fetched, fetch_blob};
use taplink_sync_proto::ids::{HubId, MediaHash, VenueId};
use taplink_sync_proto::wire::{MAX_BLOB_CHUNK, MAX_FRAME_LEN, Message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::{Table, cpu, verdict};

/// Target from issue 3: QUIC at least this share of the plain TCP copy's throughput.
pub const TARGET_RATIO: f64 = 0.8;
/// Largest file the bench accepts, in MiB (it is held in memory once while stored).
const MAX_SIZE_MIB: u64 = 4096;
/// Most rounds the bench accepts.
const MAX_ROUNDS: u32 = 20;
/// One transfer may take this long before the bench gives up.
const TRANSFER_LIMIT: Duration = Duration::from_secs(120);
/// Read and write buffer of the plain copy: the size of a blob chunk.
const COPY_BUF: usize = MAX_BLOB_CHUNK;

/// Options of `bench blob`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Size of the blob in MiB.
    #[arg(long, default_value_t = 256)]
    pub size_mib: u64,
    /// Measured rounds of (TCP, QUIC), after one unmeasured round; the median of each is
    /// reported.
    #[arg(long, default_value_t = 7)]
    pub rounds: u32,
    /// Seed of the blob's bytes.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// One transfer's figures.
#[derive(Debug, Clone, Copy)]
pub struct Transfer {
    /// Wall time.
    pub wall: Duration,
    /// CPU time of the whole process (both ends run in it).
    pub cpu: Duration,
}

/// What `bench blob` measured.
#[derive(Debug, Clone)]
pub struct Report {
    /// The options it ran with.
    pub args: Args,
    /// Bytes per transfer.
    pub size: u64,
    /// The TCP rounds.
    pub tcp: Vec<Transfer>,
    /// The QUIC rounds.
    pub quic: Vec<Transfer>,
    /// Raw TCP rounds: the bytes from memory over one connection, no disk.
    pub tcp_raw: Vec<Transfer>,
    /// Raw QUIC rounds: the bytes from memory on one stream of the same connection (the
    /// same transport configuration), no frames, no disk.
    pub quic_raw: Vec<Transfer>,
}

impl Report {
    /// MiB/s of the median round of `rounds`.
    fn median_mib_s(&self, rounds: &[Transfer]) -> f64 {
        let mut walls: Vec<Duration> = rounds.iter().map(|t| t.wall).collect();
        walls.sort();
        let median = walls.get(walls.len() / 2).copied().unwrap_or(Duration::MAX);
        self.size as f64 / (1024.0 * 1024.0) / median.as_secs_f64()
    }

    /// QUIC throughput over TCP throughput (medians).
    pub fn ratio(&self) -> f64 {
        self.median_mib_s(&self.quic) / self.median_mib_s(&self.tcp)
    }

    /// The figures as a table.
    pub fn table(&self) -> Table {
        let mib = self.size as f64 / (1024.0 * 1024.0);
        let mut t = Table::new(format!(
            "bench blob: a {mib:.0} MiB blob central → hub on 127.0.0.1, median of {} rounds",
            self.args.rounds
        ));
        let rounds = |v: &[Transfer]| {
            v.iter()
                .map(|r| format!("{:.0}", mib / r.wall.as_secs_f64()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let cpu_per_gib = |v: &[Transfer]| {
            let total: Duration = v.iter().map(|r| r.cpu).sum();
            total.as_secs_f64() / (v.len().max(1) as f64) / (mib / 1024.0)
        };
        t.note(format!("TCP rounds (MiB/s): {}", rounds(&self.tcp)));
        t.note(format!("QUIC rounds (MiB/s): {}", rounds(&self.quic)));
        t.row(
            "plain TCP copy (read from the blob store, write, fsync)",
            format!("{:.0} MiB/s", self.median_mib_s(&self.tcp)),
            "",
        );
        t.row(
            "QUIC fetch_blob (TLS, frames, BLAKE3 verify, fsync, index)",
            format!("{:.0} MiB/s", self.median_mib_s(&self.quic)),
            "",
        );
        t.row(
            "QUIC / TCP",
            format!("{:.0} %", self.ratio() * 100.0),
            format!("≥ 80 %: {}", verdict(self.ratio() >= TARGET_RATIO)),
        );
        t.row(
            "reference: raw TCP, memory to memory",
            format!("{:.0} MiB/s", self.median_mib_s(&self.tcp_raw)),
            "",
        );
        t.row(
            "reference: raw QUIC stream, memory to memory (same connection)",
            format!("{:.0} MiB/s", self.median_mib_s(&self.quic_raw)),
            "",
        );
        t.row(
            "process CPU per GiB, TCP (both ends)",
            format!("{:.2} s", cpu_per_gib(&self.tcp)),
            "",
        );
        t.row(
            "process CPU per GiB, QUIC (both ends)",
            format!("{:.2} s", cpu_per_gib(&self.quic)),
            "",
        );
        t
    }
}

/// Run the benchmark.
pub async fn run(args: &Args) -> Result<Report> {
    ensure!(
        (1..=MAX_SIZE_MIB).contains(&args.size_mib),
        "--size-mib must be 1 to {MAX_SIZE_MIB}"
    );
    ensure!(
        (1..=MAX_ROUNDS).contains(&args.rounds),
        "--rounds must be 1 to {MAX_ROUNDS}"
    );
    let tmp = tempfile::tempdir()?;
    let size = args.size_mib * 1024 * 1024;
    let central_store = Arc::new(BlobStore::open(&tmp.path().join("central"))?);
    let hub_store = Arc::new(BlobStore::open(&tmp.path().join("hub"))?);
    let (hash, data) = {
        let store = central_store.clone();
        let seed = args.seed;
        tokio::task::spawn_blocking(move || -> Result<(MediaHash, bytes::Bytes)> {
            let len = usize::try_from(size)?;
            let mut data = vec![0u8; len];
            StdRng::seed_from_u64(seed).fill_bytes(&mut data);
            Ok((store.put(&data)?, bytes::Bytes::from(data)))
        })
        .await??
    };

    let quic = QuicPair::new(central_store.clone()).await?;
    let copy_path = tmp.path().join("tcp-copy");
    let mut report = Report {
        args: args.clone(),
        size,
        tcp: Vec::new(),
        quic: Vec::new(),
        tcp_raw: Vec::new(),
        quic_raw: Vec::new(),
    };
    // One unmeasured round of each first: the first copy onto a filesystem runs cold.
    for round in 0..=args.rounds {
        let tcp = timed(tcp_copy(&central_store, hash, size, &copy_path)).await?;
        tokio::fs::remove_file(&copy_path).await?;
        settle(tmp.path())?;

        let quic_round = timed(async {
            match fetch_blob(&quic.conn, &hub_store, hash, size).await? {
                Fetched::Stored { transferred, .. } if transferred == size => Ok(()),
                other => bail!("unexpected fetch outcome {other:?}"),
            }
        })
        .await?;
        ensure!(hub_store.has(&hash)?, "the hub did not store the blob");
        hub_store.remove(&hash)?;
        settle(tmp.path())?;

        let tcp_raw = timed(tcp_raw(&data)).await?;
        let quic_raw = timed(quic_raw(&quic.conn, &data)).await?;
        if round > 0 {
            report.tcp.push(tcp);
            report.quic.push(quic_round);
            report.tcp_raw.push(tcp_raw);
            report.quic_raw.push(quic_raw);
        }
    }
    quic.close();
    Ok(report)
}

/// Let the filesystem finish the last round's deletion (with the `discard` mount option a
/// deleted file's blocks are trimmed at the next journal commit) before the next round.
fn settle(dir: &Path) -> Result<()> {
    let dir = std::fs::File::open(dir)?;
    rustix::fs::syncfs(&dir)?;
    Ok(())
}

/// Run `f` with a time limit, measuring wall and process CPU time.
async fn timed(f: impl Future<Output = Result<()>>) -> Result<Transfer> {
    let (cpu0, wall0) = (cpu::process_time(), super::clock::now());
    tokio::time::timeout(TRANSFER_LIMIT, f)
        .await
        .context("transfer took too long")??;
    Ok(Transfer {
        wall: wall0.elapsed(),
        cpu: cpu::process_time() - cpu0,
    })
}

/// The plain copy: serve the blob's file over a loopback TCP connection; the client writes
/// what it receives to `dest` and fsyncs it.
async fn tcp_copy(store: &Arc<BlobStore>, hash: MediaHash, size: u64, dest: &Path) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let addr = listener.local_addr()?;
    let store = store.clone();
    let server = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await?;
        let (file, _size) = store.open_file(&hash)?;
        let mut file = tokio::fs::File::from_std(file);
        let mut buf = vec![0u8; COPY_BUF];
        loop {
            let n = file.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            sock.write_all(&buf[..n]).await?;
        }
        sock.shutdown().await?;
        anyhow::Ok(())
    });
    let mut sock = tokio::net::TcpStream::connect(addr).await?;
    let mut out = tokio::fs::File::create(dest).await?;
    let mut buf = vec![0u8; COPY_BUF];
    let mut received = 0u64;
    loop {
        let n = sock.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n]).await?;
        received += n as u64;
    }
    out.sync_all().await?;
    server.await??;
    ensure!(received == size, "received {received} of {size} bytes");
    Ok(())
}

/// A "central" endpoint serving blobs and a "hub" connected to it with mutual TLS.
struct QuicPair {
    server: quinn::Endpoint,
    client: quinn::Endpoint,
    conn: quinn::Connection,
    stop: CancellationToken,
}

impl QuicPair {
    async fn new(store: Arc<BlobStore>) -> Result<QuicPair> {
        let now = crate::mesh::system_now();
        let ca = OrgCa::create("Bench Org", Validity::new(now, time::Duration::days(1))?)?;
        let server_cert = ca.issue_server_cert(
            &["localhost".parse::<ServerSan>()?],
            Validity::new(now, time::Duration::days(1))?,
        )?;
        let ids = HubIdentity {
            hub: HubId::random(),
            venue: VenueId::random(),
        };
        let hub_cert = ca.issue_hub_cert(ids, Validity::new(now, time::Duration::days(1))?)?;
        let tls = server_config(
            vec![server_cert.cert.der().clone()],
            server_cert.key.to_der(),
            ca.cert_der(),
            vec![],
            ClientAuth::Required,
        )?;
        let server = net::server_endpoint(SocketAddr::from(([127, 0, 0, 1], 0)), tls)?;
        let client = net::client_endpoint(SocketAddr::from(([127, 0, 0, 1], 0)))?;
        let client_tls = client_config(
            vec![hub_cert.cert.der().clone()],
            hub_cert.key.to_der(),
            ca.cert_der(),
        )?;
        let stop = CancellationToken::new();
        tokio::spawn(serve_blobs(
            server.clone(),
            BlobServer::new(store, Arc::new(|_: &MediaHash| true)),
            stop.clone(),
        ));
        let conn = client
            .connect_with(
                net::client_config(client_tls)?,
                server.local_addr()?,
                "localhost",
            )?
            .await?;
        Ok(QuicPair {
            server,
            client,
            conn,
            stop,
        })
    }

    fn close(self) {
        self.stop.cancel();
        self.conn.close(0u32.into(), b"bench done");
        self.client.close(0u32.into(), b"bench done");
        self.server.close(0u32.into(), b"bench done");
    }
}

/// Raw QUIC: bytes on one stream, no frames, no disk (the transport's ceiling).
async fn quic_raw(conn: &quinn::Connection, data: &bytes::Bytes) -> Result<()> {
    let mut send = conn.open_uni().await?;
    for piece in data.chunks(COPY_BUF) {
        send.write_chunk(data.slice_ref(piece)).await?;
    }
    send.finish()?;
    // Resolves once the peer has read everything (or stopped the stream).
    send.stopped().await?;
    Ok(())
}

/// Raw TCP: bytes on one connection, no disk.
async fn tcp_raw(data: &bytes::Bytes) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let addr = listener.local_addr()?;
    let reader = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await?;
        let mut buf = vec![0u8; COPY_BUF];
        let mut total = 0u64;
        loop {
            let n = sock.read(&mut buf).await?;
            if n == 0 {
                return anyhow::Ok(total);
            }
            total += n as u64;
        }
    });
    let mut sock = tokio::net::TcpStream::connect(addr).await?;
    sock.write_all(data).await?;
    sock.shutdown().await?;
    let total = reader.await??;
    ensure!(total == data.len() as u64, "raw TCP lost bytes");
    Ok(())
}

/// Central's side: blob requests on bidirectional streams (as its connection acceptor
/// serves them), and unidirectional streams read and thrown away (the raw measurement).
async fn serve_blobs(endpoint: quinn::Endpoint, server: BlobServer, stop: CancellationToken) {
    while let Some(incoming) = tokio::select! {
        _ = stop.cancelled() => None,
        i = endpoint.accept() => i,
    } {
        let Ok(conn) = incoming.await else { continue };
        let uni_conn = conn.clone();
        let uni_stop = stop.clone();
        tokio::spawn(async move {
            while let Ok(mut recv) = tokio::select! {
                _ = uni_stop.cancelled() => return,
                s = uni_conn.accept_uni() => s,
            } {
                tokio::spawn(async move {
                    while let Ok(Some(_)) = recv.read_chunk(usize::MAX, true).await {}
                });
            }
        });
        let server = server.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            while let Ok((send, recv)) = tokio::select! {
                _ = stop.cancelled() => return,
                s = conn.accept_bi() => s,
            } {
                let server = server.clone();
                tokio::spawn(async move {
                    let mut reader = FrameReader::new(recv, MAX_FRAME_LEN);
                    if let Ok(Some(Message::BlobRequest { hash, offset })) = reader.next().await {
                        server.serve(send, hash, offset).await;
                    }
                });
            }
        });
    }
}
