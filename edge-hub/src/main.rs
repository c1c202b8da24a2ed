//! `taplink-hub`: parses the command line, then runs the hub or one of the commands of
//! [`taplink_edge_hub::cli`].

use clap::Parser;
use taplink_edge_hub::Hub;
use taplink_edge_hub::cli::{self, Cli, Command};
use taplink_sync_io::node::{init_logging, shutdown_signal};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Everything the hub creates is private to its user (keys, databases, media).
    taplink_sync_io::private::restrict_umask();
    init_logging(cli.log_format);
    match cli.command {
        Command::Enroll {
            central,
            code,
            data,
        } => cli::enroll(central, &code, &data).await?,
        Command::Token { action } => cli::token(action)?,
        Command::LocalAdmin { data, minutes } => cli::local_admin(&data, minutes)?,
        Command::Run { data, http } => {
            let hub = Hub::bind(cli::run_config(&data, http)?).await?;
            println!("hub {} serving {}", hub.ids().hub, hub.url());
            // A hub whose API or uplink died stops with an error (`shutdown` says why), so
            // that its supervisor (systemd) starts it again.
            tokio::select! {
                () = shutdown_signal() => {}
                () = hub.join() => {}
            }
            hub.shutdown().await?;
        }
    }
    Ok(())
}
