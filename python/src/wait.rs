//! Blocking waits that Ctrl-C can interrupt: each wait is a loop of short
//! slices run with the GIL released, with `check_signals` between them, so
//! a SIGINT becomes `KeyboardInterrupt` within one slice and the object is
//! left as it was.

use std::time::{Duration, Instant};

use pyo3::prelude::*;

use crate::errors::{invalid, IntoPyResult};

/// The longest one slice of a wait lasts without looking at signals.
pub(crate) const SLICE: Duration = Duration::from_millis(50);

/// When a wait of `timeout` seconds started now ends: None (for ever) for
/// None, `inf`, or more seconds than the clock reaches.
pub(crate) fn deadline(py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<Instant>> {
    match timeout {
        None => Ok(None),
        Some(seconds) if seconds.is_nan() || seconds < 0.0 => Err(invalid(
            py,
            format!("timeout must be None or >= 0 seconds, not {seconds}"),
        )),
        Some(seconds) => Ok(Duration::try_from_secs_f64(seconds)
            .ok()
            .and_then(|duration| Instant::now().checked_add(duration))),
    }
}

/// Calls `attempt(slice)` with the GIL released until it gives `Some`, the
/// deadline passes (`None`), it fails, or a signal handler raises.
/// `attempt` waits at most `slice` itself.
pub(crate) fn sliced<T: Send>(
    py: Python<'_>,
    deadline: Option<Instant>,
    attempt: impl FnMut(Duration) -> shmio::Result<Option<T>> + Send,
) -> PyResult<Option<T>> {
    sliced_raw(py, deadline, attempt)?.py(py)
}

/// As `sliced`, with the attempt's failure left a Rust error (the outer
/// result is a signal handler's exception), so that a caller can act on
/// one kind of failure (an inherited handle) before it becomes Python's.
pub(crate) fn sliced_raw<T: Send>(
    py: Python<'_>,
    deadline: Option<Instant>,
    mut attempt: impl FnMut(Duration) -> shmio::Result<Option<T>> + Send,
) -> PyResult<shmio::Result<Option<T>>> {
    loop {
        let slice = match deadline {
            None => SLICE,
            Some(deadline) => deadline
                .saturating_duration_since(Instant::now())
                .min(SLICE),
        };
        match py.detach(|| attempt(slice)) {
            Ok(Some(found)) => return Ok(Ok(Some(found))),
            Ok(None) => {}
            Err(error) => return Ok(Err(error)),
        }
        py.check_signals()?;
        if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            return Ok(Ok(None));
        }
    }
}
