//! Crash tests: `kill -9` the real `taplink-hub` process at random moments (during start-up
//! and document sync, during a large blob transfer, right after an upload and in the middle
//! of one) and restart it on the same data directory. No acknowledged change may be lost, no
//! partial blob may ever be served, a blob transfer resumes where the killed process left it
//! instead of starting over, and an unacknowledged upload leaves nothing behind.
//!
//! Central runs inside the test process (`taplink_simulations::mesh`); the hub is the
//! `taplink-hub` binary cargo built next to this test (`bench::procs::binary`), driven through its HTTP API by a tiny HTTP/1.1 client. Kill
//! moments come from seeded RNGs, so the schedule of a failing run can be replayed (the
//! outcome must not depend on it: every schedule has to pass).

use std::collections::BTreeSet;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail, ensure};
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use taplink_simulations::bench::procs::binary;
use taplink_simulations::mesh::{CentralNode, enroll_hub, staff_token};
use taplink_sync_io::blobs::BlobStore;
use taplink_sync_io::docstore::DocDb;
use taplink_sync_proto::doc::{self, MediaMeta, VenueDoc, load_venue};
use taplink_sync_proto::ids::{KioskId, MediaHash, VenueId};
use taplink_sync_proto::wire::DocId;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::time::Instant;

/// How long a hub process may take to print its "serving" line.
const START_LIMIT: Duration = Duration::from_secs(20);
/// How long a sync or a transfer may take to get where a test waits for it.
const PROGRESS_LIMIT: Duration = Duration::from_secs(30);
/// How often a waiting test looks again.
const POLL: Duration = Duration::from_millis(5);

// --- Test 1: acknowledged document edits -------------------------------------------------

const SYNC_SEED: u64 = 0x7a91_1c4a_5e00_0001;
/// Kill/restart cycles in the document test.
const SYNC_ROUNDS: usize = 12;
/// Kills during start-up (before the "serving" line) before the first full start.
const FIRST_START_KILLS: usize = 2;
/// Upper bound of the delay of a kill during start-up.
const STARTUP_MAX_KILL_DELAY_MS: u64 = 300;
/// Upper bound of the random delay between a (re)start and its kill.
const SYNC_MAX_KILL_DELAY_MS: u64 = 600;
/// Upper bound of the edits one side makes per round.
const MAX_EDITS_PER_ROUND: usize = 200;

/// Edits at both ends while the hub is killed at random moments (and, now and then, again
/// while it starts up, including its very first start and sync): every edit the hub
/// acknowledged (HTTP 200) is on its disk right after each kill, and at the end central and
/// the hub converge on a document holding every acknowledged edit of both sides.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_edits_survive_kill_9_during_sync() -> Result<()> {
    let started = Instant::now();
    let tmp = tempfile::tempdir()?;
    let central = CentralNode::start(&tmp.path().join("central")).await?;
    let venue = central.create_venue("The Anchor", "Europe/London")?;
    let data = tmp.path().join("hub");
    enroll_hub(
        &data,
        central.quic_addr(),
        &central.enrollment_token(venue)?,
    )
    .await?;
    let log = tmp.path().join("hub.log");
    let mut rng = StdRng::seed_from_u64(SYNC_SEED);

    let mut startup_kills = 0;
    for _ in 0..FIRST_START_KILLS {
        let delay = Duration::from_millis(rng.random_range(0..=STARTUP_MAX_KILL_DELAY_MS));
        HubProcess::start_and_kill_after(&data, &log, delay).await?;
        startup_kills += 1;
    }
    let mut hub = HubProcess::start(&data, &log).await?;
    let http = hub.http;
    wait_for("the hub's first sync", PROGRESS_LIMIT, || hub_venue(http)).await?;

    let mut hub_acked: BTreeSet<KioskId> = BTreeSet::new();
    let mut central_acked: BTreeSet<KioskId> = BTreeSet::new();
    for round in 0..SYNC_ROUNDS {
        // Both sides edit while the hub syncs; the kill lands wherever the delay says. The
        // round's schedule is drawn up front, so that how many edits fit before the kill
        // (which depends on timing) does not shift the rounds after it.
        let kill_after = Duration::from_millis(rng.random_range(0..=SYNC_MAX_KILL_DELAY_MS));
        let startup_kill = rng
            .random_bool(1.0 / 3.0)
            .then(|| Duration::from_millis(rng.random_range(0..=STARTUP_MAX_KILL_DELAY_MS)));
        let mut pacing = StdRng::seed_from_u64(rng.random());
        let kill_at = tokio::time::Instant::now() + kill_after;
        let hub_edits = tokio::spawn(edit_at_hub_until_killed(hub.http, rng.random()));
        for _ in 0..MAX_EDITS_PER_ROUND {
            let pause = Duration::from_millis(pacing.random_range(1..30));
            tokio::select! {
                _ = tokio::time::sleep_until(kill_at) => break,
                _ = tokio::time::sleep(pause) => {}
            }
            let id = KioskId::random();
            central.edit_venue(venue, |am| doc::add_kiosk(am, id, "central"))?;
            central_acked.insert(id);
        }
        tokio::time::sleep_until(kill_at).await;
        hub.kill().await?;
        let acked = hub_edits.await??;
        hub_acked.extend(acked);
        ensure_on_disk(&data, venue, &hub_acked).with_context(|| format!("round {round}"))?;
        if let Some(delay) = startup_kill {
            HubProcess::start_and_kill_after(&data, &log, delay).await?;
            startup_kills += 1;
            ensure_on_disk(&data, venue, &hub_acked)
                .with_context(|| format!("round {round}, after a kill during start-up"))?;
        }
        hub = HubProcess::start(&data, &log).await?;
    }
    ensure!(
        !hub_acked.is_empty() && !central_acked.is_empty(),
        "the schedule made no acknowledged edits (hub {}, central {}); the test proved nothing",
        hub_acked.len(),
        central_acked.len()
    );

    let http = hub.http;
    let acked: BTreeSet<KioskId> = hub_acked.union(&central_acked).copied().collect();
    let (node, acked) = (&central, &acked);
    let converged = wait_for(
        "central and the hub to converge",
        PROGRESS_LIMIT,
        || async move {
            let Some(at_hub) = hub_venue(http).await? else {
                return Ok(None);
            };
            let at_hub: BTreeSet<KioskId> = at_hub.kiosks.keys().copied().collect();
            let at_central: BTreeSet<KioskId> =
                node.venue_doc(venue)?.kiosks.keys().copied().collect();
            Ok((at_hub == at_central && acked.is_subset(&at_central)).then_some(at_central))
        },
    )
    .await;
    if let Err(e) = converged {
        let at_hub = hub_venue(http).await?.unwrap_or_default();
        let at_central = central.venue_doc(venue)?;
        let missing_at_hub: Vec<_> = acked
            .iter()
            .filter(|k| !at_hub.kiosks.contains_key(k))
            .collect();
        let missing_at_central: Vec<_> = acked
            .iter()
            .filter(|k| !at_central.kiosks.contains_key(k))
            .collect();
        bail!(
            "{e}: acknowledged edits missing at the hub: {missing_at_hub:?}; at central: {missing_at_central:?}\n{}",
            tail(&log)
        );
    }
    hub.kill().await?;
    println!(
        "kill -9 during sync: {SYNC_ROUNDS} kills while editing and {startup_kills} during start-up, {} hub edits and {} central edits acknowledged, all present on both sides; {:.1?}",
        hub_acked.len(),
        central_acked.len(),
        started.elapsed()
    );
    central.central.shutdown().await?;
    Ok(())
}

/// Checked while the hub is dead, so before any sync could bring an edit back from central:
/// the hub's own disk holds every edit it ever acknowledged.
fn ensure_on_disk(data: &Path, venue: VenueId, acked: &BTreeSet<KioskId>) -> Result<()> {
    let doc = venue_on_disk(data, venue)?;
    let lost: Vec<_> = acked
        .iter()
        .filter(|k| !doc.kiosks.contains_key(k))
        .collect();
    ensure!(
        lost.is_empty(),
        "the hub acknowledged these edits but they are not on its disk after kill -9: {lost:?}"
    );
    Ok(())
}

/// Add kiosks through the hub's API, one after the other, until a request fails (the hub
/// was killed). Returns the ids of the edits the hub acknowledged; the edit whose request
/// failed has an unknown fate and is not counted.
async fn edit_at_hub_until_killed(http: Api, seed: u64) -> Result<Vec<KioskId>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut acked = Vec::new();
    for _ in 0..MAX_EDITS_PER_ROUND {
        let id = KioskId::random();
        let body = serde_json::json!({ "op": "add_kiosk", "id": id.to_string(), "name": "hub" });
        match request(
            http,
            "POST",
            "/api/v1/venue/ops",
            body.to_string().as_bytes(),
        )
        .await
        {
            Ok(reply) if reply.status == 200 => acked.push(id),
            Ok(reply) => bail!(
                "the hub refused an edit: {} {}",
                reply.status,
                String::from_utf8_lossy(&reply.body)
            ),
            Err(_) => return Ok(acked),
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..20))).await;
    }
    Ok(acked)
}

// --- Test 2: a large blob transfer ---------------------------------------------------------

const BLOB_SEED: u64 = 0x7a91_1c4a_5e00_0002;
/// Big enough that a kill lands mid-transfer with room to spare: a debug build moves about
/// 100 MiB/s over loopback, and each kill comes with at least 3/4 of the rest still to come.
const BLOB_SIZE: usize = 64 * 1024 * 1024;
/// Kills during the transfer before it is let finish.
const BLOB_KILLS: usize = 3;

/// A 64 MiB blob central holds and the venue references: the hub is killed three times
/// while downloading it. After every kill the partial file has grown (resume, never a
/// restart from zero); while it downloads the hub answers 404 for it (never partial bytes);
/// the last run moves only the bytes after the last partial's length; and the hub finally
/// serves exactly the blob.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_blob_transfer_resumes_after_kill_9_and_is_never_served_partially() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let central = CentralNode::start(&tmp.path().join("central")).await?;
    let venue = central.create_venue("The Anchor", "Europe/London")?;
    let mut rng = StdRng::seed_from_u64(BLOB_SEED);
    let mut content = vec![0u8; BLOB_SIZE];
    rng.fill_bytes(&mut content);
    let size = BLOB_SIZE as u64;
    let blobs = central.central.state().blobs.clone();
    let stored = content.clone();
    let hash = tokio::task::spawn_blocking(move || blobs.put(&stored)).await??;
    let meta = MediaMeta {
        name: "big.mp4".into(),
        content_type: "video/mp4".into(),
        size,
    };
    central.edit_venue(venue, |am| doc::add_media(am, hash, &meta))?;

    let data = tmp.path().join("hub");
    enroll_hub(
        &data,
        central.quic_addr(),
        &central.enrollment_token(venue)?,
    )
    .await?;
    let log = tmp.path().join("hub.log");
    let partial_file = data.join("media").join("partial").join(hash.to_string());
    let partial = partial_file.as_path();
    let media_path = format!("/api/v1/media/{hash}");
    let media = media_path.as_str();

    // Where each run started (the partial's length at its start) and where it was killed.
    let mut resumed_at = 0u64;
    let mut kills = Vec::new();
    for kill in 0..BLOB_KILLS {
        let run = Instant::now();
        let hub = HubProcess::start(&data, &log).await?;
        let http = hub.http;
        // The hub opened its store before it said "serving": the partial was kept.
        let kept = file_len(partial)?;
        ensure!(
            kept >= resumed_at,
            "kill {kill}: the restarted hub holds {kept} bytes of the partial; {resumed_at} were on disk"
        );
        // Kill after a random share of what is left has arrived.
        let remaining = size - resumed_at;
        let target = resumed_at + rng.random_range(remaining / 10..remaining / 4);
        wait_for(
            &format!("kill {kill}: the partial download to reach {target} bytes"),
            PROGRESS_LIMIT,
            || async move {
                let reply = request(http, "GET", media, &[]).await?;
                ensure!(
                    reply.status == 404,
                    "the hub answered {} with {} bytes for a blob whose download is at {} of {size} bytes",
                    reply.status,
                    reply.body.len(),
                    file_len(partial)?
                );
                Ok((file_len(partial)? >= target).then_some(()))
            },
        )
        .await
        .with_context(|| tail(&log))?;
        hub.kill().await?;
        let len = file_len(partial)?;
        ensure!(
            len >= target && len < size,
            "kill {kill}: the partial holds {len} bytes after the kill; expected {target}..{size}"
        );
        kills.push((resumed_at, len, run.elapsed()));
        resumed_at = len;
    }

    // The last run: the blob stays invisible until it is complete, then it is served whole.
    let run = Instant::now();
    let hub = HubProcess::start(&data, &log).await?;
    let http = hub.http;
    let kept = file_len(partial)?;
    let hex = hash.to_string();
    // (Unless the whole rest arrived already, which takes it out of `partial/`.)
    let complete = data.join("media").join("blobs").join(&hex[..2]).join(&hex);
    ensure!(
        kept >= resumed_at || complete.exists(),
        "last run: the restarted hub holds {kept} bytes of the partial; {resumed_at} were on disk"
    );
    let served = wait_for("the hub to serve the blob", PROGRESS_LIMIT, || async move {
        let reply = request(http, "GET", media, &[]).await?;
        match reply.status {
            404 => Ok(None),
            200 => Ok(Some(reply.body)),
            other => bail!("unexpected status {other} for {media}"),
        }
    })
    .await
    .with_context(|| tail(&log))?;
    let last_run = run.elapsed();
    ensure!(
        served.len() == BLOB_SIZE && MediaHash::of(&served) == hash,
        "the hub served {} bytes hashing to {} for {hash} ({BLOB_SIZE} bytes)",
        served.len(),
        MediaHash::of(&served)
    );
    ensure!(served == content, "the served bytes differ from central's");
    ensure!(
        !partial.exists(),
        "the partial file outlived the complete blob"
    );
    // The counter is bumped just after the blob becomes visible.
    let fetched = wait_for("the fetch to be counted", PROGRESS_LIMIT, || async move {
        let n = metric(http, "taplink_hub_blob_bytes_fetched_total").await?;
        Ok((n > 0).then_some(n))
    })
    .await?;
    ensure!(
        fetched == size - resumed_at,
        "the last run fetched {fetched} bytes; resuming from {resumed_at} it should have fetched {}",
        size - resumed_at
    );
    hub.kill().await?;
    for (i, (from, to, took)) in kills.iter().enumerate() {
        println!("blob run {i}: resumed at {from}, killed at {to} bytes, {took:.1?}");
    }
    println!(
        "blob last run: resumed at {resumed_at}, fetched {fetched} of {size} bytes, served whole after {last_run:.1?}"
    );
    central.central.shutdown().await?;
    Ok(())
}

// --- Test 3: an upload acknowledged just before the kill -----------------------------------

const UPLOAD_SEED: u64 = 0x7a91_1c4a_5e00_0003;
/// Uploads, each followed at once by a kill.
const UPLOADS: usize = 3;

/// Media uploaded to the hub and acknowledged (201) right before a kill -9 is complete in
/// the hub's store and named by its venue document on disk; after the restarts the hub
/// serves it, and it reaches central, bytes and metadata.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_acknowledged_just_before_kill_9_is_kept_and_reaches_central() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let central = CentralNode::start(&tmp.path().join("central")).await?;
    let venue = central.create_venue("The Anchor", "Europe/London")?;
    let data = tmp.path().join("hub");
    enroll_hub(
        &data,
        central.quic_addr(),
        &central.enrollment_token(venue)?,
    )
    .await?;
    let log = tmp.path().join("hub.log");
    let mut rng = StdRng::seed_from_u64(UPLOAD_SEED);

    let mut hub = HubProcess::start(&data, &log).await?;
    let http = hub.http;
    wait_for("the hub's first sync", PROGRESS_LIMIT, || hub_venue(http)).await?;
    let mut uploads = Vec::new();
    for i in 0..UPLOADS {
        let mut bytes = vec![0u8; rng.random_range(256 * 1024..2 * 1024 * 1024)];
        rng.fill_bytes(&mut bytes);
        bytes[..MP4_HEAD.len()].copy_from_slice(MP4_HEAD);
        let hash = MediaHash::of(&bytes);
        let path = format!("/api/v1/media?name=clip-{i}.mp4&content_type=video/mp4");
        let reply = request(hub.http, "PUT", &path, &bytes).await?;
        hub.kill().await?;
        ensure!(
            reply.status == 201,
            "upload {i}: {} {}",
            reply.status,
            String::from_utf8_lossy(&reply.body)
        );
        let answer: serde_json::Value = serde_json::from_slice(&reply.body)?;
        ensure!(answer["hash"] == hash.to_string(), "upload {i}: {answer}");

        // On the hub's disk, before it runs again: the blob complete and the document naming it.
        let store = BlobStore::open(&data.join("media"))?;
        ensure!(
            store.size(&hash)? == Some(bytes.len() as u64),
            "upload {i}: acknowledged, but not complete in the hub's store after kill -9"
        );
        drop(store);
        let doc = venue_on_disk(&data, venue)?;
        ensure!(
            doc.media.get(&hash).map(|m| m.size) == Some(bytes.len() as u64),
            "upload {i}: acknowledged, but not in the venue document on the hub's disk after kill -9"
        );
        uploads.push((hash, bytes));
        hub = HubProcess::start(&data, &log).await?;
    }

    for (hash, bytes) in &uploads {
        let reply = request(hub.http, "GET", &format!("/api/v1/media/{hash}"), &[]).await?;
        ensure!(
            reply.status == 200 && reply.body == *bytes,
            "the restarted hub answered {} with {} bytes for {hash}",
            reply.status,
            reply.body.len()
        );
    }
    let (node, uploads) = (&central, &uploads);
    wait_for(
        "every upload to reach central",
        PROGRESS_LIMIT,
        || async move {
            let doc = node.venue_doc(venue)?;
            let blobs = &node.central.state().blobs;
            for (hash, bytes) in uploads {
                if !doc.media.contains_key(hash) || !blobs.has(hash)? {
                    return Ok(None);
                }
                ensure!(
                    blobs.read_range(hash, 0, bytes.len())? == *bytes,
                    "central holds other bytes for {hash}"
                );
            }
            Ok(Some(()))
        },
    )
    .await
    .with_context(|| tail(&log))?;
    hub.kill().await?;
    central.central.shutdown().await?;
    Ok(())
}

// --- Test 4: an upload cut by the kill ------------------------------------------------------

/// Bytes announced by the upload the kill cuts short.
const CUT_UPLOAD_SIZE: usize = 8 * 1024 * 1024;

/// An upload still arriving when the hub is killed was never acknowledged: after the
/// restart nothing of it is left (no staged bytes, no blob, no document entry).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_cut_by_kill_9_leaves_nothing_behind() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let central = CentralNode::start(&tmp.path().join("central")).await?;
    let venue = central.create_venue("The Anchor", "Europe/London")?;
    let data = tmp.path().join("hub");
    enroll_hub(
        &data,
        central.quic_addr(),
        &central.enrollment_token(venue)?,
    )
    .await?;
    let log = tmp.path().join("hub.log");
    let hub = HubProcess::start(&data, &log).await?;
    let http = hub.http;
    wait_for("the hub's first sync", PROGRESS_LIMIT, || hub_venue(http)).await?;

    // Half the announced body, then wait until the hub has staged it, then kill.
    let mut stream = TcpStream::connect(http.addr).await?;
    let head = format!(
        "PUT /api/v1/media?name=cut.mp4 HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {}\r\ncontent-type: video/mp4\r\ncontent-length: {CUT_UPLOAD_SIZE}\r\n\r\n",
        http.addr, http.staff
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(&vec![7u8; CUT_UPLOAD_SIZE / 2]).await?;
    let uploads = data.join("uploads");
    let staged = uploads.as_path();
    wait_for(
        "the hub to stage the upload",
        PROGRESS_LIMIT,
        || async move { Ok((dir_bytes(staged)? >= (CUT_UPLOAD_SIZE / 2) as u64).then_some(())) },
    )
    .await?;
    hub.kill().await?;
    drop(stream);

    let hub = HubProcess::start(&data, &log).await?;
    ensure!(
        dir_bytes(staged)? == 0,
        "{} bytes of a cut upload are still staged in {} after the restart",
        dir_bytes(staged)?,
        staged.display()
    );
    let doc = hub_venue(hub.http)
        .await?
        .context("the restarted hub lost its venue document")?;
    ensure!(
        doc.media.is_empty(),
        "a cut upload is in the venue: {:?}",
        doc.media
    );
    hub.kill().await?;
    let store = BlobStore::open(&data.join("media"))?;
    ensure!(
        store.list()?.is_empty(),
        "a cut upload is in the store: {:?}",
        store.list()?
    );
    drop(store);
    central.central.shutdown().await?;
    Ok(())
}

/// The bytes of the files directly in `dir`.
fn dir_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let meta = entry?.metadata()?;
        if meta.is_file() {
            total += meta.len();
        }
    }
    Ok(total)
}

// --- The hub as a child process ------------------------------------------------------------

/// A hub's local HTTP API and a staff token for it.
#[derive(Debug, Clone, Copy)]
struct Api {
    addr: SocketAddr,
    staff: &'static str,
}

/// The start of an MP4 file (an `ftyp` box): uploads are checked by content.
const MP4_HEAD: &[u8] = b"\0\0\0\x18ftypisom\0\0\0\0isomiso2";

/// A running `taplink-hub run` process.
#[derive(Debug)]
struct HubProcess {
    child: Child,
    /// Its local HTTP API.
    http: Api,
    /// Where its logs go.
    log: PathBuf,
}

impl HubProcess {
    /// Start the hub on `data` and wait for its "serving" line; its logs are appended to
    /// `log`.
    async fn start(data: &Path, log: &Path) -> Result<HubProcess> {
        // tracing writes to stdout: its lines are copied to the log as they are read.
        let mut stdout_log = tokio::fs::File::from_std(open_log(log)?);
        let mut child = hub_command(data, log)?
            .stdout(Stdio::piped())
            .spawn()
            .context("cannot start taplink-hub")?;
        let stdout = child.stdout.take().context("the hub's stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let serving = tokio::time::timeout(START_LIMIT, async {
            while let Some(line) = lines.next_line().await? {
                stdout_log.write_all(format!("{line}\n").as_bytes()).await?;
                if let Some((_, addr)) = line.split_once(" serving http://") {
                    return Ok(addr.trim().parse::<SocketAddr>()?);
                }
            }
            Err(anyhow!("the hub exited before serving"))
        })
        .await;
        let http = match serving {
            Ok(Ok(addr)) => Api {
                addr,
                // A token per start, as `taplink-hub token create` makes one; leaked, as
                // the test's requests outlive any one borrow.
                staff: Box::leak(staff_token(data)?.into_boxed_str()),
            },
            Ok(Err(e)) => bail!("{e}\n{}", tail(log)),
            Err(_) => bail!("no 'serving' line within {START_LIMIT:?}\n{}", tail(log)),
        };
        // Keep draining stdout so the hub never blocks on a full pipe.
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let _ = stdout_log.write_all(format!("{line}\n").as_bytes()).await;
            }
        });
        Ok(HubProcess {
            child,
            http,
            log: log.to_owned(),
        })
    }

    /// Start the hub on `data` and `kill -9` it after `delay`, whatever it is doing by then
    /// (opening its databases, connecting, its first sync…). Fails if it died on its own.
    async fn start_and_kill_after(data: &Path, log: &Path, delay: Duration) -> Result<()> {
        let mut child = hub_command(data, log)?
            .stdout(Stdio::from(open_log(log)?))
            .spawn()
            .context("cannot start taplink-hub")?;
        tokio::time::sleep(delay).await;
        if let Some(status) = child.try_wait()? {
            bail!(
                "the hub exited on its own ({status}) within {delay:?} of its start\n{}",
                tail(log)
            );
        }
        child.kill().await?;
        Ok(())
    }

    /// `kill -9` the hub and reap it. Fails if it had already died on its own.
    async fn kill(mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "the hub exited on its own ({status}) before the kill\n{}",
                tail(&self.log)
            );
        }
        // tokio's `Child::kill` sends SIGKILL on Unix and waits for the exit.
        self.child.kill().await?;
        Ok(())
    }
}

/// `taplink-hub run --data DATA` with its stderr appended to `log` (stdout is the caller's).
fn hub_command(data: &Path, log: &Path) -> Result<Command> {
    // `cargo test --workspace` builds it (edge-hub has integration tests); `cargo test -p
    // taplink-simulations` alone does not, nor rebuilds it after a change.
    let hub = binary("taplink-hub").context(
        "the crash tests run the real hub: run `cargo build -p taplink-edge-hub` (same profile) first",
    )?;
    let mut command = Command::new(hub);
    command
        .arg("run")
        .arg("--data")
        .arg(data)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stderr(Stdio::from(open_log(log)?))
        .kill_on_drop(true);
    Ok(command)
}

fn open_log(log: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
}

/// The end of a hub log, for failure messages.
fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(40);
    format!("--- hub log (last lines) ---\n{}", lines[from..].join("\n"))
}

/// The hub's venue document as its API shows it; `None` before the first sync.
async fn hub_venue(http: Api) -> Result<Option<VenueDoc>> {
    let reply = request(http, "GET", "/api/v1/venue", &[]).await?;
    match reply.status {
        200 => Ok(Some(serde_json::from_slice(&reply.body)?)),
        503 => Ok(None),
        other => bail!(
            "GET /api/v1/venue: {other} {}",
            String::from_utf8_lossy(&reply.body)
        ),
    }
}

/// A counter or gauge from the hub's `/metrics`.
async fn metric(http: Api, name: &str) -> Result<u64> {
    let reply = request(http, "GET", "/metrics", &[]).await?;
    ensure!(reply.status == 200, "GET /metrics: {}", reply.status);
    let text = String::from_utf8(reply.body)?;
    let value = text
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .with_context(|| format!("no {name} in /metrics"))?;
    Ok(value.trim().parse()?)
}

/// The venue document in a stopped hub's database.
fn venue_on_disk(data: &Path, venue: VenueId) -> Result<VenueDoc> {
    let db = DocDb::open(&data.join("docs.sqlite"))?;
    let am = db
        .load(DocId::Venue(venue))?
        .context("the venue document is not in the hub's database")?;
    Ok(load_venue(&am)?)
}

/// A file's length, 0 if it does not exist (yet).
fn file_len(path: &Path) -> Result<u64> {
    match std::fs::metadata(path) {
        Ok(meta) => Ok(meta.len()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e.into()),
    }
}

/// Call `check` every [`POLL`] until it returns `Some`, for at most `limit`; an error from
/// `check` fails at once.
async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check()
            .await
            .with_context(|| format!("waiting for {what}"))?
        {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            bail!("{what}: not within {limit:?}");
        }
        tokio::time::sleep(POLL).await;
    }
}

// --- A minimal HTTP/1.1 client -------------------------------------------------------------

/// A response: status and the whole body.
#[derive(Debug)]
struct Reply {
    status: u16,
    body: Vec<u8>,
}

/// One request on a fresh connection (`Connection: close`), read to the end. A response cut
/// short (fewer body bytes than announced) is an error, never a short body.
/// Staff requests carry the staff token; a body is JSON, or MP4 for an upload.
async fn request(http: Api, method: &str, path: &str, body: &[u8]) -> Result<Reply> {
    let mut stream = TcpStream::connect(http.addr).await?;
    let content_type = if method == "PUT" {
        "video/mp4"
    } else {
        "application/json"
    };
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        http.addr,
        http.staff,
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    parse_reply(&raw)
}

fn parse_reply(raw: &[u8]) -> Result<Reply> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("response without an end of headers")?;
    let head = std::str::from_utf8(&raw[..end])?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .context("response without a status line")?
        .parse()?;
    let (mut length, mut chunked) = (None, false);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse::<usize>()?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        }
    }
    let rest = &raw[end + 4..];
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(length) = length {
        ensure!(
            rest.len() == length,
            "response body of {} bytes where {length} were announced",
            rest.len()
        );
        rest.to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Reply { status, body })
}

fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("truncated chunk size")?;
        let size = std::str::from_utf8(&rest[..line])?;
        let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)?;
        rest = &rest[line + 2..];
        if size == 0 {
            return Ok(body);
        }
        ensure!(rest.len() >= size + 2, "truncated chunk");
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}
