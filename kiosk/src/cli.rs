//! The `taplink-kiosk` command line: its clap types and the configuration `run` starts with
//! (`main.rs` runs the agent around [`crate::Kiosk`]).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use taplink_sync_io::node::LogFormat;

use crate::Config;
use crate::config::ConfigError;

/// taplink-kiosk: the kiosk agent.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    /// Log format (overrides `log_format` in kiosk.json).
    #[arg(long, global = true, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent: find the hub, pair, play.
    Run(RunArgs),
}

/// `run`'s arguments: each overrides its field of `kiosk.json`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The kiosk's data directory (created if missing; `kiosk.json` in it is optional).
    #[arg(long)]
    pub data: PathBuf,
    /// The hub's address, HOST:PORT, instead of mDNS discovery.
    #[arg(long)]
    pub hub: Option<SocketAddr>,
    /// The hub certificate's fingerprint (`sha256:…`) to accept for `--hub`.
    #[arg(long, value_name = "FINGERPRINT")]
    pub hub_fingerprint: Option<String>,
    /// Browse for the hub only on this interface (e.g. `lo` for a one-machine demo).
    #[arg(long)]
    pub mdns_interface: Option<String>,
    /// Where to serve the player page (keep it on loopback).
    #[arg(long)]
    pub player: Option<SocketAddr>,
    /// A kiosk code from central: pair without staff approval (overrides `pair_code`
    /// in kiosk.json).
    #[arg(
        long,
        env = "TAPLINK_PAIR_CODE",
        value_name = "CODE",
        hide_env_values = true
    )]
    pub pair_code: Option<String>,
}

/// Why the configuration could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// The data directory could not be created.
    #[error("cannot create {}: {source}", data.display())]
    DataDir {
        /// The directory.
        data: PathBuf,
        /// The operating system's report.
        source: std::io::Error,
    },
    /// `kiosk.json`, or a flag over it, is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

impl RunArgs {
    /// The configuration to run with: `kiosk.json` in the (created) data directory, these
    /// flags over it, and `log_format` if given.
    pub fn config(self, log_format: Option<LogFormat>) -> Result<Config, CliError> {
        taplink_sync_io::private::create_dir(&self.data).map_err(|source| CliError::DataDir {
            data: self.data.clone(),
            source,
        })?;
        let mut config = Config::load(&self.data)?;
        if self.hub.is_some() {
            config.hub = self.hub;
        }
        if self.hub_fingerprint.is_some() {
            config.hub_fingerprint = self.hub_fingerprint;
        }
        if self.mdns_interface.is_some() {
            config.mdns_interface = self.mdns_interface;
        }
        if let Some(player) = self.player {
            config.player_listen = player;
        }
        if self.pair_code.is_some() {
            config.pair_code = self.pair_code;
        }
        if let Some(format) = log_format {
            config.log_format = format;
        }
        // The flags go through the same checks as the file.
        config.validate()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_kiosk_json_and_are_validated() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("kiosk");
        let args = |pair_code: Option<&str>| {
            Cli::parse_from(
                [
                    "taplink-kiosk",
                    "--log-format",
                    "json",
                    "run",
                    "--data",
                    data.to_str().unwrap(),
                    "--hub",
                    "10.0.0.2:8580",
                ]
                .into_iter()
                .chain(pair_code.map(|c| ["--pair-code", c]).into_iter().flatten()),
            )
        };
        let cli = args(None);
        let Command::Run(run) = cli.command;
        let config = run.config(cli.log_format).unwrap();
        assert!(data.is_dir(), "the data directory is created");
        assert_eq!(config.hub, Some("10.0.0.2:8580".parse().unwrap()));
        assert_eq!(config.log_format, LogFormat::Json);

        let cli = args(Some("not a code"));
        let Command::Run(run) = cli.command;
        let err = run.config(cli.log_format).unwrap_err().to_string();
        assert!(err.contains("pair_code"), "{err}");
    }
}
