//! Pairing: ask the hub for a code, show it, poll until staff approve, keep the token.
//!
//! The decisions are pure functions of the hub's answers ([`on_created`], [`on_polled`]);
//! [`pair`] runs them against anything that implements [`PairingApi`] (the real
//! [`HubApi`], or recorded answers in tests). The rules, from `docs/kiosk-api.md`:
//! - `201` to a request: keep the ticket (on disk, so the code survives a restart) and show
//!   its code — or, when a kiosk code from central pre-approved it, poll at once;
//! - a definitive refusal (`400`, `404`, `409`, `410`, `422`) of a request that carried the
//!   kiosk code (wrong, revoked, expired, used, or a hub that knows no kiosk codes): say so
//!   on screen and ask for a code for staff to approve instead; the kiosk code is tried
//!   again whenever a new code is needed (it may reach the hub later), and first of all
//!   when pairing starts, before a ticket kept on disk;
//! - `200 pending`: poll again; `200 approved`: save the credentials and the hub's venue;
//! - `404` (unknown or expired) or `410` (the token was already collected, i.e. our copy
//!   was lost): the ticket is dead, ask for a new code;
//! - anything else: retry the same step after a backoff; no answer at all, several times
//!   in a row: the hub is gone, go and find it again.
//!
//! Expiry is left to the hub (its `404`), not read from `expires_at` with our clock: a Pi
//! without a real-time clock may be hours off.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde::Deserialize;
use taplink_sync_proto::clock::Clock;
use taplink_sync_proto::ids::{KioskId, VenueId};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::hub::{HubApi, HubError, HubResponse};
use crate::store::{Credentials, Store, StoreError, Ticket};
use taplink_sync_io::node::{Backoff, sleep_or_cancel};

/// The two pairing calls, so that [`pair`] can be driven by recorded answers.
pub trait PairingApi {
    /// `POST /api/v1/pairings`, with a kiosk code from central or without.
    fn create(
        &self,
        device: &str,
        code: Option<&str>,
    ) -> impl Future<Output = Result<HubResponse, HubError>> + Send;
    /// `GET /api/v1/pairings/<id>`.
    fn poll(&self, pairing: &str) -> impl Future<Output = Result<HubResponse, HubError>> + Send;
}

impl PairingApi for HubApi {
    fn create(
        &self,
        device: &str,
        code: Option<&str>,
    ) -> impl Future<Output = Result<HubResponse, HubError>> + Send {
        self.create_pairing(device, code)
    }

    fn poll(&self, pairing: &str) -> impl Future<Output = Result<HubResponse, HubError>> + Send {
        self.pairing_status(pairing)
    }
}

/// The body of a `201` to a pairing request.
#[derive(Debug, Deserialize)]
struct Created {
    pairing: String,
    code: String,
    expires_at: String,
    /// Approved already by a kiosk code (absent from hubs before kiosk codes existed).
    #[serde(default)]
    preapproved: bool,
}

/// The body of a `200` to a status poll.
#[derive(Debug, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
enum Status {
    Pending,
    Approved {
        kiosk: KioskId,
        token: String,
        /// Not in the contract (yet); used when present, e.g. when the hub was given by
        /// address and there is no TXT record to learn the venue from.
        #[serde(default)]
        venue: Option<VenueId>,
    },
}

/// What the hub's answer to a pairing request means: a ticket, or why not.
pub fn on_created(resp: &HubResponse, hub_venue: Option<VenueId>) -> Result<Ticket, String> {
    if resp.status != StatusCode::CREATED {
        return Err(format!("{}: {}", resp.status, resp.error_message()));
    }
    let created: Created =
        serde_json::from_slice(&resp.body).map_err(|e| format!("malformed pairing answer: {e}"))?;
    // The id goes into a URL path and the code onto the screen: accept only plain text.
    let url_safe = |s: &str| {
        !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if !url_safe(&created.pairing) {
        return Err(format!("unusable pairing id {:?}", created.pairing));
    }
    if !url_safe(&created.code) || created.code.len() > 16 {
        return Err(format!("unusable pairing code {:?}", created.code));
    }
    let expires_at = DateTime::parse_from_rfc3339(&created.expires_at)
        .map_err(|e| format!("pairing expires_at {:?}: {e}", created.expires_at))?
        .with_timezone(&Utc);
    Ok(Ticket {
        pairing: created.pairing,
        code: created.code,
        expires_at,
        venue: hub_venue,
        preapproved: created.preapproved,
    })
}

/// Whether the hub's answer to a request that carried a kiosk code refuses that code for
/// good (malformed, unknown, revoked, expired, used, or a hub that knows no kiosk codes),
/// rather than failing for now (`429`, `503` before the venue document arrived, `5xx`).
pub fn refuses_code(resp: &HubResponse) -> bool {
    matches!(
        resp.status,
        StatusCode::BAD_REQUEST
            | StatusCode::NOT_FOUND
            | StatusCode::CONFLICT
            | StatusCode::GONE
            | StatusCode::UNPROCESSABLE_ENTITY
    )
}

/// What an answer to a status poll means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Polled {
    /// Not approved yet: poll again.
    Pending,
    /// Approved: the kiosk's credentials.
    Approved(Credentials),
    /// The ticket is dead (expired, unknown, or its token was collected and lost): ask
    /// for a new code.
    Restart(String),
    /// An answer that settles nothing (a server error, a malformed body): retry later.
    Retry(String),
}

/// Decide on the hub's answer to polling `ticket`.
pub fn on_polled(ticket: &Ticket, resp: &HubResponse) -> Polled {
    match resp.status {
        StatusCode::OK => {}
        StatusCode::NOT_FOUND | StatusCode::GONE => {
            return Polled::Restart(format!("{}: {}", resp.status, resp.error_message()));
        }
        other => return Polled::Retry(format!("{other}: {}", resp.error_message())),
    }
    match serde_json::from_slice::<Status>(&resp.body) {
        Ok(Status::Pending) => Polled::Pending,
        Ok(Status::Approved {
            kiosk,
            token,
            venue,
        }) => {
            // The token goes into an Authorization header.
            if token.is_empty() || token.len() > 256 || !token.bytes().all(|b| b.is_ascii_graphic())
            {
                // We were given the token once and cannot use it: the hub will say 410 to
                // the next poll, and a new code starts over.
                return Polled::Retry("the hub sent an unusable token".into());
            }
            Polled::Approved(Credentials {
                kiosk,
                token,
                venue: venue.or(ticket.venue),
            })
        }
        Err(e) => Polled::Retry(format!("malformed pairing status: {e}")),
    }
}

/// How pairing ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PairingEnd {
    /// Approved; the credentials are saved.
    Paired(Credentials),
    /// The hub stopped answering: find it again.
    HubLost,
    /// Shutdown.
    Cancelled,
}

/// What [`pair`] needs besides the API.
#[derive(Debug)]
pub struct PairingParams<'a> {
    /// Where tickets and credentials are kept.
    pub store: &'a Store,
    /// The name shown to staff.
    pub device: &'a str,
    /// A kiosk code from central that pre-approves the pairing, if the kiosk was given one.
    pub pair_code: Option<&'a str>,
    /// The venue of the hub being paired with, from its TXT record.
    pub hub_venue: Option<VenueId>,
    /// Delay between status polls.
    pub poll_every: Duration,
    /// Retry delays after failures.
    pub retry: (Duration, Duration),
    /// Consecutive unanswered calls after which the hub counts as gone.
    pub lost_after: u32,
    /// Shutdown.
    pub cancel: &'a CancellationToken,
    /// The kiosk's wall clock (when the credentials were saved).
    pub clock: &'a dyn Clock,
}

/// Pair with the hub behind `api`. `show` is called with the ticket whose code must be on
/// screen (and `None` when there is none); `code_refused` with the hub's reason when it
/// refused the kiosk code.
pub async fn pair(
    api: &impl PairingApi,
    p: PairingParams<'_>,
    show: impl Fn(Option<&Ticket>),
    code_refused: impl Fn(&str),
) -> Result<PairingEnd, StoreError> {
    // A ticket from a hub of another venue is useless here. A kiosk given a kiosk code
    // tries the code first rather than a kept ticket: if that ticket came from the same
    // code (a restart before the token was collected), the hub hands its pairing back.
    let mut ticket = match p.pair_code {
        Some(_) => None,
        None => p.store.ticket()?.filter(|t| t.venue == p.hub_venue),
    };
    show(ticket.as_ref());
    let mut backoff = Backoff::new(p.retry);
    let mut unanswered = 0u32;
    // The kiosk code, until the hub refuses it; tried again for each new ticket.
    let mut code = p.pair_code;
    loop {
        let delay = match &ticket {
            None => match api.create(p.device, code).await {
                Ok(resp) => {
                    unanswered = 0;
                    match on_created(&resp, p.hub_venue) {
                        Ok(t) => {
                            let delay = if t.preapproved {
                                info!(
                                    "pairing pre-approved by the kiosk code; collecting the token"
                                );
                                Duration::ZERO
                            } else {
                                info!(code = %t.code, expires_at = %t.expires_at, "pairing code issued; waiting for staff to approve it");
                                p.poll_every
                            };
                            p.store.save_ticket(&t)?;
                            show(Some(&t));
                            ticket = Some(t);
                            delay
                        }
                        Err(reason) if code.is_some() && refuses_code(&resp) => {
                            warn!(%reason, "the hub refused this kiosk's pair code; asking for a code for staff to approve instead");
                            code_refused(&resp.error_message());
                            code = None;
                            Duration::ZERO
                        }
                        Err(reason) => {
                            warn!(%reason, "hub refused a pairing request");
                            backoff.next_delay()
                        }
                    }
                }
                Err(e) => {
                    unanswered += 1;
                    warn!(error = %e, "pairing request unanswered");
                    if unanswered >= p.lost_after {
                        return Ok(PairingEnd::HubLost);
                    }
                    backoff.next_delay()
                }
            },
            Some(t) => match api.poll(&t.pairing).await {
                Ok(resp) => {
                    unanswered = 0;
                    match on_polled(t, &resp) {
                        Polled::Pending => {
                            backoff.reset();
                            p.poll_every
                        }
                        Polled::Approved(creds) => {
                            p.store
                                .save_credentials(&creds, p.clock.now().timestamp_millis())?;
                            info!(kiosk = %creds.kiosk, venue = ?creds.venue, "paired");
                            show(None);
                            return Ok(PairingEnd::Paired(creds));
                        }
                        Polled::Restart(reason) => {
                            info!(%reason, code = %t.code, "pairing code no longer valid; asking for a new one");
                            p.store.clear_ticket()?;
                            ticket = None;
                            code = p.pair_code;
                            show(None);
                            // Backed off (reset only by a `pending`): a hub that kills every
                            // new ticket at once must not be asked for codes in a tight loop.
                            backoff.next_delay()
                        }
                        Polled::Retry(reason) => {
                            warn!(%reason, "unexpected pairing status answer");
                            backoff.next_delay()
                        }
                    }
                }
                Err(e) => {
                    unanswered += 1;
                    warn!(error = %e, "pairing status poll unanswered");
                    if unanswered >= p.lost_after {
                        return Ok(PairingEnd::HubLost);
                    }
                    backoff.next_delay()
                }
            },
        };
        if !sleep_or_cancel(delay, p.cancel).await {
            return Ok(PairingEnd::Cancelled);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use super::*;

    fn ticket(venue: Option<VenueId>) -> Ticket {
        Ticket {
            pairing: "p1".into(),
            code: "K7Q-4MP".into(),
            expires_at: DateTime::parse_from_rfc3339("2026-11-20T18:15:00Z")
                .unwrap()
                .with_timezone(&Utc),
            venue,
            preapproved: false,
        }
    }

    fn kiosk() -> KioskId {
        KioskId::from_bytes([9; 16])
    }

    fn venue() -> Option<VenueId> {
        Some(VenueId::from_bytes([7; 16]))
    }

    #[test]
    fn a_201_gives_a_ticket_bound_to_the_hubs_venue() {
        let venue = venue();
        let resp = HubResponse::new(
            201,
            r#"{"pairing": "p1", "code": "K7Q-4MP", "expires_at": "2026-11-20T18:15:00Z"}"#,
        );
        assert_eq!(on_created(&resp, venue), Ok(ticket(venue)));
    }

    #[test]
    fn a_preapproved_201_says_so_and_refusals_of_a_kiosk_code_are_told_apart() {
        let resp = HubResponse::new(
            201,
            r#"{"pairing": "p1", "code": "K7Q-4MP", "expires_at": "2026-11-20T18:15:00Z", "preapproved": true}"#,
        );
        let t = on_created(&resp, None).unwrap();
        assert!(t.preapproved);
        for status in [400, 404, 409, 410, 422] {
            assert!(refuses_code(&HubResponse::new(status, "")), "{status}");
        }
        for status in [201, 401, 429, 500, 503] {
            assert!(!refuses_code(&HubResponse::new(status, "")), "{status}");
        }
    }

    #[test]
    fn unusable_pairing_answers_are_refused_with_a_reason() {
        for (status, body, says) in [
            (400, r#"{"error": "device: too long"}"#, "device: too long"),
            (200, r#"{"pairing": "p1"}"#, "200"),
            (201, r#"{"pairing": "p1"}"#, "malformed"),
            (
                201,
                r#"{"pairing": "../x", "code": "K", "expires_at": "2026-11-20T18:15:00Z"}"#,
                "pairing id",
            ),
            (
                201,
                r#"{"pairing": "p", "code": "<b>", "expires_at": "2026-11-20T18:15:00Z"}"#,
                "pairing code",
            ),
            (
                201,
                r#"{"pairing": "p", "code": "K", "expires_at": "soon"}"#,
                "expires_at",
            ),
        ] {
            let err = on_created(&HubResponse::new(status, body), None).unwrap_err();
            assert!(err.contains(says), "{status} {body}: {err}");
        }
    }

    #[test]
    fn poll_answers_map_to_the_documented_decisions() {
        let venue = venue();
        let t = ticket(venue);
        assert_eq!(
            on_polled(&t, &HubResponse::new(200, r#"{"status": "pending"}"#)),
            Polled::Pending
        );
        let approved = HubResponse::new(
            200,
            &format!(
                r#"{{"status": "approved", "kiosk": "{}", "token": "tlk1-abc"}}"#,
                kiosk()
            ),
        );
        assert_eq!(
            on_polled(&t, &approved),
            Polled::Approved(Credentials {
                kiosk: kiosk(),
                token: "tlk1-abc".into(),
                venue,
            })
        );
        for status in [404, 410] {
            let resp = HubResponse::new(status, r#"{"error": "already collected"}"#);
            assert!(
                matches!(on_polled(&t, &resp), Polled::Restart(r) if r.contains("already collected")),
                "{status}"
            );
        }
        for resp in [
            HubResponse::new(500, "oops"),
            HubResponse::new(401, r#"{"error": "?"}"#),
            HubResponse::new(
                200,
                r#"{"status": "approved", "kiosk": "nope", "token": "t"}"#,
            ),
            HubResponse::new(
                200,
                &format!(
                    r#"{{"status": "approved", "kiosk": "{}", "token": "a b"}}"#,
                    kiosk()
                ),
            ),
            HubResponse::new(200, r#"{"status": "weird"}"#),
        ] {
            assert!(matches!(on_polled(&t, &resp), Polled::Retry(_)), "{resp:?}");
        }
    }

    #[test]
    fn a_venue_in_the_approval_overrides_an_unknown_one() {
        let approved = HubResponse::new(
            200,
            &format!(
                r#"{{"status": "approved", "kiosk": "{}", "token": "t", "venue": "{}"}}"#,
                kiosk(),
                venue().unwrap()
            ),
        );
        match on_polled(&ticket(None), &approved) {
            Polled::Approved(c) => assert_eq!(c.venue, venue()),
            other => panic!("{other:?}"),
        }
    }

    /// Plays back recorded answers in order, recording the calls made.
    struct Recorded {
        answers: Mutex<VecDeque<Result<HubResponse, ()>>>,
        calls: Mutex<Vec<String>>,
    }

    impl Recorded {
        fn new(answers: Vec<Result<HubResponse, ()>>) -> Self {
            Self {
                answers: Mutex::new(answers.into()),
                calls: Mutex::new(Vec::new()),
            }
        }

        async fn next(&self, call: String) -> Result<HubResponse, HubError> {
            self.calls.lock().unwrap().push(call);
            let answer = self.answers.lock().unwrap().pop_front();
            match answer {
                Some(Ok(resp)) => Ok(resp),
                Some(Err(())) | None => Err(unreachable_error().await),
            }
        }
    }

    /// A genuine "connection refused" from reqwest: a loopback port that was just freed.
    pub(crate) async fn unreachable_error() -> HubError {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let api = HubApi::new(addr, &crate::hub::Transport::Plain).unwrap();
        api.pairing_status("x").await.unwrap_err()
    }

    impl PairingApi for Recorded {
        fn create(
            &self,
            device: &str,
            code: Option<&str>,
        ) -> impl Future<Output = Result<HubResponse, HubError>> + Send {
            match code {
                Some(code) => self.next(format!("create {device} with {code}")),
                None => self.next(format!("create {device}")),
            }
        }
        fn poll(
            &self,
            pairing: &str,
        ) -> impl Future<Output = Result<HubResponse, HubError>> + Send {
            self.next(format!("poll {pairing}"))
        }
    }

    fn params<'a>(
        store: &'a Store,
        venue: Option<VenueId>,
        cancel: &'a CancellationToken,
    ) -> PairingParams<'a> {
        PairingParams {
            store,
            device: "bar screen",
            pair_code: None,
            hub_venue: venue,
            // Real time, kept tiny: the decisions are under test, not the delays.
            poll_every: Duration::from_millis(1),
            retry: (Duration::from_millis(1), Duration::from_millis(2)),
            lost_after: 2,
            cancel,
            clock: &taplink_sync_proto::clock::SystemClock,
        }
    }

    fn created(pairing: &str, code: &str) -> Result<HubResponse, ()> {
        Ok(HubResponse::new(
            201,
            &format!(
                r#"{{"pairing": "{pairing}", "code": "{code}", "expires_at": "2026-11-20T18:15:00Z"}}"#
            ),
        ))
    }

    #[tokio::test]
    async fn an_expired_code_is_replaced_and_the_approved_token_is_saved() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("kiosk.sqlite")).unwrap();
        let venue = venue();
        let api = Recorded::new(vec![
            created("p1", "AAA-AAA"),
            Ok(HubResponse::new(200, r#"{"status": "pending"}"#)),
            Ok(HubResponse::new(404, r#"{"error": "expired"}"#)),
            created("p2", "BBB-BBB"),
            Ok(HubResponse::new(503, "busy")),
            Ok(HubResponse::new(
                200,
                &format!(
                    r#"{{"status": "approved", "kiosk": "{}", "token": "tlk1-x"}}"#,
                    kiosk()
                ),
            )),
        ]);
        let shown = Mutex::new(Vec::new());
        let cancel = CancellationToken::new();
        let end = pair(
            &api,
            params(&store, venue, &cancel),
            |t| shown.lock().unwrap().push(t.map(|t| t.code.clone())),
            |_| {},
        )
        .await
        .unwrap();
        let creds = Credentials {
            kiosk: kiosk(),
            token: "tlk1-x".into(),
            venue,
        };
        assert_eq!(end, PairingEnd::Paired(creds.clone()));
        assert_eq!(store.credentials().unwrap(), Some(creds));
        assert_eq!(store.ticket().unwrap(), None);
        assert_eq!(
            *api.calls.lock().unwrap(),
            [
                "create bar screen",
                "poll p1",
                "poll p1",
                "create bar screen",
                "poll p2",
                "poll p2"
            ]
        );
        assert_eq!(
            *shown.lock().unwrap(),
            [
                None,
                Some("AAA-AAA".into()),
                None,
                Some("BBB-BBB".into()),
                None
            ]
        );
    }

    #[tokio::test]
    async fn a_kiosk_code_pairs_at_once_and_a_refused_one_falls_back_to_staff_approval() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("kiosk.sqlite")).unwrap();
        let venue = venue();
        let approved = || {
            Ok(HubResponse::new(
                200,
                &format!(
                    r#"{{"status": "approved", "kiosk": "{}", "token": "tlk1-x"}}"#,
                    kiosk()
                ),
            ))
        };
        let preapproved = Ok(HubResponse::new(
            201,
            r#"{"pairing": "p3", "code": "CCC-CCC", "expires_at": "2026-11-20T18:15:00Z", "preapproved": true}"#,
        ));
        let api = Recorded::new(vec![
            // Not synced yet: the same code again, later.
            Ok(HubResponse::new(503, r#"{"error": "not synced"}"#)),
            Ok(HubResponse::new(404, r#"{"error": "unknown kiosk code"}"#)),
            created("p1", "AAA-AAA"),
            Ok(HubResponse::new(404, r#"{"error": "expired"}"#)),
            // A new ticket is needed: the kiosk code is tried again, and now it works.
            preapproved,
            approved(),
        ]);
        let refused = Mutex::new(Vec::new());
        let cancel = CancellationToken::new();
        let mut p = params(&store, venue, &cancel);
        p.pair_code = Some("7KQ4-MP2X-9RTA-B3HZ");
        let end = pair(
            &api,
            p,
            |_| {},
            |why| refused.lock().unwrap().push(why.to_owned()),
        )
        .await
        .unwrap();
        assert!(matches!(end, PairingEnd::Paired(c) if c.kiosk == kiosk()));
        assert_eq!(
            *api.calls.lock().unwrap(),
            [
                "create bar screen with 7KQ4-MP2X-9RTA-B3HZ",
                "create bar screen with 7KQ4-MP2X-9RTA-B3HZ",
                "create bar screen",
                "poll p1",
                "create bar screen with 7KQ4-MP2X-9RTA-B3HZ",
                "poll p3",
            ]
        );
        assert_eq!(*refused.lock().unwrap(), ["unknown kiosk code"]);
    }

    #[tokio::test]
    async fn a_kiosk_code_is_tried_before_a_ticket_kept_from_before() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("kiosk.sqlite")).unwrap();
        let venue = venue();
        store.save_ticket(&ticket(venue)).unwrap();
        let api = Recorded::new(vec![Err(()), Err(())]);
        let cancel = CancellationToken::new();
        let mut p = params(&store, venue, &cancel);
        p.pair_code = Some("7KQ4-MP2X-9RTA-B3HZ");
        assert_eq!(
            pair(&api, p, |_| {}, |_| {}).await.unwrap(),
            PairingEnd::HubLost
        );
        assert_eq!(
            *api.calls.lock().unwrap(),
            [
                "create bar screen with 7KQ4-MP2X-9RTA-B3HZ",
                "create bar screen with 7KQ4-MP2X-9RTA-B3HZ"
            ]
        );
    }

    #[tokio::test]
    async fn a_saved_ticket_is_reused_after_a_restart_and_silence_means_the_hub_is_lost() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("kiosk.sqlite")).unwrap();
        let venue = venue();
        store.save_ticket(&ticket(venue)).unwrap();
        let api = Recorded::new(vec![
            Ok(HubResponse::new(200, r#"{"status": "pending"}"#)),
            Err(()),
            Err(()),
        ]);
        let cancel = CancellationToken::new();
        let end = pair(&api, params(&store, venue, &cancel), |_| {}, |_| {})
            .await
            .unwrap();
        assert_eq!(end, PairingEnd::HubLost);
        assert_eq!(
            *api.calls.lock().unwrap(),
            ["poll p1", "poll p1", "poll p1"]
        );
        assert_eq!(
            store.ticket().unwrap(),
            Some(ticket(venue)),
            "kept for the hub's return"
        );
    }

    #[tokio::test]
    async fn a_ticket_from_another_venues_hub_is_not_used() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("kiosk.sqlite")).unwrap();
        store.save_ticket(&ticket(venue())).unwrap();
        let api = Recorded::new(vec![Err(()), Err(())]);
        let cancel = CancellationToken::new();
        let other_venue = Some(VenueId::from_bytes([1; 16]));
        pair(&api, params(&store, other_venue, &cancel), |_| {}, |_| {})
            .await
            .unwrap();
        assert_eq!(
            *api.calls.lock().unwrap(),
            ["create bar screen", "create bar screen"]
        );
    }
}
