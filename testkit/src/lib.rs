//! The workspace's test kit (not published): the child-process kit the
//! CLI ships (`shmio_cli::process`: children in roles, waits that are
//! always bounded, dying with the parent), re-exported so that a test names
//! one crate, and the small helpers only tests need (unique names, a
//! seeded generator, checksums, what is under `/dev/shm`, whether the
//! tests that need root can run).
//!
//! ```no_run
//! // tests/reply.rs
//! use shmio_testkit::{arg, unique_name};
//!
//! shmio_testkit::roles! {
//!     Reply => child_reply(),
//! }
//!
//! fn child_reply() {
//!     // Open arg("NAME"), read what the parent wrote, write back.
//! #   let _ = arg("NAME");
//! }
//!
//! #[test]
//! fn a_child_replies() {
//!     let name = unique_name("reply");
//!     Role::Reply.spawn().env("NAME", &name).start().wait_success();
//! }
//! # fn main() {}
//! ```
//!
//! How roles, bounds and the tool forms work is the process kit's to say:
//! see `shmio_cli::process`.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod support;

pub use shmio_cli::process::*;
pub use shmio_cli::roles;
#[cfg(target_os = "linux")]
pub use support::root_with;
pub use support::{
    checksum, mix, shm_entries_with_prefix, shm_entry_exists, unique, unique_name, Rng,
};
