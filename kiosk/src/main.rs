//! `taplink-kiosk`: parses the command line, loads the configuration
//! ([`taplink_kiosk::cli`]), runs the agent until Ctrl-C or SIGTERM.

use clap::Parser;
use taplink_kiosk::Kiosk;
use taplink_kiosk::cli::{Cli, Command};
use taplink_sync_io::node::{init_logging, shutdown_signal};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    taplink_sync_io::private::restrict_umask();
    match cli.command {
        Command::Run(args) => {
            let config = args.config(cli.log_format)?;
            init_logging(config.log_format);
            let kiosk = Kiosk::bind(config).await?;
            println!("player page at http://{}/", kiosk.player_addr());
            tokio::select! {
                () = shutdown_signal() => {}
                () = kiosk.join() => {}
            }
            kiosk.shutdown().await?;
        }
    }
    Ok(())
}
