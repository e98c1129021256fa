//! shmio's test kit (dev-only, not published): child processes in roles,
//! waits that are always bounded, and the small helpers the tests share.
//!
//! Its one job beyond the helpers is "start a process, wait until it is
//! ready, kill it or wait for it, read what it printed", with every wait
//! bounded, so that a test that goes wrong fails with a message instead of
//! hanging. The library's integration tests (`tests/`), the CLI's tests
//! (`cli/tests/`) and anything else that re-runs a binary as a child use
//! it.
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
//! // tests/reply.rs
//! use shmio_testkit::{arg, unique_name};
//!
//! shmio_testkit::roles! {
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
//!     shmio_testkit::ready();
//!     shmio_testkit::until_killed()
//! }
//!
//! #[test]
//! fn a_child_replies() {
//!     let name = unique_name("reply");
//!     Role::Reply.spawn().env("NAME", &name).start().wait_success();
//! }
//!
//! #[test]
//! fn a_killed_holder() {
//!     // Killed (SIGKILL; TerminateProcess on Windows) once it said it was ready.
//!     let _dead = Role::Hold.spawn().env("NAME", unique_name("held")).kill_when_ready();
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
//! shmio_testkit::roles! {
//!     Echo => println!("{}", shmio_testkit::arg("WORDS")),
//!     Serve => serve(),
//! }
//!
//! fn serve() {
//!     shmio_testkit::ready();
//!     // ... serve the parent until it closes our stdin ...
//!     std::io::copy(&mut std::io::stdin(), &mut std::io::sink()).unwrap();
//! }
//!
//! fn main() {
//!     // The child's side: play the role the environment names, if any.
//!     if shmio_testkit::run_child::<Role>() {
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
//!         .stdin(shmio_testkit::Input::Pipe)
//!         .limit(Duration::from_secs(30))
//!         .start();
//!     server.wait_ready();
//!     server.close_stdin();
//!     server.wait_success();
//! }
//! ```
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
//! - A [`Child`] dropped while it runs is killed and reaped.
//! - [`wait_until`], [`poll_until`] and [`within`] bound the other waits: a
//!   condition another process makes true, a call that might hang.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod child;
mod role;
mod support;
mod wait;

pub use child::{Child, Failure, Finished, Input, Output, Spawn, LIFETIME, LIMIT};
pub use role::{
    arg, child_setup, limit_lifetime, ready, run_child, until_killed, Role, ROLE_VAR, WATCHDOG_EXIT,
};
#[cfg(target_os = "linux")]
pub use support::root_with;
pub use support::{
    checksum, mix, shm_entries_with_prefix, shm_entry_exists, unique, unique_name, Rng,
};
pub use wait::{checked_wait_until, poll_until, wait_until, within};
