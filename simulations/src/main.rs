//! `taplink-sim`: the demo mesh, and the benchmarks of the sync protocol and the transport,
//! on one machine.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};
use taplink_simulations::bench;
use taplink_simulations::demo::Demo;

/// taplink-sim: the demo mesh, simulations and benchmarks on one machine.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Log format.
    #[arg(long, global = true, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the demo mesh on loopback: central, two venue hubs, kiosk agents (the default).
    Demo {
        /// Keep the data here instead of a temporary directory (must be new or empty).
        #[arg(long)]
        data: Option<PathBuf>,
        /// How many kiosk agents to run.
        #[arg(long, default_value_t = 3)]
        kiosks: usize,
    },
    /// Run a benchmark and print its figures (build with --release for real figures).
    #[command(subcommand)]
    Bench(bench::Bench),
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,taplink_simulations=info"));
    // Logs go to stderr: the demo and the benchmarks print their results on stdout.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    init_logging(&cli.log_format);
    match cli.command.unwrap_or(Command::Demo {
        data: None,
        kiosks: 3,
    }) {
        Command::Demo { data, kiosks } => demo(data, kiosks).await,
        Command::Bench(which) => bench::run(which).await,
    }
}

async fn demo(data: Option<PathBuf>, kiosks: usize) -> Result<()> {
    println!("Starting the Taplink demo mesh on loopback…");
    let demo = Demo::start(data.as_deref(), kiosks).await?;
    let http = demo.central.central.http_addr();
    println!();
    println!(
        "Dashboard   http://{http}/   (sign in as one of these; API docs at http://{http}/api/docs/)"
    );
    for login in &demo.logins {
        println!(
            "  {:<4} password {}   {} — {}",
            login.username, login.password, login.role, login.reach
        );
    }
    println!("Central");
    println!(
        "  admin API   http://{http}/api/v1/venues   (Authorization: Bearer {})",
        demo.central.admin_token
    );
    println!("  health      http://{http}/healthz   metrics http://{http}/metrics");
    println!("  QUIC sync   {}", demo.central.quic_addr());
    for venue in &demo.venues {
        println!("Venue \"{}\" ({})", venue.name, venue.id);
        println!(
            "  hub         {}/healthz   venue document {}/api/v1/venue",
            venue.hub.url(),
            venue.hub.url()
        );
        if let Some(fp) = venue.hub.fingerprint() {
            println!("  hub cert    {fp}   (kiosks pin it; with curl, -k)");
        }
        println!(
            "  staff token {}   (Authorization: Bearer …; make more with taplink-hub token create)",
            venue.staff
        );
    }
    println!("Kiosks (open a player page in a browser, or: chromium --kiosk URL)");
    for kiosk in &demo.kiosks {
        let venue = demo.venue_of(kiosk).map_or("?", |v| v.name);
        println!(
            "  {:<9}   http://{}/   at \"{venue}\"",
            kiosk.name,
            kiosk.agent.player_addr()
        );
    }
    match &demo.mdns_netns {
        Some(ns) => println!(
            "mDNS: kiosks found their hubs by mDNS inside the private network namespace {}.",
            ns.name()
        ),
        None => println!(
            "mDNS: not used (making a private network namespace needs root); kiosks were given their hub's address."
        ),
    }
    println!("Data: {}   — press Ctrl-C to stop.", demo.data.display());
    // Ctrl-C or SIGTERM: either way the demo stops cleanly (and removes its namespace).
    taplink_sync_io::node::shutdown_signal().await;
    println!("Stopping…");
    demo.shutdown().await
}
