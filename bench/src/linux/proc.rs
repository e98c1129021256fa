//! Child processes: the bench binary re-runs itself with `SHMIO_BENCH_ROLE`
//! naming the role, and every process (parent and children) runs a
//! watchdog, so no wait anywhere is unbounded.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsFd;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use super::Result;

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

/// How long a process may see no progress before it gives up.
pub const STALL: Duration = Duration::from_secs(10);

/// Progress counting, the stall detector, and what to tear down on a stall.
pub mod watchdog {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Mutex;
    use std::time::{Duration, Instant};

    use super::STALL;

    static PROGRESS: AtomicU64 = AtomicU64::new(0);
    static STAGE: Mutex<String> = Mutex::new(String::new());
    static CHILDREN: Mutex<Vec<u32>> = Mutex::new(Vec::new());
    type Cleanup = Box<dyn Fn() + Send>;

    static CLEANUPS: Mutex<Vec<(u64, Cleanup)>> = Mutex::new(Vec::new());
    static NEXT_CLEANUP: AtomicU64 = AtomicU64::new(0);

    /// Counts one step of progress. Only ever called from one thread per
    /// process (the one doing the work), so a plain load and store suffice:
    /// no locked instruction on the measured paths.
    #[inline]
    pub fn progress() {
        PROGRESS.store(
            PROGRESS.load(Ordering::Relaxed).wrapping_add(1),
            Ordering::Relaxed,
        );
    }

    /// Names what the process is doing now (shown if it stalls); counts as progress.
    pub fn stage(stage: String) {
        *STAGE.lock().unwrap_or_else(|e| e.into_inner()) = stage;
        progress();
    }

    pub fn add_child(pid: u32) {
        CHILDREN.lock().unwrap_or_else(|e| e.into_inner()).push(pid);
    }

    pub fn remove_child(pid: u32) {
        CHILDREN
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|p| *p != pid);
    }

    /// Registers what to remove if the process gives up; returns a key for [`forget`].
    pub fn on_stall(cleanup: impl Fn() + Send + 'static) -> u64 {
        let key = NEXT_CLEANUP.fetch_add(1, Ordering::Relaxed);
        CLEANUPS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((key, Box::new(cleanup)));
        key
    }

    pub fn forget(key: u64) {
        CLEANUPS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(k, _)| *k != key);
    }

    /// Starts the watchdog thread: after [`STALL`] without progress it kills
    /// the children, removes what was registered, and exits with status 3.
    pub fn start(who: String) {
        std::thread::Builder::new()
            .name("watchdog".into())
            .spawn(move || {
                let mut seen = PROGRESS.load(Ordering::Relaxed);
                let mut since = Instant::now();
                loop {
                    std::thread::sleep(Duration::from_millis(200));
                    let now = PROGRESS.load(Ordering::Relaxed);
                    if now != seen {
                        seen = now;
                        since = Instant::now();
                    } else if since.elapsed() > STALL {
                        let stage = STAGE.lock().unwrap_or_else(|e| e.into_inner()).clone();
                        eprintln!(
                            "{who}: no progress for {} s ({stage}); giving up",
                            STALL.as_secs()
                        );
                        for pid in CHILDREN.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                            if let Some(pid) = rustix::process::Pid::from_raw(*pid as i32) {
                                let _ = rustix::process::kill_process(
                                    pid,
                                    rustix::process::Signal::KILL,
                                );
                            }
                        }
                        std::thread::sleep(Duration::from_millis(100));
                        for (_, cleanup) in
                            CLEANUPS.lock().unwrap_or_else(|e| e.into_inner()).iter()
                        {
                            cleanup();
                        }
                        std::process::exit(3);
                    }
                }
            })
            .expect("spawn the watchdog thread");
    }
}

/// Something to remove if the process gives up, for as long as this lives.
pub struct OnStall(u64);

impl OnStall {
    pub fn new(cleanup: impl Fn() + Send + 'static) -> OnStall {
        OnStall(watchdog::on_stall(cleanup))
    }

    /// Removes the shmio name `name` if the process gives up.
    pub fn shmio_name(name: &str) -> OnStall {
        let name = name.to_owned();
        OnStall::new(move || {
            let _ = shmio::Mapping::remove(&name);
        })
    }
}

impl Drop for OnStall {
    fn drop(&mut self) {
        watchdog::forget(self.0);
    }
}

/// A child process in some role; finished (stdin closed, waited, killed
/// if it does not go within 3 s) when dropped.
pub struct Kid {
    pub role: &'static str,
    child: Child,
    pub stdin: Option<ChildStdin>,
    pub stdout: Option<ChildStdout>,
}

/// Starts this binary again as `role`, with `env` added.
pub fn spawn(
    role: &'static str,
    env: &[(&str, String)],
    stdin: Stdio,
    stdout: Stdio,
) -> Result<Kid> {
    let mut command = Command::new(std::env::current_exe()?);
    command
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
        if line != b"ready" {
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

/// This child's stdin, unbuffered (for data) .
pub fn stdin_file() -> Result<File> {
    Ok(File::from(std::io::stdin().as_fd().try_clone_to_owned()?))
}

/// This child's stdout, unbuffered (for data).
pub fn stdout_file() -> Result<File> {
    Ok(File::from(std::io::stdout().as_fd().try_clone_to_owned()?))
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
    pub fn new() -> Result<Commands> {
        Ok(Commands(BufReader::new(stdin_file()?)))
    }

    /// The next command other than `alive` (a keepalive, which only counts as progress).
    pub fn next(&mut self) -> Result<Option<String>> {
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
        match self.next()? {
            None => Ok(None),
            Some(line) => match line.strip_prefix("go ") {
                Some(n) => Ok(Some(n.parse()?)),
                None => Err(format!("unexpected command {line:?}").into()),
            },
        }
    }
}

/// Sets up a child: dies with the parent, watchdog on.
pub fn become_child(role: &str) -> Result<()> {
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
    // The parent may have gone before the line above took effect.
    let parent: i32 = var(PARENT)?.parse()?;
    if rustix::process::getppid().is_none_or(|p| p.as_raw_nonzero().get() != parent) {
        return Err("the parent is gone".into());
    }
    watchdog::start(format!("child {role} ({})", std::process::id()));
    watchdog::stage(format!("{role}: serving the parent"));
    Ok(())
}
