//! Pinning the parent and its children to CPUs of their own (Linux; a
//! no-op elsewhere): busy-polling round trips measured with the parent on
//! one CPU and every child on another, where the raw spin's limit moves
//! least from run to run. The children learn their CPU from
//! [`child::CPU`](crate::bench::child::CPU) and pin themselves first thing.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::bench::Result;

/// The CPU children are started on, plus one; 0 for none.
static CHILD_CPU: AtomicUsize = AtomicUsize::new(0);

/// The CPU a child started now should pin itself to, if any.
pub fn child_cpu() -> Option<usize> {
    CHILD_CPU.load(Ordering::Relaxed).checked_sub(1)
}

/// While alive, this thread runs on one CPU and children started meanwhile
/// on another; dropping it restores this thread's CPUs (children keep theirs).
pub struct Pinned {
    #[cfg(target_os = "linux")]
    before: rustix::thread::CpuSet,
}

impl Pinned {
    /// Pins this thread to the first CPU it may use and children to the
    /// second; `None` if it may use fewer than two (or not on Linux).
    pub fn apart() -> Result<Option<Pinned>> {
        #[cfg(target_os = "linux")]
        {
            use rustix::thread::{sched_getaffinity, CpuSet};
            let before = sched_getaffinity(None)?;
            let mut cpus = (0..CpuSet::MAX_CPU).filter(|&cpu| before.is_set(cpu));
            let (Some(ours), Some(theirs)) = (cpus.next(), cpus.next()) else {
                return Ok(None);
            };
            this_thread_to(ours)?;
            CHILD_CPU.store(theirs + 1, Ordering::Relaxed);
            Ok(Some(Pinned { before }))
        }
        #[cfg(not(target_os = "linux"))]
        Ok(None)
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        CHILD_CPU.store(0, Ordering::Relaxed);
        #[cfg(target_os = "linux")]
        let _ = rustix::thread::sched_setaffinity(None, &self.before);
    }
}

/// Pins this process's thread to `cpu` (a child, told by its parent).
pub fn this_thread_to(cpu: usize) -> Result<()> {
    #[cfg(target_os = "linux")]
    {
        let mut set = rustix::thread::CpuSet::new();
        set.set(cpu);
        rustix::thread::sched_setaffinity(None, &set)?;
    }
    #[cfg(not(target_os = "linux"))]
    let _ = cpu;
    Ok(())
}
