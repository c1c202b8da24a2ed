//! `bench login`: what signing in costs at central — the argon2id verification is the
//! price of a login by design — and what one permission check costs.
//!
//! A registry in a temporary directory with one user; `--logins` sign-ins in a row
//! (`Registry::sign_in`: the user's row, argon2id verification at m = 19 MiB, t = 6, p = 1,
//! a session written), each timed; then `--checks` calls of `authz::authorize` for a
//! technician scoped to 50 venues and a tag, over every action.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::Result;
use taplink_central::store::{NewUser, Registry};
use taplink_sync_proto::authz::{Action, Principal, Role, Scope, Target, VenueTag, authorize};
use taplink_sync_proto::clock::{Clock, SystemClock};
use taplink_sync_proto::ids::VenueId;

use super::{Table, clock, ms, quantile, verdict};

/// `bench login` options.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Sign-ins to time.
    #[arg(long, default_value_t = 20)]
    pub logins: usize,
    /// Permission checks to time.
    #[arg(long, default_value_t = 2_000_000)]
    pub checks: usize,
}

/// The figures.
#[derive(Debug, Clone)]
pub struct Report {
    /// Each sign-in's time, sorted.
    pub logins: Vec<Duration>,
    /// One `authorize` call, on average.
    pub authorize: Duration,
}

const PASSWORD: &str = "correct horse battery staple";

/// Run the bench (blocking: call it off the async runtime).
pub fn run(args: &Args) -> Result<Report> {
    let dir = tempfile::tempdir()?;
    let registry = Registry::create(&dir.path().join("central.sqlite"))?;
    registry.create_user(
        NewUser {
            username: "bench".into(),
            display_name: String::new(),
            role: Role::Admin,
            scope: Scope::default(),
            password: PASSWORD.into(),
        },
        SystemClock.now(),
    )?;
    let mut logins = Vec::with_capacity(args.logins);
    for _ in 0..args.logins.max(1) {
        let started = clock::now();
        registry.sign_in("bench", PASSWORD, SystemClock.now())?;
        logins.push(started.elapsed());
    }
    logins.sort();

    let tag: VenueTag = "region:north".parse()?;
    let principal = Principal {
        role: Role::Technician,
        scope: Scope {
            venues: (0..50).map(|_| VenueId::random()).collect(),
            tags: BTreeSet::from([tag.clone()]),
        },
    };
    let (venue, tags) = (VenueId::random(), BTreeSet::from([tag]));
    let checks = args.checks.max(1);
    let started = clock::now();
    let mut allowed = 0usize;
    for i in 0..checks {
        let action = Action::ALL[i % Action::ALL.len()];
        let target = Target::Venue {
            id: venue,
            tags: &tags,
        };
        if authorize(std::hint::black_box(&principal), action, target).is_ok() {
            allowed += 1;
        }
    }
    std::hint::black_box(allowed);
    let authorize = started.elapsed() / u32::try_from(checks).unwrap_or(u32::MAX);
    Ok(Report { logins, authorize })
}

impl Report {
    /// The figures as a table.
    pub fn table(&self) -> Table {
        let mut t = Table::new("bench login: a sign-in at central, and one permission check");
        t.note(format!(
            "{} sign-ins in a row (argon2id m = 19 MiB, t = 6, p = 1, and the session written)",
            self.logins.len()
        ));
        let p50 = quantile(&self.logins, 0.5);
        t.row(
            "sign-in: p50 / p99 / max",
            format!(
                "{} / {} / {}",
                ms(p50),
                ms(quantile(&self.logins, 0.99)),
                ms(self.logins.last().copied().unwrap_or_default())
            ),
            format!(
                "50–250 ms: {}",
                verdict((Duration::from_millis(50)..=Duration::from_millis(250)).contains(&p50))
            ),
        );
        t.row(
            "authorize: one call",
            format!("{} ns", self.authorize.as_nanos()),
            format!(
                "< 1 µs: {}",
                verdict(self.authorize < Duration::from_micros(1))
            ),
        );
        t
    }
}
