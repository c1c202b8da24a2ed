//! Central's dashboard in headless Chromium (`taplink_simulations::browser`), against a real
//! central on loopback: people sign in through the form and the pages are checked as they
//! see them, at laptop (1280×800) and tablet (820×1180) size. Screenshots go to
//! `$TAPLINK_ARTEFACTS`, or the workspace's `target/artefacts/`.
//!
//! The rig has two venues, The Anchor (tag `region:north`) and The Crown, and one person of
//! each role: an admin, store staff of The Crown, a technician of `region:north` and a
//! viewer of The Anchor.
//!
//! A page others add (a venue page at `/venues/{id}`, people at `/people`) is checked in
//! the same style: a row per role and path in [`who_may_open_what`]'s table (shown, or
//! refused with the 403 page), and a test that signs in as the role with [`sign_in`], opens
//! the page with `goto`, looks at it through `eval`/`text` (what a person reads, or the
//! page's `data-*` attributes), uses it with `fill`/`click`, and keeps a [`shoot`] of it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;
use taplink_simulations::browser::{Browser, Page};
use taplink_simulations::mesh::CentralNode;
use taplink_sync_proto::ids::VenueId;

/// Long enough for any page of this rig.
const WAIT: Duration = Duration::from_secs(30);

/// Everyone's password (central asks for at least ten characters).
const PASSWORD: &str = "correct horse battery";

/// The people of the rig.
const ADMIN: &str = "ada";
const STAFF: &str = "sam";
const TECHNICIAN: &str = "tess";
const VIEWER: &str = "vic";

/// A central with the two venues and four people, and a browser.
struct Rig {
    central: CentralNode,
    anchor: VenueId,
    crown: VenueId,
    browser: Browser,
    _tmp: tempfile::TempDir,
}

impl Rig {
    async fn start() -> Rig {
        let tmp = tempfile::tempdir().unwrap();
        let central = CentralNode::start(&tmp.path().join("central"))
            .await
            .unwrap();
        let anchor = central.create_venue("The Anchor", "Europe/London").unwrap();
        let crown = central.create_venue("The Crown", "Europe/London").unwrap();
        let (status, body) = central
            .admin(
                "PATCH",
                &format!("/api/v1/venues/{anchor}"),
                Some(&json!({ "tags": ["region:north"] })),
            )
            .await
            .unwrap();
        assert_eq!(status, 200, "{body}");
        for user in [
            json!({ "username": ADMIN, "display_name": "Ada Admin", "role": "admin" }),
            json!({ "username": STAFF, "display_name": "Sam Staff", "role": "store_staff",
                    "venues": [crown.to_string()] }),
            json!({ "username": TECHNICIAN, "display_name": "Tess Tech", "role": "technician",
                    "tags": ["region:north"] }),
            json!({ "username": VIEWER, "display_name": "Vic Viewer", "role": "viewer",
                    "venues": [anchor.to_string()] }),
        ] {
            let mut user = user;
            user["password"] = json!(PASSWORD);
            let (status, body) = central
                .admin("POST", "/api/v1/users", Some(&user))
                .await
                .unwrap();
            assert_eq!(status, 201, "{body}");
        }
        let browser = Browser::launch().await.unwrap();
        Rig {
            central,
            anchor,
            crown,
            browser,
            _tmp: tmp,
        }
    }

    /// The address of `path` at central.
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.central.central.http_addr())
    }

    /// A new tab (cookies of its own) with `username` signed in through the form.
    async fn signed_in(&mut self, username: &str) -> Page {
        let mut page = self.browser.page().await.unwrap();
        sign_in(&mut page, &self.url("/login"), username, PASSWORD).await;
        assert_eq!(
            path(&mut page).await,
            "/",
            "{username} lands on the overview"
        );
        page
    }
}

/// Type `username` and `password` into the sign-in form at `login` and submit it.
async fn sign_in(page: &mut Page, login: &str, username: &str, password: &str) {
    page.goto(login).await.unwrap();
    page.fill("input[name=username]", username).await.unwrap();
    page.fill("input[name=password]", password).await.unwrap();
    page.click_and_wait_for_load("form[action^='/login'] button[type=submit]")
        .await
        .unwrap();
}

/// The path the page is at.
async fn path(page: &mut Page) -> String {
    page.eval("location.pathname").await.unwrap()
}

/// A venue row of the overview, as shown.
#[derive(Debug, Deserialize, PartialEq)]
struct Row {
    venue: String,
    name: String,
    hub_state: String,
    /// The hub state as a person reads it.
    state_text: String,
}

/// The overview's venue rows, top to bottom.
async fn rows(page: &mut Page) -> Vec<Row> {
    page.eval(
        "[...document.querySelectorAll('tr[data-venue]')].map(tr => ({ \
           venue: tr.dataset.venue, hub_state: tr.dataset.hubState, \
           name: tr.querySelector('td').innerText.trim(), \
           state_text: tr.querySelector('.state').innerText.trim() }))",
    )
    .await
    .unwrap()
}

/// The venue names of the overview's rows.
async fn names(page: &mut Page) -> Vec<String> {
    rows(page).await.into_iter().map(|r| r.name).collect()
}

/// Whether the page is the dashboard's refusal (403) page.
async fn refused(page: &mut Page) -> bool {
    page.text("h1").await.unwrap().as_deref() == Some("You cannot open this page")
}

/// Where screenshots go: `$TAPLINK_ARTEFACTS`, or the workspace's `target/artefacts/`.
fn artefacts() -> PathBuf {
    let dir = std::env::var_os("TAPLINK_ARTEFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/artefacts"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Screenshots of the page as it is at laptop and at tablet size: `dashboard-{name}-laptop.png`
/// and `dashboard-{name}-tablet.png`. The page is left at laptop size.
async fn shoot(page: &mut Page, name: &str) {
    let dir = artefacts();
    for (size, width, height) in [("tablet", 820, 1180), ("laptop", 1280, 800)] {
        page.set_viewport(width, height).await.unwrap();
        // Let the new layout settle before the picture is taken.
        page.wait_for(
            "new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r(true))))",
            WAIT,
        )
        .await
        .unwrap();
        let file = dir.join(format!("dashboard-{name}-{size}.png"));
        page.screenshot(&file).await.unwrap();
        println!("screenshot: {}", file.display());
    }
}

#[tokio::test]
async fn admin_signs_in_through_the_form_sees_the_fleet_and_signs_out() {
    let mut rig = Rig::start().await;
    let mut page = rig.browser.page().await.unwrap();

    // A stranger is sent to the sign-in form.
    page.goto(&rig.url("/")).await.unwrap();
    assert_eq!(path(&mut page).await, "/login");
    shoot(&mut page, "login").await;

    // A wrong password: the form again with one sentence, still at /login.
    sign_in(&mut page, &rig.url("/login"), ADMIN, "not the password").await;
    assert_eq!(path(&mut page).await, "/login");
    assert_eq!(
        page.text("[role=alert]").await.unwrap().as_deref(),
        Some("Wrong username or password.")
    );
    // The username is kept and the cursor waits in the password field.
    let username: String = page
        .eval("document.querySelector('#username').value")
        .await
        .unwrap();
    assert_eq!(username, ADMIN);
    let focused: String = page.eval("document.activeElement.id").await.unwrap();
    assert_eq!(focused, "password");
    shoot(&mut page, "login-wrong-password").await;

    // The right one: the overview with both venues, neither with a hub yet.
    sign_in(&mut page, &rig.url("/login"), ADMIN, PASSWORD).await;
    assert_eq!(path(&mut page).await, "/");
    let mut seen = rows(&mut page).await;
    seen.sort_by(|a, b| a.name.cmp(&b.name));
    let expected = |venue: VenueId, name: &str| Row {
        venue: venue.to_string(),
        name: name.to_owned(),
        hub_state: "no_hub".to_owned(),
        state_text: "No hub yet".to_owned(),
    };
    assert_eq!(
        seen,
        [
            expected(rig.anchor, "The Anchor"),
            expected(rig.crown, "The Crown")
        ]
    );
    assert!(
        page.text("header.top")
            .await
            .unwrap()
            .unwrap()
            .contains("Ada Admin"),
        "the header names who is signed in"
    );
    shoot(&mut page, "overview").await;

    // Signing out from the header (at tablet size too: the button must be reachable
    // there) ends the session.
    page.set_viewport(820, 1180).await.unwrap();
    page.click_and_wait_for_load("header.top form[action='/logout'] button")
        .await
        .unwrap();
    assert_eq!(path(&mut page).await, "/login");
    page.goto(&rig.url("/")).await.unwrap();
    assert_eq!(
        path(&mut page).await,
        "/login",
        "signed out, / asks to sign in"
    );
}

#[tokio::test]
async fn each_person_sees_only_the_venues_in_their_scope() {
    let mut rig = Rig::start().await;

    // Store staff of The Crown: The Crown only, and searching for the other finds nothing.
    let mut staff = rig.signed_in(STAFF).await;
    assert_eq!(names(&mut staff).await, ["The Crown"]);
    shoot(&mut staff, "overview-store-staff").await;
    staff.goto(&rig.url("/?q=anchor")).await.unwrap();
    assert_eq!(names(&mut staff).await, Vec::<String>::new());
    assert!(
        staff
            .text("main")
            .await
            .unwrap()
            .unwrap()
            .contains("No venues match.")
    );
    // The search box shows what was searched for.
    let searched: String = staff
        .eval("document.querySelector('#q').value")
        .await
        .unwrap();
    assert_eq!(searched, "anchor");

    // The technician's scope is a tag; the viewer's a venue: both see The Anchor only.
    let mut technician = rig.signed_in(TECHNICIAN).await;
    assert_eq!(names(&mut technician).await, ["The Anchor"]);
    let mut viewer = rig.signed_in(VIEWER).await;
    assert_eq!(names(&mut viewer).await, ["The Anchor"]);

    // Each tab keeps its own session: the staff member is still signed in as themself.
    staff.goto(&rig.url("/")).await.unwrap();
    assert_eq!(names(&mut staff).await, ["The Crown"]);
}

/// What a person sees at a path.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Sees {
    /// The page itself.
    Page,
    /// The 403 page.
    Refused,
}

#[tokio::test]
async fn who_may_open_what() {
    let mut rig = Rig::start().await;
    // One row per person and page, venues in and out of each person's scope.
    let (anchor, crown) = (
        format!("/venues/{}", rig.anchor),
        format!("/venues/{}", rig.crown),
    );
    let anchor_codes = format!("{anchor}/provisioning");
    let table: Vec<(&str, &str, Sees)> = vec![
        (ADMIN, "/", Sees::Page),
        (STAFF, "/", Sees::Page),
        (TECHNICIAN, "/", Sees::Page),
        (VIEWER, "/", Sees::Page),
        (ADMIN, "/people", Sees::Page),
        (TECHNICIAN, "/people", Sees::Refused),
        (STAFF, "/people", Sees::Refused),
        (VIEWER, "/people", Sees::Refused),
        (STAFF, &crown, Sees::Page),
        (STAFF, &anchor, Sees::Refused),
        (VIEWER, &anchor, Sees::Page),
        (VIEWER, &crown, Sees::Refused),
        (TECHNICIAN, &anchor_codes, Sees::Page),
        (VIEWER, &anchor_codes, Sees::Refused),
        (TECHNICIAN, "/audit", Sees::Page),
        (STAFF, "/audit", Sees::Refused),
        (VIEWER, "/tokens", Sees::Page),
        (STAFF, "/tokens", Sees::Page),
    ];
    for (username, at, expected) in table {
        let mut page = rig.signed_in(username).await;
        page.goto(&rig.url(at)).await.unwrap();
        let seen = if refused(&mut page).await {
            Sees::Refused
        } else {
            Sees::Page
        };
        assert_eq!(seen, expected, "{username} at {at}");
        assert_eq!(path(&mut page).await, at, "{username} stays at {at}");
        if seen == Sees::Page && (at == "/tokens" || at == anchor_codes) {
            let name = if at == "/tokens" {
                "tokens"
            } else {
                "provisioning"
            };
            shoot(&mut page, name).await;
        }
    }
}

/// Store staff upload an image to their venue's library in the browser (the page's script,
/// its progress bar and the API behind it), see it listed, and delete it; a viewer gets
/// no upload or delete controls.
#[tokio::test]
async fn store_staff_upload_and_delete_media_in_the_browser() {
    let mut rig = Rig::start().await;
    let mut staff = rig.signed_in(STAFF).await;
    staff
        .goto(&rig.url(&format!("/media?venue={}", rig.crown)))
        .await
        .unwrap();
    // A 1×1 PNG, handed to the file input as a person's choice would be.
    let png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";
    let chosen: bool = staff
        .eval(&format!(
            "(() => {{ const bytes = Uint8Array.from(atob('{png}'), c => c.charCodeAt(0));
                const file = new File([bytes], 'menu.png', {{ type: 'image/png' }});
                const dt = new DataTransfer(); dt.items.add(file);
                const input = document.getElementById('media-files');
                input.files = dt.files; input.dispatchEvent(new Event('change'));
                return true; }})()"
        ))
        .await
        .unwrap();
    assert!(chosen);
    staff
        .wait_for(
            "document.querySelector('tr[data-media] td strong') !== null && document.readyState === 'complete'",
            WAIT,
        )
        .await
        .unwrap();
    let listed: String = staff
        .eval("document.querySelector('tr[data-media] td strong').textContent")
        .await
        .unwrap();
    assert_eq!(listed, "menu.png");
    shoot(&mut staff, "media-store-staff").await;
    // Delete it: the page asks first (accepted here), then the row is gone.
    let _: bool = staff
        .eval("(() => { window.confirm = () => true; document.querySelector('button[data-delete]').click(); return true; })()")
        .await
        .unwrap();
    staff
        .wait_for(
            "document.readyState === 'complete' && document.body.textContent.includes('No media here yet.')",
            WAIT,
        )
        .await
        .unwrap();

    // A viewer of The Anchor sees its library without any control that changes it.
    let mut viewer = rig.signed_in(VIEWER).await;
    viewer
        .goto(&rig.url(&format!("/media?venue={}", rig.anchor)))
        .await
        .unwrap();
    let controls: bool = viewer
        .eval("document.getElementById('media-files') !== null || document.querySelector('button[data-delete]') !== null")
        .await
        .unwrap();
    assert!(!controls, "a viewer must not get upload or delete controls");
}

/// A paired kiosk agent of `venue`'s hub, with the hub: what the end-to-end test drives.
struct Venue {
    hub: taplink_edge_hub::Hub,
    kiosk: taplink_kiosk::Kiosk,
}

/// Enroll and start a hub for `venue`, and pair a kiosk agent named "Bar screen" with it.
async fn hub_with_kiosk(central: &CentralNode, venue: VenueId, dir: &Path) -> Venue {
    use taplink_kiosk::state::Phase;
    use taplink_simulations::mesh::{
        approve_pairing, enroll_hub, eventually, hub_venue_doc, staff_token, start_hub,
        test_kiosk_config,
    };
    let hub_dir = dir.join("hub");
    enroll_hub(
        &hub_dir,
        central.quic_addr(),
        &central.enrollment_token(venue).unwrap(),
    )
    .await
    .unwrap();
    let staff = staff_token(&hub_dir).unwrap();
    let hub = start_hub(&hub_dir, None).await.unwrap();
    eventually(WAIT, || hub_venue_doc(&hub)).await.unwrap();
    let kiosk = taplink_kiosk::Kiosk::bind(test_kiosk_config(&dir.join("kiosk"), hub.http_addr()))
        .await
        .unwrap();
    let code = eventually(WAIT, || match kiosk.status().phase {
        Phase::Pairing { code, .. } => Some(code),
        _ => None,
    })
    .await
    .unwrap();
    approve_pairing(hub.http_addr(), &staff, &code, "Bar screen")
        .await
        .unwrap();
    // Central lists the kiosk once the hub's change has synced.
    eventually(WAIT, || {
        central
            .venue_doc(venue)
            .ok()
            .filter(|d| d.kiosks.values().any(|k| k.name == "Bar screen"))
    })
    .await
    .unwrap();
    Venue { hub, kiosk }
}

/// Hand `files` (name, type, bytes) to the media library's file input, as a person's
/// choice would be, and wait until each is listed.
async fn upload(page: &mut Page, files: &[(&str, &str, Vec<u8>)]) {
    let list: Vec<serde_json::Value> = files
        .iter()
        .map(|(name, ty, bytes)| {
            json!({ "name": name, "type": ty, "b64": data_encoding::BASE64.encode(bytes) })
        })
        .collect();
    let script = format!(
        "(() => {{ const dt = new DataTransfer();
            for (const f of {}) {{
              const bytes = Uint8Array.from(atob(f.b64), c => c.charCodeAt(0));
              dt.items.add(new File([bytes], f.name, {{ type: f.type }}));
            }}
            const input = document.getElementById('media-files');
            input.files = dt.files; input.dispatchEvent(new Event('change'));
            return true; }})()",
        serde_json::Value::from(list)
    );
    let _: bool = page.eval(&script).await.unwrap();
    let names: Vec<&str> = files.iter().map(|(n, _, _)| *n).collect();
    page.wait_for(
        &format!(
            "document.readyState === 'complete' && {}.every(n => [...document.querySelectorAll('tr[data-media] td strong')].some(s => s.textContent === n))",
            serde_json::Value::from(names)
        ),
        WAIT,
    )
    .await
    .unwrap();
}

/// Submit the form that holds `selector` and wait for the page it leads to.
async fn submit(page: &mut Page, selector: &str) {
    page.click_and_wait_for_load(selector).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_builds_a_playlist_in_the_browser_and_the_kiosk_plays_it() {
    use taplink_simulations::demo::slide;
    use taplink_simulations::mesh::eventually;

    let mut rig = Rig::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let anchor = rig.anchor;
    // The admin watches the overview while The Anchor's hub comes up: the row turns
    // online through the live stream, without a reload.
    let mut admin = rig.signed_in(ADMIN).await;
    let _: bool = admin
        .eval("(() => { window.notReloaded = true; return true; })()")
        .await
        .unwrap();
    let venue = hub_with_kiosk(&rig.central, anchor, tmp.path()).await;
    admin
        .wait_for(
            &format!(
                "window.notReloaded === true && document.querySelector('tr[data-venue=\"{anchor}\"]').dataset.hubState === 'online' && document.querySelector('tr[data-venue=\"{anchor}\"] td[data-label=Kiosks]').textContent.includes('of 1')"
            ),
            WAIT,
        )
        .await
        .unwrap();
    let pending: String = admin
        .eval(&format!(
            "document.querySelector('tr[data-venue=\"{anchor}\"] td[data-label=\"Pending changes\"]').textContent.trim()"
        ))
        .await
        .unwrap();
    assert_eq!(pending, "in sync");
    shoot(&mut admin, "overview-live").await;

    // The admin uploads two images to The Anchor's library.
    admin
        .goto(&rig.url(&format!("/media?venue={anchor}")))
        .await
        .unwrap();
    let menu = slide("Lunch menu", "soup of the day", "#0b3d91");
    let late = slide("Late bar", "after ten", "#8250df");
    upload(
        &mut admin,
        &[
            ("lunch-menu.svg", "image/svg+xml", menu),
            ("late-bar.svg", "image/svg+xml", late),
        ],
    )
    .await;
    admin
        .wait_for("document.querySelectorAll('.thumb img').length >= 2 && [...document.querySelectorAll('.thumb img')].every(i => i.complete && i.naturalWidth > 0)", WAIT)
        .await
        .unwrap();
    shoot(&mut admin, "media-previews").await;
    let menu_hash: String = admin
        .eval("[...document.querySelectorAll('tr[data-media]')].find(tr => tr.textContent.includes('lunch-menu.svg')).dataset.media")
        .await
        .unwrap();

    // A new playlist from the venue page opens the editor.
    admin
        .goto(&rig.url(&format!("/venues/{anchor}")))
        .await
        .unwrap();
    admin.fill("#new-playlist", "Lunch").await.unwrap();
    submit(&mut admin, "form[action$='/playlists'] button[type=submit]").await;
    let editor = path(&mut admin).await;
    assert!(
        editor.starts_with(&format!("/venues/{anchor}/playlists/")),
        "{editor}"
    );

    // Add the menu, always, 5 s.
    let _: bool = admin
        .eval(&format!(
            "(() => {{ document.querySelector('#add input[name=media][value=\"{menu_hash}\"]').checked = true;
                document.getElementById('d-new').value = '5'; return true; }})()"
        ))
        .await
        .unwrap();
    submit(&mut admin, "#add button[type=submit]").await;
    // Add the late-bar slide on Friday and Saturday nights, 22:00 until 02:00.
    let _: bool = admin
        .eval(
            "(() => { const add = document.getElementById('add');
                [...add.querySelectorAll('input[name=media]')].find(i => i.closest('label').textContent.includes('late-bar')).checked = true;
                add.querySelector('input[name=when][value=window]').checked = true;
                add.querySelectorAll('input[name=days]').forEach(d => d.checked = d.value === 'fri' || d.value === 'sat');
                document.getElementById('w-new-start').value = '22:00';
                document.getElementById('w-new-end').value = '02:00';
                return true; })()",
        )
        .await
        .unwrap();
    submit(&mut admin, "#add button[type=submit]").await;
    let items: Vec<String> = admin
        .eval("[...document.querySelectorAll('#items li[data-item] h3')].map(h => h.textContent.trim())")
        .await
        .unwrap();
    assert_eq!(items, ["1. lunch-menu.svg", "2. late-bar.svg"]);
    let summary: String = admin
        .eval("document.querySelectorAll('#items li[data-item] [data-summary]')[1].textContent.trim()")
        .await
        .unwrap();
    assert_eq!(summary, "10 s · Fri, Sat 22:00–02:00 next day");
    // Reorder with the buttons: the late bar first, then back.
    submit(
        &mut admin,
        "#items li:nth-child(2) form input[name=op][value=up] ~ button",
    )
    .await;
    let first: String = admin
        .eval("document.querySelector('#items li[data-item] h3').textContent.trim()")
        .await
        .unwrap();
    assert_eq!(first, "1. late-bar.svg");
    submit(
        &mut admin,
        "#items li:nth-child(1) form input[name=op][value=down] ~ button",
    )
    .await;

    // Assign it to the kiosk of the running hub.
    let _: bool = admin
        .eval("(() => { document.querySelector('#assign input[name=kiosk]').checked = true; return true; })()")
        .await
        .unwrap();
    submit(&mut admin, "#assign button[type=submit]").await;
    let notice = admin.text("p.notice.ok").await.unwrap();
    assert_eq!(notice.as_deref(), Some("Saved where it is shown."));
    shoot(&mut admin, "playlist-editor").await;

    // The kiosk's manifest changes, through the hub.
    let menu_hash: taplink_sync_proto::ids::MediaHash = menu_hash.parse().unwrap();
    eventually(WAIT, || {
        let status = venue.kiosk.status();
        let manifest = status.manifest.as_ref()?;
        (manifest.now.iter().any(|i| i.media == menu_hash) && status.ready.contains_key(&menu_hash))
            .then_some(())
    })
    .await
    .unwrap();
    // Its player page shows the image.
    let mut player = rig.browser.page().await.unwrap();
    player
        .goto(&format!("http://{}/", venue.kiosk.player_addr()))
        .await
        .unwrap();
    player
        .wait_for(
            &format!("document.querySelector('[data-showing=\"{menu_hash}\"]') !== null"),
            WAIT,
        )
        .await
        .unwrap();
    let file = artefacts().join("dashboard-kiosk-player.png");
    player.screenshot(&file).await.unwrap();
    println!("screenshot: {}", file.display());

    // The venue page explains it, with the week.
    admin
        .goto(&rig.url(&format!("/venues/{anchor}")))
        .await
        .unwrap();
    let rule: String = admin
        .eval("document.querySelector('[data-why=rule]').textContent.trim()")
        .await
        .unwrap();
    assert_eq!(rule, "Plays Lunch — own playlist.");
    // The second lane: Fri 22–24, Sat 0–2 and 22–24, Sun 0–2 (the windows cross midnight).
    let bars: u32 = admin
        .eval("document.querySelectorAll('figure.timeline svg rect[fill=\"#1a7f37\"]').length")
        .await
        .unwrap();
    assert_eq!(
        bars, 4,
        "the week timeline draws the late-bar window across midnight"
    );
    shoot(&mut admin, "venue").await;

    // Store staff of another venue cannot open it by URL.
    let mut staff = rig.signed_in(STAFF).await;
    staff.goto(&rig.url(&editor)).await.unwrap();
    assert!(
        refused(&mut staff).await,
        "staff of The Crown opened The Anchor's playlist"
    );
    // A viewer of The Anchor sees it without controls, and a change by URL is refused.
    let mut viewer = rig.signed_in(VIEWER).await;
    viewer.goto(&rig.url(&editor)).await.unwrap();
    let controls: bool = viewer
        .eval("document.querySelector('main form[method=post]') !== null")
        .await
        .unwrap();
    assert!(!controls, "a viewer must get no edit controls");
    let status: u16 = viewer
        .eval(&format!(
            "(async () => {{ const csrf = document.querySelector('header form input[name=csrf_token]').value;
                const r = await fetch('{editor}', {{ method: 'POST', headers: {{ 'Content-Type': 'application/x-www-form-urlencoded' }},
                  body: 'csrf_token=' + encodeURIComponent(csrf) + '&op=rename&name=Mine' }});
                return r.status; }})()"
        ))
        .await
        .unwrap();
    assert_eq!(status, 403);
    let name = rig
        .central
        .venue_doc(anchor)
        .unwrap()
        .playlists
        .values()
        .map(|p| p.name.clone())
        .collect::<Vec<_>>();
    assert_eq!(name, ["Lunch"]);

    venue.kiosk.shutdown().await.unwrap();
    venue.hub.shutdown().await.unwrap();
}
