//! CPU clocks for the benchmarks: the calling thread's and the whole process's CPU time
//! (`clock_gettime` with the CPU-time clocks), which unlike wall time do not count waiting
//! for the other users of a shared machine.

use std::time::Duration;

use rustix::time::{ClockId, clock_gettime};

/// CPU time the calling thread has used so far.
pub fn thread_time() -> Duration {
    to_duration(clock_gettime(ClockId::ThreadCPUTime))
}

/// CPU time every thread of this process has used so far.
pub fn process_time() -> Duration {
    to_duration(clock_gettime(ClockId::ProcessCPUTime))
}

fn to_duration(t: rustix::time::Timespec) -> Duration {
    // The CPU clocks start at zero and never run backwards, so both fields are non-negative.
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_time_advances_with_work_and_process_time_covers_it() {
        let before = thread_time();
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
        std::hint::black_box(x);
        let spent = thread_time() - before;
        assert!(spent > Duration::ZERO);
        assert!(process_time() >= thread_time());
    }
}
