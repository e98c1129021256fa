//! macOS's primitives for cross-process synchronisation, over memory the
//! caller owns (a named object's state; see `sync/`): a lock made of an
//! `flock`ed lock file and a held flag, and waits on a word.
//!
//! **Lock.** macOS has no robust process-shared pthread mutex, so the lock
//! is an exclusive `flock` on a *lock file*, which the kernel releases when
//! its holder closes it or dies, `kill -9` included. The lock file lives
//! beside the mapping leases (`$TMPDIR/shmio-leases`, the user's own, mode
//! 0700; see `objects.rs`), named after the state's OS name in hex with
//! `.lock`, created 0600 and never opened through a symlink.
//!
//! - *Owner died.* The state is `holder: u32`: the pid of the process that
//!   holds the lock, set as soon as the `flock` is taken and cleared just
//!   before it is let go. A locker that finds it non-zero took the lock from
//!   a holder that died holding it, and is told [`LockState::OwnerDied`].
//! - *Threads.* An `flock` belongs to an open file description, so threads
//!   sharing one handle would not exclude each other through it. Each handle
//!   therefore records the thread that owns it (a `std` mutex and condition
//!   variable) and only that thread touches the lock file: another thread
//!   waits for it (honouring its timeout), the owning thread itself gets
//!   `Error::WouldDeadlock`. Two handles in one process open their own
//!   descriptions, which `flock` excludes like two processes.
//! - *Timeouts.* With no timeout the owner blocks in `flock(LOCK_EX)`; with
//!   one it tries `LOCK_EX | LOCK_NB` with short sleeps that grow from 50 µs
//!   to 1 ms, until the deadline.
//! - *The lock file's lifetime.* A handle that closes while nobody holds the
//!   lock removes the lock file (holding it exclusively), so lock files do
//!   not pile up. Every locker therefore checks, once it holds the `flock`,
//!   that the path still names its file; if not, it lets go, opens (or
//!   creates) the file now at the path and tries again. Only a locker that
//!   holds the file the path names, and checked that it does, removes it, so
//!   two processes never both hold "the" lock. (A `try_lock` in the few
//!   microseconds a closing handle holds the file finds the lock busy.)
//!
//! **Waker.** Where the running system has `os_sync_wait_on_address` and
//! `os_sync_wake_by_address_{any,all}` (macOS 14.4; looked up with `dlsym`
//! at run time, so older systems still run), a sleeper sleeps in the kernel
//! on the word with the shared flag. Older systems poll: a sleeper naps 1 ms
//! and looks again.
//!
//! **Seat.** A participant of a channel proves it is alive by holding an
//! `flock` on a seat file (see `Seat`), never by a pid.
//!
//! **Limits.** Processes that share a lock must agree on `$TMPDIR` (as for
//! mapping names). A thread that ends while holding the lock (a forgotten
//! guard) keeps it until its handle closes; then the next locker is told
//! the owner died. A forked child cannot lock through a handle it
//! inherited ([`Error::Inherited`]: the lock file's description is its
//! parent's); it opens the mutex again.

use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Condvar, Mutex};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use rustix::fs::{FileType, FlockOperation, Mode, OFlags};
use rustix::io::Errno;

use crate::error::{Error, Result};
use crate::owner::Trust;
use crate::sys::unix::{os_error, FileId};
use crate::sys::{LockState, Origin};
use crate::unpoisoned;

/// What every lock file's name ends with.
const LOCK_SUFFIX: &str = ".lock";

/// The first sleep of a poll (a lock with a timeout, an event wait).
const FIRST_NAP: Duration = Duration::from_micros(50);
/// The longest sleep of a poll.
const LONGEST_NAP: Duration = Duration::from_millis(1);

/// macOS 14.4's `os_sync_wait_on_address` family, found at run time so that
/// older systems fall back to polling: a waiter sleeps in the kernel on the
/// `signaled` word with `OS_SYNC_WAIT_ON_ADDRESS_SHARED` (it is shared
/// between processes), and `set` wakes it only when `WAITERS` says someone
/// sleeps, as the Linux futex event does.
mod address_wait {
    use std::ffi::{c_int, c_void};
    use std::sync::atomic::AtomicU32;
    use std::sync::OnceLock;
    use std::time::Duration;

    type WaitWithTimeout = unsafe extern "C" fn(*mut c_void, u64, usize, u32, u32, u64) -> c_int;
    type Wait = unsafe extern "C" fn(*mut c_void, u64, usize, u32) -> c_int;
    type Wake = unsafe extern "C" fn(*mut c_void, usize, u32) -> c_int;

    /// The functions, when this macOS has them.
    pub(super) struct Api {
        wait: Wait,
        wait_with_timeout: WaitWithTimeout,
        wake_any: Wake,
        wake_all: Wake,
    }

    /// The API, looked up once.
    pub(super) fn api() -> Option<&'static Api> {
        static API: OnceLock<Option<Api>> = OnceLock::new();
        API.get_or_init(|| {
            // SAFETY: each symbol, when present, has exactly the C signature
            // of the type it is cast to (os/os_sync_wait_on_address.h).
            unsafe {
                Some(Api {
                    wait: std::mem::transmute::<*mut c_void, Wait>(symbol(
                        c"os_sync_wait_on_address",
                    )?),
                    wait_with_timeout: std::mem::transmute::<*mut c_void, WaitWithTimeout>(symbol(
                        c"os_sync_wait_on_address_with_timeout",
                    )?),
                    wake_any: std::mem::transmute::<*mut c_void, Wake>(symbol(
                        c"os_sync_wake_by_address_any",
                    )?),
                    wake_all: std::mem::transmute::<*mut c_void, Wake>(symbol(
                        c"os_sync_wake_by_address_all",
                    )?),
                })
            }
        })
        .as_ref()
    }

    /// A symbol of the running system, or `None`.
    fn symbol(name: &std::ffi::CStr) -> Option<*mut c_void> {
        // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name has no
        // other preconditions.
        let found = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
        (!found.is_null()).then_some(found)
    }

    impl Api {
        /// Sleeps while `word == expected`, at most `timeout`.
        pub(super) fn wait(&self, word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
            let addr = word.as_ptr().cast::<c_void>();
            let shared = libc::OS_SYNC_WAIT_ON_ADDRESS_SHARED;
            // SAFETY: `addr` is a live, 4-aligned word of shared memory for
            // the whole call; the size says 4 bytes; errors (timeout,
            // interruption) only end the wait early, and callers look again.
            unsafe {
                match timeout {
                    None => (self.wait)(addr, u64::from(expected), 4, shared),
                    Some(timeout) => (self.wait_with_timeout)(
                        addr,
                        u64::from(expected),
                        4,
                        shared,
                        libc::OS_CLOCK_MACH_ABSOLUTE_TIME,
                        u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX).max(1),
                    ),
                };
            }
        }

        /// Wakes one sleeper on `word`, or all of them.
        pub(super) fn wake(&self, word: &AtomicU32, all: bool) {
            let addr = word.as_ptr().cast::<c_void>();
            let wake = if all { self.wake_all } else { self.wake_any };
            // SAFETY: as in `wait`; waking nobody is not an error that matters.
            unsafe { wake(addr, 4, libc::OS_SYNC_WAKE_BY_ADDRESS_SHARED) };
        }
    }
}

// The rest of the crate shares these across threads.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<RobustLock>();
    send_sync::<Waker>();
};

/// A lock: an `flock`ed lock file, plus a held flag in shared memory.
pub(crate) struct RobustLock {
    /// The held flag.
    holder: NonNull<AtomicU32>,
    /// The lock file's name in the lease directory.
    entry: String,
    /// Its path.
    path: PathBuf,
    /// The thread of this process that owns the lock through this handle.
    owner: Mutex<Option<ThreadId>>,
    /// Signalled when `owner` becomes `None`.
    freed: Condvar,
    /// The lock file as this handle opened it; only the owning thread uses
    /// it (and `drop`), so this mutex is never contended. `None` after the
    /// file was found replaced and could not be opened again.
    file: Mutex<Option<LockFile>>,
    /// The process that opened it. Its lock file's description (so its
    /// `flock`) and its owning thread are the parent's in a forked child,
    /// which must open the mutex again.
    origin: Origin,
}

// SAFETY: the held flag is an atomic in shared memory that stays mapped
// while the caller keeps it (see `open`); the rest is `std` sync types.
unsafe impl Send for RobustLock {}
// SAFETY: as for Send.
unsafe impl Sync for RobustLock {}

impl RobustLock {
    /// The bytes of shared memory a lock keeps its state in: the held flag.
    pub(crate) const STATE_LEN: u64 = 4;

    /// Sets up a new lock's state at `state`: nobody holds it.
    ///
    /// # Safety
    /// `state` points at [`Self::STATE_LEN`] writable, 4-aligned bytes of
    /// mapped memory that no other process uses yet.
    pub(crate) unsafe fn init(state: NonNull<u8>, _name: &str) -> Result<()> {
        // SAFETY: the caller's promise.
        unsafe { state.cast::<AtomicU32>().as_ref() }.store(0, Ordering::Release);
        Ok(())
    }

    /// The lock `name` whose state is at `state`, in the object with OS
    /// name `os_name` (which names its lock file). `_trust`: the lock file
    /// is in the user's own directory, so it is always the user's.
    ///
    /// # Safety
    /// `state` points at a lock's state set up by [`Self::init`], which stays
    /// mapped for as long as the returned value lives.
    pub(crate) unsafe fn open(
        name: &str,
        os_name: &str,
        state: NonNull<u8>,
        _trust: &Trust,
    ) -> Result<RobustLock> {
        let entry = lock_entry(os_name);
        let path = std::env::temp_dir()
            .join(super::objects::LEASE_DIR)
            .join(&entry);
        let file = LockFile::open(&entry, name)?;
        Ok(RobustLock {
            holder: state.cast(),
            entry,
            path,
            owner: Mutex::new(None),
            freed: Condvar::new(),
            file: Mutex::new(Some(file)),
            origin: Origin::here(),
        })
    }

    /// Locks, waiting at most `timeout` (forever when `None`).
    pub(crate) fn lock(&self, name: &str, timeout: Option<Duration>) -> Result<LockState> {
        if !self.origin.is_here() {
            return Err(Error::Inherited {
                kind: "mutex",
                name: name.to_owned(),
            });
        }
        let holder = self.holder();
        let deadline = timeout.map(crate::deadline::after);
        if !self.own(name, deadline)? {
            return Ok(LockState::Busy);
        }
        match self.lock_file(name, deadline) {
            Ok(true) => {}
            Ok(false) => {
                self.disown();
                return Ok(LockState::Busy);
            }
            Err(error) => {
                self.disown();
                return Err(error);
            }
        }
        // A holder that let go cleared the flag; one that died could not.
        let previous = holder.swap(std::process::id(), Ordering::AcqRel);
        Ok(if previous == 0 {
            LockState::Acquired
        } else {
            LockState::OwnerDied
        })
    }

    /// Locks if nobody holds it.
    pub(crate) fn try_lock(&self, name: &str) -> Result<LockState> {
        self.lock(name, Some(Duration::ZERO))
    }

    /// Unlocks.
    ///
    /// # Safety
    /// The calling thread holds the lock.
    pub(crate) unsafe fn unlock(&self) {
        // Clear the flag first: a locker must never see it set after a clean unlock.
        self.holder().store(0, Ordering::Release);
        if let Some(file) = unpoisoned::lock(&self.file).as_ref() {
            let _ = rustix::fs::flock(&file.fd, FlockOperation::Unlock);
        }
        // Only now may another thread of this handle use the lock file: its
        // `flock` on the same description would otherwise succeed at once.
        self.disown();
    }

    /// The held flag.
    fn holder(&self) -> &AtomicU32 {
        // SAFETY: `open`'s caller keeps the flag mapped while `self` lives.
        unsafe { self.holder.as_ref() }
    }

    /// Makes the calling thread this handle's owner, waiting for another
    /// owner to let go until `deadline` (forever when `None`); `false` if
    /// it did not in time.
    fn own(&self, name: &str, deadline: Option<Instant>) -> Result<bool> {
        let me = std::thread::current().id();
        let mut owner = unpoisoned::lock(&self.owner);
        if *owner == Some(me) {
            return Err(Error::WouldDeadlock {
                name: name.to_owned(),
            });
        }
        while owner.is_some() {
            owner = match deadline {
                None => unpoisoned::wait(&self.freed, owner),
                Some(deadline) => {
                    let remaining = deadline.saturating_duration_since(Instant::now());
                    if remaining.is_zero() {
                        return Ok(false);
                    }
                    unpoisoned::wait_timeout(&self.freed, owner, remaining)
                }
            };
        }
        *owner = Some(me);
        Ok(true)
    }

    /// Gives up this thread's ownership of the handle and wakes a waiting thread.
    fn disown(&self) {
        *unpoisoned::lock(&self.owner) = None;
        self.freed.notify_one();
    }

    /// Takes the `flock` on the file the lock path names, waiting until
    /// `deadline` (forever when `None`); `false` if it stayed held. Called
    /// by the owning thread only.
    fn lock_file(&self, name: &str, deadline: Option<Instant>) -> Result<bool> {
        let mut slot = unpoisoned::lock(&self.file);
        loop {
            let file = match &mut *slot {
                Some(file) => file,
                empty => empty.insert(LockFile::open(&self.entry, name)?),
            };
            if !flock_exclusive(&file.fd, deadline, name)? {
                return Ok(false);
            }
            match file.is_at(&self.path, name) {
                Ok(true) => return Ok(true),
                Ok(false) => {
                    // Removed (or replaced) while we waited: let go, and
                    // lock the file at the path now.
                    let _ = rustix::fs::flock(&file.fd, FlockOperation::Unlock);
                    *slot = None;
                }
                Err(error) => {
                    let _ = rustix::fs::flock(&file.fd, FlockOperation::Unlock);
                    return Err(error);
                }
            }
        }
    }
}

impl Drop for RobustLock {
    /// Closes the lock file, first removing it if nobody holds the lock.
    fn drop(&mut self) {
        // A forked child's copy: the lock file is its parent's to remove.
        if !self.origin.is_here() {
            return;
        }
        let owned = unpoisoned::get_mut(&mut self.owner).is_some();
        let file = unpoisoned::get_mut(&mut self.file).take();
        let Some(file) = file else {
            return;
        };
        if owned {
            // A guard was forgotten: closing the file lets the lock go, and
            // the held flag, still set, tells the next locker.
            return;
        }
        // Only the holder of the file the path names may remove it (see the
        // module docs); a locker waiting on it then finds it gone and reopens.
        if rustix::fs::flock(&file.fd, FlockOperation::NonBlockingLockExclusive).is_ok()
            && file.is_at(&self.path, "").unwrap_or(false)
        {
            let _ = rustix::fs::unlink(&self.path);
        }
    }
}

/// Takes an exclusive `flock` on `fd`: blocking when `deadline` is `None`,
/// else polling until the deadline (at least once); `false` if it stayed held.
fn flock_exclusive(fd: &OwnedFd, deadline: Option<Instant>, name: &str) -> Result<bool> {
    let Some(deadline) = deadline else {
        loop {
            match rustix::fs::flock(fd, FlockOperation::LockExclusive) {
                Ok(()) => return Ok(true),
                Err(Errno::INTR) => {}
                Err(errno) => return Err(os_error("lock", name, errno)),
            }
        }
    };
    let mut nap = FIRST_NAP;
    loop {
        match rustix::fs::flock(fd, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(true),
            Err(Errno::WOULDBLOCK) | Err(Errno::INTR) => {}
            Err(errno) => return Err(os_error("lock", name, errno)),
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Ok(false);
        }
        std::thread::sleep(nap.min(remaining));
        nap = (nap * 2).min(LONGEST_NAP);
    }
}

/// An open lock file and its identity.
struct LockFile {
    fd: OwnedFd,
    id: FileId,
}

impl LockFile {
    /// Opens the lock file `entry` in the lease directory (the user's own,
    /// mode 0700, created if missing; see `macos.rs`), creating it 0600 if
    /// missing, never through a symlink.
    fn open(entry: &str, name: &str) -> Result<LockFile> {
        const OP: &str = "open the lock file of";
        let dir = super::objects::lease_dir(true)?.ok_or_else(|| Error::FileNotFound {
            what: "directory",
            path: format!("the lock directory of {name:?}"),
        })?;
        let fd = rustix::fs::openat(
            &dir,
            entry,
            OFlags::CREATE | OFlags::RDWR | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::RUSR | Mode::WUSR,
        )
        .map_err(|e| os_error(OP, name, e))?;
        let stat = rustix::fs::fstat(&fd).map_err(|e| os_error(OP, name, e))?;
        if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
            return Err(crate::sys::io_error(
                OP,
                name,
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "the lock file is not a regular file",
                ),
            ));
        }
        Ok(LockFile {
            fd,
            id: FileId::of(&stat),
        })
    }

    /// Whether `path` names this file now (a symlink there does not).
    fn is_at(&self, path: &Path, name: &str) -> Result<bool> {
        match rustix::fs::lstat(path) {
            Ok(stat) => Ok(FileId::of(&stat) == self.id),
            Err(Errno::NOENT) => Ok(false),
            Err(errno) => Err(os_error("inspect the lock file of", name, errno)),
        }
    }
}

/// The lock file's name for a segment's OS name.
fn lock_entry(os_name: &str) -> String {
    super::objects::hex_entry(os_name, LOCK_SUFFIX)
}

/// Sleeping on a word of shared memory until another process changes it:
/// `os_sync_wait_on_address` where macOS has it, else polling.
pub(crate) struct Waker;

/// How long a poller naps before it looks again.
const POLL_NAP: Duration = LONGEST_NAP;

impl Waker {
    /// The waker of the words of the object called `_name` (no OS object).
    pub(crate) fn open(_name: &str, _which: &str, _trust: &Trust) -> Result<Waker> {
        Ok(Waker)
    }

    /// Sleeps while `word == expected`, at most `timeout` (forever when
    /// `None`); may return early: callers look again.
    pub(crate) fn wait(&self, word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
        if word.load(Ordering::SeqCst) != expected {
            return;
        }
        match address_wait::api() {
            Some(api) => api.wait(word, expected, timeout),
            None => std::thread::sleep(timeout.map_or(POLL_NAP, |timeout| timeout.min(POLL_NAP))),
        }
    }

    /// Wakes up to `count` processes sleeping on `word` (pollers notice by themselves).
    pub(crate) fn wake(&self, word: &AtomicU32, count: u32) {
        if let Some(api) = address_wait::api() {
            api.wake(word, count > 1);
        }
    }
}

/// A participant's seat in an object: proof that the process holding it is
/// alive, without naming the process. Seat `i` of the object `OS_NAME` is
/// an exclusive `flock` on the seat file (`OS_NAME` in hex, then `.seat{i}`,
/// in the lease directory), which the kernel drops when the holder dies.
/// The holder removes the file as it lets go, so seat files do not pile up;
/// as for lock files, a taker checks, once it holds the `flock`, that the
/// path still names its file.
pub(crate) struct Seat {
    file: LockFile,
    path: PathBuf,
    /// The process that took it: a forked child shares the seat file's
    /// description, and so its lock, but the seat is its parent's.
    origin: Origin,
}

impl Seat {
    /// Takes seat `index` of the object `os_name` if no one holds it (`None`
    /// if someone does). `_object`: the seat is a file of its own.
    pub(crate) fn take(
        _object: &crate::sys::Object,
        os_name: &str,
        index: u32,
        name: &str,
    ) -> Result<Option<Seat>> {
        let entry = seat_entry(os_name, index);
        let file = LockFile::open(&entry, name)?;
        match rustix::fs::flock(&file.fd, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(Errno::WOULDBLOCK | Errno::INTR) => return Ok(None),
            Err(errno) => return Err(os_error("take a seat in", name, errno)),
        }
        let path = std::env::temp_dir()
            .join(super::objects::LEASE_DIR)
            .join(&entry);
        // A holder that let go removed the file this one opened: someone
        // else may hold the one the path names now.
        if !file.is_at(&path, name)? {
            return Ok(None);
        }
        Ok(Some(Seat {
            file,
            path,
            origin: Origin::here(),
        }))
    }

    /// Whether someone holds seat `index` of the object `os_name`. The seat
    /// files are in the user's own directory, so `_trust` has nothing to
    /// check. Where it cannot tell, the seat counts as held.
    pub(crate) fn is_held(
        _object: &crate::sys::Object,
        os_name: &str,
        index: u32,
        _trust: &Trust,
    ) -> bool {
        let Ok(Some(dir)) = super::objects::lease_dir(false) else {
            return true;
        };
        let fd = match rustix::fs::openat(
            &dir,
            seat_entry(os_name, index).as_str(),
            OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW | OFlags::NONBLOCK,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return false,
            Err(_) => return true,
        };
        match rustix::fs::flock(&fd, FlockOperation::NonBlockingLockShared) {
            Ok(()) => false,
            Err(_) => true,
        }
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        if !self.origin.is_here() {
            return;
        }
        if self.file.is_at(&self.path, "").unwrap_or(false) {
            let _ = rustix::fs::unlink(&self.path);
        }
    }
}

/// The seat file's name for seat `index` of an object's OS name.
fn seat_entry(os_name: &str, index: u32) -> String {
    super::objects::hex_entry(os_name, &format!(".seat{index}"))
}
