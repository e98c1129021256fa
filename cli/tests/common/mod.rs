//! The CLI tests' side of shmio-testkit: `shmio` run as a child with every
//! wait bounded by [`LIMIT`], what it printed checked, unique names, checks
//! on `/dev/shm`.

#![allow(dead_code)]

use std::time::Duration;

// What the CLI tests use of the kit (each file a part of it).
#[allow(unused_imports)]
pub use shmio_testkit::{poll_until, Child, Input, Output, Spawn};

pub const SHMIO: &str = env!("CARGO_BIN_EXE_shmio");
/// The longest any one command may take (Wine is slow to start processes).
pub const LIMIT: Duration = Duration::from_secs(120);
/// How often a condition that takes running `shmio` (or opening a name) to
/// look at is looked at.
pub const POLL: Duration = Duration::from_millis(10);

/// Tests that make stale names or run `gc` (which removes every stale name)
/// take turns.
#[cfg(target_os = "linux")]
pub static STALE: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[cfg(target_os = "linux")]
pub fn stale_turn() -> std::sync::MutexGuard<'static, ()> {
    STALE.lock().unwrap_or_else(|e| e.into_inner())
}

/// A name no other test uses: `shmio-cli-TAG-PID-N`.
pub fn unique(tag: &str) -> String {
    shmio_testkit::unique("shmio-cli", tag)
}

/// `shmio ARGS`, to start: stdin null, stdout and stderr collected, every
/// wait on it bounded by [`LIMIT`].
pub fn command(args: &[&str]) -> Spawn {
    Spawn::program(SHMIO)
        .args(args)
        .describe(format!("shmio {args:?}"))
        .limit(LIMIT)
}

pub struct Run {
    pub status: std::process::ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl From<shmio_testkit::Finished> for Run {
    fn from(finished: shmio_testkit::Finished) -> Run {
        Run {
            stderr: finished.stderr_text(),
            status: finished.status,
            stdout: finished.stdout,
        }
    }
}

impl Run {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    #[track_caller]
    pub fn ok(self) -> Run {
        assert!(
            self.status.success(),
            "expected success, got {:?}\nstdout: {}\nstderr: {}",
            self.status,
            self.text(),
            self.stderr
        );
        self
    }

    /// Exit 1 with one `shmio: error:` line that mentions `about`.
    #[track_caller]
    pub fn error(self, about: &str) -> Run {
        assert_eq!(
            self.code(),
            Some(1),
            "expected exit 1; stdout: {}; stderr: {}",
            self.text(),
            self.stderr
        );
        assert!(
            self.stderr.starts_with("shmio: error: "),
            "stderr: {:?}",
            self.stderr
        );
        assert_eq!(
            self.stderr.trim_end().lines().count(),
            1,
            "{:?}",
            self.stderr
        );
        assert!(
            self.stderr.contains(about),
            "stderr {:?} should mention {about:?}",
            self.stderr
        );
        self
    }
}

/// Runs `shmio ARGS` with `input` on stdin, bounded by `limit`.
#[track_caller]
pub fn shmio_with(args: &[&str], input: &[u8], limit: Duration) -> Run {
    command(args).input(input).limit(limit).run().into()
}

#[track_caller]
pub fn shmio(args: &[&str]) -> Run {
    shmio_with(args, b"", LIMIT)
}

/// Starts `shmio ARGS` (stdin a pipe) and waits, bounded, for its first
/// line, which must be `says`: the worker or command is ready. It runs on
/// until its stdin closes or it is killed.
#[track_caller]
pub fn start_ready(args: &[&str], says: &str) -> Child {
    let mut child = command(args).stdin(Input::Pipe).start();
    child.expect_line(says);
    child
}

#[cfg(target_os = "linux")]
#[track_caller]
pub fn assert_gone(name: &str) {
    assert!(
        !shmio_testkit::shm_entry_exists(name),
        "/dev/shm/{name} was left behind"
    );
}

pub fn temp_file(tag: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(unique(tag))
}
