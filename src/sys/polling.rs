//! Watching many words where the platform cannot sleep on several at once
//! (macOS, and the stub's platforms): the waiter thread naps on a condition
//! variable, woken early by its doorbell, and looks at the words between
//! naps. A backend without a many-word wait re-exports these.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use crate::error::Result;

/// How many words one [`wait_any`] watches: any number (they are polled).
pub(crate) const WATCH_MAX: usize = usize::MAX;

/// How long [`wait_any`] naps between looks while there are words to watch.
const POLL_NAP: Duration = Duration::from_millis(1);

/// The waiter thread's own doorbell: a count under a mutex, and the
/// condition variable it naps on.
pub(crate) struct Doorbell {
    rings: Mutex<u32>,
    rung: Condvar,
}

impl Doorbell {
    /// A doorbell nobody rang yet.
    pub(crate) fn new() -> Result<Doorbell> {
        Ok(Doorbell {
            rings: Mutex::new(0),
            rung: Condvar::new(),
        })
    }

    /// The count of rings so far: pass it to [`wait_any`].
    pub(crate) fn seen(&self) -> u32 {
        *crate::unpoisoned::lock(&self.rings)
    }

    /// Rings: a [`wait_any`] napping since an earlier [`seen`](Doorbell::seen) returns.
    pub(crate) fn ring(&self) {
        let mut rings = crate::unpoisoned::lock(&self.rings);
        *rings = rings.wrapping_add(1);
        self.rung.notify_all();
    }
}

/// A word [`wait_any`] watches: the caller's look after it notices a
/// change (within [`POLL_NAP`]).
pub(crate) struct Watch<'a> {
    pub(crate) word: &'a AtomicU32,
    pub(crate) expected: u32,
    /// Wakes lone sleepers on the word; a poller needs none.
    #[allow(dead_code)]
    pub(crate) bell: &'a super::Waker,
}

/// Naps until the doorbell rings past `seen` or `timeout` passes, at most
/// [`POLL_NAP`] while there are words to watch; returns at once if one of
/// them changed already.
pub(crate) fn wait_any(
    doorbell: &Doorbell,
    seen: u32,
    watches: &[Watch<'_>],
    timeout: Option<Duration>,
) {
    let nap = match (watches.is_empty(), timeout) {
        (true, timeout) => timeout,
        (false, Some(timeout)) => Some(timeout.min(POLL_NAP)),
        (false, None) => Some(POLL_NAP),
    };
    if watches
        .iter()
        .any(|watch| watch.word.load(Ordering::SeqCst) != watch.expected)
    {
        return;
    }
    let rings = crate::unpoisoned::lock(&doorbell.rings);
    if *rings != seen {
        return;
    }
    match nap {
        Some(nap) => drop(doorbell.rung.wait_timeout(rings, nap)),
        None => drop(doorbell.rung.wait(rings)),
    }
}
