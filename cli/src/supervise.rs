//! The command `shmio lock` runs, from start to finish: this module owns its
//! processes, so that the command never outlives the lock.
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

use crate::error::{Error, Result};

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

#[cfg(unix)]
mod imp {
    use std::fs::{File, OpenOptions};
    use std::io::{self, IsTerminal, Read, Write};
    use std::os::fd::{AsFd, AsRawFd};
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    use std::process::{ChildStdin, Command, ExitCode, ExitStatus};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use shmio_cli::process::{Input, Output, Spawn};
    use signal_hook::consts::signal::{
        SIGCONT, SIGHUP, SIGINT, SIGKILL, SIGQUIT, SIGTERM, SIGTSTP, SIGTTIN, SIGTTOU,
    };
    use signal_hook::iterator::Signals;

    use crate::error::{Error, Result};
    use crate::signals;

    /// What `shmio lock` passes on to the command's group: the requests to
    /// stop, and SIGCONT (a resumed `shmio lock` resumes the command); not
    /// one this process was started ignoring, which the command inherits
    /// ignored (`nohup shmio lock ..`).
    const WATCHED: [i32; 5] = [SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGCONT];

    pub fn run(mut command: Command, program: &str) -> Result<ExitStatus> {
        // Orphans the command leaves come to this process rather than to
        // init, so that waiting for its group can reap them.
        #[cfg(target_os = "linux")]
        let _ = rustix::process::set_child_subreaper(Some(rustix::process::getpid()));
        let terminal = Terminal::open();
        let hand_over = terminal.as_ref().is_some_and(|terminal| {
            terminal.is_ours() && is_a_job() && io::stdin().is_terminal() && !stdout_is_a_pipe()
        });
        // Registered before the command starts, so no request is lost; one
        // that came before this is in the flag, and the command is not run.
        let watched = WATCHED
            .into_iter()
            .filter(|&signal| !signals::ignored(signal));
        let mut watched =
            Signals::new(watched).map_err(|e| Error::io("cannot catch signals", e))?;
        signals::check()?;
        let guard = Guard::start();
        let guard_fd = guard.as_ref().map(|guard| guard.input.as_raw_fd());
        // The parent-death signal goes with the thread that forks: this is
        // the main thread, which lives as long as the process.
        let parent = std::process::id();
        let terminal_fd = terminal.as_ref().map(|terminal| terminal.0.as_raw_fd());
        command.process_group(0);
        let in_child = move || {
            // First, from the child itself: were `shmio lock` killed right
            // after the fork, the guard would know the group all the same.
            if let Some(fd) = guard_fd {
                write_own_pid(fd);
            }
            // Linux: the parent-death signal. Had the parent died before
            // it was set, no signal would ever come: the command must not
            // start then (the kit's `ESRCH`).
            shmio_cli::process::die_with_parent(Some(parent))?;
            // Before `exec`, so the command never runs without the terminal
            // it is meant to have (it would stop on SIGTTIN).
            if let Some(fd) = terminal_fd.filter(|_| hand_over) {
                // process_group(0) made the group before this runs.
                let _ = give_terminal(fd, std::process::id() as libc::pid_t);
            }
            Ok(())
        };
        // SAFETY: `in_child` runs in the forked child before `exec`, and
        // makes only async-signal-safe calls (write, signal, prctl and
        // getppid in the kit's `die_with_parent`, getpid, pthread_sigmask,
        // tcsetpgrp): no allocation, no locks.
        unsafe { command.pre_exec(in_child) };
        let child = match command.spawn() {
            Ok(child) => child,
            Err(error) => {
                // Nothing runs: the guard has nothing to kill.
                if let Some(guard) = guard {
                    guard.dismiss();
                }
                return Err(super::cannot_run(program, error));
            }
        };
        let job = Arc::new(Job {
            group: child.id() as libc::pid_t,
            terminal,
            gets_terminal: AtomicBool::new(hand_over),
        });
        let signals_handle = watched.handle();
        let forwarder = {
            let job = Arc::clone(&job);
            std::thread::spawn(move || {
                for signal in watched.forever() {
                    if signal == SIGCONT {
                        job.resume();
                    } else {
                        job.signal(signal);
                        job.signal(SIGCONT);
                    }
                }
            })
        };
        let status = job.wait_for_command(program);
        if status.is_ok() {
            job.take_terminal();
            job.wait_for_the_rest();
        }
        signals_handle.close();
        let _ = forwarder.join();
        // Not after a failed wait: the guard then kills the group too.
        if let (Some(guard), Ok(_)) = (guard, &status) {
            guard.dismiss();
        }
        status
    }

    /// The hidden worker role that runs [`guard`].
    const GUARD: [&str; 2] = [crate::proc::WORKER, "guard"];

    /// A process of this program, in a process group of its own, that
    /// kills the command's group if this process dies before it is done:
    /// the parent-death signal (Linux only) reaches the command alone, not
    /// what it started, such as the programs a script runs.
    struct Guard {
        input: ChildStdin,
    }

    impl Guard {
        fn start() -> Option<Guard> {
            let started = Spawn::this_binary().and_then(|this| {
                this.args(GUARD)
                    .stdin(Input::Pipe)
                    .stdout(Output::Null)
                    .stderr(Output::Null)
                    // It outlives this process when it is killed: that is
                    // its job. Its end of input bounds it.
                    .dies_with_parent(false)
                    .no_lifetime()
                    .configure(|command| {
                        // Out of reach of what is sent to this process's
                        // group (`kill %1`, Ctrl-C) and to the command's.
                        command.process_group(0);
                    })
                    .try_start()
            });
            match started {
                Ok(mut process) => {
                    let input = process.take_stdin();
                    // Not killed with its handle, nor waited for: see `dismiss`.
                    process.detach();
                    Some(Guard { input })
                }
                Err(error) => {
                    eprintln!(
                        "shmio: warning: cannot start a guard ({error}): if this process \
                         is killed, what the command started may keep running"
                    );
                    None
                }
            }
        }

        /// The command and its group are gone: the guard leaves quietly.
        /// It is not waited for (whoever inherits it reaps it): that would
        /// add its whole start-up to a short command's run.
        fn dismiss(mut self) {
            let _ = writeln!(self.input, "done");
        }
    }

    pub fn guard() -> Result {
        let mut input = String::new();
        // The command's pid (written by the command itself, just before it
        // runs), then `done` from `shmio lock`. Ends when `shmio lock`
        // closes the pipe, or dies.
        let _ = io::stdin().lock().read_to_string(&mut input);
        let mut lines = input.lines();
        let group = lines
            .next()
            .and_then(|line| line.parse::<libc::pid_t>().ok());
        if let Some(group) = group.filter(|&group| group > 1) {
            if lines.next() != Some("done") {
                // SAFETY: kill takes no pointers. `shmio lock` died before
                // the group was done: what is left of it goes now.
                unsafe { libc::kill(-group, SIGKILL) };
            }
        }
        Ok(ExitCode::SUCCESS)
    }

    /// The command's process group, and the terminal it may be given.
    struct Job {
        /// The command's pid, which is its process group's id.
        group: libc::pid_t,
        terminal: Option<Terminal>,
        /// Whether the command gets the terminal when `shmio lock` has it.
        gets_terminal: AtomicBool,
    }

    impl Job {
        fn signal(&self, signal: i32) {
            // SAFETY: kill takes no pointers. The id is the command's group
            // while one of its members is unreaped (and `run` stops sending
            // right after reaping the last).
            unsafe { libc::kill(-self.group, signal) };
        }

        /// Waits for the command itself, following it through job control.
        fn wait_for_command(&self, program: &str) -> Result<ExitStatus> {
            // Stops matter only with a terminal to share.
            let options = if self.terminal.is_some() {
                libc::WUNTRACED
            } else {
                0
            };
            loop {
                let mut raw = 0;
                // SAFETY: `raw` is a valid out-pointer; the pid is our child.
                let waited = unsafe { libc::waitpid(self.group, &mut raw, options) };
                if waited == -1 {
                    let error = io::Error::last_os_error();
                    if error.kind() == io::ErrorKind::Interrupted {
                        continue;
                    }
                    // Unlocking with the command alive is what must not
                    // happen: it goes first.
                    self.signal(SIGKILL);
                    return Err(Error::io(format!("waiting for {program}"), error));
                }
                if libc::WIFSTOPPED(raw) {
                    self.stopped(libc::WSTOPSIG(raw));
                    continue;
                }
                return Ok(ExitStatus::from_raw(raw));
            }
        }

        /// The command stopped with `signal`: does what its shell would see
        /// done, had it run the command itself.
        fn stopped(&self, signal: i32) {
            let Some(terminal) = &self.terminal else {
                return;
            };
            let wants_terminal = signal == SIGTTIN || signal == SIGTTOU;
            if wants_terminal && terminal.is_ours() {
                self.gets_terminal.store(true, Ordering::Relaxed);
                self.resume();
                return;
            }
            if signal != SIGTSTP && !wants_terminal {
                // SIGSTOP: whoever sent it resumes it.
                return;
            }
            if wants_terminal {
                self.gets_terminal.store(true, Ordering::Relaxed);
            }
            self.take_terminal();
            // Stops this process's group (the default action), as Ctrl-Z
            // would without `shmio lock`, so that the shell sees the job
            // stop (all of it: a pipeline too); `fg` or `bg` resumes it, and
            // the SIGCONT resumes the command. In an orphaned process group
            // (no shell to resume it) the signal is discarded: no stop.
            // SAFETY: kill takes no pointers.
            unsafe { libc::kill(0, SIGTSTP) };
            // Resumed, or never stopped. A command that needs the terminal
            // is not resumed without it: it would stop again at once, and
            // again, for as long as this process has nobody to stop for.
            if !wants_terminal || terminal.is_ours() {
                self.resume();
            }
        }

        /// Resumes the command, giving it the terminal first if it should
        /// have it and this process has it.
        fn resume(&self) {
            if let Some(terminal) = &self.terminal {
                if self.gets_terminal.load(Ordering::Relaxed) && terminal.is_ours() {
                    let _ = give_terminal(terminal.0.as_raw_fd(), self.group);
                }
            }
            self.signal(SIGCONT);
        }

        /// Takes the terminal back from the command's group, if it has it.
        fn take_terminal(&self) {
            if let Some(terminal) = &self.terminal {
                // SAFETY: tcgetpgrp and getpgrp only read; the descriptor is open.
                let (foreground, ours) =
                    unsafe { (libc::tcgetpgrp(terminal.0.as_raw_fd()), libc::getpgrp()) };
                if foreground == self.group {
                    let _ = give_terminal(terminal.0.as_raw_fd(), ours);
                }
            }
        }

        /// Waits for what the command left running in its group.
        #[cfg(target_os = "linux")]
        fn wait_for_the_rest(&self) {
            loop {
                // SAFETY: a null status pointer is allowed; this only reaps
                // children of this process in the command's group (the
                // subreaper made the command's orphans ours).
                let waited = unsafe { libc::waitpid(-self.group, std::ptr::null_mut(), 0) };
                if waited == -1 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                    // ECHILD: none left.
                    return;
                }
            }
        }

        /// Waits for what the command left running in its group: without a
        /// subreaper they are not this process's children, so by polling.
        #[cfg(not(target_os = "linux"))]
        fn wait_for_the_rest(&self) {
            loop {
                // SAFETY: a null status pointer is allowed; WNOHANG never blocks.
                while unsafe { libc::waitpid(-self.group, std::ptr::null_mut(), libc::WNOHANG) } > 0
                {
                }
                // SAFETY: kill takes no pointers; signal 0 only checks that
                // the group has a member.
                let alive = unsafe { libc::kill(-self.group, 0) } == 0
                    || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH);
                if !alive {
                    return;
                }
                std::thread::sleep(signals::POLL);
            }
        }
    }

    /// The controlling terminal of this process.
    struct Terminal(File);

    impl Terminal {
        fn open() -> Option<Terminal> {
            OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_NOCTTY)
                .open("/dev/tty")
                .ok()
                .map(Terminal)
        }

        /// Whether this process's group is the terminal's foreground group.
        fn is_ours(&self) -> bool {
            // SAFETY: tcgetpgrp and getpgrp only read; the descriptor is open.
            unsafe { libc::tcgetpgrp(self.0.as_raw_fd()) == libc::getpgrp() }
        }
    }

    /// Writes this process's id, and a newline, to `fd` (the guard's
    /// input), in one write and without allocating: this runs between fork
    /// and `exec`.
    fn write_own_pid(fd: libc::c_int) {
        let mut line = [0u8; 16];
        let mut start = line.len() - 1;
        line[start] = b'\n';
        let mut pid = std::process::id();
        loop {
            start -= 1;
            line[start] = b'0' + (pid % 10) as u8;
            pid /= 10;
            if pid == 0 {
                break;
            }
        }
        // SAFETY: signal and write are async-signal-safe, and the pointer
        // and length are those of `line[start..]`. A guard gone already
        // must not kill the command with SIGPIPE (std has reset it to its
        // default for the command): ignored for the write only.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_IGN);
            libc::write(fd, line[start..].as_ptr().cast(), line.len() - start);
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }

    /// Makes `group` the foreground group of the terminal `fd`. A process
    /// in the background doing this would get SIGTTOU (and stop): it is
    /// blocked meanwhile, which lets the call through.
    fn give_terminal(fd: libc::c_int, group: libc::pid_t) -> io::Result<()> {
        // SAFETY: the sets are initialised by sigemptyset before use; the
        // mask changes only for this thread, and is restored before return.
        unsafe {
            let mut block: libc::sigset_t = std::mem::zeroed();
            let mut previous: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut block);
            libc::sigaddset(&mut block, SIGTTOU);
            libc::pthread_sigmask(libc::SIG_BLOCK, &block, &mut previous);
            let result = libc::tcsetpgrp(fd, group);
            let error = io::Error::last_os_error();
            libc::pthread_sigmask(libc::SIG_SETMASK, &previous, std::ptr::null_mut());
            if result == -1 {
                Err(error)
            } else {
                Ok(())
            }
        }
    }

    /// Whether this process leads its process group: a job of its own, as
    /// a shell starts a command. Inside a script's group it is not, and the
    /// terminal stays with that group, so that Ctrl-C still reaches the
    /// script (which would go on to its next command otherwise).
    fn is_a_job() -> bool {
        // SAFETY: getpgrp only reads.
        let group = unsafe { libc::getpgrp() };
        group == std::process::id() as libc::pid_t
    }

    /// Whether stdout is a pipe or a socket: in a pipeline such as
    /// `shmio lock m -- cmd | less`, the next program may need the terminal
    /// (taking it would stop `less`), so it stays with `shmio lock`'s group.
    fn stdout_is_a_pipe() -> bool {
        let Ok(stdout) = io::stdout().as_fd().try_clone_to_owned() else {
            return false;
        };
        File::from(stdout)
            .metadata()
            .is_ok_and(|meta| meta.file_type().is_fifo() || meta.file_type().is_socket())
    }
}

#[cfg(windows)]
mod imp {
    use std::io;
    use std::process::{Command, ExitStatus};

    use windows_sys::Win32::Foundation::{CloseHandle, HANDLE};
    use windows_sys::Win32::System::JobObjects::{
        AssignProcessToJobObject, CreateJobObjectW, JobObjectBasicAccountingInformation,
        JobObjectExtendedLimitInformation, QueryInformationJobObject, SetInformationJobObject,
        JOBOBJECT_BASIC_ACCOUNTING_INFORMATION, JOBOBJECT_EXTENDED_LIMIT_INFORMATION,
        JOB_OBJECT_LIMIT_BREAKAWAY_OK, JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE,
    };
    use windows_sys::Win32::System::Threading::GetCurrentProcess;

    use crate::error::{Error, Result};
    use crate::signals;

    pub fn run(mut command: Command, program: &str) -> Result<ExitStatus> {
        // Before the command starts, so that it is in the job from its
        // first instruction (a process inherits its parent's job).
        let job = match Job::enter() {
            Ok(job) => Some(job),
            Err(error) => {
                eprintln!(
                    "shmio: warning: cannot tie {program} to this process ({error}): \
                     killed, this process would leave it running"
                );
                None
            }
        };
        signals::check()?;
        let mut child = command
            .spawn()
            .map_err(|error| super::cannot_run(program, error))?;
        let status = match child.wait() {
            Ok(status) => status,
            Err(error) => {
                // Unlocking with the command alive is what must not happen.
                let _ = child.kill();
                return Err(Error::io(format!("waiting for {program}"), error));
            }
        };
        if let Some(job) = &job {
            job.wait_for_the_rest();
        }
        Ok(status)
    }

    /// A job object this process is in, with the command and its children.
    struct Job(HANDLE);

    impl Job {
        fn enter() -> io::Result<Job> {
            // SAFETY: no security attributes (so the handle is not
            // inherited: the job must close when this process dies) and no name.
            let handle = unsafe { CreateJobObjectW(std::ptr::null(), std::ptr::null()) };
            if handle.is_null() {
                return Err(io::Error::last_os_error());
            }
            let job = Job(handle);
            // Breaking away stays possible (programs that ask and are refused
            // fail), as a Unix daemon can leave the process group.
            job.limit(JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE | JOB_OBJECT_LIMIT_BREAKAWAY_OK)?;
            // SAFETY: both handles are valid; the current-process
            // pseudo-handle needs no closing.
            if unsafe { AssignProcessToJobObject(job.0, GetCurrentProcess()) } == 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(job)
        }

        fn limit(&self, flags: u32) -> io::Result<()> {
            let mut info = JOBOBJECT_EXTENDED_LIMIT_INFORMATION::default();
            info.BasicLimitInformation.LimitFlags = flags;
            // SAFETY: `info` is the structure this class takes, of the size given.
            let done = unsafe {
                SetInformationJobObject(
                    self.0,
                    JobObjectExtendedLimitInformation,
                    (&raw const info).cast(),
                    size_of::<JOBOBJECT_EXTENDED_LIMIT_INFORMATION>() as u32,
                )
            };
            if done == 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        }

        /// How many processes are in the job besides this one.
        fn others(&self) -> io::Result<u32> {
            let mut info = JOBOBJECT_BASIC_ACCOUNTING_INFORMATION::default();
            // SAFETY: `info` is the structure this class fills, of the size given.
            let done = unsafe {
                QueryInformationJobObject(
                    self.0,
                    JobObjectBasicAccountingInformation,
                    (&raw mut info).cast(),
                    size_of::<JOBOBJECT_BASIC_ACCOUNTING_INFORMATION>() as u32,
                    std::ptr::null_mut(),
                )
            };
            if done == 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(info.ActiveProcesses.saturating_sub(1))
        }

        /// Waits for what the command left running in the job. There is no
        /// event for "only this process left", so by polling.
        fn wait_for_the_rest(&self) {
            while self.others().is_ok_and(|others| others > 0) {
                std::thread::sleep(signals::POLL);
            }
        }
    }

    impl Drop for Job {
        /// On every way out but being killed: without the limit, closing
        /// the job's last handle (now, or as this process exits) kills
        /// nothing, so the exit code stays this process's own.
        fn drop(&mut self) {
            let _ = self.limit(0);
            // SAFETY: the handle is this job's, closed once.
            unsafe { CloseHandle(self.0) };
        }
    }
}
