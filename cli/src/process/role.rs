//! The child's side: roles (declared with [`roles!`](crate::roles)), what
//! a child does before its role runs (dies with its parent, lives at most
//! its lifetime), and what it may call while it runs ([`ready`],
//! [`until_killed`], [`arg`]).
//!
//! A role travels to the child in one environment variable, [`ROLE_VAR`],
//! as the name of an enum variant; everything else a role needs travels in
//! environment variables of its own (read with [`arg`]).

use std::io::{self, ErrorKind, Write};
use std::time::Duration;

/// The environment variable that names the role a re-run binary plays.
pub const ROLE_VAR: &str = "SHMIO_CHILD_ROLE";
/// How long the child may live at most, in milliseconds (set by the parent).
pub(crate) const LIFETIME_VAR: &str = "SHMIO_CHILD_LIFETIME_MS";
/// The parent's process id, when the child is to die with its parent.
pub(crate) const PARENT_VAR: &str = "SHMIO_CHILD_PARENT";
/// The line a child prints on its stdout when it is ready (see [`ready`]).
pub(crate) const READY_LINE: &str = "shmio child: ready";
/// The exit status of a child that outlived its lifetime or its parent.
pub const WATCHDOG_EXIT: i32 = 70;

/// The roles of one binary: an enum whose variants the binary can be re-run
/// as. Written by [`roles!`](crate::roles), not by hand.
pub trait Role: Copy + Eq + std::fmt::Debug + 'static {
    /// Every role, so that a child finds its own by name.
    const ALL: &'static [Self];
    /// Whether the binary is a libtest harness (an integration test): then
    /// a child runs only the test `child_entry`, the one [`roles!`]
    /// generates.
    const IN_TEST_HARNESS: bool;
    /// The module that invoked [`roles!`] (`module_path!()`), where its
    /// `child_entry` test lives.
    const MODULE: &'static str;

    /// The role's name, as the child finds it in [`ROLE_VAR`].
    fn name(self) -> &'static str;

    /// Plays the role (in the child).
    fn run(self);

    /// The libtest arguments that run only this binary's `child_entry`.
    #[doc(hidden)]
    fn harness_args() -> Vec<String> {
        let entry = match Self::MODULE.split_once("::") {
            Some((_crate, module)) => format!("{module}::child_entry"),
            None => "child_entry".to_owned(),
        };
        vec![
            entry,
            "--exact".into(),
            "--nocapture".into(),
            "--test-threads=1".into(),
        ]
    }
}

/// Declares the roles this binary can be re-run in, once per file: an enum
/// `Role` with one variant per role, each bound to what it runs.
///
/// ```no_run
/// shmio_cli::roles! {
///     Produce => child_produce(),
///     StallSend => child_stall(true),
///     #[cfg(unix)]
///     TouchTruncated => child_touch_truncated(),
/// }
/// # fn child_produce() {}
/// # fn child_stall(_sending: bool) {}
/// # #[cfg(unix)]
/// # fn child_touch_truncated() {}
/// # fn main() {}
/// ```
///
/// generates:
///
/// - `enum Role { Produce, StallSend, TouchTruncated }` (attributes such as
///   `#[cfg]` apply to the variant and its dispatch), implementing
///   [`Role`](crate::process::Role);
/// - `Role::spawn(self) -> Spawn`: this binary again, in that role (see
///   [`Spawn::role`](crate::process::Spawn::role)); a misspelt role does not compile;
/// - in a test binary, the test `child_entry`, which plays the role the
///   environment names and does nothing in a normal test run. A binary that
///   is not a test harness calls [`run_child`](crate::process::run_child) first
///   thing in `main` instead.
#[macro_export]
macro_rules! roles {
    ($( $(#[$attr:meta])* $role:ident => $run:expr ),+ $(,)?) => {
        /// The roles this binary is re-run in (see `roles!`).
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        enum Role {
            $( $(#[$attr])* $role, )+
        }

        impl $crate::process::Role for Role {
            const ALL: &'static [Self] = &[$( $(#[$attr])* Role::$role, )+];
            const IN_TEST_HARNESS: bool = cfg!(test);
            const MODULE: &'static str = module_path!();

            fn name(self) -> &'static str {
                match self {
                    $( $(#[$attr])* Role::$role => stringify!($role), )+
                }
            }

            fn run(self) {
                match self {
                    $( $(#[$attr])* Role::$role => {
                        $run;
                    } )+
                }
            }
        }

        impl Role {
            /// This binary again, as a child process in this role.
            #[allow(dead_code)]
            fn spawn(self) -> $crate::process::Spawn {
                $crate::process::Spawn::role(self)
            }
        }

        /// The entry point of every child role; a no-op in a normal test run.
        #[test]
        fn child_entry() {
            $crate::process::run_child::<Role>();
        }
    };
}

/// The child's entry point: if [`ROLE_VAR`] names one of `R`'s roles, sets
/// the child up ([`child_setup`]), plays the role and returns true (the
/// caller then returns: the child is done); otherwise returns false at once
/// (this process is no child). A name that is not one of `R`'s roles is a
/// panic.
pub fn run_child<R: Role>() -> bool {
    let Some(name) = std::env::var_os(ROLE_VAR) else {
        return false;
    };
    let role = R::ALL
        .iter()
        .copied()
        .find(|role| name == role.name())
        .unwrap_or_else(|| {
            panic!(
                "{ROLE_VAR}={name:?} is none of this binary's roles {:?}",
                R::ALL
            )
        });
    child_setup();
    role.run();
    true
}

/// What a child does before anything else (and [`run_child`] does for it):
/// on Linux it dies with its parent if the parent asked for that (see
/// [`Spawn::dies_with_parent`](crate::process::Spawn::dies_with_parent)); on every
/// platform it exits with [`WATCHDOG_EXIT`] once its lifetime is over (see
/// [`Spawn::lifetime`](crate::process::Spawn::lifetime)), so that no child outlives
/// a parent that could not kill it. Outside a child started by this kit it
/// does nothing. Call it once. A parent already gone is an exit with
/// [`WATCHDOG_EXIT`]; any other failure a panic ([`try_child_setup`]
/// returns both).
pub fn child_setup() {
    match try_child_setup() {
        Ok(()) => {}
        Err(error) if error.kind() == ErrorKind::NotFound => {
            eprintln!("{}: {error}: exiting", this_process());
            std::process::exit(WATCHDOG_EXIT);
        }
        Err(error) => panic!("{error}"),
    }
}

/// [`child_setup`], returning the failure: the parent is already gone
/// ([`ErrorKind::NotFound`]), or the parent-death signal cannot be set.
pub fn try_child_setup() -> io::Result<()> {
    if let Some(parent) = std::env::var(PARENT_VAR)
        .ok()
        .and_then(|pid| pid.parse::<u32>().ok())
    {
        die_with_parent(Some(parent)).map_err(|error| {
            if is_gone(&error) {
                io::Error::new(ErrorKind::NotFound, format!("parent {parent} is gone"))
            } else {
                io::Error::new(
                    error.kind(),
                    format!("setting the parent-death signal: {error}"),
                )
            }
        })?;
    }
    if let Some(lifetime) = std::env::var(LIFETIME_VAR)
        .ok()
        .and_then(|ms| ms.parse::<u64>().ok())
    {
        limit_lifetime(Duration::from_millis(lifetime));
    }
    Ok(())
}

/// Makes this process die (SIGKILL) when the thread that started it ends,
/// on Linux (its parent-death signal); elsewhere it does nothing. With
/// `parent`, the process that started this one: if that is no longer this
/// process's parent (it died before the signal was set), an error that
/// says so (`ESRCH`), since no signal will ever come. (A parent outside
/// this process's pid namespace has no pid here: then only the signal can
/// tell.)
///
/// It allocates nothing and makes only async-signal-safe calls (`prctl`,
/// `getppid`), so that it may also run between `fork` and `exec` (in a
/// `pre_exec` hook), for a program that does not call it itself.
pub fn die_with_parent(parent: Option<u32>) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use rustix::process::{getppid, set_parent_process_death_signal, Signal};
        set_parent_process_death_signal(Some(Signal::KILL))?;
        // The parent may have gone before the line above took effect.
        if let Some(parent) = parent {
            if getppid().is_some_and(|pid| pid.as_raw_nonzero().get() as u32 != parent) {
                return Err(rustix::io::Errno::SRCH.into());
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = parent;
    Ok(())
}

/// Whether `error` is [`die_with_parent`]'s "the parent is gone".
fn is_gone(error: &io::Error) -> bool {
    #[cfg(target_os = "linux")]
    return error.raw_os_error() == Some(rustix::io::Errno::SRCH.raw_os_error());
    #[cfg(not(target_os = "linux"))]
    {
        let _ = error;
        false
    }
}

/// Makes this process exit with [`WATCHDOG_EXIT`] after `lifetime`, whatever
/// it is doing then (a thread that sleeps that long: not a wait for anything).
pub fn limit_lifetime(lifetime: Duration) {
    std::thread::Builder::new()
        .name("shmio child lifetime".into())
        .spawn(move || {
            std::thread::sleep(lifetime);
            eprintln!(
                "{}: still running after its lifetime of {lifetime:?}: exiting",
                this_process()
            );
            std::process::exit(WATCHDOG_EXIT);
        })
        .expect("start the lifetime thread");
}

/// This process, for its last words: its program's name and its id.
fn this_process() -> String {
    let program = std::env::args_os()
        .next()
        .map(std::path::PathBuf::from)
        .and_then(|path| {
            path.file_name()
                .map(|name| name.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "child".to_owned());
    format!("{program} {}", std::process::id())
}

/// Tells the parent this child is ready: a line on stdout that
/// [`Child::wait_ready`](crate::process::Child::wait_ready) waits for (the child's
/// stdout must be collected, as it is for a role by default, or a pipe the
/// parent reads the rest of, if data follows).
#[track_caller]
pub fn ready() {
    try_ready().unwrap_or_else(|error| panic!("telling the parent this child is ready: {error}"));
}

/// [`ready`], returning the failure (a stdout closed, say).
pub fn try_ready() -> io::Result<()> {
    let mut out = std::io::stdout().lock();
    // A line of its own, whatever was printed before (libtest's header).
    out.write_all(format!("\n{READY_LINE}\n").as_bytes())?;
    out.flush()
}

/// Waits to be killed (what a child does once it holds what the test kills
/// it holding). Bounded by the child's lifetime.
pub fn until_killed() -> ! {
    loop {
        std::thread::park();
    }
}

/// The environment variable `key` the parent gave this child; a panic
/// naming it if there is none.
#[track_caller]
pub fn arg(key: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| panic!("this child needs {key} in its environment"))
}
