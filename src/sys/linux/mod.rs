//! The Linux backend: named objects are files in `/dev/shm` (`objects.rs`),
//! locks are robust pthread mutexes and waits are futexes (`sync.rs`); the
//! mapping of file descriptors is shared with macOS (`sys/unix.rs`).

mod objects;
mod sync;

pub(crate) use crate::sys::unix::{duplicate, is_handle_limit, monotonic_ms, open_file, Object};
pub(crate) use objects::{
    anonymous, describe_named, grow, list_named, open_named, reclaim_if_stale, remove_named, Lease,
    OS_NAME_MAX_BYTES, OS_NAME_PREFIX,
};
pub(crate) use sync::{wait_any, Doorbell, RobustLock, Seat, Waker, Watch, WATCH_MAX};

/// An object here is set up before its name is published: an opener never
/// waits for a creator.
pub(crate) const READY_WAIT: std::time::Duration = std::time::Duration::ZERO;
