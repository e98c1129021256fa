//! The parent's side: [`Spawn`] (what to start: this binary in a role, or
//! any program; its environment, its streams, its bounds) and [`Child`]
//! (waiting for it to be ready, reading what it prints, killing it, its
//! exit and output), every wait bounded by the child's limit.
//!
//! A child's collected stream is read by a thread of its own into a buffer
//! the waits look at, so that no wait blocks on a read, and a child never
//! blocks on a full pipe.

use std::ffi::{OsStr, OsString};
use std::io::{ErrorKind, Read, Write};
use std::path::PathBuf;
use std::process::{ChildStderr, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::role::{Role, LIFETIME_VAR, PARENT_VAR, READY_LINE, ROLE_VAR};

/// How long any one wait on a child may take by default (see
/// [`Spawn::limit`]); Wine is slow to start processes.
pub const LIMIT: Duration = Duration::from_secs(60);

/// How long a child lives at most by default (see [`Spawn::lifetime`]).
pub const LIFETIME: Duration = Duration::from_secs(600);

/// A failure of a wait on a child (it exited too early, failed, or took
/// longer than its limit), with everything known about it: what the child
/// is, its status, what it wrote to a collected stderr.
pub struct Failure(String);

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::fmt::Debug for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Failure {}

impl Failure {
    pub(crate) fn new(message: String) -> Failure {
        Failure(message)
    }
}

/// Where a child's stdin comes from.
#[derive(Debug)]
pub enum Input {
    /// Nothing (end of file at once): the default.
    Null,
    /// This process's stdin.
    Inherit,
    /// A pipe the parent writes to ([`Child::stdin`]) and closes
    /// ([`Child::close_stdin`]).
    Pipe,
    /// These bytes, written by a thread of the kit, then end of file.
    Bytes(Vec<u8>),
    /// Anything else (a file, a terminal).
    Stdio(Stdio),
}

/// Where a child's stdout or stderr goes.
#[derive(Debug)]
pub enum Output {
    /// Nowhere.
    Null,
    /// Where this process's goes (for a test, straight to the terminal).
    Inherit,
    /// Read by the kit as it comes ([`Child::wait_ready`],
    /// [`Child::next_line`], [`Child::finish`]).
    Collect,
    /// A pipe the parent reads itself ([`Child::take_stdout`],
    /// [`Child::take_stderr`]).
    Pipe,
    /// Anything else (a file, a terminal).
    Stdio(Stdio),
}

/// What to start, and how: this binary in a role ([`Spawn::role`], or
/// `Role::X.spawn()` from [`roles!`](crate::roles)) or any program
/// ([`Spawn::program`]); then [`Spawn::start`] (or [`Spawn::run`] to wait
/// for it, [`Spawn::kill_when_ready`]).
#[must_use = "a Spawn does nothing until it is started"]
pub struct Spawn {
    what: String,
    program: PathBuf,
    wrapper: Vec<OsString>,
    role: Option<(&'static str, Vec<String>)>,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    stdin: Input,
    stdout: Output,
    stderr: Output,
    limit: Duration,
    lifetime: Option<Duration>,
    dies_with_parent: bool,
    configure: Option<Configure>,
}

/// What [`Spawn::configure`] does to the command.
type Configure = Box<dyn FnOnce(&mut Command)>;

impl Spawn {
    /// This binary (`current_exe`) again, in `role`. In a test binary the
    /// child runs only the test `child_entry` that [`roles!`](crate::roles)
    /// generated. By default: stdin null, stdout collected (for
    /// [`ready`](crate::process::ready)), stderr inherited (a child's panic shows in
    /// the test's output), dies with its parent (Linux). In a test binary
    /// libtest's lines come first on stdout, and what the role prints first
    /// follows `test child_entry ... ` on the same line.
    #[track_caller]
    pub fn role<R: Role>(role: R) -> Spawn {
        let this =
            Spawn::this_binary().unwrap_or_else(|error| panic!("the path of this binary: {error}"));
        let harness_args = if R::IN_TEST_HARNESS {
            R::harness_args()
        } else {
            Vec::new()
        };
        Spawn {
            what: format!("child {role:?}"),
            role: Some((role.name(), harness_args)),
            stderr: Output::Inherit,
            ..this
        }
    }

    /// This binary (`current_exe`) again, with no role: the arguments
    /// say what it is to do (a subcommand of its own, say), as for any
    /// [`program`](Spawn::program). The same defaults as a program's.
    pub fn this_binary() -> std::io::Result<Spawn> {
        Ok(Spawn::program(std::env::current_exe()?))
    }

    /// `program`, with no role. By default: stdin null, stdout and stderr
    /// collected. [`ROLE_VAR`] is removed from its environment, so a child
    /// of a child plays no role by accident.
    pub fn program(program: impl Into<PathBuf>) -> Spawn {
        let program = program.into();
        Spawn {
            what: program
                .file_name()
                .unwrap_or(program.as_os_str())
                .to_string_lossy()
                .into_owned(),
            program,
            wrapper: Vec::new(),
            role: None,
            args: Vec::new(),
            envs: Vec::new(),
            stdin: Input::Null,
            stdout: Output::Collect,
            stderr: Output::Collect,
            limit: LIMIT,
            lifetime: Some(LIFETIME),
            dies_with_parent: true,
            configure: None,
        }
    }

    /// Runs another program in the role instead of this binary (a copy of
    /// it, say, that another user may execute). The arguments stay.
    pub fn program_path(mut self, program: impl Into<PathBuf>) -> Spawn {
        self.program = program.into();
        self
    }

    /// Runs the child under `wrapper ARGS..` (which must `exec` it, for
    /// [`dies_with_parent`](Spawn::dies_with_parent)), the program and its
    /// arguments following: `setpriv --reuid=65534 -- PROGRAM ARGS..`.
    pub fn wrapped_in<I, S>(mut self, wrapper: impl AsRef<OsStr>, args: I) -> Spawn
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.wrapper = std::iter::once(wrapper.as_ref().to_owned())
            .chain(args.into_iter().map(|arg| arg.as_ref().to_owned()))
            .collect();
        self
    }

    /// Runs the child in a mount namespace of its own whose `/dev/shm` is a
    /// fresh tmpfs of `size` (as `mount -o size=` reads it: `1m`, `64m`),
    /// through `unshare` and `mount` (root only: see the test kit's `root_with`):
    /// a full `/dev/shm`, or a container's.
    pub fn over_own_dev_shm(self, size: &str) -> Spawn {
        let mount =
            format!(r#"mount -t tmpfs -o size={size} shmio-test /dev/shm && exec "$0" "$@""#);
        self.wrapped_in(
            "unshare",
            [
                "--mount",
                "--propagation",
                "private",
                "--",
                "sh",
                "-c",
                &mount,
            ],
        )
    }

    /// Adds an argument (after a role's libtest arguments).
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Spawn {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(mut self, args: I) -> Spawn
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|arg| arg.as_ref().to_owned()));
        self
    }

    /// Sets an environment variable of the child (a role reads it with
    /// [`arg`](crate::process::arg)).
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Spawn {
        self.envs
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Where the child's stdin comes from.
    pub fn stdin(mut self, stdin: Input) -> Spawn {
        self.stdin = stdin;
        self
    }

    /// Feeds `bytes` to the child's stdin, then closes it.
    pub fn input(self, bytes: impl Into<Vec<u8>>) -> Spawn {
        self.stdin(Input::Bytes(bytes.into()))
    }

    /// Where the child's stdout goes.
    pub fn stdout(mut self, stdout: Output) -> Spawn {
        self.stdout = stdout;
        self
    }

    /// Where the child's stderr goes.
    pub fn stderr(mut self, stderr: Output) -> Spawn {
        self.stderr = stderr;
        self
    }

    /// How long any one wait on this child may take ([`LIMIT`] by default):
    /// then it is killed and the wait fails.
    pub fn limit(mut self, limit: Duration) -> Spawn {
        self.limit = limit;
        self
    }

    /// How long the child lives at most ([`LIFETIME`] by default), if it
    /// calls [`child_setup`](crate::process::child_setup) (a role does): then it
    /// exits with [`WATCHDOG_EXIT`](crate::process::WATCHDOG_EXIT).
    pub fn lifetime(mut self, lifetime: Duration) -> Spawn {
        self.lifetime = Some(lifetime);
        self
    }

    /// No lifetime for the child: [`child_setup`](crate::process::child_setup)
    /// limits nothing, not even by a lifetime its parent had (for a child
    /// bounded otherwise: a watchdog of its own, the end of its input).
    pub fn no_lifetime(mut self) -> Spawn {
        self.lifetime = None;
        self
    }

    /// Whether the child (if it calls [`child_setup`](crate::process::child_setup),
    /// as a role does) dies with its parent on Linux: yes by default. The
    /// parent is the thread that starts it (Linux's parent-death signal),
    /// and a wrapper must `exec` it.
    pub fn dies_with_parent(mut self, dies: bool) -> Spawn {
        self.dies_with_parent = dies;
        self
    }

    /// Names the child in messages ("child Produce" or the program's name
    /// by default).
    pub fn describe(mut self, what: impl Into<String>) -> Spawn {
        self.what = what.into();
        self
    }

    /// Anything else about the command (`pre_exec`, a working directory),
    /// done last before it starts.
    pub fn configure(mut self, configure: impl FnOnce(&mut Command) + 'static) -> Spawn {
        self.configure = Some(Box::new(configure));
        self
    }

    /// Starts the child; a panic if it cannot be started.
    #[track_caller]
    pub fn start(self) -> Child {
        let what = self.what.clone();
        self.try_start()
            .unwrap_or_else(|error| panic!("starting {what}: {error}"))
    }

    /// Starts the child.
    pub fn try_start(self) -> std::io::Result<Child> {
        let mut command = match self.wrapper.split_first() {
            Some((wrapper, args)) => {
                let mut command = Command::new(wrapper);
                command.args(args).arg(&self.program);
                command
            }
            None => Command::new(&self.program),
        };
        match &self.role {
            Some((name, harness_args)) => {
                command.args(harness_args).env(ROLE_VAR, name);
            }
            None => {
                command.env_remove(ROLE_VAR);
            }
        }
        command
            .args(&self.args)
            .envs(self.envs.iter().map(|(k, v)| (k, v)));
        match self.lifetime {
            Some(lifetime) => command.env(LIFETIME_VAR, lifetime.as_millis().to_string()),
            None => command.env_remove(LIFETIME_VAR),
        };
        if self.dies_with_parent {
            command.env(PARENT_VAR, std::process::id().to_string());
        } else {
            command.env_remove(PARENT_VAR);
        }
        let stdout_collected = matches!(self.stdout, Output::Collect);
        let stderr_collected = matches!(self.stderr, Output::Collect);
        let (stdin, feed) = match self.stdin {
            Input::Null => (Stdio::null(), None),
            Input::Inherit => (Stdio::inherit(), None),
            Input::Pipe => (Stdio::piped(), None),
            Input::Bytes(bytes) => (Stdio::piped(), Some(bytes)),
            Input::Stdio(stdio) => (stdio, None),
        };
        command
            .stdin(stdin)
            .stdout(stdio_of(self.stdout))
            .stderr(stdio_of(self.stderr));
        if let Some(configure) = self.configure {
            configure(&mut command);
        }
        let mut process = command.spawn()?;
        let mut stdin = process.stdin.take();
        if let Some(bytes) = feed {
            let mut pipe = stdin.take().expect("a piped stdin");
            // Ends when all is written or the child closes its stdin.
            std::thread::spawn(move || {
                let _ = pipe.write_all(&bytes);
            });
        }
        let stdout = process
            .stdout
            .take_if(|_| stdout_collected)
            .map(Stream::collect);
        let raw_stdout = process.stdout.take();
        let stderr = process
            .stderr
            .take_if(|_| stderr_collected)
            .map(Stream::collect);
        let raw_stderr = process.stderr.take();
        Ok(Child {
            what: format!("{} ({})", self.what, process.id()),
            process,
            stdin,
            raw_stdout,
            raw_stderr,
            stdout,
            stderr,
            limit: self.limit,
            status: None,
            detached: false,
        })
    }

    /// Starts the child and waits for it to finish (bounded): its status
    /// and what it printed. Succeeding is up to the caller to check.
    #[track_caller]
    pub fn run(self) -> Finished {
        self.start().finish()
    }

    /// Starts the child, waits until it is [`ready`](crate::process::ready), kills
    /// it (SIGKILL; TerminateProcess on Windows) and reaps it: a child
    /// killed at a point it chose. The dead child is returned for its
    /// handle: while it is open, Windows gives the dead process's id to
    /// no one else.
    #[track_caller]
    pub fn kill_when_ready(self) -> Child {
        let mut child = self.start();
        child.wait_ready();
        child.kill();
        child
    }
}

fn stdio_of(output: Output) -> Stdio {
    match output {
        Output::Null => Stdio::null(),
        Output::Inherit => Stdio::inherit(),
        Output::Collect | Output::Pipe => Stdio::piped(),
        Output::Stdio(stdio) => stdio,
    }
}

/// A child process started by [`Spawn`]. Every wait on it is bounded by its
/// limit; after that the child is killed and the wait fails. Dropped while
/// it runs, it is killed and reaped: no child outlives its handle.
///
/// The waits come in two forms: one that panics (for tests: `wait`,
/// `wait_ready`, `next_line`, `finish`) and one that returns the
/// [`Failure`] (`checked_*`).
pub struct Child {
    what: String,
    process: std::process::Child,
    stdin: Option<ChildStdin>,
    raw_stdout: Option<ChildStdout>,
    raw_stderr: Option<ChildStderr>,
    stdout: Option<Stream>,
    stderr: Option<Stream>,
    limit: Duration,
    status: Option<ExitStatus>,
    /// Left running when dropped ([`Child::detach`]).
    detached: bool,
}

/// What a finished child left: its status and what it printed (empty for
/// a stream that was not collected).
#[derive(Debug)]
pub struct Finished {
    /// How it exited.
    pub status: ExitStatus,
    /// What it printed on stdout.
    pub stdout: Vec<u8>,
    /// What it printed on stderr.
    pub stderr: Vec<u8>,
}

impl Finished {
    /// Its stdout as text (lossy).
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Its stderr as text (lossy).
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    /// Panics, with its stderr, unless it exited successfully.
    #[track_caller]
    pub fn assert_success(&self, what: &str) -> &Finished {
        assert!(
            self.status.success(),
            "{what} failed: {}\nstderr: {}",
            self.status,
            self.stderr_text()
        );
        self
    }
}

impl Child {
    /// The process id.
    pub fn id(&self) -> u32 {
        self.process.id()
    }

    /// What the child is, for messages: "child Produce (1234)".
    pub fn what(&self) -> &str {
        &self.what
    }

    /// The pipe to the child's stdin ([`Input::Pipe`]).
    #[track_caller]
    pub fn stdin(&mut self) -> &mut ChildStdin {
        self.stdin.as_mut().expect("the child's stdin is a pipe")
    }

    /// Takes the pipe to the child's stdin ([`Input::Pipe`]).
    #[track_caller]
    pub fn take_stdin(&mut self) -> ChildStdin {
        self.stdin.take().expect("the child's stdin is a pipe")
    }

    /// Closes the child's stdin (end of file for it), if it is a pipe.
    pub fn close_stdin(&mut self) {
        drop(self.stdin.take());
    }

    /// Takes the child's stdout ([`Output::Pipe`]), to read it yourself.
    #[track_caller]
    pub fn take_stdout(&mut self) -> ChildStdout {
        self.raw_stdout
            .take()
            .expect("the child's stdout is a pipe (Output::Pipe)")
    }

    /// Takes the child's stderr ([`Output::Pipe`]), to read it yourself.
    #[track_caller]
    pub fn take_stderr(&mut self) -> ChildStderr {
        self.raw_stderr
            .take()
            .expect("the child's stderr is a pipe (Output::Pipe)")
    }

    /// Its status if it has exited, without waiting.
    #[track_caller]
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.checked_exited()
            .unwrap_or_else(|failure| panic!("{failure}"))
    }

    /// [`exited`](Child::exited), returning the failure.
    pub fn checked_exited(&mut self) -> Result<Option<ExitStatus>, Failure> {
        if self.status.is_none() {
            self.status = self
                .process
                .try_wait()
                .map_err(|error| Failure(format!("the status of {}: {error}", self.what)))?;
        }
        Ok(self.status)
    }

    /// Panics if the child has exited (it was meant to be running).
    #[track_caller]
    pub fn assert_running(&mut self) {
        if let Some(status) = self.exited() {
            panic!("{} exited: {status}{}", self.what, self.stderr_note());
        }
    }

    /// Panics if the child has exited unsuccessfully (it may have finished).
    #[track_caller]
    pub fn assert_not_failed(&mut self) {
        if let Some(status) = self.exited().filter(|status| !status.success()) {
            panic!("{} failed: {status}{}", self.what, self.stderr_note());
        }
    }

    /// Waits until the child says it is [`ready`](crate::process::ready); a panic if
    /// it exits first or takes longer than its limit (it is then killed).
    /// Its stdout is collected, or a pipe the caller reads the rest of
    /// ([`Output::Pipe`]: the ready line is taken from it, nothing more).
    #[track_caller]
    pub fn wait_ready(&mut self) -> &mut Child {
        if let Err(failure) = self.checked_wait_ready() {
            panic!("{failure}");
        }
        self
    }

    /// [`wait_ready`](Child::wait_ready), returning the failure.
    pub fn checked_wait_ready(&mut self) -> Result<(), Failure> {
        let marker = format!("\n{READY_LINE}\n").into_bytes();
        if self.stdout.is_none() && self.raw_stdout.is_some() {
            return self.wait_ready_on_the_pipe(marker);
        }
        let found = self.wait_stdout("to be ready", |state| {
            find(&state.bytes, &marker).map(|at| {
                // Lines read after this start after the marker.
                state.read = state.read.max(at + marker.len());
            })
        })?;
        found.ok_or_else(|| self.ended_early("before it was ready"))
    }

    /// Waits for the ready line on a stdout the caller reads itself
    /// ([`Output::Pipe`]: data may follow it): a thread reads it byte by
    /// byte up to the marker, so that nothing after it is taken, and hands
    /// the pipe back.
    fn wait_ready_on_the_pipe(&mut self, marker: Vec<u8>) -> Result<(), Failure> {
        let mut pipe = self.raw_stdout.take().expect("a piped stdout");
        let (done, result) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            let mut byte = [0u8; 1];
            let found = loop {
                match pipe.read(&mut byte) {
                    Ok(0) => break false,
                    Ok(_) => {
                        seen.push(byte[0]);
                        if seen.ends_with(&marker) {
                            break true;
                        }
                    }
                    Err(error) if error.kind() == ErrorKind::Interrupted => {}
                    Err(_) => break false,
                }
            };
            let _ = done.send((found, pipe));
        });
        match result.recv_timeout(self.limit) {
            Ok((true, pipe)) => {
                self.raw_stdout = Some(pipe);
                Ok(())
            }
            Ok((false, _)) => Err(self.ended_early("before it was ready")),
            Err(_) => Err(self.killed("waiting for it to be ready")),
        }
    }

    /// The next line the child printed on stdout, without its line end;
    /// `None` once stdout has ended. A panic if none comes within the limit.
    #[track_caller]
    pub fn next_line(&mut self) -> Option<String> {
        self.checked_next_line()
            .unwrap_or_else(|failure| panic!("{failure}"))
    }

    /// [`next_line`](Child::next_line), returning the failure.
    pub fn checked_next_line(&mut self) -> Result<Option<String>, Failure> {
        self.wait_stdout("to print a line", |state| {
            let rest = &state.bytes[state.read..];
            let end = rest.iter().position(|&b| b == b'\n')?;
            let line = String::from_utf8_lossy(&rest[..end])
                .trim_end_matches('\r')
                .to_owned();
            state.read += end + 1;
            Some(line)
        })
    }

    /// Panics unless the next line on stdout is `wanted`.
    #[track_caller]
    pub fn expect_line(&mut self, wanted: &str) {
        match self.next_line() {
            Some(line) => assert_eq!(line, wanted, "{} printed", self.what),
            None => panic!(
                "{} ended its output before {wanted:?}{}",
                self.what,
                self.stderr_note()
            ),
        }
    }

    /// Waits (bounded) until `found` finds something in the collected
    /// stdout: `Some` of it, or `None` if stdout ended first.
    fn wait_stdout<T>(
        &mut self,
        waiting: &str,
        mut found: impl FnMut(&mut StreamState) -> Option<T>,
    ) -> Result<Option<T>, Failure> {
        let deadline = Instant::now() + self.limit;
        let stdout = self
            .stdout
            .as_ref()
            .unwrap_or_else(|| panic!("{}'s stdout is not collected", self.what));
        match stdout.wait(deadline, |state| match found(state) {
            Some(value) => Some(Some(value)),
            None if state.ended => Some(None),
            None => None,
        }) {
            Some(result) => Ok(result),
            None => Err(self.killed(&format!("waiting for it {waiting}"))),
        }
    }

    /// Waits for the child to exit (bounded) and returns its status; a
    /// panic if it is still running after its limit (it is then killed).
    #[track_caller]
    pub fn wait(&mut self) -> ExitStatus {
        self.checked_wait()
            .unwrap_or_else(|failure| panic!("{failure}"))
    }

    /// [`wait`](Child::wait), returning the failure.
    pub fn checked_wait(&mut self) -> Result<ExitStatus, Failure> {
        match self.wait_within(self.limit)? {
            Some(status) => Ok(status),
            None => Err(self.killed("waiting for it to exit")),
        }
    }

    /// Waits at most `limit` for the child to exit: its status, or `None`
    /// if it still runs then (it is left running: what to do with it is
    /// the caller's to say).
    pub fn wait_within(&mut self, limit: Duration) -> Result<Option<ExitStatus>, Failure> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.checked_exited()? {
                return Ok(Some(status));
            }
            if Instant::now() > deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Waits for the child to exit, and panics (with its collected stderr)
    /// unless it succeeded.
    #[track_caller]
    pub fn wait_success(&mut self) {
        let status = self.wait();
        assert!(
            status.success(),
            "{} failed: {status}{}",
            self.what,
            self.stderr_note()
        );
    }

    /// Waits for the child to exit and for its collected streams to end
    /// (bounded), and returns all of it.
    #[track_caller]
    pub fn finish(self) -> Finished {
        self.checked_finish()
            .unwrap_or_else(|failure| panic!("{failure}"))
    }

    /// [`finish`](Child::finish), returning the failure.
    pub fn checked_finish(mut self) -> Result<Finished, Failure> {
        let status = self.checked_wait()?;
        // A process the child started may hold its streams open.
        let deadline = Instant::now() + self.limit;
        let take = |stream: &Option<Stream>| -> Result<Vec<u8>, Failure> {
            let Some(stream) = stream else {
                return Ok(Vec::new());
            };
            stream
                .wait(deadline, |state| {
                    state.ended.then(|| std::mem::take(&mut state.bytes))
                })
                .ok_or_else(|| {
                    Failure(format!(
                        "{} exited ({status}), but its output was still open after {:?} \
                         (a process it started holds it?)",
                        self.what, self.limit
                    ))
                })
        };
        let stdout = take(&self.stdout)?;
        let stderr = take(&self.stderr)?;
        Ok(Finished {
            status,
            stdout,
            stderr,
        })
    }

    /// Kills the child (SIGKILL; TerminateProcess on Windows) unless it has
    /// exited, and reaps it. The handle stays open until this is dropped.
    #[track_caller]
    pub fn kill(&mut self) -> ExitStatus {
        self.checked_kill()
            .unwrap_or_else(|failure| panic!("{failure}"))
    }

    /// [`kill`](Child::kill), returning the failure.
    pub fn checked_kill(&mut self) -> Result<ExitStatus, Failure> {
        if let Some(status) = self.checked_exited()? {
            return Ok(status);
        }
        // An error means it has exited meanwhile; `wait` says how.
        let _ = self.process.kill();
        let status = self
            .process
            .wait()
            .map_err(|error| Failure(format!("reaping {}: {error}", self.what)))?;
        self.status = Some(status);
        Ok(status)
    }

    /// Lets the child run on, on its own: it is not killed when this is
    /// dropped, nor waited for (whoever inherits it reaps it). Take what
    /// the caller needs of it (its stdin, say) first.
    pub fn detach(mut self) {
        self.detached = true;
    }

    /// Sends `signal` to the child (Unix), which must not have been reaped.
    #[cfg(unix)]
    #[track_caller]
    pub fn signal(&self, signal: i32) {
        use rustix::process::{kill_process, Pid, Signal};
        assert!(self.status.is_none(), "{} was reaped", self.what);
        let pid = Pid::from_raw(self.id() as i32).expect("a child's pid is positive");
        let signal = Signal::from_named_raw(signal)
            .unwrap_or_else(|| panic!("{signal} is not a named signal"));
        kill_process(pid, signal)
            .unwrap_or_else(|error| panic!("signal {signal:?} to {}: {error}", self.what));
    }

    /// What its collected stderr says so far, for a message.
    fn stderr_note(&self) -> String {
        match &self.stderr {
            Some(stream) => {
                let state = stream.lock();
                if state.bytes.is_empty() {
                    String::new()
                } else {
                    format!("\nstderr: {}", String::from_utf8_lossy(&state.bytes))
                }
            }
            None => String::new(),
        }
    }

    /// Kills the child after a wait ran out, and says so.
    fn killed(&mut self, waiting: &str) -> Failure {
        if let Err(failure) = self.checked_kill() {
            return failure;
        }
        Failure(format!(
            "{} still running after {:?} {waiting}: killed{}",
            self.what,
            self.limit,
            self.stderr_note()
        ))
    }

    /// The child ended its stdout early: how it exited.
    fn ended_early(&mut self, when: &str) -> Failure {
        let status = match self.checked_wait() {
            Ok(status) => status.to_string(),
            Err(failure) => return failure,
        };
        Failure(format!(
            "{} exited {when}: {status}{}",
            self.what,
            self.stderr_note()
        ))
    }
}

impl Drop for Child {
    /// Kills and reaps a child still running (unless it was
    /// [`detach`](Child::detach)ed); never panics.
    fn drop(&mut self) {
        if !self.detached && self.status.is_none() && matches!(self.process.try_wait(), Ok(None)) {
            let _ = self.process.kill();
            let _ = self.process.wait();
        }
    }
}

/// Kills the process `pid` (SIGKILL) on Unix, for a caller that has only
/// its id (a watchdog thread giving up on every child it knows of); the
/// [`Child`] itself, if any, still reaps it. Elsewhere `Unsupported`: a
/// process is killed through its handle there ([`Child::kill`]).
pub fn kill_by_id(pid: u32) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use rustix::process::{kill_process, Pid, Signal};
        let pid = i32::try_from(pid)
            .ok()
            .and_then(Pid::from_raw)
            .ok_or_else(|| std::io::Error::new(ErrorKind::InvalidInput, "not a process id"))?;
        Ok(kill_process(pid, Signal::KILL)?)
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        Err(std::io::Error::new(
            ErrorKind::Unsupported,
            "killing a process by its id",
        ))
    }
}

/// A collected stream: filled by a reader thread, looked at by the waits.
struct Stream(Arc<(Mutex<StreamState>, Condvar)>);

struct StreamState {
    /// Everything read so far (taken by `finish`).
    bytes: Vec<u8>,
    /// Where the next line starts.
    read: usize,
    /// Whether the stream has ended (end of file, or an error).
    ended: bool,
}

impl Stream {
    fn collect(mut reader: impl Read + Send + 'static) -> Stream {
        let shared = Arc::new((
            Mutex::new(StreamState {
                bytes: Vec::new(),
                read: 0,
                ended: false,
            }),
            Condvar::new(),
        ));
        let filler = Arc::clone(&shared);
        std::thread::spawn(move || {
            let (state, changed) = &*filler;
            let mut buffer = [0u8; 8192];
            loop {
                match reader.read(&mut buffer) {
                    Ok(0) => break,
                    Ok(n) => {
                        lock(state).bytes.extend_from_slice(&buffer[..n]);
                        changed.notify_all();
                    }
                    Err(error) if error.kind() == ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            lock(state).ended = true;
            changed.notify_all();
        });
        Stream(shared)
    }

    fn lock(&self) -> MutexGuard<'_, StreamState> {
        lock(&self.0 .0)
    }

    /// Waits until `check` gives `Some`, or until `deadline` (`None`).
    fn wait<T>(
        &self,
        deadline: Instant,
        mut check: impl FnMut(&mut StreamState) -> Option<T>,
    ) -> Option<T> {
        let (state, changed) = &*self.0;
        let mut state = lock(state);
        loop {
            if let Some(value) = check(&mut state) {
                return Some(value);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            state = changed
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

fn lock(state: &Mutex<StreamState>) -> MutexGuard<'_, StreamState> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}
