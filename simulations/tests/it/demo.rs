//! The README's main job: the demo mesh brings every kiosk to playing its venue's content.

use std::time::Duration;

use taplink_simulations::demo::Demo;
use taplink_simulations::mesh::eventually;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_brings_every_kiosk_to_its_content() {
    let demo = Demo::start(None, 2).await.unwrap();
    assert_eq!(demo.venues.len(), 2);
    for kiosk in &demo.kiosks {
        assert!(kiosk.agent.is_paired());
        assert!(
            demo.venue_of(kiosk).is_some(),
            "{} is at one of the demo's venues",
            kiosk.name
        );
        eventually(Duration::from_secs(60), || {
            let s = kiosk.agent.status();
            let manifest = s.manifest?;
            (!manifest.now.is_empty()
                && manifest.now.iter().all(|i| s.ready.contains_key(&i.media)))
            .then_some(())
        })
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", kiosk.name));
    }
    // One login of each role, each of which signs in to the dashboard.
    let roles: Vec<&str> = demo.logins.iter().map(|l| l.role).collect();
    assert_eq!(roles, ["admin", "technician", "store_staff", "viewer"]);
    for login in &demo.logins {
        let body = serde_json::json!({"username": login.username, "password": login.password});
        let (status, answer) = taplink_simulations::mesh::http_with(
            demo.central.central.http_addr(),
            "POST",
            "/api/v1/auth/login",
            &[("Content-Type", "application/json")],
            body.to_string().as_bytes(),
        )
        .await
        .unwrap();
        assert_eq!(
            status,
            200,
            "{}: {}",
            login.username,
            String::from_utf8_lossy(&answer)
        );
    }
    let namespace = demo.mdns_netns.as_ref().map(|ns| ns.name().to_owned());
    demo.shutdown().await.unwrap();
    if let Some(ns) = namespace {
        let listed = std::process::Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap();
        assert!(
            !String::from_utf8_lossy(&listed.stdout).contains(&ns),
            "the demo removes its namespace"
        );
    }
}
