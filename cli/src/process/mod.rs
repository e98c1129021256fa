//! Child processes: started in roles or as any program, waited for with
//! bounds, killed, read; and the child's side of that. The CLI's workers,
//! `lock`'s guard, `listen`'s handlers and the benchmark harness's
//! children run through it; so do the workspace's tests, through the test
//! kit (`shmio-testkit`, not published), which adds the helpers only tests
//! need.
//!
//! Its one job is "start a process, wait until it is ready, kill it or
//! wait for it, read what it printed", with every wait bounded, so that a
//! test that goes wrong fails with a message instead of hanging, and a
//! tool's child never outlives it; and the child's side of that ("die with
//! my parent, exit after my lifetime, say I am ready"). Every line of such
//! code in the workspace is here. It ships with the CLI because the CLI
//! runs children; nothing in it knows shmio.
//!
//! The tests use the forms that panic; a tool uses the ones that return
//! what went wrong (see [Tools](#tools)).
//!
//! # Roles
//!
//! A multi-process test re-runs its own binary as a child in a *role*. A
//! file declares its roles once, with [`roles!`]: an enum `Role` whose
//! variants name what the child runs, so a misspelt role does not compile.
//! The parent builds a child with `Role::X.spawn()` (a [`Spawn`]), gives it
//! what it needs in its environment ([`Spawn::env`], read with [`arg`]),
//! starts it, and waits for it ([`Child`]). In a test binary, [`roles!`]
//! also writes the test `child_entry` through which the child runs its
//! role; it does nothing in a normal run.
//!
//! ```no_run
//! // tests/reply.rs (the test kit re-exports all of this)
//! use shmio_cli::process::arg;
//!
//! shmio_cli::roles! {
//!     Reply => child_reply(),
//!     Hold => child_hold(),
//! }
//!
//! fn child_reply() {
//!     // Open arg("NAME"), read what the parent wrote, write back.
//! #   let _ = arg("NAME");
//! }
//!
//! fn child_hold() {
//!     // Take what the test kills this child holding, then:
//!     shmio_cli::process::ready();
//!     shmio_cli::process::until_killed()
//! }
//!
//! #[test]
//! fn a_child_replies() {
//!     let name = "reply";
//!     Role::Reply.spawn().env("NAME", &name).start().wait_success();
//! }
//!
//! #[test]
//! fn a_killed_holder() {
//!     // Killed (SIGKILL; TerminateProcess on Windows) once it said it was ready.
//!     let _dead = Role::Hold.spawn().env("NAME", "held").kill_when_ready();
//! }
//! # fn main() {}
//! ```
//!
//! # Any binary, any program
//!
//! A binary that is not a test harness (a benchmark, a tool's workers)
//! declares its roles the same way and calls [`run_child`] first thing in
//! `main`; [`Spawn::program`] starts any other program (another binary,
//! the same binary with arguments of its own, a shell) with the same
//! bounded waits, its stdout and stderr collected:
//!
//! ```
//! use std::time::Duration;
//!
//! shmio_cli::roles! {
//!     Echo => println!("{}", shmio_cli::process::arg("WORDS")),
//!     Serve => serve(),
//! }
//!
//! fn serve() {
//!     shmio_cli::process::ready();
//!     // ... serve the parent until it closes our stdin ...
//!     std::io::copy(&mut std::io::stdin(), &mut std::io::sink()).unwrap();
//! }
//!
//! fn main() {
//!     // The child's side: play the role the environment names, if any.
//!     if shmio_cli::process::run_child::<Role>() {
//!         return;
//!     }
//!
//!     // Run a child to the end and read what it printed.
//!     let done = Role::Echo.spawn().env("WORDS", "hello").run();
//!     assert!(done.status.success());
//!     assert!(done.stdout_text().contains("hello"));
//!
//!     // Start one, wait (bounded) until it is ready, then let it go.
//!     let mut server = Role::Serve
//!         .spawn()
//!         .stdin(shmio_cli::process::Input::Pipe)
//!         .limit(Duration::from_secs(30))
//!         .start();
//!     server.wait_ready();
//!     server.close_stdin();
//!     server.wait_success();
//! }
//! ```
//!
//! # Tools
//!
//! A program whose failures are errors, not panics (the CLI, the bench
//! binary), starts its children with [`Spawn::try_start`] (and
//! [`Spawn::this_binary`] for itself, with a subcommand or a variable of
//! its own as the role), and waits with the `checked_` forms
//! ([`Child::checked_wait_ready`], [`Child::checked_wait`],
//! [`Child::checked_finish`], [`Child::checked_kill`]), or with
//! [`Child::wait_within`], which leaves a child that outlives the wait
//! running for the caller to decide about. Each returns a [`Failure`] (or
//! an `io::Error`) that says what happened, for the program's own error
//! type. A child that must outlive its handle is [`Child::detach`]ed.
//! The child's side has [`try_child_setup`], [`try_ready`], and
//! [`die_with_parent`] and [`limit_lifetime`] for a child with a policy of
//! its own; [`checked_poll_until`] and [`checked_within`] bound the other
//! waits.
//!
//! # Bounds
//!
//! - Every wait on a [`Child`] (ready, a line, its exit, its output) is
//!   bounded by its [`limit`](Spawn::limit) ([`LIMIT`] by default): then
//!   the child is killed and the wait panics (or, in the `checked_` forms,
//!   returns a [`Failure`]).
//! - A child that calls [`child_setup`] (a role does, through
//!   [`run_child`]) lives at most its [`lifetime`](Spawn::lifetime)
//!   ([`LIFETIME`] by default) and, on Linux, dies with its parent.
//! - A [`Child`] dropped while it runs is killed and reaped, unless it was
//!   [`detach`](Child::detach)ed. [`kill_by_id`] kills (Unix) a child
//!   known only by its id.
//! - [`wait_until`], [`poll_until`] and [`within`] bound the other waits: a
//!   condition another process makes true, a call that might hang.

mod child;
mod role;
mod wait;

pub use child::{kill_by_id, Child, Failure, Finished, Input, Output, Spawn, LIFETIME, LIMIT};
pub use role::{
    arg, child_setup, die_with_parent, limit_lifetime, ready, run_child, try_child_setup,
    try_ready, until_killed, Role, ROLE_VAR, WATCHDOG_EXIT,
};
pub use wait::{
    checked_poll_until, checked_wait_until, checked_within, poll_until, wait_until, within,
};
