//! The Windows backend: named objects are sections (`objects.rs`), locks
//! and doorbells are named kernel mutexes and events (`sync.rs`).

mod objects;
mod sync;

pub(crate) use crate::sys::unlisted::{describe_named, list_named, reclaim_if_stale};
pub(crate) use objects::{
    anonymous, duplicate, is_handle_limit, open_file, open_named, remove_named, Object,
    OS_NAME_MAX_BYTES, OS_NAME_PREFIX,
};
pub(crate) use sync::{wait_any, Doorbell, RobustLock, Seat, Waker, Watch, WATCH_MAX};

/// Milliseconds since the system started (`GetTickCount64`): the same for
/// every process of the machine, so one process can tell another when
/// something is due.
pub(crate) fn monotonic_ms() -> u64 {
    // SAFETY: takes nothing, returns a count.
    unsafe { windows_sys::Win32::System::SystemInformation::GetTickCount64() }
}

/// A section's name is public from `CreateFileMappingW` on, before its
/// creator has set it up: an opener waits this long at most for it.
pub(crate) const READY_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
