//! The benchmarks' monotonic clock: real elapsed time, which is what a benchmark measures
//! (tokio's clock would do too, but a benchmark must never run on a paused one).
//!
//! Everything else reads monotonic time with `tokio::time::Instant::now()` and the wall
//! clock through a node's `taplink_sync_proto::clock::Clock`; see that module.

use std::time::Instant;

/// Now, on the system's monotonic clock.
#[allow(
    clippy::disallowed_methods,
    reason = "benchmarks measure real elapsed time; this is their one reading of it"
)]
pub fn now() -> Instant {
    Instant::now()
}
