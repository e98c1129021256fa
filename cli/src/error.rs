//! What can go wrong in a command, and the exit code each gives. `main`
//! prints the error as one line (`shmio: error: ...`) and exits with
//! [`Error::exit_code`]; usage errors are clap's (exit 2).

use std::io;
use std::process::ExitStatus;
use std::time::Duration;

use crate::units::describe_size;

/// A command's failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The library refused or failed: its message names the object.
    #[error(transparent)]
    Shmio(#[from] shmio::Error),
    /// Reading input, writing output, or another I/O outside the library.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        source: io::Error,
    },
    /// `--offset` past the end of the mapping.
    #[error("offset {offset} is past the end of {name:?} ({})", describe_size(*.size))]
    PastTheEnd {
        name: String,
        offset: u64,
        size: u64,
    },
    /// `write`'s input is longer than the room left (it was read only up
    /// to one byte past that room).
    #[error(
        "{name:?}: the input does not fit: more than the {} left at offset {offset} ({} in all); \
         nothing was written",
        describe_size(*.room),
        describe_size(*.size)
    )]
    DoesNotFit {
        name: String,
        offset: u64,
        room: u64,
        size: u64,
    },
    /// `write` refused a span out of the mapping's bounds.
    #[error("{name:?}: {source}; nothing was written")]
    NotWritten { name: String, source: shmio::Error },
    /// `read` or `dump` asked for bytes past the end.
    #[error("{name:?}: {source}")]
    OutOfRange { name: String, source: shmio::Error },
    /// `lock` with no command.
    #[error("{what} is not one JSON value: {source}; nothing was written")]
    NotJson {
        what: String,
        source: serde_json::Error,
    },

    #[error("no record at offset {offset} of {name:?} (its length there is 0)")]
    NoRecord { name: String, offset: u64 },

    #[error("no command to run")]
    NoCommand,
    /// `lock` stopped waiting without the lock.
    #[error("gave up waiting for the lock of {name}")]
    NotLocked { name: String },
    /// `send` found the channel full for all of `--timeout`.
    #[error("{source} (full for {waited:?})")]
    Full {
        source: shmio::Error,
        waited: Duration,
    },
    /// `recv` did not get every message within `--timeout`.
    #[error("{source}: {received}{wanted} message(s) came in {waited:?}")]
    TooFew {
        source: shmio::Error,
        received: u64,
        /// ` of N`, or nothing when any number would do.
        wanted: String,
        waited: Duration,
    },
    /// The command `lock` runs could not be started: exit 127 if it was
    /// not found, 126 if it could not be run, as shells do.
    #[error("cannot run {program}: {source}")]
    CannotRun { program: String, source: io::Error },
    /// A terminating signal ended the command: exit 128 + its number, as a
    /// shell reports a process the signal killed.
    #[error("stopped by signal {0}")]
    Stopped(i32),
    /// `call`, `post` or `listeners` on a bus group nobody has joined.
    #[error("no bus group named {group:?} exists (start one with `shmio listen {group} COMMAND`)")]
    NoSuchGroup { group: String },
    /// `call` got no reply: nobody listens, or every listener passed.
    #[error("nobody answered {command:?} in {group:?}: {why}")]
    NobodyAnswered {
        command: String,
        group: String,
        why: String,
    },
    /// `call` ran out of time before a reply came.
    #[error("no answer to {command:?} in {group:?} within {timeout:?}")]
    NoAnswerInTime {
        command: String,
        group: String,
        timeout: Duration,
    },
    /// `post` found no listener to queue the command for.
    #[error("nobody listens to {command:?} in {group:?}: nothing was posted")]
    NobodyListens { command: String, group: String },
    /// A measurement failed (`bench`, the demo's round trips).
    #[error("bench: {0}")]
    Bench(shmio_cli::bench::Error),
    /// Steps of the demo did not check out.
    #[error("demo: {failed} of {steps} steps did not check out")]
    Demo { failed: usize, steps: usize },
    /// What a demo step or worker saw is not what it expected.
    #[error("{0}")]
    Check(String),
    /// A bounded wait ran out.
    #[error("gave up after {limit:?} waiting for {what}")]
    GaveUp { what: String, limit: Duration },
    /// A wait on a child process failed (the child-process kit says how:
    /// it ended early, outlived the wait and was killed, or its output
    /// stayed open).
    #[error("{0}")]
    Child(#[from] shmio_cli::process::Failure),
    /// A child process that would not exit in time (and was killed).
    #[error("{0} (killed it)")]
    Killed(Box<Error>),
    /// A worker process that failed.
    #[error("{what} failed ({status}): {output}")]
    ChildFailed {
        what: String,
        status: ExitStatus,
        output: String,
    },
    /// A worker process whose report does not parse.
    #[error("{what} printed {output:?}: {source}")]
    ChildSaid {
        what: String,
        output: String,
        source: serde_json::Error,
    },
    /// This process, as a worker, failed.
    #[error("worker {role}: {source}")]
    Worker {
        role: &'static str,
        source: Box<Error>,
    },
}

impl Error {
    /// An I/O error, saying what was being done.
    pub fn io(what: impl Into<String>, source: io::Error) -> Error {
        Error::Io {
            what: what.into(),
            source,
        }
    }

    /// The exit code this failure gives.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::CannotRun { source, .. } if source.kind() == io::ErrorKind::NotFound => 127,
            Error::CannotRun { .. } => 126,
            Error::Stopped(signal) => u8::try_from(128 + signal).unwrap_or(1),
            _ => 1,
        }
    }
}

/// A command's result: by default, the exit code it ends with.
pub type Result<T = std::process::ExitCode> = std::result::Result<T, Error>;
