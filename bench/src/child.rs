//! Child processes: this binary re-run in a role. All of the harness's
//! child-process code is here.
//!
//! The parent starts the current executable with [`launch_with`]'s
//! arguments (none for `shmio-bench` and the criterion benches;
//! `__worker bench` for the CLI) and the role in [`ROLE`]; the child's
//! `main` hands over to [`serve`], which runs the role's side of the work
//! ([`Role::serve`]). Every child dies with its parent (Linux:
//! `PR_SET_PDEATHSIG`) and in any case runs a [`watchdog`].
//!
//! A child that busy-polls reads commands from its stdin ([`Commands`]): a
//! line to start a batch, `alive` to know the parent lives, and the end of
//! input to exit; one that needs set-up before the parent may go on says
//! `ready` on its stdout.

use std::ffi::OsString;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::sides::Role;
use crate::{watchdog, Result};

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
/// The parent's process id.
const PARENT: &str = "SHMIO_BENCH_PARENT";

/// The arguments that make this binary a child; see [`launch_with`].
static LAUNCH: OnceLock<Vec<OsString>> = OnceLock::new();

/// Children are this binary run with `args` (before the first spawn; by
/// default none). The binary must then call [`serve`] for them.
pub fn launch_with<S: Into<OsString>>(args: impl IntoIterator<Item = S>) {
    let _ = LAUNCH.set(args.into_iter().map(Into::into).collect());
}

/// If this process is a child (its parent set [`ROLE`]), serves its role
/// and returns the exit code to exit with: 0, or 1 after saying why on
/// stderr. `None` if it is not a child.
pub fn serve() -> Option<i32> {
    let role = std::env::var(ROLE).ok()?;
    let outcome = Role::parse(&role).and_then(|role| {
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
pub fn spawn(role: Role, env: &[(&str, String)], stdin: Stdio, stdout: Stdio) -> Result<Kid> {
    let role = role.name();
    let mut command = Command::new(std::env::current_exe()?);
    command
        .args(LAUNCH.get().into_iter().flatten())
        .env(ROLE, role)
        .env(PARENT, std::process::id().to_string())
        .stdin(stdin)
        .stdout(stdout)
        .stderr(Stdio::inherit());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command
        .spawn()
        .map_err(|e| format!("spawning the {role} child: {e}"))?;
    watchdog::add_child(child.id());
    Ok(Kid {
        role,
        stdin: child.stdin.take(),
        stdout: child.stdout.take(),
        child,
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

    /// Waits for the child's "ready" line (bounded by the watchdog).
    pub fn ready(&mut self) -> Result<()> {
        let role = self.role;
        watchdog::stage(format!("waiting for the {role} child to be ready"));
        let stdout = self.stdout.as_mut().ok_or("the child has no answer pipe")?;
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        loop {
            if stdout.read(&mut byte)? == 0 {
                return Err(format!("the {role} child exited before it was ready").into());
            }
            if byte[0] == b'\n' {
                break;
            }
            line.push(byte[0]);
        }
        if line.strip_suffix(b"\r").unwrap_or(&line) != b"ready" {
            return Err(
                format!("the {role} child said {:?}", String::from_utf8_lossy(&line)).into(),
            );
        }
        Ok(())
    }
}

impl Drop for Kid {
    fn drop(&mut self) {
        drop(self.stdin.take());
        drop(self.stdout.take());
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    if !status.success() {
                        eprintln!("the {} child exited with {status}", self.role);
                    }
                    break;
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(2))
                }
                _ => {
                    eprintln!("the {} child did not exit within 3 s: killed", self.role);
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break;
                }
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

/// Tells the parent the child is set up.
pub fn say_ready() -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(b"ready\n")?;
    out.flush()?;
    Ok(())
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

/// Sets up a child: dies with the parent (Linux), watchdog on.
fn become_child(role: &str) -> Result<()> {
    #[cfg(target_os = "linux")]
    {
        rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
        // The parent may have gone before the line above took effect.
        let parent: i32 = var(PARENT)?.parse()?;
        if rustix::process::getppid().is_none_or(|p| p.as_raw_nonzero().get() != parent) {
            return Err("the parent is gone".into());
        }
    }
    watchdog::start(format!("child {role} ({})", std::process::id()));
    watchdog::stage(format!("{role}: serving the parent"));
    Ok(())
}
