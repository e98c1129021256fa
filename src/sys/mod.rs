//! Every call into the operating system, behind one narrow interface.
//!
//! The rest of the crate sees only what is declared here and implemented once
//! per platform (as memmap2 does with its `os` modules):
//!
//! - `OS_NAME_PREFIX`, `OS_NAME_MAX_BYTES`: how a [`crate::Name`] becomes an OS name;
//! - `Object`: an owned OS handle to a mappable object (a shared-memory
//!   object, a file, an anonymous memory object) and, for a named one, its
//!   lease on the name (the last holder to close removes it);
//! - `Region`: a mapping of an `Object` into this process, unmapped on drop;
//! - `open_named`, `remove_named`, `anonymous`, `open_file`: how objects come to be;
//! - `RobustLock`, `Waker`: a lock that survives a dead holder, and sleeping
//!   on a word of shared memory;
//! - `Seat`: a participant's proof of life in an object, which the OS
//!   takes back when the participant dies (no process id, which means
//!   nothing across pid namespaces and is reused).
//!
//! The types shared by every platform are defined in this file.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;
use std::ptr::NonNull;

use crate::error::{Error, Result};
use crate::owner::Trust;

// One backend per platform, each with the same files (`mod.rs`,
// `objects.rs`, `sync.rs`) and the same items, chosen here; the stub keeps
// every other target compiling, with every call `Error::Unsupported`.
/// What a forked child inherits (Linux and macOS).
#[cfg(any(target_os = "linux", target_vendor = "apple"))]
mod forks;
#[cfg_attr(target_os = "linux", path = "linux/mod.rs")]
#[cfg_attr(target_vendor = "apple", path = "macos/mod.rs")]
#[cfg_attr(windows, path = "windows/mod.rs")]
#[cfg_attr(
    not(any(target_os = "linux", target_vendor = "apple", windows)),
    path = "stub/mod.rs"
)]
mod os;
/// What Linux and macOS share: mapping file descriptors.
#[cfg(any(target_os = "linux", target_vendor = "apple"))]
mod unix;
#[cfg(target_os = "linux")]
pub(crate) use forks::process_key;
#[cfg(any(target_os = "linux", target_vendor = "apple"))]
pub(crate) use forks::Origin;
/// Watching many words where the platform cannot sleep on several at once.
#[cfg(not(any(target_os = "linux", windows)))]
mod polling;
#[cfg(any(target_os = "linux", windows))]
pub(crate) use os::{wait_any, Doorbell, Watch, WATCH_MAX};
#[cfg(not(any(target_os = "linux", windows)))]
pub(crate) use polling::{wait_any, Doorbell, Watch, WATCH_MAX};
/// Listing names where the platform cannot.
#[cfg(not(target_os = "linux"))]
mod unlisted;

// The interface every backend provides.
#[cfg(any(unix, windows))]
pub(crate) use os::duplicate;
pub(crate) use os::{
    anonymous, describe_named, list_named, monotonic_ms, open_file, open_named, reclaim_if_stale,
    remove_named, Object, RobustLock, Seat, Waker, OS_NAME_MAX_BYTES, OS_NAME_PREFIX,
};

/// The process a handle was made in. Where processes do not fork
/// (Windows, and the stub's platforms), a handle is always in the process
/// that made it.
#[cfg(not(any(target_os = "linux", target_vendor = "apple")))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Origin;

#[cfg(not(any(target_os = "linux", target_vendor = "apple")))]
impl Origin {
    /// This process.
    #[inline]
    pub(crate) fn here() -> Origin {
        Origin
    }

    /// Always: there are no forked children here.
    #[inline]
    pub(crate) fn is_here(self) -> bool {
        true
    }
}

/// What a lock call came back with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LockState {
    /// The lock is held.
    Acquired,
    /// The lock is held; its previous owner died holding it.
    OwnerDied,
    /// Someone else holds it (try or timeout).
    Busy,
}

/// What an entry of the namespace is (what the registry shows).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(not(target_os = "linux"), allow(dead_code))] // only Linux lists names
pub(crate) enum EntryKind {
    /// A regular file: a shared-memory object.
    Object,
    /// A symlink: a named file-backed mapping, if shmio made it.
    Link,
    /// Anything else: a FIFO, a socket, a directory, a device (what it is).
    Other(&'static str),
}

/// What the OS shows of one name (what the registry shows).
pub(crate) struct ListedName {
    /// The OS name (`/` + the file name).
    pub os_name: String,
    /// What the entry is.
    pub entry: EntryKind,
    /// Who owns the entry.
    pub owner: crate::owner::Owner,
    /// Whether it belongs to the caller.
    pub own: bool,
    /// Whether it carries shmio's mark: its name goes with its last holder.
    pub follows_holders: bool,
    /// The object's size (a backing file's, for a link the caller may follow).
    pub size: u64,
    /// Processes holding a shared lease on it (`/proc/locks`), when known.
    pub holders: Option<u32>,
    /// The object's first 8 bytes, which say what shmio made it for (0 when
    /// they cannot be read).
    pub magic: u64,
}

/// An OS error as an [`Error`] that says what was done (`op`) to what
/// (`target`), turning the kinds a caller acts on into their own variants.
pub(crate) fn io_error(op: &'static str, target: impl Into<String>, source: io::Error) -> Error {
    let target = target.into();
    match source.kind() {
        io::ErrorKind::PermissionDenied => Error::PermissionDenied { op, target },
        io::ErrorKind::NotFound => Error::NotFound {
            kind: None,
            name: target,
        },
        io::ErrorKind::AlreadyExists => Error::AlreadyExists {
            kind: None,
            name: target,
        },
        _ if source.raw_os_error().is_some_and(os::is_handle_limit) => {
            Error::TooManyHandles { op, target }
        }
        _ => Error::Os {
            op,
            target,
            source: source.into(),
        },
    }
}

/// How a region is mapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    /// Shared, readable and writable.
    ReadWrite,
    /// Shared, readable only.
    ReadOnly,
    /// Private: writes stay in this process and never reach the object.
    CopyOnWrite,
}

impl Access {
    /// Whether the object itself must be opened for writing.
    pub(crate) fn writes_object(self) -> bool {
        self == Access::ReadWrite
    }

    /// Whether the mapped memory accepts writes.
    pub(crate) fn writable_memory(self) -> bool {
        self != Access::ReadOnly
    }
}

/// Whether a named open may create, may open, or both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Disposition {
    /// Fail if the name exists.
    Create,
    /// Fail if the name does not exist.
    Open,
    /// Open if the name exists, else create: one atomic step.
    CreateOrOpen,
}

/// Opens a mapping's backing file `req.path`, read-write if the mapping
/// writes it, creating it when it is missing and the mapping may write:
/// `create_new` (`O_CREAT | O_EXCL`) never follows a symlink planted at the
/// path, and gives the file `req.mode` (owner-only by default) on Unix.
/// Returns the file and its size.
pub(crate) fn open_backing_file(req: &FileRequest<'_>) -> Result<(File, u64)> {
    let target = req.path.display().to_string();
    let mut options = OpenOptions::new();
    options.read(true).write(req.access.writes_object());
    // Never wait on a FIFO (or a device) someone planted at the path.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NONBLOCK);
    let file = match options.open(req.path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound && req.access.writes_object() => {
            options.create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, req.mode);
            options.open(req.path).map_err(|e| {
                io_error("create", target.clone(), e).of_file("backing file", &target)
            })?
        }
        Err(e) => return Err(io_error("open", target.clone(), e).of_file("backing file", &target)),
    };
    let metadata = file
        .metadata()
        .map_err(|e| crate::sys::io_error("inspect", target.clone(), e))?;
    if !metadata.is_file() {
        return Err(Error::WrongKind {
            name: target,
            expected: "a regular file to back a mapping",
            found: None,
        });
    }
    Ok((file, metadata.len()))
}

/// Waits (bounded by the backend's `READY_WAIT`: none where objects are
/// set up before they are named) until `ready` says the creator of
/// `object` has set it up. Whether it has is for the caller to check again:
/// one that never was is not what the caller expected.
pub(crate) fn await_ready(
    object: &mut Object,
    ready: &dyn Fn(&Region) -> bool,
    name: &str,
) -> Result<()> {
    if os::READY_WAIT.is_zero() {
        return Ok(());
    }
    let region = object.map(object.size(), Access::ReadOnly, name)?;
    let start = std::time::Instant::now();
    while !ready(&region) && start.elapsed() < os::READY_WAIT {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    Ok(())
}

/// The largest length this process can map.
pub(crate) const MAX_MAP_LEN: u64 = isize::MAX as u64;

/// `len` as a `usize` fit to map, or the error that says why not.
pub(crate) fn checked_len(len: u64, target: &str) -> Result<usize> {
    if len == 0 {
        return Err(Error::InvalidSize {
            size: 0,
            target: target.to_owned(),
            reason: "a mapping cannot be empty",
        });
    }
    match usize::try_from(len) {
        Ok(len) if len as u64 <= MAX_MAP_LEN => Ok(len),
        _ => Err(Error::TooLarge {
            size: len,
            limit: MAX_MAP_LEN,
            target: target.to_owned(),
        }),
    }
}

/// A mapped range of an `Object` (a POSIX mapping, a Windows view); each
/// platform unmaps it on drop and flushes it (`flush`).
pub(crate) struct Region {
    pub(in crate::sys) ptr: NonNull<u8>,
    pub(in crate::sys) len: usize,
}

// SAFETY: a Region is a plain address range owned by this value; the mapping
// stays valid until drop, whichever thread drops it.
unsafe impl Send for Region {}
// SAFETY: &Region only exposes the address and length; every access through
// them is made by callers that copy or use atomics (see view.rs).
unsafe impl Sync for Region {}

impl Region {
    /// The first byte.
    #[inline]
    pub(crate) fn ptr(&self) -> NonNull<u8> {
        self.ptr
    }

    /// The length in bytes.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

/// What tells one OS object from another while it exists (device and
/// inode on Unix); `None` where objects have no such identity (Windows).
pub(crate) type ObjectId = [u64; 2];

/// Everything the OS needs to create or open a named object.
pub(crate) struct NamedRequest<'a> {
    /// The user's name, for error messages.
    pub name: &'a str,
    /// The OS name (see [`crate::Name::os_name`]).
    pub os_name: &'a str,
    /// The size a creator gives the object (`None`: `default_size`, or the
    /// backing file's size); ignored by an opener.
    pub size: Option<u64>,
    /// The size of a new object when `size` is `None` and no backing file
    /// has one.
    pub default_size: u64,
    /// Permission bits for a creator (POSIX).
    pub mode: u32,
    /// Whether the name outlives its holders.
    pub persistent: bool,
    /// Whether a creator leaves the object's memory to be allocated on first
    /// touch rather than reserving it now (Linux: elsewhere the OS decides).
    pub sparse: bool,
    /// How the opener maps it.
    pub access: Access,
    /// A backing file, when the named mapping is file-backed.
    pub file: Option<&'a Path>,
    /// Whose objects, besides the caller's own, may be opened.
    pub trust: &'a Trust,
    /// Use the machine-wide namespace where the platform has one (Windows:
    /// `Global\`).
    pub global: bool,
    /// The name of the object's lock, for a user's mapping. A platform whose
    /// kernel lock goes with its last handle (Windows) keeps that lock open
    /// for as long as the object is held, so that a holder that dies locked
    /// leaves it (abandoned: "owner died") to the others rather than taking
    /// it along. Elsewhere the lock's state outlives its holders by itself.
    pub lock_name: Option<&'a str>,
    /// Open a stale name (one whose holders all died) as it is, rather
    /// than removing it and starting afresh: for a mutex's segment, whose
    /// state says that its holder died. Only Linux keeps stale names.
    pub keep_stale: bool,
    /// Whether a forked child gets a share of its own in the name's lease
    /// (see `sys::forks`): for the handles a child may go on using
    /// (mappings, mutexes, events), not for those it may not (a channel's,
    /// a bus's), whose names then go with their last real holder.
    pub passes_to_children: bool,
    /// Sets up a new object before anyone else can use it (before its name
    /// is published where the OS allows; see `ready`).
    pub init: Option<InitHook<'a>>,
    /// Whether an existing object has been set up by its creator. Where a
    /// name is published before its creator's `init` has run (Windows,
    /// macOS), an opener waits (bounded) for this; where it never is
    /// (Linux), an opener never waits.
    pub ready: Option<&'a dyn Fn(&Region) -> bool>,
}

/// Sets up a new object's memory (see [`NamedRequest::init`]).
pub(crate) type InitHook<'a> = &'a dyn Fn(&Region) -> Result<()>;

/// A named object and whether it was there before.
pub(crate) struct Opened {
    /// The object.
    pub object: Object,
    /// True when an existing object was opened rather than created.
    pub existed: bool,
    /// True when the object was stale and kept (see [`NamedRequest::keep_stale`]).
    pub adopted_stale: bool,
}

/// Everything the OS needs to open (or create) a backing file.
#[derive(Debug)]
pub(crate) struct FileRequest<'a> {
    /// The file's path.
    pub path: &'a Path,
    /// How it will be mapped.
    pub access: Access,
    /// Permission bits if it has to be created (POSIX; Windows gives new
    /// files the default security descriptor).
    pub mode: u32,
}

/// The length to map of a file of `current` bytes when `requested` is asked
/// for, and whether the file must first grow to it.
///
/// No size and a non-empty file: the whole file. No size and an empty file:
/// `default`. A size larger than the file grows the file (which needs
/// write access); a smaller one maps the start of the file.
pub(crate) fn file_mapping_len(
    current: u64,
    requested: Option<u64>,
    default: u64,
    access: Access,
    target: &str,
) -> crate::Result<(u64, bool)> {
    let len = match requested {
        Some(0) => {
            return Err(crate::Error::InvalidSize {
                size: 0,
                target: target.to_owned(),
                reason: "a mapping cannot be empty",
            })
        }
        Some(len) => len,
        None if current > 0 => current,
        None => default,
    };
    let grow = len > current;
    if grow && !access.writes_object() {
        return Err(crate::Error::InvalidSize {
            size: len,
            target: target.to_owned(),
            reason: "the file is smaller and is not opened for writing",
        });
    }
    Ok((len, grow))
}
