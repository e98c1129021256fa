//! `shmio lock NAME -- CMD`: runs CMD while holding the mutex of the
//! mapping NAME, and exits with its exit code. CMD never outlives the lock:
//! `supervise` owns its processes.

use std::ffi::OsString;
use std::process::ExitStatus;

use shmio::NamedMutex;

use super::exactly;
use crate::cli::Lock;
use crate::error::{Error, Result};
use crate::{owners, signals, supervise};

pub fn run(args: Lock) -> Result {
    let Lock {
        name,
        sharing,
        command,
    } = args;
    let name = name.as_str();
    let (program, args) = command.split_first().ok_or(Error::NoCommand)?;
    // The very mutex `Mapping::open(name)?.lock()` takes.
    let mut options = NamedMutex::options();
    if let Some(permissions) = sharing.permissions {
        options.permissions(exactly(permissions));
    }
    owners::trust(
        &mut options,
        &sharing.trusting.allow_owner,
        shmio::MutexOptions::allow_owner,
        shmio::MutexOptions::allow_any_owner,
    );
    let mutex = options.create_or_open_for_mapping(name)?;
    let status = run_locked(&mutex, name, program, args);
    // `exit` runs no destructors: close the mutex first (its name goes
    // with its last holder).
    drop(mutex);
    std::process::exit(exit_code(status?));
}

/// Takes `mutex` (the lock of `name`), runs `program` with `args`, and
/// unlocks once it has exited.
fn run_locked(
    mutex: &NamedMutex,
    name: &str,
    program: &OsString,
    args: &[OsString],
) -> Result<ExitStatus> {
    // In slices, so that a signal while waiting ends the wait cleanly.
    let locked = signals::wait(None, |slice| match mutex.lock_to_repair_timeout(slice) {
        Ok(guard) => Ok(Some(guard)),
        Err(error) if error.is_timed_out() => Ok(None),
        Err(error) => Err(error.into()),
    })?;
    let Some(mut guard) = locked else {
        return Err(Error::NotLocked {
            name: name.to_owned(),
        });
    };
    if guard.owner_died() {
        eprintln!("shmio: the previous owner of {name} died holding it");
    }
    // The command and what it leaves in its group have exited when this
    // returns (see `supervise`): only then is the lock given up. A command
    // that succeeded under a dead owner's lock is taken as its repair.
    let status = supervise::run(program, args);
    if guard.owner_died() && status.as_ref().is_ok_and(ExitStatus::success) {
        guard.mark_consistent();
    }
    drop(guard);
    status
}

/// The exit code a shell would give: the command's, or 128 + its signal.
fn exit_code(status: ExitStatus) -> i32 {
    if let Some(code) = status.code() {
        return code;
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return 128 + signal;
        }
    }
    1
}
