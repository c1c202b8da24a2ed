//! `taplink-central`: the central server: org CA, RBAC, dashboard and QUIC sync endpoint.

use clap::Parser;

/// taplink-central: the central server: org CA, RBAC, dashboard and QUIC sync endpoint.
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
