//! How a waiter spends the moments before it sleeps: a few busy spins,
//! then yielding the CPU for a bounded time, then sleep. The channel and
//! the topic wait this way for a message, a slot or a subscriber, and so do
//! their futures (which yield to their executor rather than the OS).
//!
//! Yielding for a while rather than for a count matters for large
//! messages: a 1 MiB message takes tens of microseconds to write, so a
//! receiver that slept after a count of quick yields was asleep for every
//! message, and each publish paid for a wake-up (a futex wake, and on a
//! VM an interrupt to the other CPU). A waiter that finds nothing within
//! [`YIELDING`] sleeps, so an idle object costs its waiter that once.

use std::time::{Duration, Instant};

/// Busy spins before a waiter starts yielding.
const SPINS: u32 = 32;

/// How long a waiter yields before it sleeps.
pub(crate) const YIELDING: Duration = Duration::from_micros(50);

/// One waiter's progress from spinning to sleeping.
#[derive(Debug, Default)]
pub(crate) struct Backoff {
    spins: u32,
    yielding_since: Option<Instant>,
}

impl Backoff {
    /// A waiter that has not waited yet.
    pub(crate) fn new() -> Backoff {
        Backoff::default()
    }

    /// Whether the waiter is still in its busy spins (it reads no clock
    /// then).
    pub(crate) fn is_spinning(&self) -> bool {
        self.spins < SPINS
    }

    /// How many steps it has taken (spins and yields).
    pub(crate) fn steps(&self) -> u32 {
        self.spins
    }

    /// One step of waiting before sleep: spins or yields and returns true
    /// (the caller looks again), or returns false once the waiter has
    /// yielded for [`YIELDING`] (the caller sleeps).
    pub(crate) fn snooze(&mut self) -> bool {
        match self.pace() {
            Pace::Spin => std::hint::spin_loop(),
            Pace::Yield => std::thread::yield_now(),
            Pace::Sleep => return false,
        }
        true
    }

    /// What the next step of waiting is, counted as taken: a future spins
    /// as a thread does, yields by waking itself and giving its executor
    /// back, and sleeps through the process's waiter (`waiter.rs`).
    #[inline]
    pub(crate) fn pace(&mut self) -> Pace {
        if self.spins < SPINS {
            self.spins += 1;
            return Pace::Spin;
        }
        let now = Instant::now();
        let since = *self.yielding_since.get_or_insert(now);
        if now.duration_since(since) < YIELDING {
            self.spins = self.spins.saturating_add(1);
            return Pace::Yield;
        }
        Pace::Sleep
    }
}

/// A waiter's next step (see [`Backoff::pace`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pace {
    /// A busy spin, then look again.
    Spin,
    /// Give the CPU (or the executor) back once, then look again.
    Yield,
    /// Sleep until woken.
    Sleep,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spins_then_yields_for_a_while_then_gives_up() {
        let mut backoff = Backoff::new();
        for _ in 0..SPINS {
            assert!(backoff.is_spinning());
            assert!(backoff.snooze());
        }
        assert!(!backoff.is_spinning());
        let began = Instant::now();
        let mut yields = 0u32;
        while backoff.snooze() {
            yields += 1;
            assert!(began.elapsed() < Duration::from_secs(5), "it never gave up");
        }
        assert!(began.elapsed() >= YIELDING);
        assert!(yields >= 1);
        assert!(!backoff.snooze(), "once given up, it stays given up");
    }
}
