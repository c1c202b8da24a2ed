//! `taplink-hub`: the venue edge hub (enroll once, then run).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use taplink_edge_hub::{Config, Hub};
use taplink_sync_io::enroll::EnrollmentToken;

/// taplink-hub: the venue edge hub.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Log format.
    #[arg(long, global = true, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
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
        #[command(subcommand)]
        action: TokenAction,
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

#[derive(Debug, Subcommand)]
enum TokenAction {
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

/// The hub's database in an enrolled data directory, for the token commands.
fn open_store(data: &std::path::Path) -> anyhow::Result<taplink_edge_hub::store::Store> {
    taplink_edge_hub::identity::load(data)
        .with_context(|| format!("{} is not an enrolled hub's data directory", data.display()))?;
    Ok(taplink_edge_hub::store::Store::open(
        &data.join(taplink_edge_hub::store::STORE_FILE),
    )?)
}

fn token_command(action: TokenAction) -> anyhow::Result<()> {
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

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Everything the hub creates is private to its user (keys, databases, media).
    taplink_sync_io::private::restrict_umask();
    init_logging(&cli.log_format);
    match cli.command {
        Command::Enroll {
            central,
            code,
            data,
        } => {
            let identity = taplink_edge_hub::identity::enroll(&data, &central, &code)
                .await
                .context("enrollment failed")?;
            println!(
                "enrolled: hub {} of venue {}; start it with: taplink-hub run --data {}",
                identity.ids.hub,
                identity.ids.venue,
                data.display()
            );
        }
        Command::Token { action } => token_command(action)?,
        Command::Run { data, http } => {
            let mut config = Config::load(&data)?;
            if let Some(http) = http {
                config.http_listen = http;
            }
            let hub = Hub::bind(config).await?;
            println!("hub {} serving {}", hub.ids().hub, hub.url());
            // A hub whose API or uplink died stops with an error (`shutdown` says why), so
            // that its supervisor (systemd) starts it again.
            tokio::select! {
                () = taplink_sync_io::node::shutdown_signal() => {}
                () = hub.join() => {}
            }
            hub.shutdown().await?;
        }
    }
    Ok(())
}
