//! `taplink-kiosk`: the kiosk agent (find the hub, pair, follow the manifest, serve the
//! player page).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use taplink_kiosk::config::LogFormat;
use taplink_kiosk::{Config, Kiosk};

/// taplink-kiosk: the kiosk agent.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Log format (overrides `log_format` in kiosk.json).
    #[arg(long, global = true, value_parser = ["text", "json"])]
    log_format: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the agent: find the hub, pair, play.
    Run {
        /// The kiosk's data directory (created if missing; `kiosk.json` in it is optional).
        #[arg(long)]
        data: PathBuf,
        /// The hub's address, HOST:PORT, instead of mDNS discovery.
        #[arg(long)]
        hub: Option<SocketAddr>,
        /// The hub certificate's fingerprint (`sha256:…`) to accept for `--hub`.
        #[arg(long, value_name = "FINGERPRINT")]
        hub_fingerprint: Option<String>,
        /// Browse for the hub only on this interface (e.g. `lo` for a one-machine demo).
        #[arg(long)]
        mdns_interface: Option<String>,
        /// Where to serve the player page (keep it on loopback).
        #[arg(long)]
        player: Option<SocketAddr>,
        /// A kiosk code from central: pair without staff approval (overrides `pair_code`
        /// in kiosk.json).
        #[arg(
            long,
            env = "TAPLINK_PAIR_CODE",
            value_name = "CODE",
            hide_env_values = true
        )]
        pair_code: Option<String>,
    },
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    taplink_sync_io::private::restrict_umask();
    match cli.command {
        Command::Run {
            data,
            hub,
            hub_fingerprint,
            mdns_interface,
            player,
            pair_code,
        } => {
            taplink_sync_io::private::create_dir(&data)
                .with_context(|| format!("cannot create {}", data.display()))?;
            let mut config = Config::load(&data)?;
            if hub.is_some() {
                config.hub = hub;
            }
            if hub_fingerprint.is_some() {
                config.hub_fingerprint = hub_fingerprint;
                config.validate()?;
            }
            if mdns_interface.is_some() {
                config.mdns_interface = mdns_interface;
            }
            if let Some(player) = player {
                config.player_listen = player;
            }
            if pair_code.is_some() {
                config.pair_code = pair_code;
                config.validate()?;
            }
            if let Some(format) = cli.log_format.as_deref() {
                config.log_format = if format == "json" {
                    LogFormat::Json
                } else {
                    LogFormat::Text
                };
            }
            init_logging(config.log_format);
            let kiosk = Kiosk::bind(config).await?;
            println!("player page at http://{}/", kiosk.player_addr());
            tokio::select! {
                _ = taplink_sync_io::node::shutdown_signal() => {}
                _ = kiosk.join() => {}
            }
            kiosk.shutdown().await?;
        }
    }
    Ok(())
}
