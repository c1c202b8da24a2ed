//! Child processes for the benchmarks that measure a real binary (its memory, or a server
//! against nginx): finding the workspace's binaries, starting them with their output in a
//! log file, killing them on drop, and reading their memory from `/proc`.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// The path of a workspace binary built next to this one (`target/release/<name>`).
///
/// `cargo run -p taplink-simulations` builds only `taplink-sim`; `scripts/bench.sh` builds
/// every binary first.
pub fn binary(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let dir = exe.parent().context("executable without a directory")?;
    // A test executable lives in `deps/`, the binaries one level up.
    for candidate in [dir.join(name), dir.join("..").join(name)] {
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!(
        "{name} is not built next to {}: run `cargo build --release --locked --bins` first (scripts/bench.sh does)",
        exe.display()
    )
}

/// A free TCP port on 127.0.0.1 (bound, then released: the child binds it right after).
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("no free port on 127.0.0.1")?;
    Ok(listener.local_addr()?.port())
}

/// A free loopback address.
pub fn free_addr() -> Result<SocketAddr> {
    Ok(SocketAddr::from(([127, 0, 0, 1], free_port()?)))
}

/// A running child process, killed (and reaped) on drop. Its stdout and stderr go to a
/// log file.
#[derive(Debug)]
pub struct Proc {
    child: Child,
    name: String,
    log: PathBuf,
}

impl Proc {
    /// Start `program` with `args`, logging to `log`.
    pub fn spawn(program: &Path, args: &[&str], log: &Path) -> Result<Proc> {
        Self::spawn_command(Command::new(program), args, log)
    }

    /// Start a prepared command (environment, working directory) with `args`.
    pub fn spawn_command(mut command: Command, args: &[&str], log: &Path) -> Result<Proc> {
        let out = std::fs::File::create(log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let name = command.get_program().to_string_lossy().into_owned();
        let child = command
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        Ok(Proc {
            child,
            name,
            log: log.to_owned(),
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fail if the process has exited, quoting the end of its log.
    pub fn check_running(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: String = log
                .lines()
                .rev()
                .take(15)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n");
            bail!("{} exited with {status}; its log ends:\n{tail}", self.name);
        }
        Ok(())
    }

    /// Its memory now, from `/proc/<pid>/status`.
    pub fn memory(&self) -> Result<Memory> {
        Memory::of(self.pid())
    }
}

/// How long a process has to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);

impl Drop for Proc {
    /// SIGTERM first, so that a process with children of its own (nginx's master and its
    /// workers) takes them along; SIGKILL if it is still there after [`STOP_GRACE`].
    fn drop(&mut self) {
        let pid = i32::try_from(self.pid())
            .ok()
            .and_then(rustix::process::Pid::from_raw);
        if let Some(pid) = pid
            && rustix::process::kill_process(pid, rustix::process::Signal::TERM).is_ok()
        {
            let deadline = super::clock::now() + STOP_GRACE;
            while super::clock::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A process's memory, from `/proc/<pid>/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    /// Resident set size now, in bytes (`VmRSS`).
    pub rss: u64,
    /// Peak resident set size, in bytes (`VmHWM`).
    pub peak: u64,
}

impl Memory {
    /// Read the memory of process `pid`.
    pub fn of(pid: u32) -> Result<Memory> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .with_context(|| format!("cannot read /proc/{pid}/status"))?;
        let field = |name: &str| -> Result<u64> {
            let line = status
                .lines()
                .find(|l| l.starts_with(name))
                .with_context(|| format!("no {name} in /proc/{pid}/status"))?;
            let kib: u64 = line[name.len()..]
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .with_context(|| format!("bad {name} line: {line}"))?;
            Ok(kib * 1024)
        };
        Ok(Memory {
            rss: field("VmRSS:")?,
            peak: field("VmHWM:")?,
        })
    }
}

/// CPU time (user + system) process `pid` has used, from `/proc/<pid>/stat`.
pub fn cpu_time(pid: u32) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("cannot read /proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces; the fields after it do not.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .with_context(|| format!("bad /proc/{pid}/stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of the whole line (utime, stime) are 12 and 13 after the name.
    let ticks = |i: usize| -> Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .with_context(|| format!("bad /proc/{pid}/stat"))
    };
    let per_second = rustix::param::clock_ticks_per_second();
    Ok(Duration::from_nanos(
        (ticks(11)? + ticks(12)?) * 1_000_000_000 / per_second,
    ))
}

/// The children of process `pid` (e.g. nginx's workers).
pub fn children(pid: u32) -> Result<Vec<u32>> {
    let list = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .with_context(|| format!("cannot read the children of process {pid}"))?;
    Ok(list
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect())
}

/// `bytes` as MiB with one decimal.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// Wait until `check` returns `Some`, polling every 50 ms, for at most `limit`.
pub async fn until<T>(
    limit: Duration,
    what: &str,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> Result<T> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return Ok(value);
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("{what}: not within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
