//! The macOS backend: named objects are POSIX shared-memory objects with a
//! companion lease file (`objects.rs`), locks are `flock`s on lock files and
//! waits use `os_sync_wait_on_address` or polling (`sync.rs`); the mapping
//! of file descriptors is shared with Linux (`sys/unix.rs`). Built and
//! linted for `x86_64-apple-darwin`, never run here.

mod objects;
mod sync;

pub(crate) use crate::sys::unix::{duplicate, is_handle_limit, monotonic_ms, open_file, Object};
pub(crate) use crate::sys::unlisted::{describe_named, list_named, reclaim_if_stale};
pub(crate) use objects::{
    anonymous, grow, open_named, remove_named, Lease, OS_NAME_MAX_BYTES, OS_NAME_PREFIX,
};
pub(crate) use sync::{RobustLock, Seat, Waker};

/// A name is public from `shm_open(O_CREAT)` on, before its creator has set
/// the object up: an opener waits this long at most for it.
pub(crate) const READY_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
