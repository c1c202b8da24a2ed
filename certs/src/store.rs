//! Files on disk: the org CA directory (`ca.pem`, `ca.key`) and private key files.
//!
//! Every file is written to a temporary file in the same directory, fsynced, then moved into
//! place, so a crash leaves either the old file or the new one. Private files are created
//! with mode 0600 from the start (never chmod-ed afterwards, which would leave a window in
//! which the secret is readable), and reading one that group or others may access is
//! refused. Unix only.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use data_encoding::HEXLOWER;

use crate::ca::OrgCa;
use crate::tls::crypto_provider;

/// Why a file could not be written or read back.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A filesystem operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done ("write", "read", "rename to", ...).
        action: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The operating system's report.
        #[source]
        source: io::Error,
    },
    /// A private file may be read by group or others.
    #[error(
        "{path} has mode {mode:04o}, so group or others can read or change it; it holds a \
         private key and must be 0600 (run `chmod 600 {path}` if this copy was never exposed, \
         otherwise revoke and replace the key)"
    )]
    InsecurePermissions {
        /// The private file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Saving would overwrite an existing CA file; a CA key is never replaced silently.
    #[error("{path} already exists; refusing to overwrite an org CA (move it away first)")]
    AlreadyExists {
        /// The existing file.
        path: PathBuf,
    },
    /// A file is larger than anything this crate writes.
    #[error("{path} is {size} bytes, more than the {limit} expected for a key or certificate")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A file's contents are not what it should hold (bad PEM, not a CA, ...).
    #[error("{path}: {reason}")]
    BadContents {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// `ca.key` is not the private key of the certificate in `ca.pem`.
    #[error("{key_path} is not the private key of the certificate in {cert_path}")]
    KeyMismatch {
        /// The certificate file.
        cert_path: PathBuf,
        /// The key file.
        key_path: PathBuf,
    },
    /// No random name could be drawn for the temporary file.
    #[error("the random source failed while naming a temporary file in {dir}")]
    Random {
        /// The directory of the file being written.
        dir: PathBuf,
    },
}

/// Keys and certificates are a few KiB; anything much larger is not ours.
const MAX_FILE_SIZE: u64 = 1 << 20;

/// File name of the CA certificate inside a CA directory.
pub const CA_CERT_FILE: &str = "ca.pem";
/// File name of the CA private key inside a CA directory.
pub const CA_KEY_FILE: &str = "ca.key";

/// Whether an existing destination file may be replaced.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Replace {
    Yes,
    No,
}

/// Write `contents` to `path` atomically with mode 0600, replacing any existing file.
pub fn write_private_file(path: &Path, contents: &[u8]) -> Result<(), StoreError> {
    write_atomic(path, contents, 0o600, Replace::Yes)
}

/// Write `contents` to `path` atomically with mode 0644, replacing any existing file.
pub fn write_public_file(path: &Path, contents: &[u8]) -> Result<(), StoreError> {
    write_atomic(path, contents, 0o644, Replace::Yes)
}

/// Read a private file, refusing it if group or others have any access to it.
pub fn read_private_file(path: &Path) -> Result<Vec<u8>, StoreError> {
    let file = File::open(path).map_err(io_err("open", path))?;
    // The mode is checked on the open handle, so the file read is the file checked.
    let meta = file.metadata().map_err(io_err("stat", path))?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(StoreError::InsecurePermissions {
            path: path.to_owned(),
            mode,
        });
    }
    read_limited(file, path, meta.len())
}

/// Read a file that holds no secret (certificates).
pub fn read_public_file(path: &Path) -> Result<Vec<u8>, StoreError> {
    let file = File::open(path).map_err(io_err("open", path))?;
    let len = file.metadata().map_err(io_err("stat", path))?.len();
    read_limited(file, path, len)
}

impl OrgCa {
    /// Save the CA into `dir` (created with mode 0700 if missing): `ca.pem` (0644) and
    /// `ca.key` (0600). Refuses to overwrite an existing `ca.pem` or `ca.key`.
    pub fn save(&self, dir: &Path) -> Result<(), StoreError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_err("create directory", dir))?;
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        for path in [&cert_path, &key_path] {
            if path.symlink_metadata().is_ok() {
                return Err(StoreError::AlreadyExists { path: path.clone() });
            }
        }
        // Key first: a directory holding a key without a certificate is refused on load
        // and never overwritten, so a crash in between loses nothing.
        write_atomic(&key_path, self.key_pem().as_bytes(), 0o600, Replace::No)?;
        write_atomic(&cert_path, self.cert_pem().as_bytes(), 0o644, Replace::No)
    }

    /// Load a CA saved by [`OrgCa::save`]. Refuses a group- or world-readable `ca.key`, a
    /// certificate that is not a CA, and a key that does not match the certificate.
    pub fn load(dir: &Path) -> Result<OrgCa, StoreError> {
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        let cert_pem = utf8(read_public_file(&cert_path)?, &cert_path)?;
        let key_pem = utf8(read_private_file(&key_path)?, &key_path)?;
        OrgCa::from_pem(&cert_pem, &key_pem).map_err(|e| match e {
            crate::ca::CaError::KeyMismatch => StoreError::KeyMismatch {
                cert_path,
                key_path,
            },
            crate::ca::CaError::BadKey { source } => StoreError::BadContents {
                path: key_path,
                reason: source.to_string(),
            },
            other => StoreError::BadContents {
                path: cert_path,
                reason: other.to_string(),
            },
        })
    }
}

fn utf8(bytes: Vec<u8>, path: &Path) -> Result<String, StoreError> {
    String::from_utf8(bytes).map_err(|_| StoreError::BadContents {
        path: path.to_owned(),
        reason: "not UTF-8 text; expected PEM".to_owned(),
    })
}

fn read_limited(file: File, path: &Path, len: u64) -> Result<Vec<u8>, StoreError> {
    if len > MAX_FILE_SIZE {
        return Err(StoreError::TooLarge {
            path: path.to_owned(),
            size: len,
            limit: MAX_FILE_SIZE,
        });
    }
    let mut buf = Vec::new();
    // The limit also holds if the file grows between the stat and the read.
    file.take(MAX_FILE_SIZE + 1)
        .read_to_end(&mut buf)
        .map_err(io_err("read", path))?;
    if buf.len() as u64 > MAX_FILE_SIZE {
        return Err(StoreError::TooLarge {
            path: path.to_owned(),
            size: buf.len() as u64,
            limit: MAX_FILE_SIZE,
        });
    }
    Ok(buf)
}

fn write_atomic(
    path: &Path,
    contents: &[u8],
    mode: u32,
    replace: Replace,
) -> Result<(), StoreError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let mut random = [0u8; 8];
    crypto_provider()
        .secure_random
        .fill(&mut random)
        .map_err(|_| StoreError::Random {
            dir: dir.to_owned(),
        })?;
    let tmp = dir.join(format!(".{name}.tmp-{}", HEXLOWER.encode(&random)));

    let result = (|| {
        // `create_new` plus the mode makes the file private from its first byte; the umask
        // can only remove permissions from it.
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .map_err(io_err("create", &tmp))?;
        file.write_all(contents).map_err(io_err("write", &tmp))?;
        file.sync_all().map_err(io_err("fsync", &tmp))?;
        drop(file);
        match replace {
            Replace::Yes => fs::rename(&tmp, path).map_err(io_err("rename to", path)),
            // A hard link fails if the destination exists, which makes "no overwrite"
            // atomic where a check followed by a rename would race.
            Replace::No => match fs::hard_link(&tmp, path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    Err(StoreError::AlreadyExists {
                        path: path.to_owned(),
                    })
                }
                Err(e) => Err(io_err("link to", path)(e)),
            },
        }
    })();
    // After a rename the temporary name is gone; after a link or a failure it must go.
    let _ = fs::remove_file(&tmp);
    result?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync directory", dir))
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_files_are_created_0600_and_replaced_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.key");
        write_private_file(&path, b"one").unwrap();
        write_private_file(&path, b"two").unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(read_private_file(&path).unwrap(), b"two");
        // No temporary files are left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn group_readable_private_file_is_refused_with_path_and_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.key");
        write_private_file(&path, b"secret").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        let err = read_private_file(&path).unwrap_err();
        assert!(matches!(
            err,
            StoreError::InsecurePermissions { mode: 0o640, .. }
        ));
        let msg = err.to_string();
        assert!(msg.contains("hub.key") && msg.contains("0640"), "{msg}");
    }

    #[test]
    fn no_replace_refuses_an_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.key");
        write_atomic(&path, b"first", 0o600, Replace::No).unwrap();
        let err = write_atomic(&path, b"second", 0o600, Replace::No).unwrap_err();
        assert!(matches!(err, StoreError::AlreadyExists { .. }));
        assert_eq!(fs::read(&path).unwrap(), b"first");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn oversized_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.pem");
        fs::write(&path, vec![b'a'; (MAX_FILE_SIZE + 1) as usize]).unwrap();
        assert!(matches!(
            read_public_file(&path),
            Err(StoreError::TooLarge { .. })
        ));
    }
}
