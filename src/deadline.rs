//! Deadlines: a timeout turned into the instant it runs out, in one place,
//! so that every wait of the crate treats a timeout too long for the clock
//! (`Duration::MAX`, Python's `float("inf")` turned into a `Duration`) the
//! same way: as good as forever, never an overflow or a panic.

use std::time::{Duration, Instant};

/// How far past `now` a timeout too long for the clock ends: 136 years,
/// later than any process lives, and far from `Instant`'s limits.
const FOREVER: Duration = Duration::from_secs(1 << 32);

/// `timeout` from now.
pub(crate) fn after(timeout: Duration) -> Instant {
    later(Instant::now(), timeout)
}

/// `timeout` after `now`.
pub(crate) fn later(now: Instant, timeout: Duration) -> Instant {
    now.checked_add(timeout.min(FOREVER))
        .or_else(|| now.checked_add(FOREVER))
        .unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timeout_too_long_for_the_clock_is_as_good_as_forever() {
        let now = Instant::now();
        assert_eq!(later(now, Duration::MAX), later(now, FOREVER));
        assert!(later(now, Duration::MAX) > now + Duration::from_secs(100 * 365 * 86_400));
        assert_eq!(
            later(now, Duration::from_millis(5)),
            now + Duration::from_millis(5)
        );
    }
}
