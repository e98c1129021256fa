//! The benchmark harness behind `shmio bench` and `shmio demo`'s round
//! trip, and the sides they measure; the bench lab (`bench/`,
//! `shmio-bench`) builds its research tables on the same harness.
//!
//! - [`harness`]: paired runs. Sides take turns in every round (the order
//!   rotating from round to round), after batch sizing and a warm-up
//!   round; figures are medians over the rounds, ratios the medians of the
//!   per-round ratios.
//! - [`sides`]: what is measured: shmio's channel and `write_at`, and the
//!   peers that need no extra crate: a raw shared-memory spin (the
//!   round-trip limit), a raw futex (Linux), a pipe, a Unix socket (Unix)
//!   and `memcpy` (the bandwidth limit).
//! - [`child`]: this binary re-run as a child in a role, through the
//!   process kit ([`crate::process`]); the bench's own part is how a role
//!   travels, what it reads, and the commands a busy-polling child reads
//!   on stdin.
//! - [`watchdog`]: every process of a run (parent and children) gives up
//!   after [`watchdog::STALL`] without progress, so no wait is unbounded.
//! - [`pin`]: the parent and its children each on a CPU of its own, for
//!   the pinned round trips.
//! - [`report`]: figures as text (times, rates, the paired table).
//! - [`machine`]: what the report says about the machine and its load.
//!
//! A binary that uses the cross-process sides calls [`child::serve`] with
//! its roles first thing in `main` (or, like the CLI, from the subcommand
//! named in [`child::launch_with`]), so that it can be its own children.

pub mod child;
pub mod harness;
pub mod machine;
pub mod pin;
pub mod report;
pub mod sides;
pub mod watchdog;

/// Whatever went wrong in a run, with a message that says where.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// The harness's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
