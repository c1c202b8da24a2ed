//! Data directories are private to the node's user: directories 0700, files 0600, from
//! creation on, and checked (and fixed, with a warning) at every start. A data directory
//! holds keys, token hashes, the venue's documents and its media; nobody else on the
//! machine has any business reading them.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode of every directory in a data directory.
pub const DIR_MODE: u32 = 0o700;
/// Mode of every file in a data directory.
pub const FILE_MODE: u32 = 0o600;

/// Make every file this process creates from now on private to its user (umask 077):
/// binaries call it first thing, so that nothing they write is ever readable by others,
/// not even for a moment.
pub fn restrict_umask() {
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
}

/// Create `path` and its missing parents as private directories.
pub fn create_dir(path: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(path)
}

/// Create `path` as an empty private file if it does not exist (before SQLite opens it:
/// SQLite gives its `-wal` and `-shm` files the database file's mode).
pub fn create_file(path: &Path) -> io::Result<()> {
    fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(FILE_MODE)
        .open(path)
        .map(drop)
}

/// Write `contents` to `path` as a private file (replacing it).
pub fn write_file(path: &Path, contents: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let mut file = fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(FILE_MODE)
        .open(path)?;
    file.set_permissions(fs::Permissions::from_mode(FILE_MODE))?;
    file.write_all(contents)?;
    file.sync_all()
}

/// One entry whose mode [`secure_tree`] changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fixed {
    /// The file or directory.
    pub path: PathBuf,
    /// Its mode before (permission bits).
    pub was: u32,
    /// Its mode now.
    pub now: u32,
}

/// Make `root` (created if missing) and everything under it private: directories 0700,
/// regular files 0600. Symbolic links are not followed. Returns what had to change, so the
/// caller can say so.
pub fn secure_tree(root: &Path) -> io::Result<Vec<Fixed>> {
    create_dir(root)?;
    let mut fixed = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        fix(&dir, DIR_MODE, &mut fixed)?;
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() {
                fix(&entry.path(), FILE_MODE, &mut fixed)?;
            }
        }
    }
    Ok(fixed)
}

fn fix(path: &Path, mode: u32, fixed: &mut Vec<Fixed>) -> io::Result<()> {
    let was = fs::symlink_metadata(path)?.permissions().mode() & 0o7777;
    if was != mode {
        fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
        fixed.push(Fixed {
            path: path.to_owned(),
            was,
            now: mode,
        });
    }
    Ok(())
}

/// [`secure_tree`], logging each change as a warning; a failure is returned.
pub fn secure_and_report(root: &Path) -> io::Result<()> {
    for f in secure_tree(root)? {
        tracing::warn!(
            path = %f.path.display(),
            was = format!("{:o}", f.was),
            now = format!("{:o}", f.now),
            "data directory entry was readable by others; made it private"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_loose_tree_is_made_private_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("data");
        fs::create_dir_all(root.join("media/ab")).unwrap();
        fs::write(root.join("hub.json"), b"{}").unwrap();
        fs::write(root.join("media/ab/blob"), b"x").unwrap();
        for p in [&root, &root.join("media"), &root.join("media/ab")] {
            fs::set_permissions(p, fs::Permissions::from_mode(0o755)).unwrap();
        }
        fs::set_permissions(root.join("hub.json"), fs::Permissions::from_mode(0o644)).unwrap();
        let fixed = secure_tree(&root).unwrap();
        assert_eq!(fixed.len(), 5, "{fixed:?}");
        assert_eq!(mode(&root), 0o700);
        assert_eq!(mode(&root.join("media/ab")), 0o700);
        assert_eq!(mode(&root.join("hub.json")), 0o600);
        assert_eq!(mode(&root.join("media/ab/blob")), 0o600);
        assert!(
            secure_tree(&root).unwrap().is_empty(),
            "nothing left to fix"
        );
    }

    #[test]
    fn new_files_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("a/b");
        create_dir(&d).unwrap();
        assert_eq!(mode(&d), 0o700);
        create_file(&d.join("db")).unwrap();
        assert_eq!(mode(&d.join("db")), 0o600);
        write_file(&d.join("c.json"), b"{}").unwrap();
        assert_eq!(mode(&d.join("c.json")), 0o600);
    }
}
