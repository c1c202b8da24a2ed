//! `taplink-central`: parses the command line, then runs the server (`serve`) or one of
//! the commands of [`taplink_central::cli`].

use anyhow::Context as _;
use clap::Parser;
use taplink_central::Central;
use taplink_central::cli::{self, Cli, Command};
use taplink_sync_io::node::{init_logging, shutdown_signal};

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    taplink_sync_io::private::restrict_umask();
    let runtime = || tokio::runtime::Runtime::new().context("starting the tokio runtime");
    match cli.command {
        Command::Init(args) => {
            init_logging(cli.log_format.unwrap_or_default());
            cli::run_init(args)?;
        }
        Command::Serve(location) => {
            let config = location.load()?;
            init_logging(cli.log_format.unwrap_or(config.log_format));
            runtime()?.block_on(async {
                let central = Central::bind(config).await?;
                tokio::select! {
                    () = shutdown_signal() => {}
                    () = central.join() => tracing::warn!("central stopped by itself"),
                }
                central.shutdown().await?;
                anyhow::Ok(())
            })?;
        }
        Command::Audit { command } => {
            init_logging(cli.log_format.unwrap_or_default());
            cli::run_audit(command)?;
        }
        Command::Admin(command) => {
            init_logging(cli.log_format.unwrap_or_default());
            runtime()?.block_on(cli::run_admin(command))?;
        }
    }
    Ok(())
}
