//! Cross-process synchronisation: [`NamedMutex`] (which survives a crashed
//! holder) and [`NamedEvent`].
//!
//! Both are named like mappings and live like them: the last handle to close
//! removes the name. How each platform does it is in `sys`: a robust
//! process-shared pthread mutex and a futex word in a small named segment on
//! Linux, kernel mutex and event objects on Windows, `flock` and polling on
//! macOS.

mod event;
mod mutex;

pub use event::{EventMode, EventOptions, NamedEvent};
pub use mutex::{MutexGuard, MutexOptions, NamedMutex};
