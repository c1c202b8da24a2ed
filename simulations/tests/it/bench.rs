//! The benchmarks run at a small size: they complete, check what they measure (the
//! replicas converge, every hub gets in sync, the blob arrives verified) and produce
//! figures that are consistent with each other. No timing is asserted.

use std::time::Duration;

use taplink_simulations::bench::{blob, login, reconnect, reconverge, warm};

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
