//! Named objects on macOS, and the lease file that removes a name with its last holder.
//!
//! A named mapping is a POSIX shared-memory object (`shm_open`), the object
//! CPython's `SharedMemory` opens on macOS. macOS keeps these names short
//! (`PSHMNAMLEN`: 31 bytes with the slash; longer names are hashed by
//! `name.rs`), sizes an object once only (a second `ftruncate` fails), maps
//! it shared only (so a copy-on-write named mapping is refused), reports its
//! size rounded up to a page, and gives it no inode: nothing identifies the
//! object behind a name, and `flock` does not work on it. A named file-backed
//! mapping has no equivalent here and is refused.
//!
//! **Lifetime.** The lock therefore lives on a companion *lease file*, one
//! per name, in a directory of the user's own (`$TMPDIR/shmio-leases`, mode
//! 0700; `$TMPDIR` is per user on macOS). Its file name is the OS name in hex
//! (the file system is case-insensitive, shm names are not). A name that
//! follows its holders has a lease file; every holder keeps a shared `flock`
//! on it, which the kernel drops when the holder closes or dies, `kill -9`
//! included. A closing holder tries to take the lock exclusively: if it can,
//! it is the last holder, and (if the lease path still names its lease file)
//! removes the object's name and then the lease file. Everyone who removes or
//! replaces a lease file holds it exclusively first, so while a holder keeps
//! its shared lock the name it leases cannot be removed by another holder.
//!
//! **The mark.** A lease file alone does not prove that the object under the
//! name is its own: a creator makes the lease file before it knows whether
//! the name is free, and the name may belong to a persistent object or to
//! another program. So the creator that actually makes the object marks the
//! lease file (gives it one byte) once the object is sized. Openers believe
//! only a marked lease file; an unmarked one that nobody else holds, over an
//! existing object, is removed and the object opened without a lease. An
//! unmarked one that others hold means a creator is between making and
//! marking its object (or others are looking at the same foreign object):
//! wait a moment and look again.
//!
//! **Creating** takes the lease first: create or open the lease file, lock
//! it shared, check that its path still names it, and only then
//! `shm_open(O_CREAT | O_EXCL)`, size, mark. `EEXIST` goes on to open, still
//! holding the lease. A persistent name gets no lease file at all.
//!
//! **Opening** likewise locks the lease file before opening the object, so
//! the object cannot be removed between the two. If the lock can be taken
//! exclusively, nobody else holds the name: with a mark, every holder died,
//! and the stale name and its lease file are removed before looking again;
//! without one, the object is not shmio's to remove. A name without a lease
//! file (persistent, or made by another program) is opened without a lease
//! and never removed except by `Mapping::remove`.
//!
//! **Limits.** Nothing identifies an object, so a lease cannot tell a name
//! that was removed and made again behind shmio's back (`Mapping::remove`, or
//! another program's `shm_unlink`) from its own; and a creator killed
//! between making and marking its object leaves a name that openers treat
//! as another program's. Processes that share names must agree on `$TMPDIR`.

use std::fmt::Write as _;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rustix::fs::{AtFlags, FileType, FlockOperation, Mode, OFlags, RawMode};
use rustix::io::Errno;
use rustix::shm;

use crate::error::{Error, Result};
use crate::sys::forks::LeaseLock;
use crate::sys::unix::{
    check_space, entry_id, map_fd, os_error, size_error, stat_size, wait_for_size, FileId, Object,
};
use crate::sys::{Access, Disposition, NamedRequest, Opened};

/// What every OS name starts with.
pub(crate) const OS_NAME_PREFIX: &str = "/";
/// The longest OS name: `PSHMNAMLEN` (31) bytes, the slash included.
pub(crate) const OS_NAME_MAX_BYTES: usize = 31;

/// The directory of lease files, under the user's temporary directory.
pub(super) const LEASE_DIR: &str = "shmio-leases";
/// What every lease file's name ends with.
const LEASE_SUFFIX: &str = ".lease";
/// How long an open keeps retrying while others create or remove the name.
const CONTENTION_WAIT: Duration = Duration::from_secs(5);
/// How many unique names `anonymous` tries before giving up.
const ANONYMOUS_ATTEMPTS: u32 = 64;

/// A holder's share in a name that follows its holders: a shared lock on the name's lease file.
pub(crate) struct Lease {
    os_name: String,
    /// The lease file, locked shared for as long as this holder lives.
    file: OwnedFd,
    /// The lease file's identity.
    id: FileId,
    /// Which description holds this process's shared lock: the lease
    /// file's, or (in a forked child) one of the child's own (see `sys::forks`).
    lock: LeaseLock,
}

impl Lease {
    /// The OS name.
    pub(crate) fn os_name(&self) -> &str {
        &self.os_name
    }

    /// Makes this process a holder of the name, if it is a forked child
    /// using its copy of the object for the first time and the lease passes
    /// to children (see `sys::forks`): a share of its own on the lease file.
    pub(crate) fn share_here(&self, _object_fd: &OwnedFd) {
        self.lock.share(self.file.as_fd(), |from| {
            let fd = reopen(from)?;
            rustix::fs::flock(&fd, FlockOperation::NonBlockingLockShared).ok()?;
            let dir = lease_dir(false).ok()??;
            (entry_id(dir.as_fd(), &lease_entry(&self.os_name)) == Some(self.id)).then_some(fd)
        });
    }

    /// Removes the name now, whoever else holds it, if it is still this
    /// lease's (for a member's inbox as it leaves its bus group).
    pub(crate) fn remove_name(&self) {
        if let Ok(Some(dir)) = lease_dir(false) {
            remove_name(dir.as_fd(), &lease_entry(&self.os_name), self);
        }
    }

    /// Called as the holder closes its object: removes the name if this is
    /// the last holder. The lock is on the lease file, not on the object's
    /// descriptor, which macOS cannot lock.
    /// A forked child's copy of its parent's lease, with no share of its
    /// own, does nothing.
    pub(crate) fn release(self, _lock_fd: &OwnedFd) {
        let Some(lock_fd) = self.lock.held(self.file.as_fd()) else {
            return;
        };
        // Of several holders closing at once, the last one gets the lock.
        if rustix::fs::flock(lock_fd, FlockOperation::NonBlockingLockExclusive).is_err() {
            return;
        }
        let Ok(Some(dir)) = lease_dir(false) else {
            return;
        };
        // The object first: a lease file left behind (if we die in between)
        // is harmless, an object without its lease file would never go.
        remove_name(dir.as_fd(), &lease_entry(&self.os_name), &self);
    }
}

/// A new open file description of the file `fd` is open on (for a forked
/// child's own lease: see `sys::forks`), found by its path and checked to
/// be the same file.
fn reopen(fd: BorrowedFd<'_>) -> Option<OwnedFd> {
    let path = rustix::fs::getpath(fd).ok()?;
    let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOFOLLOW;
    let reopened = rustix::fs::open(path.as_c_str(), flags, Mode::empty()).ok()?;
    crate::sys::forks::same_file(fd, &reopened).then_some(reopened)
}

/// Removes the name and its lease file, while holding the lease file
/// exclusively, if the lease path still names this lease file.
fn remove_name(dir: BorrowedFd<'_>, entry: &str, lease: &Lease) {
    if entry_id(dir, entry) == Some(lease.id) {
        let _ = shm::unlink(lease.os_name.as_str());
        let _ = rustix::fs::unlinkat(dir, entry, AtFlags::empty());
    }
}

/// The user's lease directory, created (0700) when `create` is set; `None`
/// if it does not exist and may not be created. It must belong to the user
/// and be closed to everyone else, or leases could be forged.
pub(super) fn lease_dir(create: bool) -> Result<Option<OwnedFd>> {
    let path = std::env::temp_dir().join(LEASE_DIR);
    let target = || path.display().to_string();
    if create {
        match rustix::fs::mkdir(&path, Mode::RWXU) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(errno) => return Err(os_error("create", &target(), errno)),
        }
    }
    let dir = match rustix::fs::open(
        &path,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
    ) {
        Ok(dir) => dir,
        Err(Errno::NOENT) if !create => return Ok(None),
        Err(errno) => return Err(os_error("open", &target(), errno)),
    };
    let stat = rustix::fs::fstat(&dir).map_err(|e| os_error("inspect", &target(), e))?;
    if stat.st_uid != rustix::process::geteuid().as_raw() || stat.st_mode & 0o077 != 0 {
        return Err(Error::PermissionDenied {
            op: "trust the lease directory (it must be the user's own, mode 0700)",
            target: target(),
        });
    }
    Ok(Some(dir))
}

/// The lease file's name for an OS name.
fn lease_entry(os_name: &str) -> String {
    hex_entry(os_name, LEASE_SUFFIX)
}

/// A file name in the lease directory for an OS name: the name without its
/// slash, in hex (the file system may be case-insensitive, names are not),
/// then `suffix`.
pub(super) fn hex_entry(os_name: &str, suffix: &str) -> String {
    let bare = os_name.strip_prefix('/').unwrap_or(os_name);
    let mut entry = String::with_capacity(bare.len() * 2 + suffix.len());
    for byte in bare.bytes() {
        let _ = write!(entry, "{byte:02x}");
    }
    entry.push_str(suffix);
    entry
}

/// A lease file this process holds shared, whose path was checked to name it.
struct LeaseFile {
    fd: OwnedFd,
    id: FileId,
}

impl LeaseFile {
    /// Tries to become the only holder; `true` if nobody else holds it.
    fn exclusive(&self) -> bool {
        rustix::fs::flock(&self.fd, FlockOperation::NonBlockingLockExclusive).is_ok()
    }

    /// Whether the creator of the object under this lease marked it.
    fn marked(&self, name: &str) -> Result<bool> {
        rustix::fs::fstat(&self.fd)
            .map(|stat| stat.st_size > 0)
            .map_err(|e| os_error("inspect the lease of", name, e))
    }

    /// Marks the lease file: the object under it is ours, and sized.
    fn mark(&self, name: &str) -> Result<()> {
        rustix::fs::ftruncate(&self.fd, 1).map_err(|e| os_error("mark the lease of", name, e))
    }

    /// Removes the lease file (held exclusively) if its path still names it.
    fn remove(&self, dir: BorrowedFd<'_>, entry: &str) -> bool {
        entry_id(dir, entry) == Some(self.id)
            && rustix::fs::unlinkat(dir, entry, AtFlags::empty()).is_ok()
    }

    /// The lease a holder keeps.
    fn into_lease(self, req: &NamedRequest<'_>) -> Lease {
        Lease {
            os_name: req.os_name.to_owned(),
            lock: LeaseLock::new(req.passes_to_children),
            file: self.fd,
            id: self.id,
        }
    }
}

/// What one look at a lease file found.
enum LeaseLook {
    /// Held shared, path checked.
    Held(LeaseFile),
    /// There is no lease file (and none was to be created).
    Absent,
    /// The path changed under us: look again.
    Retry,
    /// Someone holds it exclusively (removing the name): wait and look again.
    Busy,
}

/// What one attempt to create or open a name came to.
enum Attempt {
    /// Created or opened.
    Done(Opened),
    /// No such name.
    Missing,
    /// The name was stale, or changed under us: look again.
    Retry,
    /// Someone is in the middle of creating or removing the name: wait a moment.
    Busy,
}

/// Creates and/or opens a named object as `how` says.
pub(crate) fn open_named(req: &NamedRequest<'_>, how: Disposition) -> Result<Opened> {
    // What macOS does not do: reserve a shared-memory object's memory (no
    // `fallocate`), keep a stale name (a lease file decides), or have a
    // second namespace; a lock's state outlives its holders by itself.
    let NamedRequest {
        sparse: _cannot_reserve,
        keep_stale: _stale_names_go,
        global: _one_namespace,
        lock_name: _lock_outlives_holders,
        ..
    } = req;
    if req.file.is_some() {
        return Err(Error::Unsupported {
            what: "a named file-backed mapping on macOS (POSIX shared memory cannot name a file; \
                   map the file with map_file in each process instead)",
        });
    }
    if req.access == Access::CopyOnWrite {
        return Err(Error::Unsupported {
            what: "a copy-on-write named mapping on macOS (shared-memory objects map shared only)",
        });
    }
    let follows_holders = how != Disposition::Open && !req.persistent;
    let entry = lease_entry(req.os_name);
    let deadline = Instant::now() + CONTENTION_WAIT;
    let mut waits: u64 = 0;
    loop {
        let dir = lease_dir(follows_holders)?;
        let attempt = match &dir {
            Some(dir) => match look_at_lease(dir.as_fd(), &entry, follows_holders, req.name)? {
                LeaseLook::Held(lease) => with_lease(dir.as_fd(), &entry, lease, req, how)?,
                LeaseLook::Absent => without_lease(Some(dir.as_fd()), &entry, req, how)?,
                LeaseLook::Retry => Attempt::Retry,
                LeaseLook::Busy => Attempt::Busy,
            },
            None => without_lease(None, &entry, req, how)?,
        };
        match attempt {
            Attempt::Done(opened) if opened.existed && how == Disposition::Create => {
                return Err(Error::AlreadyExists {
                    kind: None,
                    name: req.name.to_owned(),
                })
            }
            Attempt::Done(opened) => return Ok(opened),
            Attempt::Missing if how == Disposition::Open => {
                return Err(Error::NotFound {
                    kind: None,
                    name: req.name.to_owned(),
                })
            }
            Attempt::Missing | Attempt::Retry => {}
            Attempt::Busy => {
                // Vary the pause, so that processes looking at the same
                // name stop meeting each other.
                waits += 1;
                std::thread::sleep(Duration::from_micros(100 * (1 + waits % 8)));
            }
        }
        if Instant::now() > deadline {
            return Err(crate::sys::io_error(
                "open",
                req.name,
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the name kept changing while other processes created and removed it",
                ),
            ));
        }
    }
}

/// Opens (or, with `create`, creates) the lease file `entry`, locks it
/// shared and checks that its path still names it.
fn look_at_lease(dir: BorrowedFd<'_>, entry: &str, create: bool, name: &str) -> Result<LeaseLook> {
    let flags = if create {
        OFlags::CREATE | OFlags::RDWR
    } else {
        OFlags::RDONLY
    };
    let fd = match rustix::fs::openat(
        dir,
        entry,
        flags | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::RUSR | Mode::WUSR,
    ) {
        Ok(fd) => fd,
        Err(Errno::NOENT) if !create => return Ok(LeaseLook::Absent),
        Err(errno) => return Err(os_error("open the lease of", name, errno)),
    };
    match rustix::fs::flock(&fd, FlockOperation::NonBlockingLockShared) {
        Ok(()) => {}
        Err(Errno::WOULDBLOCK) => return Ok(LeaseLook::Busy),
        Err(errno) => return Err(os_error("lock the lease of", name, errno)),
    }
    let stat = rustix::fs::fstat(&fd).map_err(|e| os_error("inspect the lease of", name, e))?;
    if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
        return Err(crate::sys::io_error(
            "open the lease of",
            name,
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "the lease is not a regular file",
            ),
        ));
    }
    let id = FileId::of(&stat);
    if entry_id(dir, entry) != Some(id) {
        return Ok(LeaseLook::Retry);
    }
    Ok(LeaseLook::Held(LeaseFile { fd, id }))
}

/// One attempt while holding the name's lease file shared.
fn with_lease(
    dir: BorrowedFd<'_>,
    entry: &str,
    lease: LeaseFile,
    req: &NamedRequest<'_>,
    how: Disposition,
) -> Result<Attempt> {
    let follows_holders = how != Disposition::Open && !req.persistent;
    if follows_holders {
        if let Some((fd, size)) = create_object(req)? {
            if let Err(error) = lease.mark(req.name) {
                let _ = shm::unlink(req.os_name);
                return Err(error);
            }
            let object = Object {
                fd,
                size,
                lease: Some(lease.into_lease(req)),
            };
            return Ok(Attempt::Done(Opened {
                object,
                existed: false,
                adopted_stale: false,
            }));
        }
    }
    let Some(fd) = open_object(req)? else {
        // A lease file with no object: left behind, or its creator is
        // between taking the lease and making the object.
        let removed = lease.exclusive() && lease.remove(dir, entry);
        return Ok(match how {
            Disposition::Open => Attempt::Missing,
            _ if removed || follows_holders => Attempt::Retry,
            // A persistent name cannot be made under someone's lease.
            _ => Attempt::Busy,
        });
    };
    if lease.exclusive() {
        // Nobody else holds the name.
        if lease.marked(req.name)? {
            // Its creator made and marked it, and every holder died: stale.
            let lease = lease.into_lease(req);
            remove_name(dir, entry, &lease);
            return Ok(Attempt::Retry);
        }
        // Not made under this lease file (persistent, or another
        // program's): the lease file means nothing, and it is not ours to remove.
        lease.remove(dir, entry);
        drop(lease);
        return opened(fd, None, req);
    }
    // Others hold it. Take the shared lock back (an upgrade that fails may
    // have dropped it) and check again that the path still names the file.
    match rustix::fs::flock(&lease.fd, FlockOperation::NonBlockingLockShared) {
        Ok(()) => {}
        Err(Errno::WOULDBLOCK) => return Ok(Attempt::Busy),
        Err(errno) => return Err(os_error("lock the lease of", req.name, errno)),
    }
    if entry_id(dir, entry) != Some(lease.id) {
        return Ok(Attempt::Retry);
    }
    if !lease.marked(req.name)? {
        // Its creator has not sized and marked it yet, or the others are
        // looking at an object that is not theirs either: look again.
        return Ok(Attempt::Busy);
    }
    opened(fd, Some(lease.into_lease(req)), req)
}

/// One attempt on a name that has no lease file (or a persistent creation).
fn without_lease(
    dir: Option<BorrowedFd<'_>>,
    entry: &str,
    req: &NamedRequest<'_>,
    how: Disposition,
) -> Result<Attempt> {
    if how != Disposition::Open {
        // Only a persistent name is created without a lease file.
        if let Some((fd, size)) = create_object(req)? {
            let object = Object {
                fd,
                size,
                lease: None,
            };
            return Ok(Attempt::Done(Opened {
                object,
                existed: false,
                adopted_stale: false,
            }));
        }
    }
    let Some(fd) = open_object(req)? else {
        return Ok(Attempt::Missing);
    };
    // A lease file that appeared meanwhile may be this object's: look again.
    let appeared = match dir {
        Some(dir) => entry_id(dir, entry).is_some(),
        None => lease_dir(false)?.is_some_and(|dir| entry_id(dir.as_fd(), entry).is_some()),
    };
    if appeared {
        return Ok(Attempt::Retry);
    }
    opened(fd, None, req)
}

/// Makes and sizes a new object under the name; `None` if the name is taken.
fn create_object(req: &NamedRequest<'_>) -> Result<Option<(OwnedFd, u64)>> {
    let mode =
        RawMode::try_from(req.mode & 0o777).map_or(Mode::RUSR | Mode::WUSR, Mode::from_raw_mode);
    let fd = match shm::open(
        req.os_name,
        shm::OFlags::CREATE | shm::OFlags::EXCL | shm::OFlags::RDWR,
        mode,
    ) {
        Ok(fd) => fd,
        Err(Errno::EXIST) => return Ok(None),
        Err(errno) => return Err(os_error("create", req.name, errno)),
    };
    let size = req.size.unwrap_or(req.default_size);
    // macOS sizes a shared-memory object once; this is that once.
    if let Err(errno) = rustix::fs::ftruncate(&fd, size) {
        let _ = shm::unlink(req.os_name);
        return Err(size_error("size", req.name, size, errno));
    }
    // The name is public already: openers wait for `ready` (see NamedRequest).
    if let Some(init) = req.init {
        let set_up =
            map_fd(&fd, size, Access::ReadWrite, req.name).and_then(|region| init(&region));
        if let Err(error) = set_up {
            let _ = shm::unlink(req.os_name);
            return Err(error);
        }
    }
    Ok(Some((fd, size)))
}

/// Opens the object under the name as the request's access needs; `None` if there is none.
fn open_object(req: &NamedRequest<'_>) -> Result<Option<OwnedFd>> {
    let flags = if req.access.writes_object() {
        shm::OFlags::RDWR
    } else {
        shm::OFlags::RDONLY
    };
    match shm::open(req.os_name, flags, Mode::empty()) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::NOENT) => Ok(None),
        Err(errno) => Err(os_error("open", req.name, errno)),
    }
}

/// An existing object, once its owner is trusted, it has a size and (for
/// an object with a header) its creator has set it up.
fn opened(fd: OwnedFd, lease: Option<Lease>, req: &NamedRequest<'_>) -> Result<Attempt> {
    let stat = rustix::fs::fstat(&fd).map_err(|e| os_error("inspect", req.name, e))?;
    let owner = crate::owner::Owner::Uid(stat.st_uid);
    if stat.st_uid != rustix::process::geteuid().as_raw() && !req.trust.allows(&owner) {
        return Err(Error::ForeignOwner {
            name: req.name.to_owned(),
            owner,
        });
    }
    let size = match stat_size(&stat) {
        0 => wait_for_size(&fd, req.name)?,
        size => size,
    };
    let mut object = Object { fd, size, lease };
    if let Some(ready) = req.ready {
        crate::sys::await_ready(&mut object, ready, req.name)?;
    }
    Ok(Attempt::Done(Opened {
        object,
        existed: true,
        adopted_stale: false,
    }))
}

/// Grows a file-backed object from `current` to `len` bytes, after checking
/// that its file system has room (macOS has no `fallocate`).
pub(crate) fn grow(fd: &OwnedFd, current: u64, len: u64, target: &str) -> Result<()> {
    check_space(fd, current, len, target)?;
    rustix::fs::ftruncate(fd, len).map_err(|e| size_error("resize", target, len, e))
}

/// Removes a name now, whoever holds it, and its lease file; holders keep their memory.
///
/// macOS cannot look at a POSIX shared-memory object by name without
/// opening it, so `_trust` is not checked here: `shm_unlink` itself refuses
/// another user's object unless the caller may write it.
pub(crate) fn remove_named(name: &str, os_name: &str, _trust: &crate::owner::Trust) -> Result<()> {
    match shm::unlink(os_name) {
        Ok(()) => {}
        Err(Errno::NOENT) => {
            return Err(Error::NotFound {
                kind: None,
                name: name.to_owned(),
            })
        }
        Err(errno) => return Err(os_error("remove", name, errno)),
    }
    // Holders of the old lease file no longer find it at its path, so none
    // of them will remove a name made after this one.
    if let Ok(Some(dir)) = lease_dir(false) {
        let _ = rustix::fs::unlinkat(&dir, lease_entry(os_name), AtFlags::empty());
    }
    Ok(())
}

/// A new anonymous object: a shared-memory object under a unique name that
/// is removed at once, then sized.
/// (macOS cannot reserve a shared-memory object's memory: `_sparse` changes nothing.)
pub(crate) fn anonymous(size: u64, _sparse: bool) -> Result<Object> {
    const TARGET: &str = "anonymous mapping";
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.subsec_nanos());
    for _ in 0..ANONYMOUS_ATTEMPTS {
        let count = COUNTER.fetch_add(1, Ordering::Relaxed) & 0xff_ffff;
        // At most 7 + 8 + 1 + 6 + 1 + 8 = 31 bytes.
        let name = format!("/shmio-{:x}-{count:x}-{nanos:x}", std::process::id());
        let fd = match shm::open(
            name.as_str(),
            shm::OFlags::CREATE | shm::OFlags::EXCL | shm::OFlags::RDWR,
            Mode::RUSR | Mode::WUSR,
        ) {
            Ok(fd) => fd,
            Err(Errno::EXIST) => continue,
            Err(errno) => return Err(os_error("create", TARGET, errno)),
        };
        shm::unlink(name.as_str()).map_err(|e| os_error("unname", TARGET, e))?;
        rustix::fs::ftruncate(&fd, size).map_err(|e| size_error("size", TARGET, size, e))?;
        return Ok(Object {
            fd,
            size,
            lease: None,
        });
    }
    Err(Error::Os {
        op: "create",
        target: TARGET.to_owned(),
        source: io::Error::other("every unique name tried was taken").into(),
    })
}
