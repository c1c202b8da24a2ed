//! `taplink-kiosk`: the kiosk agent: finds its hub, caches media, runs the player page.

use clap::Parser;

/// taplink-kiosk: the kiosk agent: finds its hub, caches media, runs the player page.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
    println!(
        "{} {}: not built yet (see ARCHITECTURE.md). Built so far: taplink-sync-proto (schema, manifest, wire protocol, sync session) and taplink-certs (org PKI, mutual TLS).",
        env!("CARGO_BIN_NAME"),
        env!("CARGO_PKG_VERSION")
    );
}
