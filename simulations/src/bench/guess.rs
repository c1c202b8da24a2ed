//! `bench guess`: a password-guessing run against central's login, and whether people
//! signing in to other accounts meanwhile still get in.
//!
//! A real central (plain HTTP on loopback) with two accounts. First the baseline: a
//! client at 127.0.0.2 signs in to the second account every `--legit-every-ms`,
//! `--legit` times, with nothing else going on. Then the run: a client at 127.0.0.1
//! guesses the first account's password `--guesses` times, one request after another with
//! `--gap-ms` between them, for at most `--limit-secs`, while the client at 127.0.0.2 keeps
//! signing in to the second account at the same pace for as long as the guessing lasts.
//! Central throttles per client address (from the socket) and per
//! account (`taplink_sync_io::web::guard::Throttle`): a guess refused with 429 was not
//! checked; one answered 401 was.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use anyhow::Result;
use taplink_central::store::NewUser;
use taplink_sync_io::web::guard::{FIRST_DELAY, FREE_FAILURES, MAX_DELAY};
use taplink_sync_proto::authz::{Role, Scope};

use super::{Table, clock, http_client, ms, quantile, sign_in, verdict};
use crate::mesh::CentralNode;

/// `bench guess` options.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Guesses at the first account's password.
    #[arg(long, default_value_t = 1_000)]
    pub guesses: usize,
    /// Pause after each guess: 0 guesses as fast as the server answers (a run then ends
    /// within a second, every guess past the free ones refused at once); the default
    /// spreads 1,000 guesses over about 100 s, so the throttle's doubling waits are tried.
    #[arg(long, default_value_t = 100)]
    pub gap_ms: u64,
    /// The guessing run stops after this long even if guesses are left.
    #[arg(long, default_value_t = 120)]
    pub limit_secs: u64,
    /// Legitimate sign-ins in the baseline.
    #[arg(long, default_value_t = 25)]
    pub legit: usize,
    /// Pause between legitimate sign-ins.
    #[arg(long, default_value_t = 200)]
    pub legit_every_ms: u64,
}

/// The guessing client's address.
const GUESSER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
/// The legitimate client's address.
const LEGIT: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const TARGET_PASSWORD: &str = "the target's real password";
const LEGIT_PASSWORD: &str = "the other account's password";

/// Legitimate sign-ins of one phase.
#[derive(Debug, Clone, Default)]
pub struct Logins {
    /// Sign-ins tried.
    pub tried: usize,
    /// Sign-ins answered 200 with a session.
    pub succeeded: usize,
    /// Each sign-in's time, sorted.
    pub times: Vec<Duration>,
}

/// The figures.
#[derive(Debug, Clone)]
pub struct Report {
    /// Guesses sent.
    pub guesses: usize,
    /// Answered 401: checked against the password and wrong.
    pub checked: usize,
    /// Answered 429: refused unchecked, the client had to wait.
    pub throttled: usize,
    /// Answered anything else (a 200 would be a guessed password).
    pub other: usize,
    /// From the first guess to the last answer.
    pub run: Duration,
    /// The most guesses the configured throttle lets be checked in `run`.
    pub allowed: usize,
    /// The pause after each guess.
    pub gap: Duration,
    /// The pause between legitimate sign-ins.
    pub legit_every: Duration,
    /// The legitimate sign-ins with no guessing.
    pub baseline: Logins,
    /// The legitimate sign-ins during the guessing run.
    pub during: Logins,
}

/// How many failed attempts the throttle lets be checked within `run` when they come
/// as fast as it allows: [`FREE_FAILURES`] at once, then one after each wait, the wait
/// doubling from [`FIRST_DELAY`] up to [`MAX_DELAY`].
pub fn allowed_within(run: Duration) -> usize {
    let mut at = Duration::ZERO;
    let mut checked = 0usize;
    loop {
        checked += 1;
        let over = u32::try_from(checked)
            .unwrap_or(u32::MAX)
            .saturating_sub(FREE_FAILURES);
        if over > 0 {
            at += FIRST_DELAY
                .checked_mul(1u32 << (over - 1).min(16))
                .unwrap_or(MAX_DELAY)
                .min(MAX_DELAY);
        }
        if at > run {
            return checked;
        }
    }
}

/// Run the bench.
pub async fn run(args: &Args) -> Result<Report> {
    let dir = tempfile::tempdir()?;
    let node = CentralNode::start(&dir.path().join("central")).await?;
    let state = node.central.state().clone();
    for (username, password) in [("target", TARGET_PASSWORD), ("other", LEGIT_PASSWORD)] {
        let registry = state.registry.clone();
        let now = state.now();
        tokio::task::spawn_blocking(move || {
            registry.create_user(
                NewUser {
                    username: username.into(),
                    display_name: String::new(),
                    role: Role::Viewer,
                    scope: Scope::default(),
                    password: password.into(),
                },
                now,
            )
        })
        .await??;
    }
    let base = format!("http://{}", node.central.http_addr());
    let every = Duration::from_millis(args.legit_every_ms);
    let legit = http_client(Some(LEGIT))?;

    let baseline = legit_logins(&legit, &base, every, args.legit, None).await?;

    let guesser = http_client(Some(GUESSER))?;
    let (done_tx, done_rx) = tokio::sync::watch::channel(false);
    let during = {
        let (legit, base) = (legit.clone(), base.clone());
        tokio::spawn(async move { legit_logins(&legit, &base, every, 1, Some(done_rx)).await })
    };
    let limit = Duration::from_secs(args.limit_secs);
    let gap = Duration::from_millis(args.gap_ms);
    let (mut checked, mut throttled, mut other, mut guesses) = (0, 0, 0, 0);
    let started = clock::now();
    while guesses < args.guesses && started.elapsed() < limit {
        let guess = format!("guess number {guesses}");
        let (_, status) = sign_in(&guesser, &base, "target", &guess).await?;
        guesses += 1;
        match status {
            401 => checked += 1,
            429 => throttled += 1,
            _ => other += 1,
        }
        if gap > Duration::ZERO {
            tokio::time::sleep(gap).await;
        }
    }
    let run = started.elapsed();
    let _ = done_tx.send(true);
    let during = during.await??;
    node.central.shutdown().await?;
    Ok(Report {
        guesses,
        checked,
        throttled,
        other,
        run,
        allowed: allowed_within(run),
        gap,
        legit_every: every,
        baseline,
        during,
    })
}

/// Sign in to the legitimate account every `every`, at least `min` times and, with
/// `until`, until it turns true (then at once).
async fn legit_logins(
    client: &reqwest::Client,
    base: &str,
    every: Duration,
    min: usize,
    mut until: Option<tokio::sync::watch::Receiver<bool>>,
) -> Result<Logins> {
    let mut logins = Logins::default();
    loop {
        let done = until.as_ref().is_none_or(|rx| *rx.borrow());
        if logins.tried >= min.max(1) && done {
            break;
        }
        let started = clock::now();
        let (cookie, _) = sign_in(client, base, "other", LEGIT_PASSWORD).await?;
        logins.times.push(started.elapsed());
        logins.tried += 1;
        logins.succeeded += usize::from(cookie.is_some());
        match until.as_mut() {
            Some(rx) if logins.tried >= min => {
                // Past the minimum, stop as soon as the guessing run ends.
                let _ = tokio::time::timeout(every, rx.wait_for(|d| *d)).await;
            }
            _ => tokio::time::sleep(every).await,
        }
    }
    logins.times.sort();
    Ok(logins)
}

impl Report {
    /// The figures as a table.
    pub fn table(&self) -> Table {
        let mut t = Table::new(
            "bench guess: a password-guessing run at central's login, and other people signing in",
        );
        t.note(format!(
            "{} guesses from 127.0.0.1 at one account, one after another {} apart; \
             meanwhile another account signs in from 127.0.0.2 every ~{} ms",
            self.guesses,
            ms(self.gap),
            self.legit_every.as_millis()
        ));
        t.note(format!(
            "throttle per address and per account: {FREE_FAILURES} free failures, then a \
             wait from {} s doubling to {} s",
            FIRST_DELAY.as_secs(),
            MAX_DELAY.as_secs()
        ));
        t.row(
            "guesses: checked (401) / throttled (429) / other",
            format!("{} / {} / {}", self.checked, self.throttled, self.other),
            format!("no other answer: {}", verdict(self.other == 0)),
        );
        t.row(
            "guessing run",
            format!("{:.1} s", self.run.as_secs_f64()),
            "",
        );
        t.row(
            "checked guesses vs what the throttle allows in the run",
            format!(
                "{} ≤ {} ({:.2}/s)",
                self.checked,
                self.allowed,
                self.checked as f64 / self.run.as_secs_f64().max(1e-9)
            ),
            format!("held: {}", verdict(self.checked <= self.allowed)),
        );
        for (what, logins) in [
            ("legitimate sign-ins, baseline", &self.baseline),
            ("legitimate sign-ins, during guessing", &self.during),
        ] {
            t.row(
                format!("{what}: succeeded / tried"),
                format!("{} / {}", logins.succeeded, logins.tried),
                format!("all succeed: {}", verdict(logins.succeeded == logins.tried)),
            );
            t.row(
                format!("{what}: p50 / p99 / max"),
                format!(
                    "{} / {} / {}",
                    ms(quantile(&logins.times, 0.5)),
                    ms(quantile(&logins.times, 0.99)),
                    ms(logins.times.last().copied().unwrap_or_default())
                ),
                "",
            );
        }
        t
    }
}
