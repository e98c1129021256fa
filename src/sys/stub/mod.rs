//! The stub backend, for every platform shmio does not support (memmap2's
//! `stub.rs` is the model): it compiles, and every call that would reach the
//! OS is [`crate::Error::Unsupported`]. Its objects, locks and wakers can
//! never exist: each is built on an uninhabited type.

mod objects;
mod sync;

pub(crate) use crate::sys::unlisted::{describe_named, list_named, reclaim_if_stale};
#[cfg(unix)]
pub(crate) use objects::duplicate;
pub(crate) use objects::{
    anonymous, is_handle_limit, open_file, open_named, remove_named, Object, OS_NAME_MAX_BYTES,
    OS_NAME_PREFIX,
};
pub(crate) use sync::{RobustLock, Seat, Waker};

/// No clock shared between processes here: 0, "unknown", which asks
/// nothing to be skipped.
pub(crate) fn monotonic_ms() -> u64 {
    0
}

/// Nothing is ever published here, so there is nothing to wait for.
pub(crate) const READY_WAIT: std::time::Duration = std::time::Duration::ZERO;

/// What an object, a lock or a waker of this backend holds: nothing can.
#[derive(Clone, Copy)]
pub(crate) enum Never {}

/// The error of every call that would need the OS.
fn unsupported<T>() -> crate::Result<T> {
    Err(crate::Error::Unsupported {
        what: "shared memory on this platform (shmio supports Linux, Windows and macOS)",
    })
}
