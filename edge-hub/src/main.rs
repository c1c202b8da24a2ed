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
        /// Central's QUIC address, HOST:PORT.
        #[arg(long)]
        central: SocketAddr,
        /// The enrollment token (`tl1-…`).
        #[arg(long, env = "TAPLINK_ENROLL_CODE")]
        code: EnrollmentToken,
        /// The hub's data directory.
        #[arg(long)]
        data: PathBuf,
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
    init_logging(&cli.log_format);
    match cli.command {
        Command::Enroll {
            central,
            code,
            data,
        } => {
            let identity = taplink_edge_hub::identity::enroll(&data, central, &code)
                .await
                .context("enrollment failed")?;
            println!(
                "enrolled: hub {} of venue {}; start it with: taplink-hub run --data {}",
                identity.ids.hub,
                identity.ids.venue,
                data.display()
            );
        }
        Command::Run { data, http } => {
            let mut config = Config::load(&data)?;
            if let Some(http) = http {
                config.http_listen = http;
            }
            let hub = Hub::bind(config).await?;
            println!("hub {} serving http://{}", hub.ids().hub, hub.http_addr());
            shutdown_signal().await;
            hub.shutdown().await;
        }
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return std::future::pending::<()>().await,
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
