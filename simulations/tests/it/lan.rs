//! A venue on its own LAN, in network namespaces this test creates: the hub and two kiosks
//! on a bridge (mDNS between them), central behind a WAN link that is cut. The real
//! `taplink-central`, `taplink-hub` and `taplink-kiosk` binaries run inside the namespaces.
//!
//! Kiosks find the hub by mDNS with no address given, pair, and play; with the WAN cut, an
//! edit at the hub still reaches them; with the hub stopped they keep serving their player
//! pages from cache; when it comes back they reconnect by themselves.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result};
use taplink_simulations::bench::procs::{Proc, binary};
use taplink_simulations::demo::furnish_via_api;
use taplink_simulations::mesh::Target;
use taplink_simulations::netns::{LAN_DEV, Lan, Netns, WanLink};
use taplink_sync_proto::ids::ItemId;
use tokio::time::Instant;

const WAIT: Duration = Duration::from_secs(40);
const HUB_PORT: u16 = 8580;
const PLAYER: &str = "127.0.0.1:8680";

/// A workspace binary, built by `cargo test --workspace` (scripts/test.sh).
fn bin(name: &str) -> String {
    binary(name).unwrap().display().to_string()
}

/// `program` running in `ns` with its output in `log`, stopped when dropped.
fn spawn(ns: &Netns, program: &str, args: &[&str], log: &Path) -> Proc {
    Proc::spawn_command(ns.command(&bin(program)), args, log).unwrap()
}

fn run(ns: &Netns, program: &str, args: &[&str]) -> Result<String> {
    let out = ns
        .command(&bin(program))
        .args(args)
        .stdin(Stdio::null())
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Poll `f` every 100 ms until it gives `Some`, for at most `limit`.
fn until<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn json(ns: &Netns, addr: impl Into<Target>, path: &str) -> Option<serde_json::Value> {
    let (status, body) = ns.http(addr, "GET", path, b"").ok()?;
    (status == 200)
        .then(|| serde_json::from_slice(&body).ok())
        .flatten()
}

fn edit_json(path: &Path, f: impl FnOnce(&mut serde_json::Value)) -> Result<()> {
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(path)?)?;
    f(&mut v);
    std::fs::write(path, serde_json::to_vec_pretty(&v)?).context("writing config")
}

#[test]
fn kiosks_on_a_venue_lan_discover_pair_and_keep_playing_through_outages() {
    let tmp = tempfile::tempdir().unwrap();
    let logs = tmp.path();

    // Topology: central ─WAN─ hub ═LAN═ kiosk 1, kiosk 2.
    let mut lan = Lan::new(3).unwrap();
    let (hub_i, hub_ip) = lan.add_host("hub").unwrap();
    let (k1_i, _) = lan.add_host("k1").unwrap();
    let (k2_i, _) = lan.add_host("k2").unwrap();
    let central_ns = Netns::create("cen").unwrap();
    let wan = WanLink::connect(&central_ns, lan.host(hub_i), 3).unwrap();
    let (hub_ns, k1_ns, k2_ns) = (lan.host(hub_i), lan.host(k1_i), lan.host(k2_i));

    // Central, reachable from the hub over the WAN link.
    let c_dir = tmp.path().join("central");
    let c = c_dir.display().to_string();
    run(
        &central_ns,
        "taplink-central",
        &["init", "--data", &c, "--public-name", &wan.a.to_string()],
    )
    .unwrap();
    edit_json(&c_dir.join("config.json"), |v| {
        v["quic_listen"] = format!("{}:4433", wan.a).into();
        v["http_listen"] = "127.0.0.1:8480".into();
    })
    .unwrap();
    let _central = spawn(
        &central_ns,
        "taplink-central",
        &["serve", "--data", &c],
        &logs.join("central.log"),
    );
    // The CLI asks the running server, so it is retried until the server listens.
    let venue = until(WAIT, "central's admin API", || {
        run(
            &central_ns,
            "taplink-central",
            &[
                "venue",
                "create",
                "The Anchor",
                "--timezone",
                "Europe/London",
                "--data",
                &c,
            ],
        )
        .ok()
    })
    .trim()
    .to_owned();
    let code_out = run(
        &central_ns,
        "taplink-central",
        &["enroll-code", &venue, "--data", &c],
    )
    .unwrap();
    let code = code_out
        .split_whitespace()
        .find(|w| w.starts_with("tl1-"))
        .unwrap()
        .to_owned();

    // The hub: enrolled over the WAN, serving and advertising on the LAN.
    let h_dir = tmp.path().join("hub");
    let h = h_dir.display().to_string();
    let central_addr = format!("{}:4433", wan.a);
    until(WAIT, "hub enrollment", || {
        run(
            hub_ns,
            "taplink-hub",
            &[
                "enroll",
                "--central",
                &central_addr,
                "--code",
                &code,
                "--data",
                &h,
            ],
        )
        .ok()
    });
    edit_json(&h_dir.join("hub.json"), |v| {
        v["http_listen"] = format!("{hub_ip}:{HUB_PORT}").into();
        v["central_name"] = wan.a.to_string().into();
        v["mdns_interface"] = LAN_DEV.into();
        v["backoff_min_ms"] = 100.into();
        v["backoff_max_ms"] = 1000.into();
    })
    .unwrap();
    // The hub serves HTTPS on the LAN; the test, like the kiosks, pins its certificate.
    let hub_addr = Target::https(SocketAddr::from((hub_ip, HUB_PORT)), &h_dir).unwrap();
    // A staff token, made on the device as a manager would.
    let staff = run(
        hub_ns,
        "taplink-hub",
        &["token", "create", "--name", "manager", "--data", &h],
    )
    .unwrap()
    .trim()
    .to_owned();
    let auth = format!("Bearer {staff}");
    let start_hub = || {
        spawn(
            hub_ns,
            "taplink-hub",
            &["run", "--data", &h],
            &logs.join("hub.log"),
        )
    };
    let mut hub = Some(start_hub());
    until(WAIT, "hub synced with central", || {
        json(hub_ns, hub_addr, "/healthz").filter(|v| v["synced"] == true)
    });
    // Content, made by staff on the hub.
    let playlist = furnish_via_api(hub_ns, hub_addr, &staff).unwrap();

    // Two kiosks with no hub address: they find it by mDNS on the LAN.
    let player: SocketAddr = PLAYER.parse().unwrap();
    let mut kiosks = Vec::new();
    for (i, ns) in [k1_ns, k2_ns].into_iter().enumerate() {
        let dir = tmp
            .path()
            .join(format!("kiosk{}", i + 1))
            .display()
            .to_string();
        let started = Instant::now();
        let proc = spawn(
            ns,
            "taplink-kiosk",
            &[
                "run",
                "--data",
                &dir,
                "--mdns-interface",
                LAN_DEV,
                "--player",
                PLAYER,
            ],
            &logs.join(format!("kiosk{}.log", i + 1)),
        );
        let code = until(WAIT, "a pairing code from the hub found by mDNS", || {
            json(ns, player, "/player/state")
                .and_then(|s| s["pairing"]["code"].as_str().map(str::to_owned))
        });
        println!(
            "kiosk {} found the hub and showed code {code} after {:?}",
            i + 1,
            started.elapsed()
        );
        let body =
            serde_json::json!({ "code": code, "name": format!("Screen {}", i + 1) }).to_string();
        let (status, answer) = hub_ns
            .http_with(
                hub_addr,
                "POST",
                "/api/v1/pairings/approve",
                &[("Authorization", &auth)],
                body.as_bytes(),
            )
            .unwrap();
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
        kiosks.push((ns, proc));
    }
    let playing = |ns: &Netns| -> Option<String> {
        let s = json(ns, player, "/player/state")?;
        let now = s["manifest"]["now"].as_array()?;
        let ready = s["ready"].as_object()?;
        (!now.is_empty()
            && now
                .iter()
                .all(|i| ready.contains_key(i["media"].as_str().unwrap_or(""))))
        .then(|| s["manifest"]["version"].as_str().unwrap_or("").to_owned())
    };
    let mut versions = Vec::new();
    for (ns, _) in &kiosks {
        versions.push(until(WAIT, "kiosk playing its content", || playing(ns)));
    }

    // The WAN goes down: staff keep editing on the hub, and the screens follow.
    wan.cut().unwrap();
    let (_, venue) = hub_ns
        .http_with(
            hub_addr,
            "GET",
            "/api/v1/venue",
            &[("Authorization", &auth)],
            b"",
        )
        .unwrap();
    let venue: serde_json::Value = serde_json::from_slice(&venue).unwrap();
    let media = venue["media"]
        .as_object()
        .unwrap()
        .keys()
        .next()
        .unwrap()
        .clone();
    let op = serde_json::json!({
        "op": "insert_item", "playlist": playlist, "item": ItemId::random(), "at": "end",
        "media": media, "duration_ms": 4000
    })
    .to_string();
    let (status, answer) = hub_ns
        .http_with(
            hub_addr,
            "POST",
            "/api/v1/venue/ops",
            &[("Authorization", &auth)],
            op.as_bytes(),
        )
        .unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    for ((ns, _), before) in kiosks.iter().zip(&versions) {
        until(
            WAIT,
            "an edit at the hub reaches the kiosk with the WAN cut",
            || playing(ns).filter(|v| v != before),
        );
    }

    // The hub stops: the kiosks keep serving their pages and media from their caches.
    drop(hub.take());
    for (ns, _) in &kiosks {
        let state = until(WAIT, "kiosk notices the hub is gone", || {
            json(ns, player, "/player/state").filter(|s| s["hub_reachable"] == false)
        });
        let item = state["manifest"]["now"][0]["media"]
            .as_str()
            .unwrap()
            .to_owned();
        let (status, _) = ns
            .http(player, "GET", &format!("/media/{item}"), b"")
            .unwrap();
        assert_eq!(status, 200, "media from the kiosk's cache");
        let (status, page) = ns.http(player, "GET", "/", b"").unwrap();
        assert_eq!(status, 200);
        assert!(String::from_utf8_lossy(&page).contains("<html"));
        assert!(playing(ns).is_some(), "still playing with the hub gone");
    }

    // It comes back (and the WAN heals): the kiosks reconnect by themselves.
    wan.heal().unwrap();
    hub = Some(start_hub());
    for (ns, _) in &kiosks {
        until(WAIT, "kiosk reconnects to the restarted hub", || {
            json(ns, player, "/player/state").filter(|s| s["hub_reachable"] == true)
        });
    }
    drop(kiosks);
    drop(hub);
}
