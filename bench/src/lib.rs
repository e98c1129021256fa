//! The bench lab (not published): shmio's research tables on the harness
//! that ships with the CLI (`shmio_cli::bench`, re-exported here at the
//! same paths). Every performance figure of the project comes through that
//! harness: the `shmio-bench` table, the paired tables of the root
//! package's criterion benches (`cargo bench --bench mapping`, `--bench
//! sync`), `shmio bench` and the round trip `shmio demo` shows.
//!
//! What the lab adds to the shipped sides (see [`sides`]): the channel's
//! ring rebuilt step by step on raw memory (the ladder), shmio's event and
//! bus, the payload sweep and its chart ([`sweep`], `chart`), the scaling
//! group, and the peers that need heavy crates or a daemon: iceoryx2
//! (Linux, the `iceoryx2` feature) and D-Bus (Linux, the `dbus` feature).
//!
//! A lab binary serves its children first thing in `main`:
//! [`sides::serve_child`], which plays the shipped roles and the lab's.
//!
//! Not here: what a table says about its rows (the `shmio-bench` binary,
//! `shmio bench` and the criterion benches each print their own).

#[cfg(feature = "chart")]
pub mod chart;
pub mod sides;
pub mod sweep;

pub use shmio_cli::bench::{child, harness, machine, pin, report, watchdog, Error, Result};
