//! Named objects on Linux, and the lease that removes a name with its last holder.
//!
//! A named mapping is a file in `/dev/shm`, where glibc's `shm_open` (and so
//! CPython's `SharedMemory`) looks for it. A named file-backed mapping is a
//! symlink there to the backing file, owned by the user who made it.
//!
//! **Creating** is one atomic step that never shows a half-made object: the
//! object is made unnamed (`O_TMPFILE`), sized, locked, and only then linked
//! under its name with `linkat`, which fails with `EEXIST` if the name is
//! taken. So an object made by shmio is never seen at size 0 (one made by
//! another program may be: an opener waits, bounded, for it to be sized).
//!
//! **Lifetime.** An object whose name follows its holders carries the sticky
//! bit (`S_ISVTX`, which Linux ignores on regular files): that is the mark.
//! Each holder keeps a shared `flock` on it; the kernel drops the lock when
//! the holder closes or dies, `kill -9` included. A closing holder tries to
//! take the lock exclusively: if it can, nobody else holds the object, and it
//! removes the name (after checking that the name still points at the same
//! object). A name whose holders all died is stale: any opener can take the
//! exclusive lock, and removes it before going on. An object without the mark
//! (persistent, or made by another program) is never removed by shmio except
//! by `Mapping::remove`.
//!
//! **Opening** takes the shared lock and then checks that the name still
//! points at the object it opened, which closes the race with a holder that
//! removed the name between our `open` and our `flock`.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rustix::fs::{AtFlags, FileType, FlockOperation, Mode, OFlags, CWD};
use rustix::io::Errno;

use super::{check_space, entry_id, open_file, os_error, stat_size, wait_for_size, FileId, Object};
use crate::error::{Error, Result};
use crate::sys::{file_mapping_len, Disposition, FileRequest, NamedRequest, Opened};

/// What every OS name starts with.
pub(crate) const OS_NAME_PREFIX: &str = "/";
/// The longest OS name: `/` and `NAME_MAX` (255) bytes.
pub(crate) const OS_NAME_MAX_BYTES: usize = 256;

/// Where named objects live (glibc's `shm_open` directory).
pub(crate) const SHM_DIR: &str = "/dev/shm";

/// The mark of an object whose name is removed by its last holder.
const FOLLOWS_HOLDERS: u32 = 0o1000;
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

/// A holder's share in a name that follows its holders.
pub(crate) struct Lease {
    os_name: String,
    /// How the last holder tells that the name still points at its object.
    check: NameCheck,
}

/// How a closing holder tells that the name is still its object's.
enum NameCheck {
    /// The object is a file in `/dev/shm` that was only ever linked under
    /// this name: a link count of 1 says the name is still its own.
    LinkCount,
    /// The name is a symlink to a backing file: the symlink itself must be the one we saw.
    Entry(FileId),
}

impl Lease {
    /// The OS name.
    pub(crate) fn os_name(&self) -> &str {
        &self.os_name
    }

    /// Called as the holder closes `lock_fd`: removes the name if this is the last holder.
    pub(crate) fn release(self, lock_fd: &OwnedFd) {
        // Converting shared to exclusive drops the shared lock first (flock(2)),
        // so of several holders closing at once, the last one succeeds.
        if rustix::fs::flock(lock_fd, FlockOperation::NonBlockingLockExclusive).is_err() {
            return;
        }
        let Ok(dir) = shm_dir() else { return };
        let entry = entry_of(&self.os_name);
        // While we hold the exclusive lock, no other holder can remove this
        // object's name, and no creator can link a new object under it.
        let still_ours = match self.check {
            NameCheck::LinkCount => rustix::fs::fstat(lock_fd).is_ok_and(|stat| stat.st_nlink > 0),
            NameCheck::Entry(id) => entry_id(dir, entry) == Some(id),
        };
        if still_ours {
            let _ = rustix::fs::unlinkat(dir, entry, AtFlags::empty());
        }
    }
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
        match open_entry(dir, entry, req)? {
            Found::Live(..) if how == Disposition::Create => {
                return Err(Error::AlreadyExists {
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
                    name: req.name.to_owned(),
                })
            }
            Found::Missing | Found::Retry => {}
            Found::Busy => std::thread::sleep(Duration::from_micros(200)),
        }
        if Instant::now() > deadline {
            return Err(Error::os(
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

/// Makes a new object and links it under `entry`; `None` if the name is taken.
fn create_object(
    dir: BorrowedFd<'_>,
    entry: &str,
    req: &NamedRequest<'_>,
) -> Result<Option<Object>> {
    let follows_holders = !req.persistent;
    let mut mode = req.mode & 0o777;
    if follows_holders {
        mode |= FOLLOWS_HOLDERS;
    }
    let fd = rustix::fs::openat(
        dir,
        ".",
        OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC,
        Mode::from_raw_mode(mode),
    )
    .map_err(|e| os_error("create", req.name, e))?;
    let size = req.size.unwrap_or(crate::mapping::DEFAULT_SIZE);
    check_space(&fd, 0, size, req.name)?;
    rustix::fs::ftruncate(&fd, size).map_err(|e| super::size_error("size", req.name, size, e))?;
    if follows_holders {
        // Nobody else can reach an unnamed object: this never waits.
        rustix::fs::flock(&fd, FlockOperation::LockShared)
            .map_err(|e| os_error("lock", req.name, e))?;
    }
    if !link_unnamed(&fd, dir, entry).map_err(|e| os_error("name", req.name, e))? {
        return Ok(None);
    }
    let lease = follows_holders.then(|| Lease {
        os_name: req.os_name.to_owned(),
        check: NameCheck::LinkCount,
    });
    Ok(Some(Object { fd, size, lease }))
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

/// Opens (creating if needed) and sizes the backing file, then links it under `entry`.
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
    let (len, grow) = file_mapping_len(object.size(), req.size, req.access, &target)?;
    if grow {
        object.set_len(len, &target)?;
    }
    rustix::fs::flock(&object.fd, FlockOperation::LockShared)
        .map_err(|e| os_error("lock", &target, e))?;
    let absolute = path
        .canonicalize()
        .map_err(|e| Error::os("resolve", target.clone(), e))?;
    match rustix::fs::symlinkat(absolute.as_path(), dir, entry) {
        Ok(()) => {}
        Err(Errno::EXIST) => return Ok(None),
        Err(errno) => return Err(os_error("name", req.name, errno)),
    }
    let id = entry_id(dir, entry).ok_or_else(|| Error::NotFound {
        name: req.name.to_owned(),
    })?;
    object.size = len;
    object.lease = Some(Lease {
        os_name: req.os_name.to_owned(),
        check: NameCheck::Entry(id),
    });
    Ok(Some(object))
}

/// Opens the object named `entry`, reclaiming it if stale.
fn open_entry(dir: BorrowedFd<'_>, entry: &str, req: &NamedRequest<'_>) -> Result<Found> {
    let access = if req.access.writes_object() {
        OFlags::RDWR
    } else {
        OFlags::RDONLY
    };
    let fd = match rustix::fs::openat(
        dir,
        entry,
        access | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(Found::Missing),
        Err(Errno::LOOP) => return open_file_link(dir, entry, req, access),
        Err(errno) => return Err(os_error("open", req.name, errno)),
    };
    let stat = rustix::fs::fstat(&fd).map_err(|e| os_error("inspect", req.name, e))?;
    if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
        return Err(not_shared_memory(req.name));
    }
    let check = (stat.st_mode & FOLLOWS_HOLDERS != 0).then_some(NameCheck::LinkCount);
    hold(
        dir,
        entry,
        req,
        fd,
        (FileId::of(&stat), stat_size(&stat)),
        check,
    )
}

/// Opens the backing file of a named file-backed mapping through its link.
fn open_file_link(
    dir: BorrowedFd<'_>,
    entry: &str,
    req: &NamedRequest<'_>,
    access: OFlags,
) -> Result<Found> {
    let link = match rustix::fs::statat(dir, entry, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(link) => link,
        Err(Errno::NOENT) => return Ok(Found::Missing),
        Err(errno) => return Err(os_error("inspect", req.name, errno)),
    };
    // /dev/shm is writable by everyone: follow only our own links.
    if link.st_uid != rustix::process::geteuid().as_raw() {
        return Err(Error::PermissionDenied {
            op: "follow another user's link",
            target: req.name.to_owned(),
        });
    }
    let fd = match rustix::fs::openat(dir, entry, access | OFlags::CLOEXEC, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => {
            return Err(Error::NotFound {
                name: format!("{} (its backing file is gone)", req.name),
            })
        }
        Err(errno) => return Err(os_error("open", req.name, errno)),
    };
    let size = rustix::fs::fstat(&fd)
        .map(|stat| stat_size(&stat))
        .map_err(|e| os_error("inspect", req.name, e))?;
    let id = FileId::of(&link);
    hold(dir, entry, req, fd, (id, size), Some(NameCheck::Entry(id)))
}

/// Becomes a holder of the object `fd`, found under `entry` with identity
/// `id` and size `size`; `check` is how its last holder will recognise the
/// name, or `None` for a name that does not follow its holders.
fn hold(
    dir: BorrowedFd<'_>,
    entry: &str,
    req: &NamedRequest<'_>,
    fd: OwnedFd,
    (id, size): (FileId, u64),
    check: Option<NameCheck>,
) -> Result<Found> {
    let mut adopted_stale = false;
    if check.is_some() {
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
                reclaim_stale(dir, entry, id, req)?;
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
    let size = if size > 0 {
        size
    } else {
        wait_for_size(&fd, req.name)?
    };
    let lease = check.map(|check| Lease {
        os_name: req.os_name.to_owned(),
        check,
    });
    Ok(Found::Live(Object { fd, size, lease }, adopted_stale))
}

/// Removes the stale name `entry` (every holder died) if it is still the
/// object `id`.
fn reclaim_stale(
    dir: BorrowedFd<'_>,
    entry: &str,
    id: FileId,
    req: &NamedRequest<'_>,
) -> Result<()> {
    if entry_id(dir, entry) != Some(id) {
        return Ok(());
    }
    match rustix::fs::unlinkat(dir, entry, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        // /dev/shm is sticky: another user's stale name is theirs (or
        // root's) to remove. Say so rather than retry until the deadline.
        Err(Errno::PERM | Errno::ACCESS) => Err(Error::PermissionDenied {
            op: "reclaim the stale name (its holders all died; it belongs to another user)",
            target: req.name.to_owned(),
        }),
        Err(errno) => Err(os_error("reclaim the stale name", req.name, errno)),
    }
}

/// Removes a name now, whoever holds it; holders keep their memory.
pub(crate) fn remove_named(name: &str, os_name: &str) -> Result<()> {
    let dir = shm_dir()?;
    match rustix::fs::unlinkat(dir, entry_of(os_name), AtFlags::empty()) {
        Ok(()) => Ok(()),
        Err(Errno::NOENT) => Err(Error::NotFound {
            name: name.to_owned(),
        }),
        Err(errno) => Err(os_error("remove", name, errno)),
    }
}

/// A new anonymous object: a sealed memfd, which no holder can shrink under another.
pub(crate) fn anonymous(size: u64) -> Result<Object> {
    use rustix::fs::{MemfdFlags, SealFlags};
    const TARGET: &str = "anonymous mapping";
    let fd = rustix::fs::memfd_create("shmio", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)
        .map_err(|e| os_error("create", TARGET, e))?;
    rustix::fs::ftruncate(&fd, size).map_err(|e| super::size_error("size", TARGET, size, e))?;
    rustix::fs::fcntl_add_seals(&fd, SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL)
        .map_err(|e| os_error("seal", TARGET, e))?;
    Ok(Object {
        fd,
        size,
        lease: None,
    })
}

/// The error for a name in `/dev/shm` that is not a regular file.
fn not_shared_memory(name: &str) -> Error {
    Error::os(
        "open",
        name,
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a shared-memory object",
        ),
    )
}

/// What the OS shows of one name in `/dev/shm`.
pub(crate) struct ListedName {
    /// The OS name (`/` + the file name).
    pub os_name: String,
    /// The object's size (a backing file's, for a link).
    pub size: u64,
    /// Processes holding a shared lease on it (`/proc/locks`), when known.
    pub holders: Option<u32>,
    /// Whether the name goes with its last holder.
    pub follows_holders: bool,
    /// The object's first 8 bytes, which say what shmio made it for.
    pub magic: u64,
}

/// Every name in `/dev/shm` this process can see.
pub(crate) fn list_named() -> Result<Vec<ListedName>> {
    let locks = flock_holders();
    let entries = std::fs::read_dir(SHM_DIR).map_err(|e| Error::os("list", SHM_DIR, e))?;
    let mut names = Vec::new();
    for entry in entries.flatten() {
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

/// One name, or `None` if it is gone or not a file or link.
pub(crate) fn describe_named(os_name: &str) -> Result<Option<ListedName>> {
    Ok(describe(entry_of(os_name), &flock_holders()))
}

fn describe(
    file_name: &str,
    locks: &std::collections::HashMap<(u64, u64), u32>,
) -> Option<ListedName> {
    let dir = shm_dir().ok()?;
    let link = rustix::fs::statat(dir, file_name, AtFlags::SYMLINK_NOFOLLOW).ok()?;
    let is_link = FileType::from_raw_mode(link.st_mode) == FileType::Symlink;
    if !is_link && FileType::from_raw_mode(link.st_mode) != FileType::RegularFile {
        return None;
    }
    let fd = rustix::fs::openat(
        dir,
        file_name,
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok();
    let target = match &fd {
        Some(fd) => rustix::fs::fstat(fd).ok(),
        None => None,
    };
    let stat = target.unwrap_or(link);
    let mut magic = [0u8; 8];
    if let Some(fd) = &fd {
        let _ = rustix::io::pread(fd, &mut magic, 0);
    }
    let holders = locks.get(&(stat.st_dev, stat.st_ino)).copied().unwrap_or(0);
    Some(ListedName {
        os_name: format!("/{file_name}"),
        size: stat_size(&stat),
        holders: Some(holders),
        follows_holders: is_link || link.st_mode & FOLLOWS_HOLDERS != 0,
        magic: u64::from_le_bytes(magic),
    })
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

/// Removes `os_name` if it is stale (it follows its holders and all of them
/// are gone); whether it did. Safe against a holder arriving meanwhile: the
/// same exclusive-lock check an opener makes.
pub(crate) fn reclaim_if_stale(os_name: &str) -> Result<bool> {
    let dir = shm_dir()?;
    let entry = entry_of(os_name);
    let Ok(link) = rustix::fs::statat(dir, entry, AtFlags::SYMLINK_NOFOLLOW) else {
        return Ok(false);
    };
    let is_link = FileType::from_raw_mode(link.st_mode) == FileType::Symlink;
    if !is_link && link.st_mode & FOLLOWS_HOLDERS == 0 {
        return Ok(false);
    }
    let Ok(fd) = rustix::fs::openat(dir, entry, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
    else {
        // A link whose file is gone: nothing can hold it.
        return Ok(is_link && rustix::fs::unlinkat(dir, entry, AtFlags::empty()).is_ok());
    };
    if rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive).is_err() {
        return Ok(false);
    }
    if entry_id(dir, entry) != Some(FileId::of(&link)) {
        return Ok(false);
    }
    rustix::fs::unlinkat(dir, entry, AtFlags::empty())
        .map_err(|e| os_error("remove", os_name, e))?;
    Ok(true)
}
