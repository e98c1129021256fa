//! Process groups the CLI runs commands in: the command `shmio lock` runs,
//! from start to finish, and the handler command `shmio listen -- CMD` runs
//! per request. This module owns their processes, so that a command never
//! outlives the lock it runs under, nor a handler its request.
//!
//! A handler ([`handler_command`], [`kill_group`]) runs in a process group
//! of its own (Unix), out of reach of the terminal's Ctrl-C (which is
//! `listen`'s to handle), dies with a `listen` killed outright (Linux: its
//! parent-death signal), and is killed with everything it started once it
//! exits or overruns. What follows is `lock`'s.
//!
//! `run` starts the command, passes on requests to stop, and returns only
//! once the command has exited, and what it left running too:
//!
//! - Unix: the command runs in a process group of its own. SIGTERM, SIGINT,
//!   SIGHUP and SIGQUIT sent to `shmio lock` are passed on to that whole
//!   group (then SIGCONT, so that a stopped command can act on them), and
//!   `run` waits for every process left in the group, not just the command.
//!   A guard process (`shmio __worker guard`) kills the group if `shmio lock` is
//!   killed outright (SIGKILL) before it is done.
//! - Terminal (Unix): when `shmio lock` is a job of its own in the
//!   foreground of its terminal, reading it, and not writing into a pipe,
//!   the command's group gets the terminal, so that Ctrl-C, Ctrl-Z and reads
//!   reach the command as they would without `shmio lock`. Otherwise the
//!   terminal stays with `shmio lock`'s group (Ctrl-C is passed on), and is
//!   lent to the command when it stops to use it. A command stopped by
//!   Ctrl-Z stops `shmio lock`'s group too, so that the shell sees the job
//!   stop, and `fg` or `bg` resumes both.
//! - Linux, besides: the command is started with a parent-death signal
//!   (SIGKILL, set by the child-process kit's `die_with_parent` between
//!   fork and exec), so that it dies with `shmio lock` even if the guard
//!   could not; and `shmio lock` is a child subreaper, so that what the
//!   command leaves in its group becomes its child, to be waited for
//!   without polling. macOS has neither: the group is polled.
//! - Windows: `shmio lock` puts itself, before starting the command (which
//!   inherits it), in a job object that kills every process in it when its
//!   last handle closes. Killed outright, `shmio lock` closes that handle,
//!   and the command and its children go. On every other way out, `run`
//!   waits for what is left in the job, then lifts the limit. Ctrl-C and
//!   Ctrl-Break reach every process on the console, the command too:
//!   nothing is passed on.
//!
//! Out of reach: processes that leave the command's process group (a daemon
//! that calls `setsid`) or break away from the job, and, on Unix, what the
//! command started if the guard is killed along with `shmio lock`.

use std::ffi::OsString;
use std::io;
use std::process::{Command, ExitStatus};

use shmio_cli::process::Child;

use crate::error::{Error, Result};

#[cfg(unix)]
mod unix;
#[cfg(unix)]
use unix as imp;
#[cfg(windows)]
mod windows;
#[cfg(windows)]
use windows as imp;

/// Runs `program` with `args` and waits until it, and what it left running
/// in its process group (Unix) or job (Windows), have exited; returns the
/// command's exit status.
pub fn run(program: &OsString, args: &[OsString]) -> Result<ExitStatus> {
    let mut command = Command::new(program);
    command.args(args);
    imp::run(command, &program.to_string_lossy())
}

/// The guard process (`shmio __worker guard`, Unix): reads the command's
/// process group from stdin, then waits for stdin to close. Closed after
/// `done`, it just exits; closed without it, `shmio lock` died, and the
/// group is killed. (Windows has no guard: the job object does its work.)
#[cfg(unix)]
pub fn guard() -> Result {
    imp::guard()
}

/// The failure of a command that could not be started: exit 127 if it was
/// not found, 126 if it could not be run, as shells do.
fn cannot_run(program: &str, error: io::Error) -> Error {
    Error::CannotRun {
        program: program.to_owned(),
        source: error,
    }
}

/// Makes `command` a handler's: a process group of its own (Unix), and on
/// Linux a parent-death signal, so that it dies with a `listen` killed
/// outright. The signal goes with the thread that forks: the bus's dispatch
/// thread, which runs the handler, so it outlives the command.
pub fn handler_command(command: &mut Command) {
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        command.process_group(0);
    }
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        let parent = std::process::id();
        // SAFETY: the hook runs in the forked child before `exec`, and the
        // kit's `die_with_parent` makes only async-signal-safe calls
        // (prctl, getppid) and allocates nothing.
        unsafe {
            command.pre_exec(move || shmio_cli::process::die_with_parent(Some(parent)));
        }
    }
    #[cfg(not(unix))]
    let _ = command;
}

/// Kills a handler started with [`handler_command`] and its process group
/// (Unix; on Windows the handler itself).
///
/// The group's id is the handler's pid. While any process of that group
/// lives, the id is given to no other process; once the group is empty
/// (the handler reaped a moment ago, nothing left), the kill finds no
/// group, unless a new process got the handler's pid in that moment and
/// made a group of its own, a window `lock`'s supervision has as well.
pub fn kill_group(child: &mut Child) {
    #[cfg(unix)]
    if let Some(group) = unix::pid_of(child.id()) {
        let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
    }
    let _ = child.checked_kill();
}
