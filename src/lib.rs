//! Shared memory between processes, done properly: a Rust take on aardio's
//! `fsys.mmap`.
//!
//! A [`Mapping`] is memory that several processes can see: anonymous, backed
//! by a file, or named so that another process opens it by name, and it
//! knows whether it created the memory or opened what was there
//! ([`Mapping::existed`]). It reads and writes like a file (a cursor with
//! 64-bit offsets, [`std::io::Read`], [`Write`](std::io::Write),
//! [`Seek`](std::io::Seek)), holds plain structs ([`zerocopy`] types) and
//! serde values (records), and hands out [`View`]s and atomics at any offset.
//!
//! ```
//! use std::io::{Seek, SeekFrom, Write};
//! use shmio::Mapping;
//!
//! # let name = format!("shmio-crate-doc-{}", std::process::id());
//! // In one process:
//! let mut map = Mapping::create_or_open(&name, 1 << 20)?;
//! map.write_all(b"hello from the creator")?;
//!
//! // In another process (here, a second handle):
//! let mut other = Mapping::open(&name)?;
//! assert!(other.existed());
//! assert_eq!(other.read_bytes(5)?, b"hello");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Names and lifetime
//!
//! A [`Name`] is 1 to 260 characters with no `\`, `/` or NUL. On Linux the
//! mapping is `/dev/shm/NAME`, the object CPython's
//! `multiprocessing.shared_memory.SharedMemory("NAME")` opens. By default
//! the last holder to close removes the name, even when the holders were
//! killed (a stale name is reclaimed by the next open or create);
//! [`MappingOptions::persistent`] keeps it until [`Mapping::remove`].
//!
//! # Soundness
//!
//! Other processes can change shared memory at any time, so no safe method
//! hands out `&[u8]` or `&mut [u8]` into it: safe methods copy in and out, or
//! return atomics at aligned offsets. [`View::as_slice`] and
//! [`View::as_mut_slice`] are `unsafe`, with the caller's promise spelled out.
//!
//! # From aardio's `fsys.mmap`
//!
//! Member by member, the README's table says which shmio call does what
//! each of `fsys.mmap`'s does; `GUIDE.md` has the same for
//! `process.command` (a [`Bus`]).

mod backoff;
mod bus;
mod channel;
mod deadline;
#[cfg(test)]
mod doc_tables;
mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod inventory;
mod kind;
mod mapping;
mod name;
mod object;
mod owner;
mod participants;
mod pool;
mod slots;
mod sync;
mod sys;
mod topic;
mod unpoisoned;
mod waiter;
mod words;

pub use bus::{
    Answer, Bus, BusOptions, BusView, HandlerResult, Listener, ListenerInfo, Replies, Request,
};
pub use channel::{Channel, ChannelGeometry, ChannelOptions};
pub use error::{CodecError, Error, OsError, Result};
pub use kind::ObjectKind;
pub use mapping::{Mapping, MappingOptions, View, DEFAULT_MODE, DEFAULT_SIZE, RECORD_HEADER_LEN};
pub use name::{Name, NameRole, HASHED_NAME_TAG, MAX_NAME_CHARS};
pub use owner::Owner;
pub use sync::{EventMode, EventOptions, MutexGuard, MutexOptions, NamedEvent, NamedMutex};
pub use topic::{Held, Overflow, Subscriber, Topic, TopicOptions};

/// The `Stream`s of the feature `stream`: a channel's messages
/// ([`Channel::messages`]), a subscriber's ([`Subscriber::messages`]) and a
/// bus member's requests ([`Bus::requests`]).
#[cfg(feature = "stream")]
pub mod stream {
    pub use crate::bus::Requests;
    pub use crate::channel::Messages as ChannelMessages;
    pub use crate::topic::Messages as SubscriberMessages;
}
pub use zerocopy;

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
