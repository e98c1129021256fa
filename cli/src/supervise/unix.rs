//! `shmio lock`'s supervision on Unix: the command's process group, signals
//! passed on, the terminal shared, and the guard (see the parent module).

use std::fs::{File, OpenOptions};
use std::io::{self, IsTerminal, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{ChildStdin, Command, ExitCode, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rustix::process::{
    getpgrp, getpid, kill_current_process_group, kill_process_group, waitpgid, waitpid, Pid,
    Signal, WaitOptions,
};
use rustix::termios::{tcgetpgrp, tcsetpgrp};
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
    let mut watched = Signals::new(watched).map_err(|e| Error::io("cannot catch signals", e))?;
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
            // SAFETY: the terminal's descriptor is open in this forked
            // child: the parent holds it open until the spawn returns.
            let fd = unsafe { BorrowedFd::borrow_raw(fd) };
            // process_group(0) made the group before this runs.
            let _ = give_terminal(fd, getpid());
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
        group: pid_of(child.id()).ok_or_else(|| {
            Error::io(
                format!("running {program}"),
                io::Error::other("the command has no process id"),
            )
        })?,
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
        .and_then(|line| line.parse::<u32>().ok())
        .and_then(pid_of);
    if let Some(group) = group.filter(|group| !group.is_init()) {
        if lines.next() != Some("done") {
            // `shmio lock` died before the group was done: what is left of
            // it goes now.
            let _ = kill_process_group(group, Signal::KILL);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The command's process group, and the terminal it may be given.
struct Job {
    /// The command's pid, which is its process group's id.
    group: Pid,
    terminal: Option<Terminal>,
    /// Whether the command gets the terminal when `shmio lock` has it.
    gets_terminal: AtomicBool,
}

impl Job {
    fn signal(&self, signal: i32) {
        // The id is the command's group while one of its members is
        // unreaped (and `run` stops sending right after reaping the last).
        if let Some(signal) = Signal::from_named_raw(signal) {
            let _ = kill_process_group(self.group, signal);
        }
    }

    /// Waits for the command itself, following it through job control.
    fn wait_for_command(&self, program: &str) -> Result<ExitStatus> {
        // Stops matter only with a terminal to share.
        let options = if self.terminal.is_some() {
            WaitOptions::UNTRACED
        } else {
            WaitOptions::empty()
        };
        loop {
            match waitpid(Some(self.group), options) {
                Ok(Some((_, status))) => match status.stopping_signal() {
                    Some(signal) => self.stopped(signal),
                    None => return Ok(ExitStatus::from_raw(status.as_raw())),
                },
                Ok(None) | Err(rustix::io::Errno::INTR) => {}
                Err(error) => {
                    // Unlocking with the command alive is what must not
                    // happen: it goes first.
                    self.signal(SIGKILL);
                    return Err(Error::io(format!("waiting for {program}"), error.into()));
                }
            }
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
        let _ = kill_current_process_group(Signal::TSTP);
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
                let _ = give_terminal(terminal.0.as_fd(), self.group);
            }
        }
        self.signal(SIGCONT);
    }

    /// Takes the terminal back from the command's group, if it has it.
    fn take_terminal(&self) {
        if let Some(terminal) = &self.terminal {
            if tcgetpgrp(&terminal.0).is_ok_and(|foreground| foreground == self.group) {
                let _ = give_terminal(terminal.0.as_fd(), getpgrp());
            }
        }
    }

    /// Waits for what the command left running in its group.
    #[cfg(target_os = "linux")]
    fn wait_for_the_rest(&self) {
        // This reaps only children of this process in the command's group
        // (the subreaper made the command's orphans ours).
        loop {
            match waitpgid(self.group, WaitOptions::empty()) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                // ECHILD: none left.
                Err(_) => return,
            }
        }
    }

    /// Waits for what the command left running in its group: without a
    /// subreaper they are not this process's children, so by polling.
    #[cfg(not(target_os = "linux"))]
    fn wait_for_the_rest(&self) {
        loop {
            while let Ok(Some(_)) = waitpgid(self.group, WaitOptions::NOHANG) {}
            // Signal 0 only checks that the group has a member.
            let alive = match rustix::process::test_kill_process_group(self.group) {
                Ok(()) => true,
                Err(error) => error != rustix::io::Errno::SRCH,
            };
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
        tcgetpgrp(&self.0).is_ok_and(|foreground| foreground == getpgrp())
    }
}

/// Writes this process's id, and a newline, to `fd` (the guard's
/// input), in one write and without allocating: this runs between fork
/// and `exec`.
fn write_own_pid(fd: RawFd) {
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
    // A guard gone already must not kill the command with SIGPIPE (std
    // has reset it to its default for the command): ignored for the write
    // only. (rustix has no `signal`.)
    // SAFETY: `signal` is async-signal-safe and takes no pointers; the
    // guard's pipe is open in this forked child (the parent holds it).
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        let _ = rustix::io::write(BorrowedFd::borrow_raw(fd), &line[start..]);
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Makes `group` the foreground group of the terminal `fd`. A process
/// in the background doing this would get SIGTTOU (and stop): it is
/// blocked meanwhile, which lets the call through.
fn give_terminal(fd: BorrowedFd<'_>, group: Pid) -> io::Result<()> {
    // The signal mask is libc's: rustix has no `pthread_sigmask`.
    // SAFETY: the sets are initialised by sigemptyset before use; the
    // mask changes only for this thread, and is restored before return.
    let previous = unsafe {
        let mut block: libc::sigset_t = std::mem::zeroed();
        let mut previous: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut block);
        libc::sigaddset(&mut block, SIGTTOU);
        libc::pthread_sigmask(libc::SIG_BLOCK, &block, &mut previous);
        previous
    };
    let result = tcsetpgrp(fd, group);
    // SAFETY: `previous` is the mask saved above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &previous, std::ptr::null_mut()) };
    Ok(result?)
}

/// Whether this process leads its process group: a job of its own, as
/// a shell starts a command. Inside a script's group it is not, and the
/// terminal stays with that group, so that Ctrl-C still reaches the
/// script (which would go on to its next command otherwise).
fn is_a_job() -> bool {
    getpgrp() == getpid()
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

/// A process id as rustix takes it; `None` for 0 and ids past `i32`.
pub(super) fn pid_of(id: u32) -> Option<Pid> {
    i32::try_from(id).ok().and_then(Pid::from_raw)
}
