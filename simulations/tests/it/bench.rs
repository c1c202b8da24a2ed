//! The benchmarks run at a small size: they complete, check what they measure (the
//! replicas converge, every hub gets in sync, the blob arrives verified) and produce
//! figures that are consistent with each other. No timing is asserted.

use std::time::Duration;

use taplink_simulations::bench::{
    blob, dashboard, guess, lists, login, reconnect, reconverge, screen, warm,
};

#[test]
fn reconverge_sends_the_offline_edits_not_the_history() {
    let report = reconverge::run(&reconverge::Args {
        changes: 1500,
        offline: 40,
        online: 3,
        seed: 3,
        repeat: 2,
    })
    .unwrap();
    assert_eq!(report.bytes, report.central_bytes + report.hub_bytes);
    assert!(report.central_bytes > 0 && report.hub_bytes > 0);
    // With the persisted state, 80 edits cost far less than the 1,500-change history.
    assert!(
        (report.bytes as usize) < report.doc_size,
        "{} bytes on the wire for a {}-byte document",
        report.bytes,
        report.doc_size
    );
    assert!(report.central_cpu > Duration::ZERO && report.hub_cpu > Duration::ZERO);
    let table = report.table().to_string();
    assert!(table.contains("frame bytes on the wire"), "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_reconnect_of_an_unchanged_document_sends_only_the_hellos() {
    let report = warm::run(&warm::Args {
        changes: 400,
        seed: 5,
        no_quic: false,
    })
    .await
    .unwrap();
    assert_eq!(report.harness_unchanged_frames, 2, "two hellos");
    assert!(report.harness_unchanged < 512);
    assert!(report.harness_one_change > report.harness_unchanged);
    let quic = report.quic.unwrap();
    assert!(quic.bare.bytes > 0 && quic.warm_settled.bytes > quic.bare.bytes);
    assert!(quic.warm_settled.bytes >= quic.warm_total);
    // The initial sync carries the whole document; the warm one does not.
    assert!(quic.first_sync > quic.warm_settled.bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_brings_every_simulated_hub_back_in_sync() {
    let report = reconnect::run(&reconnect::Args {
        hubs: 12,
        venues: Some(4),
        endpoints: 3,
        target_secs: 10,
        limit_secs: 60,
    })
    .await
    .unwrap();
    assert_eq!(report.venues, 4);
    for phase in [&report.first, &report.reconnect] {
        assert_eq!(phase.never, 0, "{phase:?}");
        assert_eq!(phase.synced.len(), 12);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_bench_moves_the_blob_both_ways() {
    let report = blob::run(&blob::Args {
        size_mib: 2,
        rounds: 1,
        seed: 1,
    })
    .await
    .unwrap();
    assert_eq!((report.tcp.len(), report.quic.len()), (1, 1));
    assert_eq!(report.size, 2 * 1024 * 1024);
    assert!(report.ratio() > 0.0);
}

#[test]
fn login_bench_times_every_sign_in_and_the_permission_check() {
    let report = login::run(&login::Args {
        logins: 3,
        checks: 1_000,
    })
    .unwrap();
    assert_eq!(report.logins.len(), 3);
    assert!(report.logins.windows(2).all(|w| w[0] <= w[1]), "sorted");
    assert!(report.logins[0] > Duration::ZERO);
    let table = report.table().to_string();
    assert!(
        table.contains("sign-in") && table.contains("authorize"),
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_bench_times_every_page_for_both_callers() {
    let report = lists::run(&lists::Args {
        venues: 20,
        kiosks_per_venue: 10,
        audit: 500,
        requests: 3,
    })
    .await
    .unwrap();
    let fleet = &report.fleet;
    assert_eq!((fleet.venues, fleet.tagged, fleet.kiosks), (20, 4, 200));
    assert_eq!(fleet.hubs, 18, "nine venues in ten have a hub");
    assert!(fleet.audit >= 500, "{fleet:?}");
    assert_eq!(report.baseline.len(), 3);
    let callers: Vec<_> = report.pages.iter().map(|p| p.caller).collect();
    assert_eq!(callers.iter().filter(|c| **c == "admin").count(), 14);
    assert_eq!(callers.iter().filter(|c| **c == "technician").count(), 14);
    let rows = |caller: &str, name: &str| {
        report
            .pages
            .iter()
            .find(|p| p.caller == caller && p.name == name)
            .unwrap_or_else(|| panic!("no {caller} {name}"))
            .rows
    };
    for page in &report.pages {
        assert_eq!(page.times.len(), 3, "{page:?}");
        assert!(page.times.windows(2).all(|w| w[0] <= w[1]), "sorted");
    }
    // The admin sees the whole fleet; the technician the four tagged venues.
    assert_eq!(rows("admin", "venues, first page"), 20);
    assert_eq!(rows("technician", "venues, first page"), 4);
    assert_eq!(rows("admin", "venues ?tag=region:north"), 4);
    assert_eq!(rows("admin", "kiosks, first page"), 100);
    assert_eq!(rows("admin", "kiosks, deepest full page"), 100);
    assert_eq!(rows("technician", "kiosks, first page"), 40);
    assert_eq!(rows("admin", "kiosks ?venue="), 10);
    assert_eq!(rows("technician", "media ?venue="), 3);
    assert_eq!(rows("admin", "audit, first page"), 100);
    assert_eq!(rows("admin", "audit, deepest full page"), 100);
    assert_eq!(rows("technician", "kiosks, deepest full page"), 40);
    assert!(rows("admin", "hubs, first page") == 18);
    assert!(report.worst().is_some());
    let table = report.table().to_string();
    assert!(
        table.contains("baseline GET /healthz") && table.contains("worst p99"),
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_bench_times_the_overview_and_a_venue_page_with_hubs_online() {
    let report = dashboard::run(&dashboard::Args {
        venues: 60,
        kiosks_per_venue: 7,
        audit: 100,
        online: 40,
        beats: 3,
        history: 20,
        silent_every: 5,
        requests: 3,
    })
    .await
    .unwrap();
    let fleet = &report.fleet;
    assert_eq!(fleet.connected, 40);
    let state = |name: &str| {
        fleet
            .states
            .iter()
            .find(|(s, _)| s == name)
            .map_or(0, |(_, n)| *n)
    };
    // 54 venues have a hub: 40 online; of the other 14, those seen are offline since.
    assert_eq!(state("online"), 40, "{fleet:?}");
    assert_eq!(state("no_hub"), 6, "{fleet:?}");
    assert_eq!(state("offline") + state("never_connected"), 14, "{fleet:?}");
    assert!(state("offline") > 0 && fleet.offline_playing == state("offline"));
    assert!(
        fleet.alerts > 0,
        "offline hubs and silent kiosks: {fleet:?}"
    );
    let names: Vec<&str> = report.pages.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "overview, first page",
            "overview ?state=offline",
            "overview ?tag=region:north",
            "overview, deepest full page (cursor)",
            "venue page"
        ]
    );
    for page in &report.pages {
        assert_eq!(page.times.len(), 3, "{page:?}");
        assert!(page.times.windows(2).all(|w| w[0] <= w[1]), "sorted");
        assert!(
            page.assets
                .iter()
                .any(|(a, n)| a == "/assets/style.css" && *n > 0),
            "{page:?}"
        );
        assert!(page.weight() > page.html);
    }
    let page = |name: &str| report.pages.iter().find(|p| p.name == name).unwrap();
    // Pages of 50: 60 venues fill one.
    assert_eq!(page("overview, first page").rows, 50);
    assert_eq!(page("overview, deepest full page (cursor)").rows, 50);
    assert_eq!(page("overview, deepest full page (cursor)").path, "/");
    assert_eq!(page("overview ?state=offline").rows, state("offline"));
    assert_eq!(page("overview ?tag=region:north").rows, 12);
    // The venue page: every kiosk with a heartbeat, some up to date and some behind.
    let venue = page("venue page");
    assert_eq!(venue.rows, 7);
    assert!(
        venue.detail.contains("up_to_date") && venue.detail.contains("behind"),
        "{venue:?}"
    );
    let table = report.table().to_string();
    assert!(
        table.contains("baseline GET /healthz") && table.contains("verdict (issue 13)"),
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guess_bench_counts_checked_and_throttled_guesses() {
    let report = guess::run(&guess::Args {
        guesses: 30,
        gap_ms: 0,
        limit_secs: 60,
        legit: 3,
        legit_every_ms: 50,
    })
    .await
    .unwrap();
    assert_eq!(report.guesses, 30);
    assert_eq!(report.checked + report.throttled + report.other, 30);
    assert_eq!(report.other, 0, "no guess got in");
    // The free failures are checked; the rest of a fast run is refused unchecked.
    assert!(report.checked >= 10, "{report:?}");
    assert!(report.throttled > 0, "{report:?}");
    assert!(report.checked <= report.allowed, "{report:?}");
    // Another address signing in to another account is not throttled.
    assert_eq!(report.baseline.succeeded, report.baseline.tried);
    assert_eq!(report.during.succeeded, report.during.tried);
    assert!(report.during.tried >= 1);
    let table = report.table().to_string();
    assert!(table.contains("checked guesses"), "{table}");
}

#[test]
fn the_throttle_allows_ten_then_one_per_doubling_wait() {
    assert_eq!(guess::allowed_within(Duration::ZERO), 11);
    assert_eq!(guess::allowed_within(Duration::from_millis(999)), 11);
    assert_eq!(guess::allowed_within(Duration::from_secs(1)), 12);
    assert_eq!(guess::allowed_within(Duration::from_secs(3)), 13);
    assert_eq!(guess::allowed_within(Duration::from_secs(120)), 17);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn screen_bench_sees_every_origins_edit_reach_every_kiosk() {
    let report = screen::run(&screen::Args {
        kiosks: 2,
        rounds: 3,
        seed: 1,
        offline_rounds: 3,
    })
    .await
    .unwrap();
    // Each edit — at central, "Save" in the playlist editor, at the hub, at the hub with
    // the WAN cut — reached both
    // kiosks (a kiosk that did not adopt it within 10 s would be a miss).
    for series in [
        &report.central,
        &report.editor,
        &report.hub,
        &report.hub_offline,
    ] {
        assert_eq!(series.missed, 0);
        assert_eq!(series.latencies.len(), 6);
    }
    let table = report.table().to_string();
    assert!(table.contains("playlist editor"), "{table}");
}
