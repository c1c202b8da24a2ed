//! `taplink-sim`: many venues and kiosks on one machine, with WAN faults, and the
//! benchmarks of the sync protocol and the transport.

use clap::{Parser, Subcommand};
use taplink_simulations::bench;
use tracing_subscriber::EnvFilter;

/// taplink-sim: many venues and kiosks on one machine, with WAN faults.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// The demo mesh (`taplink-sim demo`) joins these subcommands when it is built.
#[derive(Debug, Subcommand)]
enum Command {
    /// Run a benchmark and print its figures (build with --release for real figures).
    #[command(subcommand)]
    Bench(bench::Bench),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Quiet by default: the benchmarks print tables; RUST_LOG shows the nodes' logs.
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Bench(which) => bench::run(which).await,
    }
}
