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
