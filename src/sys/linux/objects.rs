//! Named objects on Linux, and the lease that removes a name with its last holder.
//!
//! A named mapping is a file in `/dev/shm`, where glibc's `shm_open` (and so
//! CPython's `SharedMemory`) looks for it. A named file-backed mapping is a
//! symlink there to the backing file, owned by the user who made it.
//!
//! `/dev/shm` is writable by every user, so every entry in it may belong to
//! someone hostile. shmio looks at an entry (`statat` without following it)
//! before it opens it, opens only regular files, never with a path that
//! follows a link it has not checked (`O_NOFOLLOW`), and never so that the
//! open can wait (`O_NONBLOCK`): a FIFO, a socket or a device planted under a
//! name is refused by name, never waited on. It follows a symlink only if
//! its owner is the caller or one the caller trusts, and it opens no other
//! user's object unless the caller said to trust that owner
//! ([`crate::Error::ForeignOwner`]).
//!
//! **Creating** is one atomic step that never shows a half-made object: the
//! object is made unnamed (`O_TMPFILE`), sized, its memory reserved
//! (`fallocate`, so that a full `/dev/shm` is `NoSpace` now rather than
//! `SIGBUS` at a later first touch), marked, locked, set up (a mutex's,
//! event's or channel's header), and only then linked under its name with
//! `linkat`, which fails with `EEXIST` if the name is taken. So an object made
//! by shmio is never seen at size 0 or half set up (one made by another
//! program may be at size 0: an opener waits, bounded, for it to be sized).
//!
//! **The mark.** An object whose name follows its holders carries shmio's
//! mark: an access time of exactly 2100-01-01T00:00:00 UTC whose nanoseconds
//! are a hash of the object's device and inode ([`MARK_SECONDS`],
//! [`mark_nanos`]). No program leaves such a time by accident, a copy of the
//! file (another inode) does not carry a valid one, and only the owner (or
//! root) can set a file's times, so no other user can mark or unmark it. A
//! time in the future is never moved by `relatime` or `noatime` mounts, and
//! shmio opens its own objects with `O_NOATIME`. shmio removes nothing
//! without this mark: not CPython's segments, not plain files, not other
//! programs' links, and by default nothing of another user's.
//!
//! **Lifetime.** Each holder of a marked object keeps a shared `flock` on it;
//! the kernel drops the lock when the holder closes or dies, `kill -9`
//! included. A closing holder tries to take the lock exclusively: if it can,
//! nobody else holds the object, and it removes the name, if the name still
//! is this very object (same device and inode: the name may have been
//! renamed away and given to another object meanwhile). A name whose holders
//! all died is stale: an opener that finds it so (the exclusive lock is
//! free) removes it, if it is the opener's own, and starts again. A last
//! holder that is not the owner cannot remove the name (`/dev/shm` is
//! sticky): it stays, stale, for its owner's next open or `gc`. An object
//! without the mark (persistent, or made by another program) is never
//! removed by shmio except by `Mapping::remove`.
//!
//! **Opening** takes the shared lock and then checks that the name still
//! points at the object it opened, which closes the race with a holder that
//! removed the name between our `open` and our `flock`.
//!
//! One race stays open: between checking that a name is still an object's
//! and unlinking it, a process of the same user (or root) could rename that
//! object away and put another under the name, which would then be removed.
//! Linux has no "unlink if it is this inode"; the window is a few
//! microseconds, and no other user can rename the caller's entries (the
//! directory is sticky).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rustix::fs::{AtFlags, FileType, FlockOperation, Mode, OFlags, RenameFlags, Stat, CWD};
use rustix::io::Errno;

use crate::error::{Error, Result};
use crate::owner::{Owner, Trust};
use crate::sys::forks::LeaseLock;
use crate::sys::unix::{
    check_space, entry_id, open_file, os_error, size_error, stat_size, wait_for_size, FileId,
    Object,
};
use crate::sys::{
    file_mapping_len, Access, Disposition, EntryKind, FileRequest, ListedName, NamedRequest, Opened,
};

/// What every OS name starts with.
pub(crate) const OS_NAME_PREFIX: &str = "/";
/// The longest OS name: `/` and `NAME_MAX` (255) bytes.
pub(crate) const OS_NAME_MAX_BYTES: usize = 256;

/// Where named objects live (glibc's `shm_open` directory).
pub(crate) const SHM_DIR: &str = "/dev/shm";

/// The seconds of a marked object's access time: 2100-01-01T00:00:00 UTC.
const MARK_SECONDS: i64 = 4_102_444_800;
/// How long an opener keeps retrying while others create or remove the name.
const CONTENTION_WAIT: Duration = Duration::from_secs(5);

/// `/dev/shm`, opened once per process.
fn shm_dir() -> Result<BorrowedFd<'static>> {
    static DIR: OnceLock<std::result::Result<OwnedFd, Errno>> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        rustix::fs::open(
            SHM_DIR,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
    });
    match dir {
        Ok(fd) => Ok(fd.as_fd()),
        Err(errno) => Err(os_error("open", SHM_DIR, *errno)),
    }
}

/// The nanoseconds of the mark of the object `id`: a hash of its identity,
/// so that a copy (another inode) carries no valid mark.
fn mark_nanos(id: FileId) -> u32 {
    let mut x = id.dev ^ id.ino.rotate_left(32) ^ 0x7368_6d69_6f21_6d6b;
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    ((x ^ (x >> 31)) % 1_000_000_000) as u32
}

/// Whether the entry or object `stat` describes carries shmio's mark.
#[allow(clippy::unnecessary_cast)] // the stat fields' types differ between architectures
fn is_marked(stat: &Stat) -> bool {
    stat.st_atime as i64 == MARK_SECONDS
        && stat.st_atime_nsec as u64 == u64::from(mark_nanos(FileId::of(stat)))
}

/// The access time that marks the object `id` (its modification time is kept).
fn mark_times(id: FileId) -> rustix::fs::Timestamps {
    rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: MARK_SECONDS,
            tv_nsec: mark_nanos(id).into(),
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_OMIT,
        },
    }
}

/// This process's effective user id.
fn current_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// What shmio expected instead of an entry of type `file_type`, saying
/// what the entry is.
fn expected_object(file_type: FileType) -> &'static str {
    match file_type {
        FileType::Directory => "a shared-memory object (it is a directory)",
        FileType::Fifo => "a shared-memory object (it is a FIFO)",
        FileType::Socket => "a shared-memory object (it is a socket)",
        FileType::CharacterDevice => "a shared-memory object (it is a character device)",
        FileType::BlockDevice => "a shared-memory object (it is a block device)",
        FileType::Symlink => "a shared-memory object (it is a link to something else)",
        _ => "a shared-memory object",
    }
}

/// The error for a name in `/dev/shm` that is not a shared-memory object.
fn not_shared_memory(name: &str, file_type: FileType) -> Error {
    Error::WrongKind {
        name: name.to_owned(),
        expected: expected_object(file_type),
        found: None,
    }
}

/// Refuses an entry owned by someone the request does not trust.
fn check_owner(stat: &Stat, req: &NamedRequest<'_>) -> Result<()> {
    let owner = Owner::Uid(stat.st_uid);
    if stat.st_uid == current_uid() || req.trust.allows(&owner) {
        return Ok(());
    }
    Err(Error::ForeignOwner {
        name: req.name.to_owned(),
        owner,
    })
}

/// A holder's share in a name that follows its holders.
pub(crate) struct Lease {
    os_name: String,
    /// What the name must still be for the last holder to remove it: the
    /// object itself, or the symlink to a backing file.
    entry: FileId,
    /// Which description holds this process's shared lock: the object's,
    /// or (in a forked child) one of the child's own (see `sys::forks`).
    lock: LeaseLock,
}

impl Lease {
    /// The lease of a holder whose shared lock is on the object's description.
    fn new(req: &NamedRequest<'_>, entry: FileId) -> Lease {
        Lease {
            os_name: req.os_name.to_owned(),
            entry,
            lock: LeaseLock::new(req.passes_to_children),
        }
    }

    /// Makes this process a holder of the name, if it is a forked child
    /// using its copy of the object `object_fd` for the first time and the
    /// lease passes to children (see `sys::forks`).
    pub(crate) fn share_here(&self, object_fd: &OwnedFd) {
        self.lock
            .share(object_fd.as_fd(), |from| self.take_share(from));
    }

    /// A share of this lease for this process: a new description of the
    /// file `from` is open on, locked shared, if the name is still it.
    /// Holding it before looking: a holder that removes the name does so
    /// holding the lock exclusively, so once the check passes, the name
    /// stays until this share lets go.
    fn take_share(&self, from: BorrowedFd<'_>) -> Option<OwnedFd> {
        let fd = reopen(from)?;
        rustix::fs::flock(&fd, FlockOperation::NonBlockingLockShared).ok()?;
        let dir = shm_dir().ok()?;
        (entry_id(dir, entry_of(&self.os_name)) == Some(self.entry)).then_some(fd)
    }

    /// The OS name.
    pub(crate) fn os_name(&self) -> &str {
        &self.os_name
    }

    /// Called as the holder closes `lock_fd`: removes the name if this is
    /// the last holder and the name is still the object it holds.
    /// Removes the name now, whoever else holds it, if it is still the
    /// object (for a member's inbox as it leaves its bus group: the members
    /// that wrote to it may hold it a while longer).
    pub(crate) fn remove_name(&self) {
        if let Ok(dir) = shm_dir() {
            unlink_if(dir, entry_of(&self.os_name), self.entry);
        }
    }

    /// A forked child's copy of its parent's lease, with no share of its
    /// own, does nothing.
    pub(crate) fn release(self, lock_fd: &OwnedFd) {
        let Some(lock_fd) = self.lock.held(lock_fd.as_fd()) else {
            return;
        };
        // Converting shared to exclusive drops the shared lock first (flock(2)),
        // so of several holders closing at once, the last one succeeds.
        if rustix::fs::flock(lock_fd, FlockOperation::NonBlockingLockExclusive).is_err() {
            return;
        }
        let Ok(dir) = shm_dir() else { return };
        unlink_if(dir, entry_of(&self.os_name), self.entry);
    }
}

/// A new open file description of the file `fd` is open on (for a forked
/// child's own lease: see `sys::forks`), read-only, never waiting, not
/// touching the access time where the caller may say so.
fn reopen(fd: BorrowedFd<'_>) -> Option<OwnedFd> {
    let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK;
    let reopened =
        match rustix::fs::openat(CWD, path.as_str(), flags | OFlags::NOATIME, Mode::empty()) {
            Err(Errno::PERM) => rustix::fs::openat(CWD, path.as_str(), flags, Mode::empty()),
            other => other,
        }
        .ok()?;
    crate::sys::forks::same_file(fd, &reopened).then_some(reopened)
}

/// Removes `entry` if it is the object (or link) `id`; whether it did.
fn unlink_if(dir: BorrowedFd<'_>, entry: &str, id: FileId) -> bool {
    entry_id(dir, entry) == Some(id) && rustix::fs::unlinkat(dir, entry, AtFlags::empty()).is_ok()
}

/// The file name in `/dev/shm` for an OS name.
fn entry_of(os_name: &str) -> &str {
    os_name.strip_prefix('/').unwrap_or(os_name)
}

/// What an attempt to open an existing name found.
enum Found {
    /// A live object, now held; `true` if it was stale and kept (`keep_stale`).
    Live(Object, bool),
    /// No such name.
    Missing,
    /// The name was stale, or changed under us: look again.
    Retry,
    /// Someone is removing the name right now: wait a moment and look again.
    Busy,
}

/// Creates and/or opens a named object as `how` says.
pub(crate) fn open_named(req: &NamedRequest<'_>, how: Disposition) -> Result<Opened> {
    // What Linux does not need: one namespace, and a lock whose state
    // outlives its holders by itself (robust futexes).
    let NamedRequest {
        global: _one_namespace,
        lock_name: _lock_outlives_holders,
        ..
    } = req;
    if req.persistent && req.file.is_some() {
        return Err(Error::Unsupported {
            what: "a persistent name for a file-backed mapping on Linux (the file itself persists)",
        });
    }
    let dir = shm_dir()?;
    let entry = entry_of(req.os_name);
    let deadline = Instant::now() + CONTENTION_WAIT;
    loop {
        if how != Disposition::Open {
            let created = match req.file {
                Some(path) => create_file_link(dir, entry, req, path)?,
                None => create_object(dir, entry, req)?,
            };
            if let Some(object) = created {
                return Ok(Opened {
                    object,
                    existed: false,
                    adopted_stale: false,
                });
            }
        }
        let found = match open_entry(dir, entry, req) {
            // `create` only needs to know that the name is taken.
            Err(Error::ForeignOwner { .. }) if how == Disposition::Create => {
                return Err(Error::AlreadyExists {
                    kind: None,
                    name: req.name.to_owned(),
                })
            }
            found => found?,
        };
        match found {
            Found::Live(..) if how == Disposition::Create => {
                return Err(Error::AlreadyExists {
                    kind: None,
                    name: req.name.to_owned(),
                })
            }
            Found::Live(object, adopted_stale) => {
                return Ok(Opened {
                    object,
                    existed: true,
                    adopted_stale,
                })
            }
            Found::Missing if how == Disposition::Open => {
                return Err(Error::NotFound {
                    kind: None,
                    name: req.name.to_owned(),
                })
            }
            Found::Missing | Found::Retry => {}
            Found::Busy => std::thread::sleep(Duration::from_micros(200)),
        }
        if Instant::now() > deadline {
            return Err(crate::sys::io_error(
                "open",
                req.name,
                std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the name kept changing while other processes created and removed it",
                ),
            ));
        }
    }
}

/// Reserves the memory of bytes `from..to` of `fd` (`fallocate`), so a
/// created object can always be written in full; on a file system that
/// cannot reserve, checks that it has room (see [`check_space`]).
///
/// Memory-backed file systems (`/dev/shm`, memfd) are sized in memory the
/// kernel does not check before it starts allocating: a reservation larger
/// than the memory left would run the machine into the OOM killer before
/// it failed. So a large one is refused first if it exceeds the memory
/// (and swap) still available.
fn reserve(fd: &OwnedFd, from: u64, to: u64, target: &str) -> Result<()> {
    /// Below this, a reservation cannot hurt the machine: no need to look.
    const LARGE: u64 = 16 << 20;
    /// `statfs`'s `f_type` of tmpfs (and of memfd's internal mount).
    const TMPFS_MAGIC: u64 = 0x0102_1994;
    if to <= from {
        return Ok(());
    }
    let in_memory = || {
        rustix::fs::fstatfs(fd).is_ok_and(|fs| {
            #[allow(clippy::unnecessary_cast)] // f_type's type differs between architectures
            let kind = fs.f_type as u64;
            kind == TMPFS_MAGIC
        })
    };
    if to - from >= LARGE && in_memory() && to - from > available_memory() {
        return Err(Error::NoSpace {
            size: to,
            target: target.to_owned(),
        });
    }
    match rustix::fs::fallocate(fd, rustix::fs::FallocateFlags::empty(), from, to - from) {
        Ok(()) => Ok(()),
        Err(Errno::OPNOTSUPP | Errno::NOSYS) => check_space(fd, from, to, target),
        Err(errno) => Err(size_error("reserve", target, to, errno)),
    }
}

/// The memory and swap the kernel says are still available, in bytes
/// (`/proc/meminfo`); unbounded if it cannot be read.
fn available_memory() -> u64 {
    let Ok(text) = std::fs::read_to_string("/proc/meminfo") else {
        return u64::MAX;
    };
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
    };
    match (field("MemAvailable:"), field("SwapFree:")) {
        (Some(memory), swap) => memory
            .saturating_add(swap.unwrap_or(0))
            .saturating_mul(1024),
        (None, _) => u64::MAX,
    }
}

/// Makes a new object and links it under `entry`; `None` if the name is taken.
fn create_object(
    dir: BorrowedFd<'_>,
    entry: &str,
    req: &NamedRequest<'_>,
) -> Result<Option<Object>> {
    let follows_holders = !req.persistent;
    let fd = rustix::fs::openat(
        dir,
        ".",
        OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC,
        Mode::from_raw_mode(req.mode & 0o777),
    )
    .map_err(|e| os_error("create", req.name, e))?;
    let size = req.size.unwrap_or(req.default_size);
    if req.sparse {
        check_space(&fd, 0, size, req.name)?;
    }
    rustix::fs::ftruncate(&fd, size).map_err(|e| size_error("size", req.name, size, e))?;
    if !req.sparse {
        reserve(&fd, 0, size, req.name)?;
    }
    let id = FileId::of(&rustix::fs::fstat(&fd).map_err(|e| os_error("inspect", req.name, e))?);
    if follows_holders {
        rustix::fs::futimens(&fd, &mark_times(id)).map_err(|e| os_error("mark", req.name, e))?;
        // Nobody else can reach an unnamed object: this never waits.
        rustix::fs::flock(&fd, FlockOperation::LockShared)
            .map_err(|e| os_error("lock", req.name, e))?;
    }
    let mut object = Object {
        fd,
        size,
        lease: None,
    };
    if let Some(init) = req.init {
        let region = object.map(size, Access::ReadWrite, req.name)?;
        init(&region)?;
    }
    if !link_unnamed(&object.fd, dir, entry).map_err(|e| os_error("name", req.name, e))? {
        return Ok(None);
    }
    object.lease = follows_holders.then(|| Lease::new(req, id));
    Ok(Some(object))
}

/// Gives the `O_TMPFILE` object `fd` the name `entry`; `false` if it is taken.
fn link_unnamed(
    fd: &OwnedFd,
    dir: BorrowedFd<'_>,
    entry: &str,
) -> std::result::Result<bool, Errno> {
    let linked = match rustix::fs::linkat(fd, "", dir, entry, AtFlags::EMPTY_PATH) {
        // AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH on older kernels; the
        // /proc path does the same for anyone.
        Err(Errno::NOENT | Errno::PERM | Errno::ACCESS | Errno::INVAL) => {
            let proc_path = format!("/proc/self/fd/{}", fd.as_raw_fd());
            rustix::fs::linkat(CWD, proc_path.as_str(), dir, entry, AtFlags::SYMLINK_FOLLOW)
        }
        other => other,
    };
    match linked {
        Ok(()) => Ok(true),
        Err(Errno::EXIST) => Ok(false),
        Err(errno) => Err(errno),
    }
}

/// Opens (creating if needed) and sizes the backing file, then links it
/// under `entry`: the link is made and marked under a private name, then
/// renamed into place only if `entry` is free, so no one sees it unmarked.
fn create_file_link(
    dir: BorrowedFd<'_>,
    entry: &str,
    req: &NamedRequest<'_>,
    path: &Path,
) -> Result<Option<Object>> {
    let mut object = open_file(&FileRequest {
        path,
        access: req.access,
        mode: req.mode,
    })?;
    let target = path.display().to_string();
    let (len, grow) = file_mapping_len(
        object.size(),
        req.size,
        req.default_size,
        req.access,
        &target,
    )?;
    if grow {
        object.set_len(len, &target)?;
    }
    rustix::fs::flock(&object.fd, FlockOperation::LockShared)
        .map_err(|e| os_error("lock", &target, e))?;
    let absolute = path
        .canonicalize()
        .map_err(|e| crate::sys::io_error("resolve", target.clone(), e))?;
    // A private name no other process picks: not by pid, which another
    // pid namespace sharing this /dev/shm may give a process too.
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let private = format!(
        ".shmio-link-{:016x}-{}",
        std::hash::BuildHasher::hash_one(
            &std::collections::hash_map::RandomState::new(),
            std::time::SystemTime::now()
        ),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    rustix::fs::symlinkat(absolute.as_path(), dir, private.as_str())
        .map_err(|e| os_error("name", req.name, e))?;
    let published = entry_id(dir, &private).ok_or(Errno::NOENT).and_then(|id| {
        rustix::fs::utimensat(
            dir,
            private.as_str(),
            &mark_times(id),
            AtFlags::SYMLINK_NOFOLLOW,
        )?;
        rustix::fs::renameat_with(dir, private.as_str(), dir, entry, RenameFlags::NOREPLACE)?;
        Ok(id)
    });
    let id = match published {
        Ok(id) => id,
        Err(errno) => {
            let _ = rustix::fs::unlinkat(dir, private.as_str(), AtFlags::empty());
            if errno == Errno::EXIST {
                return Ok(None);
            }
            return Err(os_error("name", req.name, errno));
        }
    };
    object.size = len;
    object.lease = Some(Lease::new(req, id));
    Ok(Some(object))
}

/// The open flags for an existing object: never waiting, and (`noatime`,
/// for an object the caller owns) not touching the access time, which
/// holds the mark.
fn open_flags(req: &NamedRequest<'_>, noatime: bool) -> OFlags {
    let access = if req.access.writes_object() {
        OFlags::RDWR
    } else {
        OFlags::RDONLY
    };
    let flags = access | OFlags::CLOEXEC | OFlags::NONBLOCK;
    if noatime {
        flags | OFlags::NOATIME
    } else {
        flags
    }
}

/// Opens the object named `entry`, reclaiming it if stale.
fn open_entry(dir: BorrowedFd<'_>, entry: &str, req: &NamedRequest<'_>) -> Result<Found> {
    let seen = match rustix::fs::statat(dir, entry, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) => stat,
        Err(Errno::NOENT) => return Ok(Found::Missing),
        Err(errno) => return Err(os_error("inspect", req.name, errno)),
    };
    check_owner(&seen, req)?;
    match FileType::from_raw_mode(seen.st_mode) {
        FileType::RegularFile => open_object(dir, entry, req, &seen),
        FileType::Symlink => open_file_link(dir, entry, req, &seen),
        other => Err(not_shared_memory(req.name, other)),
    }
}

/// Opens the regular file `entry`, seen as `seen`.
fn open_object(
    dir: BorrowedFd<'_>,
    entry: &str,
    req: &NamedRequest<'_>,
    seen: &Stat,
) -> Result<Found> {
    let flags = open_flags(req, seen.st_uid == current_uid()) | OFlags::NOFOLLOW;
    let fd = match rustix::fs::openat(dir, entry, flags, Mode::empty()) {
        Ok(fd) => fd,
        // Gone or replaced by a link since we looked: look again.
        Err(Errno::NOENT | Errno::LOOP) => return Ok(Found::Retry),
        Err(errno) => return Err(os_error("open", req.name, errno)),
    };
    let stat = rustix::fs::fstat(&fd).map_err(|e| os_error("inspect", req.name, e))?;
    let id = FileId::of(&stat);
    if id != FileId::of(seen) {
        return Ok(Found::Retry);
    }
    let lease = is_marked(&stat).then_some(id);
    hold(dir, entry, req, fd, (stat_size(&stat), seen.st_uid), lease)
}

/// Opens the backing file of a named file-backed mapping through its link,
/// seen as `seen` (its owner already checked).
fn open_file_link(
    dir: BorrowedFd<'_>,
    entry: &str,
    req: &NamedRequest<'_>,
    seen: &Stat,
) -> Result<Found> {
    let fd = match rustix::fs::openat(dir, entry, open_flags(req, false), Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::NOENT) if entry_id(dir, entry) == Some(FileId::of(seen)) => {
            return Err(Error::FileNotFound {
                what: "backing file",
                path: format!("{} (its backing file is gone)", req.name),
            })
        }
        Err(Errno::NOENT) => return Ok(Found::Retry),
        Err(errno) => return Err(os_error("open", req.name, errno)),
    };
    let target = rustix::fs::fstat(&fd).map_err(|e| os_error("inspect", req.name, e))?;
    let target_type = FileType::from_raw_mode(target.st_mode);
    if target_type != FileType::RegularFile {
        return Err(Error::WrongKind {
            name: req.name.to_owned(),
            expected: "a link to a regular file",
            found: None,
        });
    }
    let link = FileId::of(seen);
    if entry_id(dir, entry) != Some(link) {
        return Ok(Found::Retry);
    }
    let lease = is_marked(seen).then_some(link);
    hold(
        dir,
        entry,
        req,
        fd,
        (stat_size(&target), seen.st_uid),
        lease,
    )
}

/// Becomes a holder of the object `fd` of `size` bytes, found under `entry`
/// (owned by `owner_uid`); `lease` is the identity its last holder will find
/// under the name, or `None` for a name that does not follow its holders.
fn hold(
    dir: BorrowedFd<'_>,
    entry: &str,
    req: &NamedRequest<'_>,
    fd: OwnedFd,
    (size, owner_uid): (u64, u32),
    lease: Option<FileId>,
) -> Result<Found> {
    let mut adopted_stale = false;
    if let Some(id) = lease {
        if rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive).is_ok() {
            if req.keep_stale {
                // Keep it, as one more holder. Converting the lock is not
                // atomic (flock(2)): another opener may remove the name in
                // between, which the check below sees.
                rustix::fs::flock(&fd, FlockOperation::LockShared)
                    .map_err(|e| os_error("lock", req.name, e))?;
                if entry_id(dir, entry) != Some(id) {
                    return Ok(Found::Retry);
                }
                adopted_stale = true;
            } else {
                reclaim_stale(dir, entry, id, owner_uid, req)?;
                return Ok(Found::Retry);
            }
        } else {
            match rustix::fs::flock(&fd, FlockOperation::NonBlockingLockShared) {
                Ok(()) => {}
                Err(Errno::WOULDBLOCK) => return Ok(Found::Busy),
                Err(errno) => return Err(os_error("lock", req.name, errno)),
            }
            if entry_id(dir, entry) != Some(id) {
                return Ok(Found::Retry);
            }
        }
    }
    let size = match size {
        0 => wait_for_size(&fd, req.name)?,
        size => size,
    };
    let lease = lease.map(|entry| Lease::new(req, entry));
    let mut object = Object { fd, size, lease };
    if let Some(ready) = req.ready {
        // Set up before it was named: never a wait here (READY_WAIT is zero).
        crate::sys::await_ready(&mut object, ready, req.name)?;
    }
    Ok(Found::Live(object, adopted_stale))
}

/// Removes the stale name `entry` (every holder died) if it is still the
/// object `id` and belongs to the caller (`owner_uid`).
fn reclaim_stale(
    dir: BorrowedFd<'_>,
    entry: &str,
    id: FileId,
    owner_uid: u32,
    req: &NamedRequest<'_>,
) -> Result<()> {
    if owner_uid != current_uid() {
        return Err(Error::PermissionDenied {
            op: "reclaim the stale name (its holders all died; it belongs to another user)",
            target: req.name.to_owned(),
        });
    }
    if entry_id(dir, entry) != Some(id) {
        return Ok(());
    }
    match rustix::fs::unlinkat(dir, entry, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(errno) => Err(os_error("reclaim the stale name", req.name, errno)),
    }
}

/// Removes a name now, whoever holds it; holders keep their memory. Only a
/// shared-memory object or a link, only the caller's own unless `trust`
/// accepts its owner, and only the very entry looked at.
pub(crate) fn remove_named(name: &str, os_name: &str, trust: &Trust) -> Result<()> {
    let dir = shm_dir()?;
    let entry = entry_of(os_name);
    let seen = match rustix::fs::statat(dir, entry, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) => stat,
        Err(Errno::NOENT) => {
            return Err(Error::NotFound {
                kind: None,
                name: name.to_owned(),
            })
        }
        Err(errno) => return Err(os_error("inspect", name, errno)),
    };
    let file_type = FileType::from_raw_mode(seen.st_mode);
    if !matches!(file_type, FileType::RegularFile | FileType::Symlink) {
        return Err(not_shared_memory(name, file_type));
    }
    let owner = Owner::Uid(seen.st_uid);
    if seen.st_uid != current_uid() && !trust.allows(&owner) {
        return Err(Error::ForeignOwner {
            name: name.to_owned(),
            owner,
        });
    }
    if entry_id(dir, entry) != Some(FileId::of(&seen)) {
        return Err(Error::NotFound {
            kind: None,
            name: format!("{name} (it changed while being removed)"),
        });
    }
    match rustix::fs::unlinkat(dir, entry, AtFlags::empty()) {
        Ok(()) => Ok(()),
        Err(Errno::NOENT) => Err(Error::NotFound {
            kind: None,
            name: name.to_owned(),
        }),
        Err(errno) => Err(os_error("remove", name, errno)),
    }
}

/// A new anonymous object: a sealed memfd, which no holder can shrink under
/// another, its memory reserved unless `sparse`.
pub(crate) fn anonymous(size: u64, sparse: bool) -> Result<Object> {
    use rustix::fs::{MemfdFlags, SealFlags};
    const TARGET: &str = "anonymous mapping";
    let fd = rustix::fs::memfd_create("shmio", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)
        .map_err(|e| os_error("create", TARGET, e))?;
    rustix::fs::ftruncate(&fd, size).map_err(|e| size_error("size", TARGET, size, e))?;
    if !sparse {
        reserve(&fd, 0, size, TARGET)?;
    }
    rustix::fs::fcntl_add_seals(&fd, SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL)
        .map_err(|e| os_error("seal", TARGET, e))?;
    Ok(Object {
        fd,
        size,
        lease: None,
    })
}

/// Grows a file-backed object from `current` to `len` bytes, reserving the
/// new part.
pub(crate) fn grow(fd: &OwnedFd, current: u64, len: u64, target: &str) -> Result<()> {
    rustix::fs::ftruncate(fd, len).map_err(|e| size_error("resize", target, len, e))?;
    reserve(fd, current, len, target)
}

/// Every name in `/dev/shm`, whatever it is; none is opened in a way that
/// can wait, and no other user's link is followed.
pub(crate) fn list_named() -> Result<Vec<ListedName>> {
    let locks = flock_holders();
    let entries =
        std::fs::read_dir(SHM_DIR).map_err(|e| crate::sys::io_error("list", SHM_DIR, e))?;
    let mut names = Vec::new();
    for entry in entries.flatten() {
        // shmio's names are UTF-8; another program's may not be, and is not shmio's to show.
        let Some(file_name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if let Some(listed) = describe(&file_name, &locks) {
            names.push(listed);
        }
    }
    names.sort_by(|a, b| a.os_name.cmp(&b.os_name));
    Ok(names)
}

/// One name, or `None` if there is no such entry.
pub(crate) fn describe_named(os_name: &str) -> Result<Option<ListedName>> {
    Ok(describe(entry_of(os_name), &flock_holders()))
}

fn describe(
    file_name: &str,
    locks: &std::collections::HashMap<(u64, u64), u32>,
) -> Option<ListedName> {
    let dir = shm_dir().ok()?;
    let seen = rustix::fs::statat(dir, file_name, AtFlags::SYMLINK_NOFOLLOW).ok()?;
    let own = seen.st_uid == current_uid();
    let file_type = FileType::from_raw_mode(seen.st_mode);
    let mut listed = ListedName {
        os_name: format!("/{file_name}"),
        entry: EntryKind::Other(expected_object(file_type)),
        owner: Owner::Uid(seen.st_uid),
        own,
        follows_holders: false,
        size: 0,
        holders: None,
        magic: 0,
    };
    let (object, stat) = match file_type {
        FileType::RegularFile => {
            listed.entry = EntryKind::Object;
            listed.follows_holders = is_marked(&seen);
            let flags = OFlags::RDONLY
                | OFlags::CLOEXEC
                | OFlags::NOFOLLOW
                | OFlags::NONBLOCK
                | if own {
                    OFlags::NOATIME
                } else {
                    OFlags::empty()
                };
            let fd = rustix::fs::openat(dir, file_name, flags, Mode::empty()).ok();
            // Only the very object we looked at (it may have been replaced since).
            let fd = fd.filter(|fd| {
                rustix::fs::fstat(fd).is_ok_and(|stat| FileId::of(&stat) == FileId::of(&seen))
            });
            (fd, seen)
        }
        FileType::Symlink => {
            listed.entry = EntryKind::Link;
            listed.follows_holders = is_marked(&seen);
            if !own {
                // Never follow another user's link, not even to look.
                return Some(listed);
            }
            let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK;
            let fd = rustix::fs::openat(dir, file_name, flags, Mode::empty()).ok();
            match fd.and_then(|fd| Some((rustix::fs::fstat(&fd).ok()?, fd))) {
                Some((stat, fd))
                    if FileType::from_raw_mode(stat.st_mode) == FileType::RegularFile =>
                {
                    (Some(fd), stat)
                }
                _ => return Some(listed),
            }
        }
        _ => return Some(listed),
    };
    listed.size = stat_size(&stat);
    listed.holders = Some(locks.get(&(stat.st_dev, stat.st_ino)).copied().unwrap_or(0));
    if let Some(fd) = &object {
        let mut magic = [0u8; 8];
        if rustix::io::pread(fd, &mut magic, 0) == Ok(8) {
            listed.magic = u64::from_le_bytes(magic);
        }
    }
    Some(listed)
}

/// Shared `flock`s per (device, inode), from `/proc/locks`.
fn flock_holders() -> std::collections::HashMap<(u64, u64), u32> {
    let mut holders = std::collections::HashMap::new();
    let Ok(text) = std::fs::read_to_string("/proc/locks") else {
        return holders;
    };
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // "1: FLOCK  ADVISORY  READ 1234 fe:00:5414981 0 EOF"
        if fields.len() < 6 || fields[1] != "FLOCK" || fields[3] != "READ" {
            continue;
        }
        let parts: Vec<&str> = fields[5].split(':').collect();
        if parts.len() != 3 {
            continue;
        }
        let (Ok(major), Ok(minor), Ok(inode)) = (
            u64::from_str_radix(parts[0], 16),
            u64::from_str_radix(parts[1], 16),
            parts[2].parse::<u64>(),
        ) else {
            continue;
        };
        let dev = rustix::fs::makedev(major as u32, minor as u32);
        *holders.entry((dev, inode)).or_insert(0) += 1;
    }
    holders
}

/// Removes `os_name` if it is stale: the caller's own, marked by shmio, and
/// no holder left (or, for a link, its backing file gone). With `dry_run`,
/// checks all of that and removes nothing. `Ok(Err(reason))` says why it
/// was kept. Safe against a holder arriving meanwhile: the same
/// exclusive-lock check an opener makes.
pub(crate) fn reclaim_if_stale(
    os_name: &str,
    dry_run: bool,
    trust: &Trust,
) -> Result<std::result::Result<(), String>> {
    let dir = shm_dir()?;
    let entry = entry_of(os_name);
    let Ok(seen) = rustix::fs::statat(dir, entry, AtFlags::SYMLINK_NOFOLLOW) else {
        return Ok(Err("gone".to_owned()));
    };
    let file_type = FileType::from_raw_mode(seen.st_mode);
    if !matches!(file_type, FileType::RegularFile | FileType::Symlink) {
        return Ok(Err(format!("not {}", expected_object(file_type))));
    }
    let owner = Owner::Uid(seen.st_uid);
    if seen.st_uid != current_uid() && !trust.allows(&owner) {
        return Ok(Err(format!("it belongs to {owner}, not to this user")));
    }
    if !is_marked(&seen) {
        return Ok(Err(
            "shmio did not make it to go with its holders (persistent, or another program's)"
                .to_owned(),
        ));
    }
    let id = FileId::of(&seen);
    let flags = if file_type == FileType::Symlink {
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK
    } else {
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOFOLLOW | OFlags::NOATIME
    };
    match rustix::fs::openat(dir, entry, flags, Mode::empty()) {
        Ok(fd) => {
            if rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive).is_err() {
                return Ok(Err("a process holds it".to_owned()));
            }
        }
        // A link whose file is gone: nothing can hold it.
        Err(Errno::NOENT) if file_type == FileType::Symlink => {}
        // Removed (or replaced by a link) since we looked.
        Err(Errno::NOENT | Errno::LOOP) => return Ok(Err("gone".to_owned())),
        Err(errno) => return Err(os_error("open", os_name, errno)),
    }
    if dry_run {
        return Ok(if entry_id(dir, entry) == Some(id) {
            Ok(())
        } else {
            Err("it changed while being looked at".to_owned())
        });
    }
    if entry_id(dir, entry) != Some(id) {
        return Ok(Err("it changed while being looked at".to_owned()));
    }
    match rustix::fs::unlinkat(dir, entry, AtFlags::empty()) {
        Ok(()) => Ok(Ok(())),
        Err(Errno::NOENT) => Ok(Err("gone".to_owned())),
        // Another user's, in the sticky /dev/shm: theirs or root's to remove.
        Err(Errno::PERM | Errno::ACCESS) => Ok(Err("not permitted to remove it".to_owned())),
        Err(errno) => Err(os_error("remove", os_name, errno)),
    }
}
