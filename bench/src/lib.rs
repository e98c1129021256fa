//! shmio's benchmark harness and the sides it measures: shmio's own
//! operations and the peers they are compared with. Every performance
//! figure of the project comes through here: the `shmio-bench` table, the
//! paired tables of the root package's criterion benches
//! (`cargo bench --bench mapping`, `--bench sync`), `shmio bench` and the
//! round trip `shmio demo` shows.
//!
//! - [`harness`]: paired runs. Sides take turns in every round (the order
//!   rotating from round to round), after batch sizing and a warm-up
//!   round; figures are medians over the rounds, ratios the medians of the
//!   per-round ratios.
//! - [`sides`]: what is measured. shmio's channel, event and `write_at`,
//!   and the peers: a raw shared-memory spin (the round-trip limit), a raw
//!   futex (Linux), a pipe, a Unix socket (Unix), iceoryx2 (Linux, with the
//!   `iceoryx2` feature), a D-Bus method call through a private
//!   `dbus-daemon` (Linux, with the `dbus` feature) and `memcpy` (the
//!   bandwidth limit). Each
//!   cross-process side declares its child role in [`sides::Role`].
//! - [`child`]: this binary re-run as a child in a role, started, waited
//!   for and killed through the workspace's child-process kit
//!   (`shmio-testkit`, which also makes a child die with its parent and
//!   say it is ready); the bench's own part is how a role travels, what it
//!   reads, and the commands a busy-polling child reads on stdin.
//! - [`watchdog`]: every process of a run (parent and children) gives up
//!   after [`watchdog::STALL`] without progress, so no wait is unbounded.
//! - [`pin`]: the parent and its children each on a CPU of its own, for
//!   the pinned round trips.
//! - [`report`]: figures as text (times, rates, the paired table).
//! - [`machine`]: what the report says about the machine and its load.
//!
//! A binary that uses the cross-process sides calls [`child::serve`] first
//! thing in `main` (or, like the CLI, from the subcommand named in
//! [`child::launch_with`]), so that it can be its own children.
//!
//! Not here: what a table says about its rows (the `shmio-bench` binary,
//! `shmio bench` and the criterion benches each print their own).

#[cfg(feature = "chart")]
pub mod chart;
pub mod child;
pub mod harness;
pub mod machine;
pub mod pin;
pub mod report;
pub mod sides;
pub mod sweep;
pub mod watchdog;

/// Whatever went wrong in a run, with a message that says where.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// The harness's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
