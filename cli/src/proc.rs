//! The CLI's worker processes (this binary re-run with the hidden
//! `__worker ROLE` subcommand) and waits that are always bounded. Starting
//! a worker, waiting for it, killing it and collecting what it printed,
//! and a worker's side of that (dying with its parent, a lifetime), are
//! the workspace's child-process kit's (`shmio-testkit`); what is the
//! CLI's own is the role (a subcommand), the lifetime, and how the kit's
//! failures read as the CLI's [`Error`].

use std::process::ExitStatus;
use std::time::Duration;

use shmio_cli::process::{Child, Output, Spawn};

use crate::error::{Error, Result};

/// The hidden subcommand that runs a worker role.
pub const WORKER: &str = "__worker";

/// How long any worker lives at most, whatever happens to its parent.
pub const WORKER_LIFETIME: Duration = Duration::from_secs(60);

/// How often [`wait_until`] looks.
const POLL: Duration = Duration::from_millis(1);

/// This binary as a worker in `role` with `args`, to start: stdin null,
/// stdout and stderr this process's, unless the caller says otherwise.
pub fn worker(role: &str, args: &[String]) -> Result<Spawn> {
    let this = Spawn::this_binary().map_err(|e| Error::io("cannot find this program", e))?;
    Ok(this
        .arg(WORKER)
        .arg(role)
        .args(args)
        .stdout(Output::Inherit)
        .stderr(Output::Inherit)
        .describe(format!("worker {role}")))
}

/// What every worker does first: it dies with its parent (Linux), and in
/// any case exits after [`WORKER_LIFETIME`], so none is ever left running.
/// (Not the kit's `child_setup`, which follows what the parent's
/// environment says: a worker may be a grandchild of that parent, run by
/// `shmio lock`, or be started by a test with limits of its own.)
pub fn worker_setup() {
    // Without the signal, the lifetime still bounds it.
    let _ = shmio_cli::process::die_with_parent(None);
    limit_lifetime();
}

/// Makes this worker exit after [`WORKER_LIFETIME`] (all that a worker
/// that must not die with its parent does of [`worker_setup`]).
pub fn limit_lifetime() {
    shmio_cli::process::limit_lifetime(WORKER_LIFETIME);
}

/// Polls `done` until it holds; an error naming `what` after `limit`.
/// Returns how long it took.
pub fn wait_until(what: &str, limit: Duration, done: impl FnMut() -> bool) -> Result<Duration> {
    shmio_cli::process::checked_poll_until(what, limit, POLL, done).map_err(|_| Error::GaveUp {
        what: what.to_owned(),
        limit,
    })
}

/// Waits for `child` to exit; after `limit` it is killed and this is an error.
pub fn wait_child(child: &mut Child, what: &str, limit: Duration) -> Result<ExitStatus> {
    match child.wait_within(limit)? {
        Some(status) => Ok(status),
        None => {
            let _ = child.checked_kill();
            Err(Error::Killed(Box::new(Error::GaveUp {
                what: format!("{what} to exit"),
                limit,
            })))
        }
    }
}

/// Waits (bounded) for `child`, started with its stdout collected, and
/// returns what it printed; an error if it failed.
pub fn child_output(mut child: Child, what: &str, limit: Duration) -> Result<String> {
    let status = wait_child(&mut child, what, limit)?;
    let out = child.checked_finish()?.stdout_text();
    if !status.success() {
        return Err(Error::ChildFailed {
            what: what.to_owned(),
            status,
            output: out.trim().to_owned(),
        });
    }
    Ok(out)
}
