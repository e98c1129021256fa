//! The Unix side of `sys`: objects are file descriptors, regions are `mmap`s.
//!
//! What Linux and macOS share lives here (mapping, files, descriptors); how
//! names are created, opened and removed differs and lives in `linux.rs`.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;

use rustix::fs::OFlags;
use rustix::io::Errno;
use rustix::mm::{MapFlags, MsyncFlags, ProtFlags};

use super::{Access, FileRequest, Region};
use crate::error::{Error, Result};

use crate::sys::os::Lease;

/// Turns a failed call into an [`Error`] that says what was done to what.
pub(in crate::sys) fn os_error(op: &'static str, target: &str, errno: Errno) -> Error {
    crate::sys::io_error(op, target, io::Error::from(errno))
}

/// The identity of a file (device and inode), to tell whether a name or
/// path still points at it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::sys) struct FileId {
    pub(in crate::sys) dev: u64,
    pub(in crate::sys) ino: u64,
}

impl FileId {
    /// The identity in a `stat`.
    #[allow(clippy::unnecessary_cast)] // st_dev is an i32 on macOS
    pub(in crate::sys) fn of(stat: &rustix::fs::Stat) -> FileId {
        FileId {
            dev: stat.st_dev as u64,
            ino: stat.st_ino,
        }
    }
}

impl From<FileId> for super::ObjectId {
    fn from(id: FileId) -> Self {
        [id.dev, id.ino]
    }
}

/// The identity of what `entry` in `dir` is now (a symlink itself, not its target).
pub(in crate::sys) fn entry_id(dir: BorrowedFd<'_>, entry: &str) -> Option<FileId> {
    rustix::fs::statat(dir, entry, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
        .ok()
        .map(|stat| FileId::of(&stat))
}

/// An owned, mappable OS object: a descriptor, its size, and (for a named
/// object whose name follows its holders) the lease that may remove the name.
pub(crate) struct Object {
    pub(in crate::sys) fd: OwnedFd,
    pub(in crate::sys) size: u64,
    pub(in crate::sys) lease: Option<Lease>,
}

impl Object {
    /// The object's size in bytes, as last seen or set.
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// The object's permission bits, if they can be read.
    #[allow(clippy::useless_conversion)] // st_mode is a u16 on macOS
    pub(crate) fn permissions(&self) -> Option<u32> {
        let stat = rustix::fs::fstat(&self.fd).ok()?;
        Some(u32::from(stat.st_mode) & 0o777)
    }

    /// The object's identity (device and inode).
    pub(crate) fn identity(&self) -> Option<super::ObjectId> {
        let stat = rustix::fs::fstat(&self.fd).ok()?;
        Some(FileId::of(&stat).into())
    }

    /// Makes this process one of the holders of the object's name, if it is
    /// a forked child using an inherited handle for the first time (see
    /// `sys::forks`); nothing otherwise.
    #[inline]
    pub(crate) fn share_here(&self) {
        if let Some(lease) = &self.lease {
            lease.share_here(&self.fd);
        }
    }

    /// Removes the object's name now, if it follows its holders and is
    /// still this object, whoever else holds it (they keep the object).
    pub(crate) fn remove_name(&self) {
        if let Some(lease) = &self.lease {
            lease.remove_name();
        }
    }

    /// The OS name whose lifetime this handle shares, if any.
    pub(crate) fn leased_name(&self) -> Option<&str> {
        self.lease.as_ref().map(Lease::os_name)
    }

    /// Grows the object to `len` bytes, reserving the new part where the
    /// platform can (see `grow`).
    pub(crate) fn set_len(&mut self, len: u64, target: &str) -> Result<()> {
        crate::sys::os::grow(&self.fd, self.size, len, target)?;
        self.size = len;
        Ok(())
    }

    /// Who owns the object.
    pub(crate) fn owner(&self) -> Option<crate::owner::Owner> {
        let stat = rustix::fs::fstat(&self.fd).ok()?;
        Some(crate::owner::Owner::Uid(stat.st_uid))
    }

    /// Maps the first `len` bytes of the object.
    pub(crate) fn map(&mut self, len: u64, access: Access, target: &str) -> Result<Region> {
        map_fd(&self.fd, len, access, target)
    }

    /// Wraps a descriptor this process owns; the access follows how it was opened.
    pub(crate) fn from_fd(fd: OwnedFd) -> Result<(Object, Access)> {
        const TARGET: &str = "descriptor";
        let flags = rustix::fs::fcntl_getfl(&fd).map_err(|e| os_error("inspect", TARGET, e))?;
        let access = match flags & OFlags::RWMODE {
            OFlags::RDONLY => Access::ReadOnly,
            OFlags::RDWR => Access::ReadWrite,
            _ => {
                return Err(Error::InvalidOptions {
                    reason: "a write-only descriptor cannot be mapped",
                })
            }
        };
        let stat = rustix::fs::fstat(&fd).map_err(|e| os_error("inspect", TARGET, e))?;
        let object = Object {
            fd,
            size: stat_size(&stat),
            lease: None,
        };
        Ok((object, access))
    }
}

impl AsFd for Object {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for Object {
    fn drop(&mut self) {
        if let Some(lease) = self.lease.take() {
            lease.release(&self.fd);
        }
    }
}

/// Maps the first `len` bytes of `fd`.
pub(in crate::sys) fn map_fd(
    fd: &OwnedFd,
    len: u64,
    access: Access,
    target: &str,
) -> Result<Region> {
    let len_usize = super::checked_len(len, target)?;
    let prot = if access.writable_memory() {
        ProtFlags::READ | ProtFlags::WRITE
    } else {
        ProtFlags::READ
    };
    let flags = if access == Access::CopyOnWrite {
        MapFlags::PRIVATE
    } else {
        MapFlags::SHARED
    };
    // SAFETY: a fresh mapping at an address the kernel chooses (null hint)
    // cannot overlap memory Rust already uses; `len_usize` is non-zero
    // (checked_len) and the result is owned by the returned `Region`.
    let ptr = unsafe { rustix::mm::mmap(std::ptr::null_mut(), len_usize, prot, flags, fd, 0) }
        .map_err(|e| size_error("map", target, len, e))?;
    let ptr = NonNull::new(ptr.cast::<u8>()).ok_or_else(|| Error::Os {
        op: "map",
        target: target.to_owned(),
        source: io::Error::other("mmap returned a null address").into(),
    })?;
    Ok(Region {
        ptr,
        len: len_usize,
    })
}

/// How long an opener waits for another program's creator to size its object.
pub(crate) const SIZE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The object's size, waiting (bounded) while another program's creator has not yet sized it.
pub(in crate::sys) fn wait_for_size(fd: &OwnedFd, name: &str) -> Result<u64> {
    let start = std::time::Instant::now();
    loop {
        std::thread::sleep(std::time::Duration::from_millis(1));
        let stat = rustix::fs::fstat(fd).map_err(|e| os_error("inspect", name, e))?;
        let size = stat_size(&stat);
        if size > 0 {
            return Ok(size);
        }
        if start.elapsed() >= SIZE_WAIT {
            return Err(Error::NotReady {
                name: name.to_owned(),
                waited: start.elapsed(),
            });
        }
    }
}

/// A duplicate of `fd` that this process owns (close-on-exec).
pub(crate) fn duplicate(fd: BorrowedFd<'_>) -> Result<OwnedFd> {
    rustix::io::fcntl_dupfd_cloexec(fd, 0).map_err(|e| os_error("duplicate", "descriptor", e))
}

/// Opens `req.path`, creating it when it is missing and the mapping may write.
pub(crate) fn open_file(req: &FileRequest<'_>) -> Result<Object> {
    let (file, size) = super::open_backing_file(req)?;
    Ok(Object {
        fd: file.into(),
        size,
        lease: None,
    })
}

impl Region {
    /// Writes dirty pages of a file-backed region to the file and waits.
    pub(crate) fn flush(&self, target: &str) -> Result<()> {
        // SAFETY: the range is exactly the live mapping this Region owns.
        unsafe { rustix::mm::msync(self.ptr.as_ptr().cast(), self.len, MsyncFlags::SYNC) }
            .map_err(|e| os_error("flush", target, e))
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: the range is exactly the mapping made in `Object::map`, and
        // nothing borrows into it any more (every borrow is tied to the
        // owner of this Region).
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// Errors of calls that take a size: too big for memory or the file system is `TooLarge`.
pub(in crate::sys) fn size_error(op: &'static str, target: &str, size: u64, errno: Errno) -> Error {
    match errno {
        Errno::NOMEM => Error::OutOfAddressSpace {
            size,
            target: target.to_owned(),
        },
        Errno::FBIG | Errno::OVERFLOW => Error::TooLarge {
            size,
            limit: super::MAX_MAP_LEN,
            target: target.to_owned(),
        },
        Errno::NOSPC => Error::NoSpace {
            size,
            target: target.to_owned(),
        },
        _ => os_error(op, target, errno),
    }
}

/// Whether a raw OS error says the open-handle limit is reached.
pub(crate) fn is_handle_limit(code: i32) -> bool {
    code == libc::EMFILE || code == libc::ENFILE
}

/// Refuses to grow `fd` from `current` to `size` bytes when its file system
/// has less room than the growth: the pages of a sparse object are
/// allocated on first touch, and a full tmpfs or disk then kills the
/// toucher with `SIGBUS`. Better [`Error::NoSpace`] now. This is a check,
/// not a reservation (processes growing objects at the same moment can
/// still overcommit the file system together): Linux reserves instead
/// (`fallocate`) and checks only where it cannot, or for a sparse object;
/// macOS has only this.
pub(in crate::sys) fn check_space(
    fd: &OwnedFd,
    current: u64,
    size: u64,
    target: &str,
) -> Result<()> {
    let Ok(fs) = rustix::fs::fstatvfs(fd) else {
        return Ok(());
    };
    // A file system with no size (memfd's internal tmpfs, tmpfs size=0) has no limit to check.
    if fs.f_blocks == 0 {
        return Ok(());
    }
    let available = fs.f_bavail.saturating_mul(fs.f_frsize);
    if size.saturating_sub(current) > available {
        return Err(Error::NoSpace {
            size,
            target: target.to_owned(),
        });
    }
    Ok(())
}

/// The size in a `stat`, never negative.
pub(in crate::sys) fn stat_size(stat: &rustix::fs::Stat) -> u64 {
    u64::try_from(stat.st_size).unwrap_or(0)
}

/// Milliseconds on the system's monotonic clock (`CLOCK_MONOTONIC`): the
/// same for every process of the host (a time namespace aside), so one
/// process can tell another when something is due.
pub(crate) fn monotonic_ms() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    (now.tv_sec as u64).saturating_mul(1000) + now.tv_nsec as u64 / 1_000_000
}
