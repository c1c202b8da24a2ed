//! The `taplink-hub` command line: its clap types and the commands `enroll` and `token`
//! (`main.rs` runs the hub itself around [`crate::Hub`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};
use taplink_sync_io::enroll::EnrollmentToken;
use taplink_sync_io::node::LogFormat;

use crate::Config;
use crate::config::ConfigError;
use crate::identity::IdentityError;
use crate::store::{STORE_FILE, StaffTokenError, Store, StoreError};

/// taplink-hub: the venue edge hub.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    /// Log format.
    #[arg(long, global = true, default_value = "text", value_name = "FORMAT")]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Enroll this hub with central using a one-time token from an admin.
    Enroll {
        /// Central's QUIC address, HOST:PORT (a DNS name or an IP address; kept as given and
        /// resolved again at every reconnect).
        #[arg(long)]
        central: taplink_sync_io::net::PeerAddr,
        /// The enrollment token (`tl1-…`).
        #[arg(long, env = "TAPLINK_ENROLL_CODE")]
        code: EnrollmentToken,
        /// The hub's data directory.
        #[arg(long)]
        data: PathBuf,
    },
    /// Staff tokens: the hub's own credentials for the venue's staff API (run on the hub,
    /// as the user that owns the data directory).
    Token {
        /// What to do with staff tokens.
        #[command(subcommand)]
        action: TokenAction,
    },
    /// Recovery on the device (as root or the data directory's owner): a staff token that
    /// works for `--minutes` only, for a hub that has no roster yet (it never reached
    /// central) or whose people cannot sign in. Shown once; its name (`local-admin <time>`)
    /// is in `token list` and on every change made with it in central's audit log.
    LocalAdmin {
        /// The hub's data directory.
        #[arg(long)]
        data: PathBuf,
        /// How long the token works, 1 to 1440 minutes.
        #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=1440))]
        minutes: u32,
    },
    /// Run the hub: serve the venue locally and sync with central.
    Run {
        /// The hub's data directory (as enrolled).
        #[arg(long)]
        data: PathBuf,
        /// Override the local HTTP API address.
        #[arg(long)]
        http: Option<SocketAddr>,
    },
}

/// `token` subcommands.
#[derive(Debug, Subcommand)]
pub enum TokenAction {
    /// Make a staff token and print it once (only its hash is kept).
    Create {
        /// Who or what holds it (e.g. "manager", "till 2"); unique among active tokens.
        #[arg(long)]
        name: String,
        /// The hub's data directory.
        #[arg(long)]
        data: PathBuf,
    },
    /// Revoke the active staff token with this name; it stops working at once.
    Revoke {
        /// The token's name.
        #[arg(long)]
        name: String,
        /// The hub's data directory.
        #[arg(long)]
        data: PathBuf,
    },
    /// List staff tokens (names and dates; never the tokens).
    List {
        /// The hub's data directory.
        #[arg(long)]
        data: PathBuf,
    },
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// Enrolling failed.
    #[error("enrollment failed: {0}")]
    Enroll(#[source] IdentityError),
    /// The directory is not an enrolled hub's.
    #[error("{} is not an enrolled hub's data directory: {source}", data.display())]
    NotEnrolled {
        /// The directory given.
        data: PathBuf,
        /// What is missing or unreadable.
        source: IdentityError,
    },
    /// The hub's database could not be opened or read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A staff token was refused (a duplicate or unknown name) or not stored.
    #[error(transparent)]
    StaffToken(#[from] StaffTokenError),
    /// `hub.json` could not be loaded.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// `enroll`: redeem `code` with central and write the data directory.
pub async fn enroll(
    central: taplink_sync_io::net::PeerAddr,
    code: &EnrollmentToken,
    data: &Path,
) -> Result<(), CliError> {
    let identity = crate::identity::enroll(data, &central, code)
        .await
        .map_err(CliError::Enroll)?;
    println!(
        "enrolled: hub {} of venue {}; start it with: taplink-hub run --data {}",
        identity.ids.hub,
        identity.ids.venue,
        data.display()
    );
    Ok(())
}

/// The configuration `run` starts with: `hub.json`, with `--http` over it.
pub fn run_config(data: &Path, http: Option<SocketAddr>) -> Result<Config, CliError> {
    let mut config = Config::load(data)?;
    if let Some(http) = http {
        config.http_listen = http;
    }
    Ok(config)
}

/// The hub's database in an enrolled data directory, for the token commands.
fn open_store(data: &Path) -> Result<Store, CliError> {
    crate::identity::load(data).map_err(|source| CliError::NotEnrolled {
        data: data.to_owned(),
        source,
    })?;
    Ok(Store::open(&data.join(STORE_FILE))?)
}

/// `local-admin`: a recovery token that expires, printed once.
pub fn local_admin(data: &Path, minutes: u32) -> Result<(), CliError> {
    let now = taplink_sync_proto::clock::Clock::now(&taplink_sync_proto::clock::SystemClock);
    let lifetime = chrono::TimeDelta::minutes(i64::from(minutes));
    let (token, name) = open_store(data)?.create_local_admin(lifetime, now)?;
    tracing::warn!(%name, minutes, "local-admin recovery token made on the device");
    eprintln!(
        "recovery staff token {name:?}: works until {} UTC and is shown only now.\n\
         Send it as `Authorization: Bearer <token>` to this hub's API; every change made with it\n\
         is attributed to {name:?} (central's audit log shows it after the next sync).",
        (now + lifetime).format("%Y-%m-%d %H:%M")
    );
    println!("{token}");
    Ok(())
}

/// `token create|revoke|list`, on the hub's database (a staff token is the hub's own
/// credential; the running hub checks the database on every request).
pub fn token(action: TokenAction) -> Result<(), CliError> {
    let now = taplink_sync_proto::clock::Clock::now(&taplink_sync_proto::clock::SystemClock);
    match action {
        TokenAction::Create { name, data } => {
            let token = open_store(&data)?.create_staff_token(&name, now)?;
            eprintln!(
                "staff token {name:?} created; it is shown only now. Send it as `Authorization: Bearer <token>`."
            );
            println!("{token}");
        }
        TokenAction::Revoke { name, data } => {
            open_store(&data)?.revoke_staff_token(&name, now)?;
            println!("staff token {name:?} revoked");
        }
        TokenAction::List { data } => {
            let fmt = |t: Option<chrono::DateTime<chrono::Utc>>| {
                t.map_or_else(
                    || "-".to_owned(),
                    |t| t.format("%Y-%m-%d %H:%M").to_string(),
                )
            };
            println!(
                "{:<24} {:<17} {:<17} REVOKED",
                "NAME", "CREATED", "LAST USED"
            );
            for t in open_store(&data)?.staff_tokens()? {
                println!(
                    "{:<24} {:<17} {:<17} {}",
                    t.name,
                    fmt(Some(t.created_at)),
                    fmt(t.last_used_at),
                    fmt(t.revoked_at)
                );
            }
        }
    }
    Ok(())
}
