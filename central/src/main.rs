//! `taplink-central`: the command line of the central server (init, serve, venue and
//! enrollment code administration on a data directory, kiosk codes through the running
//! server).

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use taplink_central::admin_client::AdminClient;
use taplink_central::config::{LogFormat, Ttl};
use taplink_central::http::CreateKioskCodeRequest;
use taplink_central::init::{InitOptions, init};
use taplink_central::store::Registry;
use taplink_central::{Central, Config, rfc3339, state, venue};
use taplink_certs::Fingerprint;
use taplink_sync_proto::clock::{Clock, SystemClock};
use taplink_sync_proto::ids::{GrantId, PlaylistId, VenueId};

/// taplink-central: the central server of a Taplink organisation.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Log format: `text` (default) or `json`. Overrides the config file's `log_format`.
    #[arg(long, global = true, env = "TAPLINK_LOG_FORMAT", value_name = "FORMAT")]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a data directory: registry, org CA, server certificate, admin token, config.json.
    Init {
        /// The data directory to create (must not exist, or be empty).
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
        /// The organisation's name, written into the CA certificate.
        #[arg(long, value_name = "ORG", default_value = InitOptions::DEFAULT_ORG_NAME)]
        name: String,
        /// A DNS name or IP address hubs use to reach central (repeat for several).
        /// Default: localhost and 127.0.0.1.
        #[arg(long = "public-name", value_name = "NAME")]
        public_names: Vec<String>,
    },
    /// Run the server until Ctrl-C or SIGTERM.
    Serve(Location),
    /// Manage venues directly in the data directory's registry.
    Venue {
        #[command(subcommand)]
        command: VenueCommand,
    },
    /// Create a single-use hub enrollment code for a venue and print it.
    EnrollCode {
        /// The venue the hub will join.
        venue: VenueId,
        #[command(flatten)]
        location: Location,
        /// How long the code stays valid, e.g. 30m, 24h, 7d (default: the config's
        /// enrollment_code_ttl).
        #[arg(long)]
        ttl: Option<Ttl>,
    },
    /// Manage kiosk provisioning codes (pairings pre-approved by central) through the
    /// running server; the admin token comes from <data dir>/admin-token or
    /// TAPLINK_ADMIN_TOKEN.
    KioskCode {
        #[command(subcommand)]
        command: KioskCodeCommand,
    },
}

#[derive(Debug, Subcommand)]
enum KioskCodeCommand {
    /// Create a single-use code that pairs one kiosk of the venue without staff approval,
    /// and print it (it is shown only this once).
    Create {
        /// The kiosk's venue.
        venue: VenueId,
        /// The name the kiosk gets.
        #[arg(long)]
        name: String,
        /// Hours until the code expires (1 to 2160; default 168, a week).
        #[arg(long, value_name = "HOURS")]
        expires_in_hours: Option<u32>,
        /// The group the kiosk joins.
        #[arg(long)]
        group: Option<String>,
        /// The kiosk's own playlist (its id).
        #[arg(long)]
        playlist: Option<PlaylistId>,
        #[command(flatten)]
        location: Location,
    },
    /// List the venue's kiosk codes (never the codes themselves): id, state, expiry, name,
    /// and the kiosk each paired.
    List {
        /// The venue.
        venue: VenueId,
        #[command(flatten)]
        location: Location,
    },
    /// Revoke a kiosk code (by its id from `list`); a used one is only forgotten, its kiosk
    /// stays.
    Revoke {
        /// The venue.
        venue: VenueId,
        /// The code's id.
        id: GrantId,
        #[command(flatten)]
        location: Location,
    },
}

#[derive(Debug, Subcommand)]
enum VenueCommand {
    /// Create a venue and print its id.
    Create {
        /// The venue's display name.
        name: String,
        /// Its IANA time zone, e.g. Europe/Berlin.
        #[arg(long, value_name = "TZ")]
        timezone: String,
        #[command(flatten)]
        location: Location,
    },
    /// List venues.
    List {
        #[command(flatten)]
        location: Location,
    },
}

/// Where central's configuration is.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
struct Location {
    /// A config file (JSON).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// A data directory made by `init`; its config.json is used.
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
}

impl Location {
    fn load(&self) -> anyhow::Result<Config> {
        match (&self.config, &self.data) {
            (Some(file), _) => Ok(Config::load(file)?),
            (None, Some(dir)) => {
                let mut config = Config::load(&dir.join("config.json"))?;
                // The directory named on the command line wins over the path recorded at
                // init, so a moved data directory keeps working.
                config.data_dir = dir.clone();
                Ok(config)
            }
            (None, None) => anyhow::bail!("give --config FILE or --data DIR"),
        }
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    taplink_sync_io::private::restrict_umask();
    match cli.command {
        Command::Init {
            data,
            name,
            public_names,
        } => {
            init_logging(cli.log_format.unwrap_or_default());
            let mut opts = InitOptions::new(data);
            opts.org_name = name;
            if !public_names.is_empty() {
                opts.public_names = public_names;
            }
            let report = init(&opts, now())?;
            println!("Initialised {}", report.data_dir.display());
            println!("  org CA fingerprint:      {}", report.ca_fingerprint);
            println!("  server cert fingerprint: {}", report.server_fingerprint);
            println!(
                "  config:                  {}",
                report.config_path.display()
            );
            println!();
            println!("Admin API token (shown once; also in admin-token, mode 0600):");
            println!("  {}", report.admin_token.as_str());
            Ok(())
        }
        Command::Serve(location) => {
            let config = location.load()?;
            init_logging(cli.log_format.unwrap_or(config.log_format));
            let runtime = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
            runtime.block_on(serve(config))
        }
        Command::Venue { command } => {
            init_logging(cli.log_format.unwrap_or_default());
            match command {
                VenueCommand::Create {
                    name,
                    timezone,
                    location,
                } => {
                    let config = location.load()?;
                    let registry = Registry::open(&config.data().registry_db())?;
                    let db = taplink_sync_io::docstore::DocDb::open(&config.data().docs_db())?;
                    let docs = taplink_sync_io::docs::Documents::open(std::sync::Arc::new(db))?;
                    let new = venue::create_venue(&registry, &docs, &name, &timezone, now())?;
                    println!("{}", new.id);
                    Ok(())
                }
                VenueCommand::List { location } => {
                    let config = location.load()?;
                    let registry = Registry::open(&config.data().registry_db())?;
                    for v in registry.list_venues()? {
                        println!("{}\t{}\t{}", v.id, v.timezone, v.name);
                    }
                    Ok(())
                }
            }
        }
        Command::EnrollCode {
            venue,
            location,
            ttl,
        } => {
            init_logging(cli.log_format.unwrap_or_default());
            let config = location.load()?;
            let data = config.data();
            let registry = Registry::open(&data.registry_db())?;
            let central = Fingerprint::of(&state::load_cert(&data)?);
            let ttl = ttl.unwrap_or(config.enrollment_code_ttl).duration();
            let code = registry.create_enrollment_code(venue, ttl, now())?;
            let token = taplink_central::enroll_token::EnrollmentToken {
                secret: code.secret,
                central,
            };
            println!("{token}");
            eprintln!(
                "single use, valid until {}; give it to whoever installs the hub",
                rfc3339(code.expires_at)
            );
            Ok(())
        }
        Command::KioskCode { command } => {
            init_logging(cli.log_format.unwrap_or_default());
            let runtime = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
            runtime.block_on(kiosk_code(command))
        }
    }
}

async fn kiosk_code(command: KioskCodeCommand) -> anyhow::Result<()> {
    match command {
        KioskCodeCommand::Create {
            venue,
            name,
            expires_in_hours,
            group,
            playlist,
            location,
        } => {
            let client = AdminClient::for_config(&location.load()?)?;
            let request = CreateKioskCodeRequest {
                name,
                expires_in_hours,
                group,
                playlist,
            };
            let created = client.create_kiosk_code(venue, &request).await?;
            println!("{}", created.code);
            eprintln!(
                "kiosk code {} for {:?}: single use, valid until {}; give it to whoever sets up the kiosk (taplink-kiosk run --pair-code CODE)",
                created.id, created.name, created.expires_at
            );
        }
        KioskCodeCommand::List { venue, location } => {
            let client = AdminClient::for_config(&location.load()?)?;
            for c in client.list_kiosk_codes(venue).await?.kiosk_codes {
                let kiosk = c.kiosk.map_or_else(|| "-".to_owned(), |k| k.to_string());
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    c.id, c.state, c.expires_at, kiosk, c.name
                );
            }
        }
        KioskCodeCommand::Revoke {
            venue,
            id,
            location,
        } => {
            let client = AdminClient::for_config(&location.load()?)?;
            client.revoke_kiosk_code(venue, id).await?;
            eprintln!("kiosk code {id} revoked");
        }
    }
    Ok(())
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let central = Central::bind(config).await?;
    tokio::select! {
        () = taplink_sync_io::node::shutdown_signal() => {}
        () = central.join() => {
            tracing::warn!("central stopped by itself");
        }
    }
    central.shutdown().await?;
    Ok(())
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Now, on the system clock (the CLI's commands are nodes of their own).
fn now() -> chrono::DateTime<chrono::Utc> {
    SystemClock.now()
}
