//! `taplink-central init`: create a data directory with a registry, an org CA, central's
//! server certificate, a bootstrap admin token and a default config.
//!
//! Everything is built in a hidden sibling directory and renamed into place at the end,
//! so an interrupted init leaves no half-made data directory behind, and two inits racing
//! for one path cannot both succeed.

use std::fs::{self, DirBuilder, File};
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use data_encoding::HEXLOWER;
use rand::RngCore;
use taplink_certs::offset_date_time;
use taplink_certs::store::{write_private_file, write_public_file};
use taplink_certs::{
    CaError, Fingerprint, IssueCertError, OrgCa, StoreError, Validity, ValidityError,
};
use time::Duration;

use crate::config::{Config, DataDir};
use crate::store::{AdminToken, OpenError, Registry, RegistryError};

/// How long the org CA is valid.
pub const CA_LIFETIME: Duration = Duration::days(3652);
/// How long central's server certificate is valid.
pub const SERVER_CERT_LIFETIME: Duration = Duration::days(365);
/// The name of the admin token `init` creates.
pub const BOOTSTRAP_TOKEN_NAME: &str = "bootstrap";

/// Why `init` failed. Nothing is left at the data directory's path when it fails.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InitError {
    /// Something is already at the path.
    #[error(
        "{path} already exists and is not an empty directory; refusing to initialise over \
         existing data (choose another path, or move it away if you really mean to start over)"
    )]
    AlreadyExists {
        /// The data directory path.
        path: PathBuf,
    },
    /// No public name was given for central's certificate.
    #[error("give at least one public name (DNS name or IP address) for central's certificate")]
    NoPublicNames,
    /// A public name is unusable.
    #[error("public name {name:?} is unusable: it must be a DNS name or IP address without spaces")]
    BadPublicName {
        /// The name.
        name: String,
    },
    /// A file system operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path concerned.
        path: PathBuf,
        /// The operating system's report.
        #[source]
        source: io::Error,
    },
    /// The org CA could not be created (e.g. an unusable org name).
    #[error("could not create the org CA: {0}")]
    Ca(#[from] CaError),
    /// A validity period could not be computed from `now`.
    #[error("bad certificate validity: {0}")]
    Validity(#[from] ValidityError),
    /// Central's server certificate could not be issued (e.g. a bad DNS name).
    #[error("could not issue central's server certificate: {0}")]
    ServerCert(#[from] IssueCertError),
    /// A key, certificate or token file could not be written.
    #[error(transparent)]
    Write(#[from] StoreError),
    /// The registry database could not be created.
    #[error(transparent)]
    OpenRegistry(#[from] OpenError),
    /// The registry refused the bootstrap token.
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

/// What to initialise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitOptions {
    /// The data directory to create. It must not exist, or be an empty directory.
    pub data_dir: PathBuf,
    /// The organisation's name, in the CA certificate (1 to 49 characters).
    pub org_name: String,
    /// DNS names and IP addresses central's certificate is valid for.
    pub public_names: Vec<String>,
}

impl InitOptions {
    /// The default organisation name.
    pub const DEFAULT_ORG_NAME: &'static str = "Taplink";

    /// Initialise `data_dir` with the default org name and public names.
    pub fn new(data_dir: impl Into<PathBuf>) -> InitOptions {
        let data_dir = data_dir.into();
        InitOptions {
            public_names: Config::new(&data_dir).public_names,
            data_dir,
            org_name: Self::DEFAULT_ORG_NAME.to_owned(),
        }
    }
}

/// What `init` created.
#[derive(Debug)]
pub struct InitReport {
    /// The data directory (absolute).
    pub data_dir: PathBuf,
    /// The config file written.
    pub config_path: PathBuf,
    /// The org CA's fingerprint.
    pub ca_fingerprint: Fingerprint,
    /// Central's server certificate fingerprint (what enrollment codes pin).
    pub server_fingerprint: Fingerprint,
    /// The bootstrap admin token, also in `<data dir>/admin-token` (0600).
    pub admin_token: AdminToken,
}

/// Create a data directory; see the module docs. `now` dates the certificates.
pub fn init(opts: &InitOptions, now: DateTime<Utc>) -> Result<InitReport, InitError> {
    if opts.public_names.is_empty() {
        return Err(InitError::NoPublicNames);
    }
    if let Some(name) = opts
        .public_names
        .iter()
        .find(|n| n.is_empty() || n.chars().any(|c| c.is_whitespace() || c.is_control()))
    {
        return Err(InitError::BadPublicName {
            name: name.chars().take(80).collect(),
        });
    }
    let target = std::path::absolute(&opts.data_dir).map_err(io_err("resolve", &opts.data_dir))?;
    refuse_existing(&target)?;
    let parent = target.parent().ok_or_else(|| InitError::AlreadyExists {
        path: target.clone(),
    })?;
    fs::create_dir_all(parent).map_err(io_err("create directory", parent))?;

    let mut random = [0u8; 8];
    rand::rng().fill_bytes(&mut random);
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let staging = parent.join(format!(".{name}.init-{}", HEXLOWER.encode(&random)));
    DirBuilder::new()
        .mode(0o700)
        .create(&staging)
        .map_err(io_err("create directory", &staging))?;

    let result = populate(&staging, &target, opts, now)
        .and_then(|report| {
            // Everything in the data directory is private (certificates too): nothing in it
            // is anyone else's business, and the staging directory (0700) kept it so while
            // it was written.
            taplink_sync_io::private::secure_tree(&staging)
                .map_err(io_err("make private", &staging))?;
            Ok(report)
        })
        .and_then(|report| {
            fs::rename(&staging, &target).map_err(|source| {
                if matches!(
                    source.kind(),
                    io::ErrorKind::DirectoryNotEmpty | io::ErrorKind::AlreadyExists
                ) {
                    InitError::AlreadyExists {
                        path: target.clone(),
                    }
                } else {
                    io_err("rename into place", &target)(source)
                }
            })?;
            Ok(report)
        });
    if result.is_err() {
        // Best effort: the staging directory is hidden and holds nothing anyone relies on.
        let _ = fs::remove_dir_all(&staging);
        return result;
    }
    File::open(parent)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync directory", parent))?;
    result
}

/// Refuse anything at `path` except an empty directory (systemd's `StateDirectory=` and
/// `install -d` create one before the first run).
fn refuse_existing(path: &Path) -> Result<(), InitError> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("inspect", path)(e)),
        Ok(meta) if meta.is_dir() => {
            let mut entries = fs::read_dir(path).map_err(io_err("list", path))?;
            if entries.next().is_none() {
                Ok(())
            } else {
                Err(InitError::AlreadyExists {
                    path: path.to_owned(),
                })
            }
        }
        Ok(_) => Err(InitError::AlreadyExists {
            path: path.to_owned(),
        }),
    }
}

/// Fill `dir` (the staging directory) with everything a data directory at `final_root` holds.
fn populate(
    dir: &Path,
    final_root: &Path,
    opts: &InitOptions,
    now: DateTime<Utc>,
) -> Result<InitReport, InitError> {
    let staged = DataDir::new(dir);
    let mut config = Config::new(final_root);
    config.public_names = opts.public_names.clone();

    let registry = Registry::create(&staged.registry_db())?;
    let admin_token = registry.bootstrap_admin_token(BOOTSTRAP_TOKEN_NAME, now)?;
    // Closing the only connection checkpoints the WAL into the database file.
    drop(registry);

    let ca = OrgCa::create(
        &opts.org_name,
        Validity::new(offset_date_time(now), CA_LIFETIME)?,
    )?;
    ca.save(&staged.ca_dir())?;
    let server = ca.issue_server_cert(
        &config.server_sans(),
        Validity::new(offset_date_time(now), SERVER_CERT_LIFETIME)?,
    )?;
    write_private_file(&staged.server_key(), server.key.pem().as_bytes())?;
    write_public_file(&staged.server_cert(), server.cert.pem().as_bytes())?;
    write_private_file(
        &staged.admin_token(),
        format!("{}\n", admin_token.as_str()).as_bytes(),
    )?;
    write_public_file(&staged.config(), config.to_json_pretty().as_bytes())?;

    let data = config.data();
    Ok(InitReport {
        config_path: data.config(),
        data_dir: final_root.to_owned(),
        ca_fingerprint: ca.fingerprint(),
        server_fingerprint: server.cert.fingerprint(),
        admin_token,
    })
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> InitError + 'a {
    move |source| InitError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}
