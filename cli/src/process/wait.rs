//! Waits that are always bounded: for a condition another process makes
//! true, and for a call that might hang.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::child::Failure;

/// Spins (yielding) until `done()` holds; a panic naming `what` after
/// `limit`. For a condition another process makes true in shared memory,
/// looked at as often as the scheduler allows (a test that kills a child
/// when its count reaches a target kills it there, not some time later).
#[track_caller]
pub fn wait_until(what: &str, limit: Duration, done: impl FnMut() -> bool) {
    if let Err(failure) = checked_wait_until(what, limit, done) {
        panic!("{failure}");
    }
}

/// [`wait_until`], returning the failure; `Ok` says how long it took.
pub fn checked_wait_until(
    what: &str,
    limit: Duration,
    mut done: impl FnMut() -> bool,
) -> Result<Duration, Failure> {
    let start = Instant::now();
    while !done() {
        if start.elapsed() > limit {
            return Err(Failure::new(format!(
                "timed out after {limit:?} waiting for {what}"
            )));
        }
        std::thread::yield_now();
    }
    Ok(start.elapsed())
}

/// Looks at `done()` every `every` until it holds; a panic naming `what`
/// after `limit`. For a condition that is costly to look at (another
/// process to run, a name to open), where [`wait_until`] would spin.
#[track_caller]
pub fn poll_until(what: &str, limit: Duration, every: Duration, done: impl FnMut() -> bool) {
    if let Err(failure) = checked_poll_until(what, limit, every, done) {
        panic!("{failure}");
    }
}

/// [`poll_until`], returning the failure; `Ok` says how long it took.
pub fn checked_poll_until(
    what: &str,
    limit: Duration,
    every: Duration,
    mut done: impl FnMut() -> bool,
) -> Result<Duration, Failure> {
    let start = Instant::now();
    while !done() {
        if start.elapsed() >= limit {
            return Err(Failure::new(format!(
                "timed out after {limit:?} waiting for {what}"
            )));
        }
        std::thread::sleep(every);
    }
    Ok(start.elapsed())
}

/// Runs `call` on a thread of its own and returns what it returns; a panic
/// naming `what` if it has not returned after `limit` (the thread is left
/// behind), and `call`'s own panic if it panicked. For a call that must not
/// hang.
#[track_caller]
pub fn within<T: Send + 'static>(
    what: &str,
    limit: Duration,
    call: impl FnOnce() -> T + Send + 'static,
) -> T {
    match run_within(what, limit, call) {
        Ok(value) => value,
        Err(Within::Panicked(panic)) => std::panic::resume_unwind(panic),
        Err(Within::Hung(failure)) => panic!("{failure}"),
    }
}

/// [`within`], returning the failure: `call` hung, or panicked (its panic
/// is then on stderr, as a thread's is).
pub fn checked_within<T: Send + 'static>(
    what: &str,
    limit: Duration,
    call: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Failure> {
    run_within(what, limit, call).map_err(|error| match error {
        Within::Hung(failure) => failure,
        Within::Panicked(_) => Failure::new(format!("{what} panicked")),
    })
}

/// How a call on a thread of its own went wrong.
enum Within {
    Hung(Failure),
    Panicked(Box<dyn std::any::Any + Send>),
}

fn run_within<T: Send + 'static>(
    what: &str,
    limit: Duration,
    call: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Within> {
    let (done, result) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        let _ = done.send(call());
    });
    match result.recv_timeout(limit) {
        Ok(value) => {
            let _ = worker.join();
            Ok(value)
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => match worker.join() {
            Err(panic) => Err(Within::Panicked(panic)),
            Ok(()) => unreachable!("{what}: the call returned without a value"),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => Err(Within::Hung(Failure::new(format!(
            "{what} hung (still running after {limit:?})"
        )))),
    }
}
