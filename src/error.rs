//! The crate's one error type, [`Error`], and its [`Result`] alias.
//!
//! Each variant is something a caller can act on, and each message names the
//! name, offset or size involved. `From<Error> for std::io::Error` picks the
//! matching [`std::io::ErrorKind`], so a `Mapping` works behind `Read`,
//! `Write` and `Seek` without losing what went wrong. An [`Error`] is
//! `'static`, `Send`, `Sync`, `Clone` and `PartialEq`: it goes through `?`
//! into `anyhow`, a `Box<dyn Error>` or an `io::Error`, and into
//! `assert_eq!`.

use std::fmt;
use std::io;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use crate::kind::ObjectKind;
use crate::owner::Owner;

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in shmio.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The name breaks one of the naming rules (see [`crate::Name`]).
    #[error("invalid name {name:?}: {rule}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// The rule it breaks.
        rule: &'static str,
    },

    /// The name belongs to another kind of object (on Windows, sections,
    /// mutexes and events share one namespace), or the object is not what
    /// shmio expected there.
    #[error("{name:?} is not {expected}{}", Instead(*.found))]
    WrongKind {
        /// The name.
        name: String,
        /// What shmio expected to find ("a shmio channel", "a plain
        /// mapping", "a shared-memory object").
        expected: &'static str,
        /// The kind of shmio object found there instead, where that is why
        /// (a channel opened as a plain mapping, say).
        found: Option<ObjectKind>,
    },

    /// `create` found the name already taken.
    #[error("{} named {name:?} already exists", Noun::A(*.kind))]
    AlreadyExists {
        /// What holds the name: what was to be created, or what was found
        /// there instead. `None` where shmio cannot tell (the OS said only
        /// that the name is taken).
        kind: Option<ObjectKind>,
        /// The name.
        name: String,
    },

    /// `open` found no object with that name (or only a stale one, which it
    /// removed).
    #[error("no {} named {name:?} exists", Noun::Bare(*.kind))]
    NotFound {
        /// What was looked for. `None` where shmio cannot tell (the OS
        /// said only that there is no such name).
        kind: Option<ObjectKind>,
        /// The name.
        name: String,
    },

    /// A file shmio needs is missing: a mapping's backing file (opened
    /// read-only, or gone from under a link), or on macOS the directory
    /// of a lock's files.
    #[error("no {what} named {path:?} exists")]
    FileNotFound {
        /// Which file: "backing file", "directory".
        what: &'static str,
        /// Its path (or what it belongs to).
        path: String,
    },

    /// The OS refused access to the object.
    #[error("permission denied: cannot {op} {target:?}")]
    PermissionDenied {
        /// What was being done ("open", "create", "map", ...).
        op: &'static str,
        /// The name, path or object involved.
        target: String,
    },

    /// The object belongs to another user, and the caller has not said to
    /// trust that owner ([`crate::MappingOptions::allow_owner`], and the same
    /// option on every object's builder): its creator chose what is in it,
    /// can change it at any time, and can hold its lock forever.
    #[error("{name:?} belongs to {owner}, not to this user: open it only if you trust that owner (allow_owner)")]
    ForeignOwner {
        /// The name.
        name: String,
        /// Who owns it.
        owner: Owner,
    },

    /// A size that cannot be used: zero, or larger than what exists.
    #[error("invalid size {size} for {target}: {reason}")]
    InvalidSize {
        /// The size asked for, in bytes.
        size: u64,
        /// The name, path or object involved.
        target: String,
        /// Why it cannot be used.
        reason: &'static str,
    },

    /// A size larger than this process can map.
    #[error("size {size} of {target} is larger than this process can map (limit {limit})")]
    TooLarge {
        /// The size asked for, in bytes.
        size: u64,
        /// The largest size this platform can map.
        limit: u64,
        /// The name, path or object involved.
        target: String,
    },

    /// Not enough free address space in this process to map the object
    /// (a mapping larger than the machine's address space, or past `RLIMIT_AS`).
    #[error("not enough address space to map {} of {target}", Bytes(*.size))]
    OutOfAddressSpace {
        /// The size asked for, in bytes.
        size: u64,
        /// The name, path or object involved.
        target: String,
    },

    /// The process (or the system) has as many open handles as it may:
    /// `EMFILE`/`ENFILE` on Unix, `ERROR_TOO_MANY_OPEN_FILES` on Windows.
    /// Close some mappings, mutexes or channels, or raise the limit
    /// (`ulimit -n`).
    #[error("cannot {op} {target:?}: too many open handles (the open-file limit is reached)")]
    TooManyHandles {
        /// What was being done ("open", "create", ...).
        op: &'static str,
        /// The name, path or object involved.
        target: String,
    },

    /// The file system holding the object is full.
    #[error("no space left to give {target} {}", Bytes(*.size))]
    NoSpace {
        /// The size asked for, in bytes.
        size: u64,
        /// The name, path or object involved.
        target: String,
    },

    /// A read of `len` bytes at `offset` runs past the end of a region of `size` bytes.
    #[error(
        "unexpected end: reading {} at offset {offset} runs past the end ({})",
        Bytes(*.len),
        Bytes(*.size)
    )]
    UnexpectedEof {
        /// Where the read starts.
        offset: u64,
        /// How many bytes were asked for.
        len: u64,
        /// The size of the mapping or view.
        size: u64,
    },

    /// A write or view of `len` bytes at `offset` runs past the end of a region of `size` bytes.
    #[error("out of bounds: {} at offset {offset} do not fit in {}", Bytes(*.len), Bytes(*.size))]
    OutOfBounds {
        /// Where the access starts.
        offset: u64,
        /// How many bytes it covers.
        len: u64,
        /// The size of the mapping or view.
        size: u64,
    },

    /// An atomic at an offset that is not a multiple of its alignment.
    #[error("misaligned: offset {offset} is not a multiple of {align}")]
    Misaligned {
        /// The offset asked for.
        offset: u64,
        /// The alignment the type needs.
        align: u64,
    },

    /// A seek to a position before 0 or past `u64::MAX`.
    #[error("invalid seek: {reason}")]
    InvalidSeek {
        /// What was wrong with it.
        reason: String,
    },

    /// A write (or a writable atomic) through a read-only mapping.
    #[error("{target} is mapped read-only")]
    ReadOnly {
        /// The name or kind of mapping.
        target: String,
    },

    /// A combination of options that does not make sense.
    #[error("invalid options: {reason}")]
    InvalidOptions {
        /// What was wrong.
        reason: &'static str,
    },

    /// Bytes in shared memory that break the framing they claim to follow.
    #[error("corrupt data at offset {offset}: {reason}")]
    Corrupt {
        /// Where the bad frame starts.
        offset: u64,
        /// What is wrong with it.
        reason: String,
    },

    /// A record whose framing is intact but whose payload does not decode.
    /// The raw payload is kept so the caller can inspect or repair it.
    #[error("record at offset {offset} does not decode: {source}")]
    Decode {
        /// Where the record's length prefix starts.
        offset: u64,
        /// The payload bytes as found.
        raw: Vec<u8>,
        /// The codec's complaint.
        #[source]
        source: CodecError,
    },

    /// A channel's message that does not decode as the type asked for
    /// (`recv_record` and its forms): it was taken from the channel, and its
    /// bytes are kept here so the caller can inspect or repair it.
    #[error("a message of the channel {channel:?} does not decode: {source}")]
    UndecodableMessage {
        /// The channel's name.
        channel: String,
        /// The message as received.
        raw: Vec<u8>,
        /// The codec's complaint.
        #[source]
        source: CodecError,
    },

    /// A value that could not be encoded as a record.
    #[error("value cannot be encoded as a record: {source}")]
    Encode {
        /// The codec's complaint.
        #[source]
        source: CodecError,
    },

    /// An opened object stayed at size 0: its creator never sized it.
    #[error("{name:?} exists but its creator has not sized it after {waited:?}")]
    NotReady {
        /// The name.
        name: String,
        /// How long shmio waited.
        waited: Duration,
    },

    /// What was asked for does not exist on this platform.
    #[error("unsupported on this platform: {what}")]
    Unsupported {
        /// What was asked for.
        what: &'static str,
    },

    /// The thread already holds this mutex: locking it again would deadlock.
    #[error("this thread already holds the mutex {name:?}")]
    WouldDeadlock {
        /// The mutex's name.
        name: String,
    },

    /// A wait its caller asked to give up (see [`crate::Bus::call_interruptible`]).
    #[error("the wait on {name:?} was interrupted")]
    Interrupted {
        /// What was waited on.
        name: String,
    },

    /// The handle was opened by this process's parent before it forked:
    /// it stands for the parent (its seat, its membership), which a child
    /// must never act for. Open the object by name again in the child.
    #[error("this {kind} handle of {name:?} belongs to the process that opened it, which has since forked this one: open {name:?} again in this process")]
    Inherited {
        /// What the handle is: "channel", "bus", "mutex" (on macOS), "guard".
        kind: &'static str,
        /// The object's name.
        name: String,
    },

    /// A holder of the mutex died holding it, and no one has marked the data
    /// it protects consistent since: the lock was not kept. Take it with
    /// `lock_to_repair`, repair the data, then `MutexGuard::mark_consistent`.
    #[error("a holder of the mutex {name:?} died holding it: the data it protects may be half-changed (take it with lock_to_repair, repair, then mark_consistent)")]
    OwnerDied {
        /// The mutex's name.
        name: String,
    },

    /// An existing object is not what was asked for: a mapping of another
    /// size, a channel of another geometry, an event of another reset
    /// mode. Nothing was opened.
    #[error("{name:?} exists as {found}, not {asked} as asked")]
    Mismatch {
        /// The name.
        name: String,
        /// What was asked for ("a mapping of 4096 bytes").
        asked: Box<str>,
        /// What exists ("a mapping of 8192 bytes").
        found: Box<str>,
    },

    /// A message larger than the channel's `max_message_size`; nothing was sent.
    #[error("a message of {} is larger than the channel's max_message_size of {}", Bytes(*.len), Bytes(u64::from(*.max)))]
    MessageTooLarge {
        /// The message's length.
        len: u64,
        /// The channel's largest message.
        max: u32,
    },

    /// A channel's wait can never end: it is empty (for a receive) or full
    /// (for a send), and no other handle is open on it in any process,
    /// though this handle has seen one (or a message) since it opened: the
    /// others have all gone, as crossbeam's channels say it. It says how
    /// things are now: a handle opened later may still send, and a
    /// receiver that expects one may wait again.
    #[error("the channel {name:?} is empty or full and every other handle on it has closed")]
    Disconnected {
        /// The channel's name.
        name: String,
    },

    /// A topic's subscriber fell behind by more than the topic holds
    /// ([`Overflow::Overwrite`](crate::Overflow::Overwrite)): `missed`
    /// messages were overwritten before it read them. The subscription goes
    /// on, from the oldest message the topic still holds: the next receive
    /// gets it. Each message is either received or counted here, once.
    #[error("the subscriber of the topic {name:?} fell behind and missed {missed} message(s)")]
    Lagged {
        /// The topic's name.
        name: String,
        /// How many messages it will never get.
        missed: u64,
    },

    /// `try_send` found the channel full. (It names no channel, so that a
    /// busy-polling sender allocates nothing.)
    #[error("the channel is full")]
    Full,

    /// `try_recv` found the channel empty. (It names no channel, so that a
    /// busy-polling receiver allocates nothing.)
    #[error("the channel is empty")]
    Empty,

    /// A `try_` call found what it asked for held by someone else (a
    /// mutex's `try_lock`, an event's `try_wait`): try again later. (It
    /// names nothing, so that a busy-polling caller allocates nothing.)
    #[error("it is not available now (the call would block)")]
    WouldBlock,

    /// Every participant seat of a channel (or a bus) is taken: as many
    /// handles are open on it, in all processes together, as it has room
    /// for. Close some, or share a handle between threads.
    #[error("{name:?} has no free participant seat (at most {limit} handles at once)")]
    TooManyParticipants {
        /// The channel's (or the bus's) name.
        name: String,
        /// How many handles a channel can have open at once.
        limit: u32,
    },

    /// A bus listener's handler failed (returned an error or panicked) on
    /// a call; the listener goes on serving.
    #[error("the handler in process {pid} failed: {message}")]
    Handler {
        /// The listener's process id, in its own pid namespace.
        pid: u32,
        /// What the handler said (its error's text, or the panic's).
        message: String,
    },

    /// A bus listener died (or left) while it was called; it has been
    /// pruned from its group.
    #[error("the listener in process {pid} died during the call")]
    ListenerDied {
        /// The listener's process id, in its own pid namespace.
        pid: u32,
    },

    /// A bus call found no live listener of its command (in the process
    /// asked, for `call_pid`): nobody was asked. (A call that every
    /// listener passed on is `Ok(None)`.)
    #[error("nobody listens to {command:?} in the bus {group:?}{}", .pid.map_or(String::new(), |pid| format!(" in process {pid}")))]
    NoListener {
        /// The group.
        group: String,
        /// The command called.
        command: String,
        /// The process asked, for `call_pid`.
        pid: Option<u32>,
    },

    /// A bus group has as many listeners as its registry holds.
    #[error("bus {group:?} has no room for another listener (at most {limit})")]
    TooManyListeners {
        /// The group.
        group: String,
        /// How many listeners a group can have at once.
        limit: u32,
    },

    /// A bus post did not reach every listener: some inboxes were full.
    #[error(
        "posted {command:?} to {reached} listeners; the inboxes of processes {full:?} were full"
    )]
    PostIncomplete {
        /// The command posted.
        command: String,
        /// How many listeners it was queued for.
        reached: usize,
        /// The process ids of the listeners whose inboxes were full.
        full: Vec<u32>,
    },

    /// A wait with a timeout ran out.
    #[error("timed out waiting on {name:?}")]
    TimedOut {
        /// The name waited on (for a bus call, `GROUP/COMMAND`).
        name: String,
    },

    /// Any other failure of an OS call, with what was being done and to what.
    #[error("{op} {target:?} failed: {source}")]
    Os {
        /// The operation ("shm open", "mmap", "ftruncate", ...).
        op: &'static str,
        /// The name, path or object involved.
        target: String,
        /// The OS error.
        #[source]
        source: OsError,
    },
}

/// The OS error inside [`Error::Os`]: an [`io::Error`] (it derefs to one),
/// shared so that the [`Error`] can be cloned, and equal to another when
/// both are of the same kind and OS code.
#[derive(Debug, Clone)]
pub struct OsError(Arc<io::Error>);

impl PartialEq for OsError {
    fn eq(&self, other: &OsError) -> bool {
        self.kind() == other.kind() && self.raw_os_error() == other.raw_os_error()
    }
}

/// The codec's complaint inside [`Error::Decode`] and [`Error::Encode`]: a
/// [`serde_json::Error`] (it derefs to one), shared so that the [`Error`]
/// can be cloned, and equal to another that says the same at the same place.
#[derive(Debug, Clone)]
pub struct CodecError(Arc<serde_json::Error>);

impl PartialEq for CodecError {
    fn eq(&self, other: &CodecError) -> bool {
        self.classify() == other.classify()
            && (self.line(), self.column()) == (other.line(), other.column())
            && self.to_string() == other.to_string()
    }
}

/// What a shared error (`$shared`, around an `Arc<$inner>`) is besides
/// equal: the error it holds, made from one, shown and sourced as it.
macro_rules! shared_error {
    ($shared:ident, $inner:ty) => {
        impl Deref for $shared {
            type Target = $inner;

            fn deref(&self) -> &$inner {
                &self.0
            }
        }

        impl From<$inner> for $shared {
            fn from(error: $inner) -> $shared {
                $shared(Arc::new(error))
            }
        }

        impl fmt::Display for $shared {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl std::error::Error for $shared {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                self.0.source()
            }
        }
    };
}

shared_error!(OsError, io::Error);
shared_error!(CodecError, serde_json::Error);

impl Error {
    /// Whether a `try_` call could not go on now: a channel full or empty
    /// (`try_send`'s [`Error::Full`], `try_recv`'s [`Error::Empty`]), a
    /// mutex or an event not available ([`Error::WouldBlock`]). Try again
    /// later.
    ///
    /// ```
    /// use shmio::{Channel, ChannelGeometry};
    ///
    /// # let name = format!("shmio-doc-would-block-{}", std::process::id());
    /// let channel = Channel::create_or_open(&name, ChannelGeometry::default())?;
    /// match channel.try_recv() {
    ///     Ok(message) => println!("{message:?}"),
    ///     Err(e) if e.is_would_block() => { /* nothing yet */ }
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok::<(), shmio::Error>(())
    /// ```
    pub fn is_would_block(&self) -> bool {
        matches!(self, Error::Full | Error::Empty | Error::WouldBlock)
    }

    /// Whether a wait with a timeout ran out ([`Error::TimedOut`]).
    pub fn is_timed_out(&self) -> bool {
        matches!(self, Error::TimedOut { .. })
    }

    /// This error, said of the `kind` of object called `name` if it is
    /// about a name that is missing or taken and does not say of what
    /// (the layer that knows what it was making says so; the OS only knows
    /// a name).
    pub(crate) fn of(self, kind: ObjectKind, name: &str) -> Error {
        match self {
            Error::NotFound { kind: None, .. } => Error::NotFound {
                kind: Some(kind),
                name: name.to_owned(),
            },
            Error::AlreadyExists { kind: None, .. } => Error::AlreadyExists {
                kind: Some(kind),
                name: name.to_owned(),
            },
            other => other,
        }
    }

    /// This error, said of the file `path` (`what` it is to shmio) if it
    /// is about a missing name: the OS says a file is missing as it says a
    /// name is.
    pub(crate) fn of_file(self, what: &'static str, path: &str) -> Error {
        match self {
            Error::NotFound { kind: None, .. } => Error::FileNotFound {
                what,
                path: path.to_owned(),
            },
            other => other,
        }
    }

    /// The [`io::ErrorKind`] this error maps to.
    pub fn kind(&self) -> io::ErrorKind {
        use io::ErrorKind as K;
        match self {
            Error::InvalidName { .. }
            | Error::InvalidSize { .. }
            | Error::TooLarge { .. }
            | Error::Misaligned { .. }
            | Error::InvalidSeek { .. }
            | Error::InvalidOptions { .. } => K::InvalidInput,
            Error::AlreadyExists { .. } => K::AlreadyExists,
            Error::WrongKind { .. } => K::InvalidData,
            Error::NotFound { .. } | Error::FileNotFound { .. } => K::NotFound,
            Error::PermissionDenied { .. }
            | Error::ReadOnly { .. }
            | Error::ForeignOwner { .. } => K::PermissionDenied,
            Error::UnexpectedEof { .. } => K::UnexpectedEof,
            Error::NoSpace { .. } => K::StorageFull,
            Error::OutOfAddressSpace { .. } => K::OutOfMemory,
            Error::TooManyHandles { .. }
            | Error::TooManyParticipants { .. }
            | Error::TooManyListeners { .. }
            | Error::Handler { .. } => K::Other,
            Error::ListenerDied { .. } | Error::Disconnected { .. } => K::BrokenPipe,
            // The subscription goes on: a receive to try again.
            Error::Lagged { .. } => K::Interrupted,
            Error::NoListener { .. } => K::NotFound,
            // Some listeners got it: not a call to retry as a whole.
            Error::PostIncomplete { .. } => K::Other,
            Error::OutOfBounds { .. } => K::WriteZero,
            Error::Corrupt { .. } | Error::Decode { .. } | Error::UndecodableMessage { .. } => {
                K::InvalidData
            }
            Error::Encode { .. } => K::InvalidInput,
            Error::NotReady { .. } | Error::TimedOut { .. } => K::TimedOut,
            Error::Mismatch { .. } => K::InvalidInput,
            Error::MessageTooLarge { .. } => K::InvalidInput,
            Error::Full | Error::Empty | Error::WouldBlock => K::WouldBlock,
            Error::WouldDeadlock { .. } => K::Deadlock,
            Error::Inherited { .. } => K::InvalidInput,
            Error::Interrupted { .. } => K::Interrupted,
            Error::OwnerDied { .. } => K::Other,
            Error::Unsupported { .. } => K::Unsupported,
            Error::Os { source, .. } => source.kind(),
        }
    }
}

/// An object's kind as a message says it, "object" where it is not known:
/// with its article (`A`: "a mapping", "an object") or without (`Bare`).
enum Noun {
    A(Option<ObjectKind>),
    Bare(Option<ObjectKind>),
}

impl fmt::Display for Noun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Noun::A(Some(kind)) => write!(f, "a {kind}"),
            Noun::A(None) => f.write_str("an object"),
            Noun::Bare(Some(kind)) => write!(f, "{kind}"),
            Noun::Bare(None) => f.write_str("object"),
        }
    }
}

/// What [`Error::WrongKind`] says it found instead, if it knows.
struct Instead(Option<ObjectKind>);

impl fmt::Display for Instead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(kind) => write!(f, " ({})", kind.instead()),
            None => Ok(()),
        }
    }
}

/// A byte count as people say it: "1 byte", "2 bytes".
struct Bytes(u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            1 => f.write_str("1 byte"),
            n => write!(f, "{n} bytes"),
        }
    }
}

impl From<Error> for io::Error {
    fn from(error: Error) -> io::Error {
        io::Error::new(error.kind(), error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_small() {
        // Every `Result` carries one: a large error slows every call.
        assert!(size_of::<Error>() <= 64, "{}", size_of::<Error>());
    }

    #[test]
    fn says_the_kind_it_carries() {
        let taken = |kind| Error::AlreadyExists {
            kind,
            name: "jobs".to_owned(),
        };
        assert_eq!(
            taken(Some(ObjectKind::Channel)).to_string(),
            "a channel named \"jobs\" already exists"
        );
        assert_eq!(
            taken(None).to_string(),
            "an object named \"jobs\" already exists"
        );
        let missing = Error::NotFound {
            kind: None,
            name: "jobs".to_owned(),
        };
        assert_eq!(missing.to_string(), "no object named \"jobs\" exists");
        assert_eq!(
            missing.of(ObjectKind::Event, "jobs").to_string(),
            "no event named \"jobs\" exists"
        );
        let wrong = Error::WrongKind {
            name: "jobs".to_owned(),
            expected: ObjectKind::Mapping.described(),
            found: Some(ObjectKind::Channel),
        };
        assert_eq!(
            wrong.to_string(),
            "\"jobs\" is not a plain mapping (it is a shmio channel: open it as one)"
        );
    }
}
