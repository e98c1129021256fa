//! What the `shmio` command is built on besides the library, shared with
//! the workspace's bench lab and tests: the child-process kit
//! ([`process`]: workers, `lock`'s guard and `listen`'s handlers run
//! through it) and the benchmark harness ([`bench`]: `shmio bench` and
//! the demo's round trip). The command itself is the binary; this library
//! makes no promise of stability beyond what the binary needs.

#![deny(missing_docs)]

pub mod bench;
pub mod process;
