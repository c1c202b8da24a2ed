//! Running a piece of work inside a named network namespace (`/run/netns/<name>`).
//!
//! Used to confine mDNS to a private namespace when several Taplink nodes share one machine
//! (the demo, tests): mdns-sd joins its multicast group on every interface it can see when
//! its daemon thread starts, so the daemon must be *started* from inside the namespace;
//! threads it spawns stay there.

use std::path::PathBuf;

/// Why the work could not run in the namespace.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetnsError {
    /// The namespace does not exist (or is not readable).
    #[error("network namespace {path}: {source} (create it with `ip netns add`, as root)")]
    Open {
        /// Its path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Entering it failed (it needs CAP_SYS_ADMIN).
    #[error("cannot enter network namespace {name}: {source}")]
    Enter {
        /// Its name.
        name: String,
        /// Why.
        source: nix::Error,
    },
    /// The work panicked.
    #[error("the work in network namespace {0} panicked")]
    Panicked(String),
}

/// Run `f` on a new thread that has entered network namespace `name`, and return its
/// result. Threads `f` starts remain in the namespace.
pub fn run_in_netns<R: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> R + Send + 'static,
) -> Result<R, NetnsError> {
    let path = PathBuf::from("/run/netns").join(name);
    let file = std::fs::File::open(&path).map_err(|source| NetnsError::Open { path, source })?;
    let owned = name.to_owned();
    std::thread::spawn(move || {
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|source| {
            NetnsError::Enter {
                name: owned,
                source,
            }
        })?;
        Ok(f())
    })
    .join()
    .map_err(|_| NetnsError::Panicked(name.to_owned()))?
}
