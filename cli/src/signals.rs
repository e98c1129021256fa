//! Termination requests (SIGTERM, SIGINT, SIGHUP on Unix; Ctrl-C and
//! Ctrl-Break on Windows) as a flag that every long wait of a command checks.
//!
//! A command killed by the default action of a signal never runs its
//! destructors, so a channel it held would be left behind until `shmio gc`
//! (its name goes with its last holder only when that holder closes it).
//! With these installed, a waiting command notices within [`POLL`], drops
//! what it holds, and exits as a shell would report the signal (128 + its
//! number).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::error::{Error, Result};

/// How often a waiting command looks at the flag.
pub const POLL: Duration = Duration::from_millis(50);

/// The signals that ask a command to stop.
#[cfg(unix)]
pub const TERMINATING: [i32; 3] = [
    signal_hook::consts::SIGTERM,
    signal_hook::consts::SIGINT,
    signal_hook::consts::SIGHUP,
];
/// The signals that ask a command to stop (the C runtime's names for
/// Ctrl-C and Ctrl-Break).
#[cfg(windows)]
pub const TERMINATING: [i32; 2] = [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT];

/// The last terminating signal received (0: none).
fn flag() -> &'static Arc<AtomicUsize> {
    static FLAG: OnceLock<Arc<AtomicUsize>> = OnceLock::new();
    FLAG.get_or_init(|| Arc::new(AtomicUsize::new(0)))
}

/// Catches the terminating signals from now on, so waits can end cleanly;
/// but not one this process was started ignoring (see [`ignored`]).
pub fn install() -> Result<()> {
    for signal in TERMINATING {
        #[cfg(unix)]
        if ignored(signal) {
            continue;
        }
        signal_hook::flag::register_usize(signal, Arc::clone(flag()), signal as usize)
            .map_err(|e| Error::io(format!("cannot catch signal {signal}"), e))?;
    }
    Ok(())
}

/// Whether `signal` is ignored. One ignored when this process started (by
/// `nohup` for SIGHUP; for SIGINT and SIGQUIT, by a script that runs this
/// process in the background) is left so: not caught here, and not passed
/// on, so that it stays ignored for the command `lock` runs too (a caught
/// signal is reset to its default action by `exec`).
#[cfg(unix)]
pub fn ignored(signal: i32) -> bool {
    // SAFETY: with no new action, sigaction only writes the current one
    // into `current`, a zeroed (valid) sigaction.
    unsafe {
        let mut current: libc::sigaction = std::mem::zeroed();
        libc::sigaction(signal, std::ptr::null(), &mut current) == 0
            && current.sa_sigaction == libc::SIG_IGN
    }
}

/// The terminating signal received, if any.
pub fn received() -> Option<i32> {
    match flag().load(Ordering::Relaxed) {
        0 => None,
        signal => Some(signal as i32),
    }
}

/// `Err` ([`Error::Stopped`]: exit 128 + its number) once a terminating
/// signal has been received.
pub fn check() -> Result<()> {
    match received() {
        Some(signal) => Err(Error::Stopped(signal)),
        None => Ok(()),
    }
}

/// Runs `attempt` with at most [`POLL`] of the time left before `deadline`
/// (none: no limit) until it gives something other than `Ok(None)`, checking
/// for a terminating signal between attempts. `Ok(None)` at the deadline.
pub fn wait<T>(
    deadline: Option<std::time::Instant>,
    mut attempt: impl FnMut(Duration) -> Result<Option<T>>,
) -> Result<Option<T>> {
    loop {
        check()?;
        let slice = match deadline {
            None => POLL,
            Some(deadline) => {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    return Ok(None);
                }
                left.min(POLL)
            }
        };
        if let Some(done) = attempt(slice)? {
            return Ok(Some(done));
        }
    }
}
