//! The `taplink-central` command line: its clap types and every command but `serve` (which
//! `main.rs` runs around [`crate::Central`]).
//!
//! Only `init` works on a data directory by itself. Every other command asks the running
//! server through its admin API ([`crate::admin_client`]), because the server holds the
//! registry and the venue documents open and compacts them: a second process writing
//! them behind its back could lose its change, and would never sync it to a hub.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use taplink_sync_io::node::LogFormat;
use taplink_sync_proto::clock::{Clock, SystemClock};
use taplink_sync_proto::ids::{GrantId, PlaylistId, VenueId};

use crate::Config;
use crate::admin_client::{AdminClient, AdminClientError};
use crate::config::{ConfigError, Ttl};
use crate::http::{CreateEnrollmentCodeRequest, CreateKioskCodeRequest, CreateVenueRequest};
use crate::init::{InitError, InitOptions, init};

/// taplink-central: the central server of a Taplink organisation.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    /// Log format. Overrides the config file's `log_format`.
    #[arg(long, global = true, env = "TAPLINK_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a data directory: registry, org CA, server certificate, admin token, config.json.
    Init(InitArgs),
    /// Run the server until Ctrl-C or SIGTERM.
    Serve(Location),
    /// The commands that ask the running server.
    #[command(flatten)]
    Admin(AdminCommand),
    /// Check the audit log (reads the registry; works while the server runs).
    Audit {
        /// What to do with the audit log.
        #[command(subcommand)]
        command: AuditCommand,
    },
}

/// `audit` subcommands.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check that every entry of the audit log chains to the one before it: exits non-zero
    /// and names the first entry that was edited, removed or reordered.
    Verify(Location),
}

/// The commands that ask the running server's admin API, with the admin token from
/// `<data dir>/admin-token` or `TAPLINK_ADMIN_TOKEN`.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Manage venues through the running server (admin token from <data dir>/admin-token
    /// or TAPLINK_ADMIN_TOKEN).
    Venue {
        /// What to do with venues.
        #[command(subcommand)]
        command: VenueCommand,
    },
    /// Create a single-use hub enrollment code for a venue through the running server, and
    /// print it.
    EnrollCode {
        /// The venue the hub will join.
        venue: VenueId,
        /// Where central's configuration is.
        #[command(flatten)]
        location: Location,
        /// How long the code stays valid, e.g. 30m, 24h, 7d (default: the server's
        /// enrollment_code_ttl).
        #[arg(long)]
        ttl: Option<Ttl>,
    },
    /// Manage the people who sign in to central, through the running server.
    User {
        /// What to do with users.
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Manage kiosk provisioning codes (pairings pre-approved by central) through the
    /// running server.
    KioskCode {
        /// What to do with kiosk codes.
        #[command(subcommand)]
        command: KioskCodeCommand,
    },
}

/// `init`'s arguments.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The data directory to create (must not exist, or be empty).
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,
    /// The organisation's name, written into the CA certificate.
    #[arg(long, value_name = "ORG", default_value = InitOptions::DEFAULT_ORG_NAME)]
    pub name: String,
    /// A DNS name or IP address hubs use to reach central (repeat for several).
    /// Default: localhost and 127.0.0.1.
    #[arg(long = "public-name", value_name = "NAME")]
    pub public_names: Vec<String>,
}

/// `user` subcommands.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user; the password is read from standard input (one line), never from the
    /// command line.
    Create {
        /// Where central's configuration is.
        #[command(flatten)]
        location: Location,
        /// The username (unique whatever the letter case).
        #[arg(long)]
        username: String,
        /// The name shown to people (default: the username).
        #[arg(long, default_value = "")]
        display_name: String,
        /// admin, technician, store_staff or viewer.
        #[arg(long)]
        role: taplink_sync_proto::authz::Role,
        /// A venue the role applies to (repeat for several).
        #[arg(long = "venue", value_name = "ID")]
        venues: Vec<VenueId>,
        /// A venue tag the role applies to, e.g. region:north (repeat for several).
        #[arg(long = "tag", value_name = "TAG")]
        tags: Vec<taplink_sync_proto::authz::VenueTag>,
        /// Read the password from standard input (required: passwords never go on the
        /// command line, where `ps` and shell history see them).
        #[arg(long, required = true)]
        password_stdin: bool,
    },
}

/// `kiosk-code` subcommands.
#[derive(Debug, Subcommand)]
pub enum KioskCodeCommand {
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
        /// Where central's configuration is.
        #[command(flatten)]
        location: Location,
    },
    /// List the venue's kiosk codes (never the codes themselves): id, state, expiry, name,
    /// and the kiosk each paired.
    List {
        /// The venue.
        venue: VenueId,
        /// Where central's configuration is.
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
        /// Where central's configuration is.
        #[command(flatten)]
        location: Location,
    },
}

/// `venue` subcommands.
#[derive(Debug, Subcommand)]
pub enum VenueCommand {
    /// Create a venue and print its id.
    Create {
        /// The venue's display name.
        name: String,
        /// Its IANA time zone, e.g. Europe/Berlin.
        #[arg(long, value_name = "TZ")]
        timezone: String,
        /// Where central's configuration is.
        #[command(flatten)]
        location: Location,
    },
    /// List venues: id, time zone, name.
    List {
        /// Where central's configuration is.
        #[command(flatten)]
        location: Location,
    },
}

/// Where central's configuration is.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct Location {
    /// A config file (JSON).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// A data directory made by `init`; its config.json is used.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// Neither `--config` nor `--data` was given.
    #[error("give --config FILE or --data DIR")]
    NoLocation,
    /// The configuration could not be loaded.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// `init` failed.
    #[error(transparent)]
    Init(#[from] InitError),
    /// The running server could not be asked, or refused.
    #[error(transparent)]
    Admin(#[from] AdminClientError),
    /// Standard input could not be read.
    #[error("cannot read the password from standard input: {0}")]
    Stdin(#[source] std::io::Error),
    /// The async runtime could not be started.
    #[error("cannot start the tokio runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// The registry could not be opened or read.
    #[error(transparent)]
    Registry(#[from] crate::store::RegistryError),
    /// The registry database could not be opened.
    #[error(transparent)]
    Open(#[from] crate::store::OpenError),
    /// `audit verify` found the chain broken.
    #[error("the audit log is NOT intact: entry {seq}: {reason}")]
    AuditBroken {
        /// The first entry that does not chain.
        seq: i64,
        /// What is wrong.
        reason: String,
    },
}

impl Location {
    /// The configuration this location names.
    pub fn load(&self) -> Result<Config, CliError> {
        match (&self.config, &self.data) {
            (Some(file), _) => Ok(Config::load(file)?),
            (None, Some(dir)) => {
                let mut config = Config::load(&dir.join("config.json"))?;
                // The directory named on the command line wins over the path recorded at
                // init, so a moved data directory keeps working.
                config.data_dir = dir.clone();
                Ok(config)
            }
            (None, None) => Err(CliError::NoLocation),
        }
    }

    fn client(&self) -> Result<AdminClient, CliError> {
        Ok(AdminClient::for_config(&self.load()?)?)
    }
}

/// `init`: create the data directory and print what an admin needs.
pub fn run_init(args: InitArgs) -> Result<(), CliError> {
    let mut opts = InitOptions::new(args.data);
    opts.org_name = args.name;
    if !args.public_names.is_empty() {
        opts.public_names = args.public_names;
    }
    let report = init(&opts, SystemClock.now())?;
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

/// `audit verify`: walk the chain and report.
pub fn run_audit(command: AuditCommand) -> Result<(), CliError> {
    match command {
        AuditCommand::Verify(location) => {
            let config = location.load()?;
            let registry = crate::store::Registry::open(
                &crate::config::DataDir::new(&config.data_dir).registry_db(),
            )?;
            match registry.verify_audit()? {
                crate::store::AuditVerdict::Intact { entries } => {
                    println!("audit log intact: {entries} entries, each chained to the one before");
                    Ok(())
                }
                crate::store::AuditVerdict::Broken { seq, reason } => {
                    Err(CliError::AuditBroken { seq, reason })
                }
            }
        }
    }
}

/// A command that asks the running server; fails with [`AdminClientError::Unreachable`]
/// (which says how to start it) when the server is not running, touching nothing.
pub async fn run_admin(command: AdminCommand) -> Result<(), CliError> {
    match command {
        AdminCommand::Venue { command } => venue(command).await,
        AdminCommand::EnrollCode {
            venue,
            location,
            ttl,
        } => {
            let request = CreateEnrollmentCodeRequest {
                ttl: ttl.map(|t| t.to_string()),
            };
            let code = location
                .client()?
                .create_enrollment_code(venue, &request)
                .await?;
            println!("{}", code.code);
            eprintln!(
                "single use, valid until {}; give it to whoever installs the hub",
                code.expires_at
            );
            Ok(())
        }
        AdminCommand::KioskCode { command } => kiosk_code(command).await,
        AdminCommand::User { command } => user(command).await,
    }
}

async fn user(command: UserCommand) -> Result<(), CliError> {
    match command {
        UserCommand::Create {
            location,
            username,
            display_name,
            role,
            venues,
            tags,
            password_stdin: _,
        } => {
            let mut password = String::new();
            std::io::stdin()
                .read_line(&mut password)
                .map_err(CliError::Stdin)?;
            let password = password.trim_end_matches(['\n', '\r']).to_owned();
            let request = crate::http::CreateUserRequest {
                username,
                display_name,
                role,
                venues: venues.into_iter().collect(),
                tags: tags.into_iter().collect(),
                password,
            };
            let user = location.client()?.create_user(&request).await?;
            println!("{}", user.id);
            eprintln!("user {:?} created as {}", user.username, user.role);
            Ok(())
        }
    }
}

async fn venue(command: VenueCommand) -> Result<(), CliError> {
    match command {
        VenueCommand::Create {
            name,
            timezone,
            location,
        } => {
            let request = CreateVenueRequest { name, timezone };
            let venue = location.client()?.create_venue(&request).await?;
            println!("{}", venue.id);
        }
        VenueCommand::List { location } => {
            for v in location.client()?.list_venues().await?.venues {
                println!("{}\t{}\t{}", v.id, v.timezone, v.name);
            }
        }
    }
    Ok(())
}

async fn kiosk_code(command: KioskCodeCommand) -> Result<(), CliError> {
    match command {
        KioskCodeCommand::Create {
            venue,
            name,
            expires_in_hours,
            group,
            playlist,
            location,
        } => {
            let request = CreateKioskCodeRequest {
                name,
                expires_in_hours,
                group,
                playlist,
            };
            let created = location
                .client()?
                .create_kiosk_code(venue, &request)
                .await?;
            println!("{}", created.code);
            eprintln!(
                "kiosk code {} for {:?}: single use, valid until {}; give it to whoever sets up the kiosk (taplink-kiosk run --pair-code CODE)",
                created.id, created.name, created.expires_at
            );
        }
        KioskCodeCommand::List { venue, location } => {
            for c in location
                .client()?
                .list_kiosk_codes(venue)
                .await?
                .kiosk_codes
            {
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
            location.client()?.revoke_kiosk_code(venue, id).await?;
            eprintln!("kiosk code {id} revoked");
        }
    }
    Ok(())
}
