//! `shmio lock` never lets its command outlive the lock: stop requests are
//! passed on and waited out, a killed `shmio lock` takes its command (and
//! what that started) with it, and an interactive command still gets the
//! terminal. Real processes; every wait is bounded.
//!
//! The command is mostly `shmio __worker linger MARKER CODE`: it holds the
//! named mapping MARKER while it lives (so `Mapping::open(MARKER)` says
//! whether it does), has no parent-death signal of its own, reports the
//! stop requests it gets and carries on, and exits with CODE when its
//! stdin (this test's pipe) closes.

mod common;

use std::time::Duration;

use common::{command, poll_until, unique, Child, Input, POLL, SHMIO};
use shmio::{Error, Mapping, NamedMutex};

/// How long a command may take to die with a killed `shmio lock`: well
/// short of a worker's own limit (60 s), which would end it anyway.
const DEATH: Duration = Duration::from_secs(20);
/// How long something that must not happen is given to happen anyway.
const GRACE: Duration = Duration::from_millis(300);

/// The mutex `shmio lock NAME` takes, opened here too.
fn mutex_of(name: &str) -> NamedMutex {
    NamedMutex::options()
        .create_or_open_for_mapping(name)
        .expect("open the mutex")
}

#[track_caller]
fn assert_locked(mutex: &NamedMutex, why: &str) {
    assert!(
        matches!(mutex.try_lock(), Err(shmio::Error::WouldBlock)),
        "still locked: {why}"
    );
}

#[track_caller]
fn assert_free(mutex: &NamedMutex) {
    assert!(mutex.try_lock().is_ok(), "the lock is free");
}

/// Whether the mapping `name` (a worker's sign of life) still exists.
fn exists(name: &str) -> bool {
    match Mapping::open(name) {
        Ok(_) => true,
        Err(Error::NotFound { .. }) => false,
        Err(error) => panic!("opening {name}: {error}"),
    }
}

/// `shmio lock NAME -- CMD..`, its stdin a pipe and its stdout collected
/// (the command shares them), its stderr collected.
fn start_lock(name: &str, command: &[&str]) -> Child {
    start_lock_ignoring(name, command, &[])
}

/// [`start_lock`], with the signals `ignored` ignored from the start, and
/// every other of the ones it passes on at its default action (whatever
/// these tests were started with: a script's `cargo test &` ignores SIGINT
/// and SIGQUIT).
fn start_lock_ignoring(name: &str, command_line: &[&str], ignored: &[i32]) -> Child {
    let mut args = vec!["lock", name, "--"];
    args.extend_from_slice(command_line);
    let lock = command(&args).stdin(Input::Pipe);
    #[cfg(unix)]
    let lock = {
        let ignored = ignored.to_vec();
        lock.configure(move |lock| {
            use std::os::unix::process::CommandExt;
            // SAFETY: signal is async-signal-safe; the loop allocates nothing.
            unsafe {
                lock.pre_exec(move || {
                    for signal in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGQUIT] {
                        let action = if ignored.contains(&signal) {
                            libc::SIG_IGN
                        } else {
                            libc::SIG_DFL
                        };
                        libc::signal(signal, action);
                    }
                    Ok(())
                })
            };
        })
    };
    #[cfg(windows)]
    assert!(ignored.is_empty());
    lock.start()
}

/// SIGTERM (as `kill` sends it) reaches the command, which carries on; the
/// lock stays held until it exits, then `shmio lock` exits with its code.
/// Before: the request was swallowed and never reached the command.
#[cfg(unix)]
#[test]
fn a_stop_request_reaches_the_command_and_the_lock_waits_for_it() {
    let name = unique("term");
    let marker = unique("term-marker");
    let mutex = mutex_of(&name);
    let mut lock = start_lock(&name, &[SHMIO, "__worker", "linger", &marker, "3"]);
    lock.expect_line("ready");
    assert_locked(&mutex, "the command runs");
    lock.signal(libc::SIGTERM);
    lock.expect_line(&format!("got signal {}", libc::SIGTERM));
    std::thread::sleep(GRACE);
    assert!(lock.exited().is_none(), "shmio lock waits");
    assert!(exists(&marker), "the command carries on");
    assert_locked(&mutex, "the command has not exited");
    lock.close_stdin(); // the command exits 3
    let done = lock.finish();
    assert_eq!(done.status.code(), Some(3), "{}", done.stderr_text());
    assert!(!exists(&marker));
    assert_free(&mutex);
}

/// A command that a stop request ends: `shmio lock` exits as a shell would
/// report it (128 + the signal), and only then is the lock free.
#[cfg(unix)]
#[test]
fn a_command_ended_by_a_stop_request_gives_its_signal() {
    for signal in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        let name = unique("ended");
        let marker = unique("ended-marker");
        let mutex = mutex_of(&name);
        // `hold` keeps the default action of these signals.
        let mut lock = start_lock(&name, &[SHMIO, "__worker", "hold", &marker, "4K"]);
        lock.expect_line("ready existed=false");
        lock.signal(signal);
        let status = lock.wait();
        assert_eq!(status.code(), Some(128 + signal), "signal {signal}");
        assert!(!exists(&marker));
        assert_free(&mutex);
    }
}

/// A signal `shmio lock` was started ignoring (`nohup shmio lock ..`) is
/// not passed on, and the command inherits it ignored. Before: `shmio
/// lock` caught it, and the command got it at its default action.
#[cfg(target_os = "linux")]
#[test]
fn an_ignored_signal_stays_ignored() {
    let name = unique("nohup");
    let marker = unique("nohup-marker");
    // (SigIgn: the mask of ignored signals, SIGHUP its lowest bit.)
    let script = r#"ignored=$(sed -n 's/^SigIgn:[[:space:]]*//p' /proc/$$/status)
        [ $((0x$ignored & 1)) = 1 ] && echo "SIGHUP ignored"
        exec "$0" __worker linger "$1" 3"#;
    let mut lock = start_lock_ignoring(
        &name,
        &["sh", "-c", script, SHMIO, &marker],
        &[libc::SIGHUP],
    );
    lock.expect_line("SIGHUP ignored");
    lock.expect_line("ready");
    lock.signal(libc::SIGHUP);
    lock.signal(libc::SIGTERM);
    // Passed on, SIGHUP would have come first (lower signals are handed
    // out first, and it was sent first).
    lock.expect_line(&format!("got signal {}", libc::SIGTERM));
    lock.close_stdin();
    let done = lock.finish();
    assert_eq!(done.status.code(), Some(3), "{}", done.stderr_text());
}

/// The request goes to the command's whole process group (here a shell
/// and the program it runs), and what the command leaves in it when it
/// exits keeps the lock until it exits too. Before: only the shell would
/// have been signalled, and the lock given up as soon as it died.
#[cfg(unix)]
#[test]
fn the_whole_process_group_gets_it_and_is_waited_for() {
    let name = unique("group");
    let marker = unique("group-marker");
    let mutex = mutex_of(&name);
    let script = r#""$0" __worker linger "$1" 0; exit 9"#;
    let mut lock = start_lock(&name, &["sh", "-c", script, SHMIO, &marker]);
    lock.expect_line("ready");
    lock.signal(libc::SIGTERM);
    // The shell dies of it; the worker, a grandchild, reports it.
    lock.expect_line(&format!("got signal {}", libc::SIGTERM));
    std::thread::sleep(GRACE);
    assert!(lock.exited().is_none(), "shmio lock waits");
    assert_locked(&mutex, "the worker the shell left still runs");
    lock.close_stdin();
    let status = lock.wait();
    assert_eq!(
        status.code(),
        Some(128 + libc::SIGTERM),
        "the shell's status"
    );
    assert!(!exists(&marker));
    assert_free(&mutex);
}

/// A command that exits leaving a process running (`cmd &`; on Windows
/// `start /b cmd`), in its process group or job: the lock is held until
/// that process exits too; the exit code is the command's.
#[test]
fn what_the_command_leaves_running_keeps_the_lock() {
    let name = unique("left");
    let marker = unique("left-marker");
    let mutex = mutex_of(&name);
    // A background job's stdin would be /dev/null: fd 3 carries the pipe.
    #[cfg(unix)]
    let command = [
        "sh",
        "-c",
        r#"exec 3<&0; "$0" __worker linger "$1" 0 <&3 3<&- & exit 5"#,
        SHMIO,
        &marker,
    ];
    // (`start` takes a first quoted argument for a title; `/work/..`, the
    // path under Wine, for an option.)
    #[cfg(windows)]
    let shmio = SHMIO.replace('/', "\\");
    #[cfg(windows)]
    let command = [
        "cmd", "/c", "start", "", "/b", &shmio, "__worker", "linger", &marker, "0", "&", "exit",
        "5",
    ];
    let mut lock = start_lock(&name, &command);
    lock.expect_line("ready");
    std::thread::sleep(GRACE);
    assert!(lock.exited().is_none(), "shmio lock waits");
    assert_locked(&mutex, "the worker the command left still runs");
    lock.close_stdin();
    let status = lock.wait();
    assert_eq!(status.code(), Some(5), "the command's exit code");
    assert!(!exists(&marker));
    assert_free(&mutex);
}

/// Kills `shmio lock` while `command` runs (SIGKILL; TerminateProcess on
/// Windows): the worker behind `marker` dies too, and the next locker is
/// told that the previous owner died. This process keeps the mutex open,
/// so that the news outlives the killed owner on Windows too.
fn kill_the_lock_while(name: &str, marker: &str, command_line: &[&str]) {
    let mutex = mutex_of(name);
    let mut lock = start_lock(name, command_line);
    // Kept open (`wait` would close it): the worker would linger for ever
    // (for its own limit, 60 s) if nothing killed it.
    let input = lock.take_stdin();
    lock.expect_line("ready");
    assert_locked(&mutex, "the command runs");
    lock.kill();
    poll_until("the command to die with shmio lock", DEATH, POLL, || {
        !exists(marker)
    });
    drop(input);
    let next = command(&["lock", name, "--", SHMIO, "--version"]).run();
    let stderr = next.stderr_text();
    assert!(next.status.success(), "{stderr}");
    assert_eq!(
        stderr.trim_end(),
        format!("shmio: the previous owner of {name} died holding it")
    );
    assert_free(&mutex);
    // A killed holder's name is stale on Linux: remove it.
    let _ = Mapping::remove(marker);
}

/// Before: the command went on running, unprotected, after `shmio lock`
/// was killed.
#[test]
fn the_command_dies_with_a_killed_lock() {
    let name = unique("killed");
    let marker = unique("killed-marker");
    kill_the_lock_while(&name, &marker, &[SHMIO, "__worker", "linger", &marker, "0"]);
}

/// What the command started (here: the program a script runs) dies too.
#[cfg(unix)]
#[test]
fn what_the_command_started_dies_with_a_killed_lock() {
    let name = unique("killed-sh");
    let marker = unique("killed-sh-marker");
    let script = r#""$0" __worker linger "$1" 0; exit 0"#;
    kill_the_lock_while(&name, &marker, &["sh", "-c", script, SHMIO, &marker]);
}

/// A `shmio lock` run by a `shmio lock`: killing the outer one takes the
/// inner one and its command (on Windows: a job inside a job).
#[test]
fn a_nested_lock_dies_with_a_killed_lock() {
    let name = unique("outer");
    let inner = unique("inner");
    let marker = unique("nested-marker");
    kill_the_lock_while(
        &name,
        &marker,
        &[
            SHMIO, "lock", &inner, "--", SHMIO, "__worker", "linger", &marker, "0",
        ],
    );
    // The inner mutex, killed with its owner, is stale on Linux (elsewhere
    // it went with its last holder): taking it once more removes it.
    let again = command(&["lock", &inner, "--", SHMIO, "--version"]).run();
    let stderr = again.stderr_text();
    assert!(again.status.success(), "{stderr}");
    #[cfg(target_os = "linux")]
    assert!(stderr.contains("died"), "{stderr}");
}

/// Interactive use: `shmio lock` started in the foreground of a terminal
/// (a pseudo-terminal here, whose session it leads, as a login shell
/// would) hands it to the command, or lends it when the command needs it.
#[cfg(target_os = "linux")]
mod terminal {
    use std::fs::File;
    use std::io::{Read, Write};
    use std::os::fd::FromRawFd;
    use std::os::unix::process::CommandExt;
    use std::process::Stdio;
    use std::sync::mpsc::{self, Receiver};
    use std::time::Instant;

    use super::common::{Child, Input, Output, Spawn, LIMIT};
    use super::{unique, SHMIO};

    /// A shell command that says whether the shell is in the foreground
    /// group of its terminal, from /proc/PID/stat (5th field: the process
    /// group, 8th: the terminal's foreground group).
    const WHERE: &str = r#"set -- $(cat /proc/$$/stat); if [ "$5" = "$8" ]; then echo in the foreground; else echo in the background; fi"#;

    /// A pseudo-terminal: both sides, and what it showed.
    struct Pty {
        master: File,
        slave: File,
        seen: Receiver<Vec<u8>>,
        /// What the terminal showed (as text), and how much of it was
        /// expected already.
        text: String,
        checked: usize,
    }

    impl Pty {
        fn open() -> Pty {
            // SAFETY: posix_openpt returns a new descriptor, owned by `master`
            // at once; ptsname_r writes a NUL-terminated name into `path`.
            let (master, path) = unsafe {
                let fd = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
                assert!(fd >= 0, "posix_openpt: {}", std::io::Error::last_os_error());
                let master = File::from_raw_fd(fd);
                assert_eq!(libc::grantpt(fd), 0);
                assert_eq!(libc::unlockpt(fd), 0);
                let mut path = [0 as libc::c_char; 128];
                assert_eq!(libc::ptsname_r(fd, path.as_mut_ptr(), path.len()), 0);
                let path = std::ffi::CStr::from_ptr(path.as_ptr())
                    .to_string_lossy()
                    .into_owned();
                (master, path)
            };
            use std::os::unix::fs::OpenOptionsExt;
            let slave = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_NOCTTY)
                .open(path)
                .expect("open the terminal");
            let mut reader = master.try_clone().unwrap();
            let (send, seen) = mpsc::channel();
            std::thread::spawn(move || {
                let mut buffer = [0; 4096];
                // EIO once no process has the terminal open.
                while let Ok(n @ 1..) = reader.read(&mut buffer) {
                    if send.send(buffer[..n].to_vec()).is_err() {
                        break;
                    }
                }
            });
            Pty {
                master,
                slave,
                seen,
                text: String::new(),
                checked: 0,
            }
        }

        /// Runs `shmio ARGS` as the leader of a new session whose
        /// controlling terminal is this one (its foreground group), with
        /// stdin and stderr on it, and stdout on it or a pipe.
        fn run(&self, args: &[&str], stdout_on_the_terminal: bool) -> Child {
            self.run_program(SHMIO, args, stdout_on_the_terminal)
        }

        /// Runs `program ARGS` so (see [`Pty::run`]).
        fn run_program(&self, program: &str, args: &[&str], stdout_on_the_terminal: bool) -> Child {
            let terminal = || Stdio::from(self.slave.try_clone().unwrap());
            let stdout = if stdout_on_the_terminal {
                Output::Stdio(terminal())
            } else {
                Output::Collect
            };
            Spawn::program(program)
                .args(args)
                .stdin(Input::Stdio(terminal()))
                .stdout(stdout)
                .stderr(Output::Stdio(terminal()))
                .limit(LIMIT)
                .configure(|command| {
                    // SAFETY: setsid, ioctl and signal are async-signal-safe,
                    // and allocate nothing.
                    unsafe {
                        command.pre_exec(|| {
                            if libc::setsid() == -1 || libc::ioctl(0, libc::TIOCSCTTY, 0) == -1 {
                                return Err(std::io::Error::last_os_error());
                            }
                            // As a login shell would have them, whatever these
                            // tests were started with (a script's `cargo test &`
                            // ignores SIGINT and SIGQUIT).
                            for signal in [libc::SIGINT, libc::SIGQUIT] {
                                libc::signal(signal, libc::SIG_DFL);
                            }
                            Ok(())
                        })
                    };
                })
                .start()
        }

        fn type_in(&mut self, keys: &[u8]) {
            self.master.write_all(keys).unwrap();
        }

        /// Waits until the terminal shows `wanted` after what was expected
        /// before.
        #[track_caller]
        fn expect(&mut self, wanted: &str) {
            let deadline = Instant::now() + LIMIT;
            loop {
                if let Some(at) = self.text[self.checked..].find(wanted) {
                    self.checked += at + wanted.len();
                    return;
                }
                let left = deadline.saturating_duration_since(Instant::now());
                match self.seen.recv_timeout(left) {
                    Ok(bytes) => self.text.push_str(&String::from_utf8_lossy(&bytes)),
                    Err(_) => panic!("the terminal never showed {wanted:?}: {:?}", self.text),
                }
            }
        }

        /// What the terminal showed since what was last expected.
        fn since(&self) -> &str {
            &self.text[self.checked..]
        }
    }

    /// The command reads the terminal and gets Ctrl-C from it. Without the
    /// terminal it would be stopped (SIGTTIN) at its first read.
    #[test]
    fn the_command_gets_the_terminal() {
        let name = unique("tty");
        let mut pty = Pty::open();
        let script = format!(r#"{WHERE}; echo ready; read line; echo "got $line""#);
        let mut lock = pty.run(&["lock", &name, "--", "sh", "-c", &script], true);
        pty.expect("in the foreground");
        pty.expect("ready");
        pty.type_in(b"hello\n");
        pty.expect("got hello");
        assert!(lock.wait().success(), "{}", pty.text);

        let script = r#"echo ready; read line; echo "not interrupted""#;
        let mut lock = pty.run(&["lock", &name, "--", "sh", "-c", script], true);
        pty.expect("ready");
        pty.type_in(b"\x03");
        let status = lock.wait();
        assert_eq!(
            status.code(),
            Some(128 + libc::SIGINT),
            "{status:?} {}",
            pty.text
        );
        assert!(!pty.since().contains("not interrupted"), "{}", pty.text);
    }

    /// With stdout a pipe (`shmio lock m -- cmd | less`: the next program may
    /// need the terminal), `shmio lock` keeps the terminal, passes Ctrl-C
    /// on, and lends the terminal to a command that stops to read it.
    #[test]
    fn in_a_pipeline_the_terminal_is_lent_on_demand() {
        let name = unique("tty-pipe");
        let mut pty = Pty::open();
        let script = format!(r#"{WHERE}; echo ready; read line; echo "got $line""#);
        let mut lock = pty.run(&["lock", &name, "--", "sh", "-c", &script], false);
        lock.expect_line("in the background");
        lock.expect_line("ready");
        pty.type_in(b"hello\n");
        lock.expect_line("got hello");
        assert!(lock.wait().success(), "{}", pty.text);

        let script = r#"echo ready; exec sleep 60"#;
        let mut lock = pty.run(&["lock", &name, "--", "sh", "-c", script], false);
        lock.expect_line("ready");
        pty.type_in(b"\x03"); // to `shmio lock`'s group: passed on
        let status = lock.wait();
        assert_eq!(status.code(), Some(128 + libc::SIGINT), "{}", pty.text);
    }

    /// `shmio lock` inside a script (in the script's process group, not a
    /// job of its own) leaves the terminal with that group, so that Ctrl-C
    /// still reaches the script (and is passed on to the command); a
    /// command that reads the terminal is lent it.
    #[test]
    fn inside_a_script_the_terminal_stays_with_the_script() {
        let name = unique("tty-script");
        let mutex = super::mutex_of(&name);
        let mut pty = Pty::open();
        // (The trap runs once the lock has exited: whether a shell goes on
        // after an interrupted command that exits 130, rather than dying of
        // SIGINT, depends on the shell, and on timing with dash.)
        let script = r#"trap 'echo "the script got SIGINT"; exit 1' INT
            "$0" lock "$1" -- sh -c "$2"; echo "the script goes on""#;
        let command = format!(r#"{WHERE}; echo ready; read line; echo "got $line""#);
        let mut sh = pty.run_program("sh", &["-c", script, SHMIO, &name, &command], true);
        pty.expect("in the background");
        pty.expect("ready");
        pty.type_in(b"hello\n");
        pty.expect("got hello");
        pty.expect("the script goes on");
        let status = sh.wait();
        assert!(status.success(), "{}", pty.text);

        let command = "echo ready; exec sleep 60";
        let mut sh = pty.run_program("sh", &["-c", script, SHMIO, &name, command], true);
        pty.expect("ready");
        pty.type_in(b"\x03");
        pty.expect("the script got SIGINT");
        let status = sh.wait();
        assert_eq!(status.code(), Some(1), "{}", pty.text);
        assert!(
            !pty.text.contains("goes on\r\nthe script got"),
            "{}",
            pty.text
        );
        // Passed on to the command, which died of it: the lock is free.
        super::poll_until("the lock to be given up", LIMIT, super::POLL, || {
            mutex.try_lock().is_ok()
        });
    }
}
