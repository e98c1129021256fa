//! Worker processes (this binary re-run with the hidden `__worker ROLE`
//! subcommand) and waits that are always bounded.

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// The hidden subcommand that runs a worker role.
pub const WORKER: &str = "__worker";

/// How long any worker lives at most, whatever happens to its parent.
pub const WORKER_LIFETIME: Duration = Duration::from_secs(60);

/// A command that runs this binary as a worker in `role` with `args`;
/// stdin is null unless the caller says otherwise.
pub fn worker(role: &str, args: &[String]) -> Result<Command> {
    let exe = std::env::current_exe().map_err(|e| Error::io("cannot find this program", e))?;
    let mut command = Command::new(exe);
    command
        .arg(WORKER)
        .arg(role)
        .args(args)
        .stdin(Stdio::null());
    Ok(command)
}

/// What every worker does first: it dies with its parent (Linux), and in
/// any case exits after [`WORKER_LIFETIME`], so none is ever left running.
pub fn worker_setup() {
    #[cfg(target_os = "linux")]
    {
        let _ =
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
    }
    limit_lifetime();
}

/// Makes this worker exit after [`WORKER_LIFETIME`] (all that a worker
/// that must not die with its parent does of [`worker_setup`]).
pub fn limit_lifetime() {
    std::thread::spawn(|| {
        std::thread::sleep(WORKER_LIFETIME);
        eprintln!(
            "shmio worker {}: still running after {WORKER_LIFETIME:?}: exiting",
            std::process::id()
        );
        std::process::exit(70);
    });
}

/// Polls `done` until it holds; an error naming `what` after `limit`.
/// Returns how long it took.
pub fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) -> Result<Duration> {
    let start = Instant::now();
    let mut spins = 0u32;
    while !done() {
        if start.elapsed() > limit {
            return Err(Error::GaveUp {
                what: what.to_owned(),
                limit,
            });
        }
        spins += 1;
        if spins < 100 {
            std::thread::yield_now();
        } else {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    Ok(start.elapsed())
}

/// Waits for `child` to exit; after `limit` it is killed and this is an error.
pub fn wait_child(child: &mut Child, what: &str, limit: Duration) -> Result<ExitStatus> {
    let mut status = None;
    let waited = wait_until(&format!("{what} to exit"), limit, || {
        status = child.try_wait().ok().flatten();
        status.is_some()
    });
    match (waited, status) {
        (Ok(_), Some(status)) => Ok(status),
        (waited, _) => {
            let _ = child.kill();
            let _ = child.wait();
            let gave_up = waited.err().unwrap_or_else(|| Error::GaveUp {
                what: format!("{what} to exit"),
                limit,
            });
            Err(Error::Killed(Box::new(gave_up)))
        }
    }
}

/// Waits (bounded) for `child`, started with a piped stdout, and returns
/// what it printed; an error if it failed.
pub fn child_output(child: &mut Child, what: &str, limit: Duration) -> Result<String> {
    let status = wait_child(child, what, limit)?;
    let mut out = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        stdout
            .read_to_string(&mut out)
            .map_err(|e| Error::io(format!("reading what {what} printed"), e))?;
    }
    if !status.success() {
        return Err(Error::ChildFailed {
            what: what.to_owned(),
            status,
            output: out.trim().to_owned(),
        });
    }
    Ok(out)
}

/// Children that are killed (and reaped) if still running when this drops.
#[derive(Default)]
pub struct Children(pub Vec<Child>);

impl Children {
    /// Adds a child; returns its index.
    pub fn push(&mut self, child: Child) -> usize {
        self.0.push(child);
        self.0.len() - 1
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            if let Ok(None) = child.try_wait() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}
