//! Child processes: this binary re-run in a role. Starting one, waiting
//! (bounded) until it is ready, killing it, reaping it, and the child's
//! side of that (dying with its parent, the ready line) are the process
//! kit's ([`crate::process`]); what is the bench's own is here:
//! how a role travels, what the roles read, and the commands a busy-polling
//! child reads.
//!
//! The parent starts the current executable with [`launch_with`]'s
//! arguments (none for `shmio-bench` and the criterion benches;
//! `__worker bench` for the CLI) and the role in [`ROLE`]; the child's
//! `main` hands over to [`serve`], which runs the role's side of the work
//! ([`RoleSet::serve`]). The roles are the binary's: a set of them is any
//! type that is a [`RoleSet`] (the CLI's are [`sides::Role`]; the bench
//! lab adds its own), so this module knows no side. Every child dies with
//! its parent (the kit's parent-death signal, Linux) and in any case runs
//! a [`watchdog`], which bounds it instead of a lifetime.
//!
//! A child that busy-polls reads commands from its stdin ([`Commands`]): a
//! line to start a batch, `alive` to know the parent lives, and the end of
//! input to exit; it says it is ready ([`crate::process::try_ready`]) once
//! set up, and the parent starts it with [`spawn_commanded`], which waits
//! for that.
//!
//! [`sides::Role`]: crate::bench::sides::Role

use std::ffi::OsString;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::process::{ChildStdin, ChildStdout};
use std::sync::OnceLock;
use std::time::Duration;

use crate::process::{Child, Input, Output, Spawn};

use crate::bench::{watchdog, Result};

/// The variable that makes the binary a child, and names its role.
pub const ROLE: &str = "SHMIO_BENCH_ROLE";
/// The base name of what the child opens (channels, mappings, services).
pub const NAME: &str = "SHMIO_BENCH_NAME";
/// Message size in bytes (throughput roles).
pub const SIZE: &str = "SHMIO_BENCH_SIZE";
/// Queue capacity in messages (throughput roles).
pub const CAPACITY: &str = "SHMIO_BENCH_CAPACITY";
/// The run's private iceoryx2 domain (iceoryx2 roles).
pub const IOX: &str = "SHMIO_BENCH_IOX";
/// The address of the run's private D-Bus daemon (D-Bus roles).
pub const DBUS: &str = "SHMIO_BENCH_DBUS";
/// The step of the round-trip ladder (the ladder's echo role).
pub const STEP: &str = "SHMIO_BENCH_STEP";
/// The CPU to pin the child to, if set (see [`crate::bench::pin`]).
pub const CPU: &str = "SHMIO_BENCH_CPU";

/// How long a child may take to exit once its input has ended, before it
/// is killed.
const EXIT_WITHIN: Duration = Duration::from_secs(3);

/// The arguments that make this binary a child; see [`launch_with`].
static LAUNCH: OnceLock<Vec<OsString>> = OnceLock::new();

/// Children are this binary run with `args` (before the first spawn; by
/// default none). The binary must then call [`serve`] for them.
pub fn launch_with<S: Into<OsString>>(args: impl IntoIterator<Item = S>) {
    let _ = LAUNCH.set(args.into_iter().map(Into::into).collect());
}

/// The roles a binary's children can play: what [`ROLE`] carries, and
/// what the child runs for each.
pub trait RoleSet: Copy {
    /// The role's name, as [`ROLE`] carries it.
    fn name(self) -> &'static str;

    /// The role called `name`; an error if there is none.
    fn parse(name: &str) -> Result<Self>;

    /// Runs the role's side of the work, until the parent is done.
    fn serve(self) -> Result<()>;
}

/// If this process is a child (its parent set [`ROLE`]), serves its role
/// (one of `R`) and returns the exit code to exit with: 0, or 1 after
/// saying why on stderr. `None` if it is not a child.
pub fn serve<R: RoleSet>() -> Option<i32> {
    let role = std::env::var(ROLE).ok()?;
    let outcome = R::parse(&role).and_then(|role| {
        if std::env::var_os(CPU).is_some() {
            crate::bench::pin::this_thread_to(number(CPU)?)?;
        }
        become_child(role.name())?;
        role.serve()
    });
    Some(match outcome {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("shmio-bench child {role} ({}): {e}", std::process::id());
            1
        }
    })
}

/// A child process in some role; finished (stdin closed, waited, killed
/// if it does not go within 3 s) when dropped.
pub struct Kid {
    role: &'static str,
    child: Child,
    /// The child's stdin, if piped.
    pub stdin: Option<ChildStdin>,
    /// The child's stdout, if piped.
    pub stdout: Option<ChildStdout>,
}

/// Starts this binary again as `role`, with `env` added.
pub fn spawn(
    role: impl RoleSet,
    env: &[(&str, String)],
    stdin: Input,
    stdout: Output,
) -> Result<Kid> {
    let (stdin_piped, stdout_piped) =
        (matches!(stdin, Input::Pipe), matches!(stdout, Output::Pipe));
    let mut kid = start(role, env, stdin, stdout)?;
    kid.stdin = stdin_piped.then(|| kid.child.take_stdin());
    kid.stdout = stdout_piped.then(|| kid.child.take_stdout());
    Ok(kid)
}

/// Starts this binary again as `role`, with `env` added, to be driven by
/// [`Commands`] on its stdin; returns once it is ready (bounded by the
/// kit's limit, and before that by the watchdog).
pub fn spawn_commanded(role: impl RoleSet, env: &[(&str, String)]) -> Result<Kid> {
    let mut kid = start(role, env, Input::Pipe, Output::Pipe)?;
    kid.stdin = Some(kid.child.take_stdin());
    watchdog::stage(format!("waiting for the {} child to be ready", kid.role));
    kid.child.checked_wait_ready()?;
    kid.stdout = Some(kid.child.take_stdout());
    Ok(kid)
}

fn start(role: impl RoleSet, env: &[(&str, String)], stdin: Input, stdout: Output) -> Result<Kid> {
    let role = role.name();
    let mut spawn = Spawn::this_binary()?
        .args(LAUNCH.get().into_iter().flatten())
        .env(ROLE, role);
    for (key, value) in env {
        spawn = spawn.env(key, value);
    }
    if let Some(cpu) = crate::bench::pin::child_cpu() {
        spawn = spawn.env(CPU, cpu.to_string());
    }
    let spawn = spawn
        .stdin(stdin)
        .stdout(stdout)
        .stderr(Output::Inherit)
        // The watchdog bounds a child, however long the run.
        .no_lifetime()
        .describe(format!("the {role} child"));
    let child = spawn
        .try_start()
        .map_err(|e| format!("spawning the {role} child: {e}"))?;
    watchdog::add_child(child.id());
    Ok(Kid {
        role,
        child,
        stdin: None,
        stdout: None,
    })
}

impl Kid {
    /// Sends one command line to the child's stdin.
    pub fn command(&mut self, line: &str) -> Result<()> {
        let stdin = self.stdin.as_mut().ok_or("the child has no command pipe")?;
        stdin.write_all(format!("{line}\n").as_bytes())?;
        Ok(())
    }

    /// The keepalive of a child that reads [`Commands`].
    pub fn alive(&mut self) -> Result<()> {
        self.command("alive")
    }
}

impl Drop for Kid {
    fn drop(&mut self) {
        drop(self.stdin.take());
        drop(self.stdout.take());
        match self.child.wait_within(EXIT_WITHIN) {
            Ok(Some(status)) => {
                if !status.success() {
                    eprintln!("the {} child exited with {status}", self.role);
                }
            }
            Ok(None) => {
                eprintln!(
                    "the {} child did not exit within {} s: killed",
                    self.role,
                    EXIT_WITHIN.as_secs()
                );
                let _ = self.child.checked_kill();
            }
            Err(failure) => {
                eprintln!("{failure}");
                let _ = self.child.checked_kill();
            }
        }
        watchdog::remove_child(self.child.id());
    }
}

/// A variable the parent set for this child.
pub fn var(key: &str) -> Result<String> {
    std::env::var(key).map_err(|_| format!("{key} is not set").into())
}

/// A numeric variable the parent set for this child.
pub fn number(key: &str) -> Result<usize> {
    Ok(var(key)?.parse()?)
}

/// This child's stdin, unbuffered (for data).
pub fn stdin_file() -> Result<File> {
    #[cfg(unix)]
    let owned = std::os::fd::AsFd::as_fd(&std::io::stdin()).try_clone_to_owned()?;
    #[cfg(windows)]
    let owned =
        std::os::windows::io::AsHandle::as_handle(&std::io::stdin()).try_clone_to_owned()?;
    Ok(File::from(owned))
}

/// This child's stdout, unbuffered (for data).
pub fn stdout_file() -> Result<File> {
    #[cfg(unix)]
    let owned = std::os::fd::AsFd::as_fd(&std::io::stdout()).try_clone_to_owned()?;
    #[cfg(windows)]
    let owned =
        std::os::windows::io::AsHandle::as_handle(&std::io::stdout()).try_clone_to_owned()?;
    Ok(File::from(owned))
}

/// The commands the parent sends on stdin, a line each; `None` at EOF.
pub struct Commands(BufReader<File>);

impl Commands {
    /// Reads commands from this child's stdin.
    pub fn new() -> Result<Commands> {
        Ok(Commands(BufReader::new(stdin_file()?)))
    }

    /// The next command other than `alive` (a keepalive, which only counts as progress).
    pub fn next_command(&mut self) -> Result<Option<String>> {
        loop {
            let mut line = String::new();
            if self.0.read_line(&mut line)? == 0 {
                return Ok(None);
            }
            watchdog::progress();
            if line.trim_end() != "alive" {
                return Ok(Some(line.trim_end().to_owned()));
            }
        }
    }

    /// The next `go N` command's `N`; `None` at EOF.
    pub fn next_count(&mut self) -> Result<Option<u64>> {
        match self.next_command()? {
            None => Ok(None),
            Some(line) => match line.strip_prefix("go ") {
                Some(n) => Ok(Some(n.parse()?)),
                None => Err(format!("unexpected command {line:?}").into()),
            },
        }
    }
}

/// Sets up a child: dies with the parent (the kit's set-up: Linux), the
/// watchdog on.
fn become_child(role: &str) -> Result<()> {
    crate::process::try_child_setup()?;
    watchdog::start(format!("child {role} ({})", std::process::id()));
    watchdog::stage(format!("{role}: serving the parent"));
    Ok(())
}
