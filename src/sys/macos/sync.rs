//! Cross-process synchronisation on macOS (and any Unix other than Linux):
//! an `flock`ed lock file and a held flag for the mutex, a word the event's
//! waiters sleep on (or poll, before macOS 14.4), each with its state in its own small named segment (see
//! `sync/segment.rs` for the segment's header).
//!
//! **Mutex.** macOS has no robust process-shared pthread mutex, so the lock
//! is an exclusive `flock` on a *lock file*, which the kernel releases when
//! its holder closes it or dies, `kill -9` included. The lock file lives
//! beside the mapping leases (`$TMPDIR/shmio-leases`, the user's own, mode
//! 0700; see `macos.rs`), named after the mutex segment's OS name in hex
//! with `.lock`, created 0600 and never opened through a symlink.
//!
//! - *Owner died.* The segment holds `holder: u32` at `STATE_OFFSET`: the
//!   pid of the process that holds the lock, set as soon as the `flock` is
//!   taken and cleared just before it is let go. A locker that finds it
//!   non-zero took the lock from a holder that died holding it, and is told
//!   [`LockState::OwnerDied`].
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
//! **Event.** State after the segment header, at the same places as on
//! Linux: `signaled: u32` (0 or 1) at `STATE_OFFSET`, a reserved word (the
//! waiter count on Linux), `manual: u32` (1 for manual reset, written by the
//! creator; an opener reports the creator's mode). `set` stores 1, `reset`
//! stores 0. A waiter takes the signal (auto reset: compare-and-swap 1 to 0,
//! so one set releases one waiter; manual reset: sees 1) or sleeps and looks
//! again, 50 µs at first, doubling up to 1 ms, until its deadline, when it
//! looks one last time: an idle waiter costs about a thousand wake-ups a
//! second and a set is seen within about a millisecond. A set that a reset
//! undoes before a waiter looks again goes unseen (as on Linux between the
//! wake-up and the waiter's check).
//!
//! **Sleeping in the kernel where macOS can.** Where the running system
//! has `os_sync_wait_on_address` and `os_sync_wake_by_address_{any,all}`
//! (macOS 14.4; looked up with `dlsym` at run time, so older systems still
//! run), a waiter sleeps in the kernel on the `signaled` word with the
//! shared flag instead of polling, after counting itself in `WAITERS`, and
//! `set` wakes one sleeper (auto reset) or all (manual reset) only when
//! someone sleeps: the Linux futex event's protocol. Older systems get the
//! polling described above.
//!
//! **Limits.** Processes that share a mutex must agree on `$TMPDIR` (as for
//! mapping names). A thread that ends while holding the lock (a forgotten
//! guard) keeps it until its handle closes; then the next locker is told
//! the owner died. A process that forks while holding the lock shares it
//! with its child.

use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use rustix::fs::{FileType, FlockOperation, Mode, OFlags};
use rustix::io::Errno;

use crate::error::{Error, Result};
use crate::mapping::Mapping;
use crate::name::Name;
use crate::sync::segment::{self, Sharing, SIGNALED, STATE_OFFSET, WAITERS};
use crate::sys::unix::{os_error, FileId};
use crate::sys::{LockState, ObjectId};

/// What every lock file's name ends with.
const LOCK_SUFFIX: &str = ".lock";

/// The first sleep of a poll (a lock with a timeout, an event wait).
const FIRST_NAP: Duration = Duration::from_micros(50);
/// The longest sleep of a poll.
const LONGEST_NAP: Duration = Duration::from_millis(1);

/// Mutex segment: the pid of the process holding the lock, 0 when free.
const HOLDER: u64 = STATE_OFFSET;

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
        /// Sleeps while `word == 0`, at most `timeout`.
        pub(super) fn wait(&self, word: &AtomicU32, timeout: Option<Duration>) {
            let addr = word.as_ptr().cast::<c_void>();
            let shared = libc::OS_SYNC_WAIT_ON_ADDRESS_SHARED;
            // SAFETY: `addr` is a live, 4-aligned word of shared memory for
            // the whole call; the size says 4 bytes; errors (timeout,
            // interruption) only end the wait early, and callers look again.
            unsafe {
                match timeout {
                    None => (self.wait)(addr, 0, 4, shared),
                    Some(timeout) => (self.wait_with_timeout)(
                        addr,
                        0,
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
    send_sync::<RawMutex>();
    send_sync::<RawEvent>();
};

/// A mutex: an `flock`ed lock file, plus a held flag in a named segment.
pub(crate) struct RawMutex {
    /// The segment with the held flag.
    segment: Mapping,
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
}

impl RawMutex {
    /// Creates or opens the mutex called `name`; whether it existed.
    pub(crate) fn create_or_open(
        name: &str,
        sharing: &Sharing<'_>,
        owner: Option<ObjectId>,
    ) -> Result<(RawMutex, bool)> {
        let object_name = segment::mutex_name(name);
        let (segment, existed) = segment::create_or_open_owned(
            &object_name,
            segment::SEGMENT_SIZE,
            sharing,
            owner,
            segment::MUTEX_MAGIC,
            "a shmio mutex",
            &|window| window.write_value(HOLDER, &0u32),
        )?;
        let entry = lock_entry(&Name::derived(&object_name)?.os_name());
        let path = std::env::temp_dir()
            .join(super::objects::LEASE_DIR)
            .join(&entry);
        let file = LockFile::open(&entry, name)?;
        let mutex = RawMutex {
            segment,
            entry,
            path,
            owner: Mutex::new(None),
            freed: Condvar::new(),
            file: Mutex::new(Some(file)),
        };
        Ok((mutex, existed))
    }

    /// Locks, waiting at most `timeout` (forever when `None`).
    pub(crate) fn lock(&self, name: &str, timeout: Option<Duration>) -> Result<LockState> {
        let holder = self.holder()?;
        // A timeout too long to express is no timeout.
        let deadline = timeout.and_then(|timeout| Instant::now().checked_add(timeout));
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
        if let Ok(holder) = self.holder() {
            holder.store(0, Ordering::Release);
        }
        if let Some(file) = lock(&self.file).as_ref() {
            let _ = rustix::fs::flock(&file.fd, FlockOperation::Unlock);
        }
        // Only now may another thread of this handle use the lock file: its
        // `flock` on the same description would otherwise succeed at once.
        self.disown();
    }

    /// The held flag in the segment.
    fn holder(&self) -> Result<&AtomicU32> {
        self.segment.atomic_u32(HOLDER)
    }

    /// Makes the calling thread this handle's owner, waiting for another
    /// owner to let go until `deadline` (forever when `None`); `false` if
    /// it did not in time.
    fn own(&self, name: &str, deadline: Option<Instant>) -> Result<bool> {
        let me = std::thread::current().id();
        let mut owner = lock(&self.owner);
        if *owner == Some(me) {
            return Err(Error::WouldDeadlock {
                name: name.to_owned(),
            });
        }
        while owner.is_some() {
            owner = match deadline {
                None => self
                    .freed
                    .wait(owner)
                    .unwrap_or_else(PoisonError::into_inner),
                Some(deadline) => {
                    let remaining = deadline.saturating_duration_since(Instant::now());
                    if remaining.is_zero() {
                        return Ok(false);
                    }
                    self.freed
                        .wait_timeout(owner, remaining)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
        }
        *owner = Some(me);
        Ok(true)
    }

    /// Gives up this thread's ownership of the handle and wakes a waiting thread.
    fn disown(&self) {
        *lock(&self.owner) = None;
        self.freed.notify_one();
    }

    /// Takes the `flock` on the file the lock path names, waiting until
    /// `deadline` (forever when `None`); `false` if it stayed held. Called
    /// by the owning thread only.
    fn lock_file(&self, name: &str, deadline: Option<Instant>) -> Result<bool> {
        let mut slot = lock(&self.file);
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

impl Drop for RawMutex {
    /// Closes the lock file, first removing it if nobody holds the lock.
    fn drop(&mut self) {
        let owned = self
            .owner
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some();
        let file = self
            .file
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
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

/// Locks a `std` mutex, whether or not a panic poisoned it (no code here
/// panics while holding one, and its data is always consistent).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
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
        let dir = super::objects::lease_dir(true)?.ok_or_else(|| Error::NotFound {
            name: format!("the lock directory of {name:?}"),
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
            return Err(Error::os(
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

/// An event: a polled word in a named segment.
pub(crate) struct RawEvent {
    segment: Mapping,
    manual: bool,
}

impl RawEvent {
    /// Creates or opens the event called `name`; whether it existed. A
    /// creator's `manual` decides the mode; an opener takes the creator's.
    pub(crate) fn create_or_open(
        name: &str,
        manual: bool,
        sharing: &Sharing<'_>,
    ) -> Result<(RawEvent, bool)> {
        let (segment, existed, manual) = segment::event(name, manual, sharing)?;
        Ok((RawEvent { segment, manual }, existed))
    }

    /// Whether the event stays set until reset.
    pub(crate) fn is_manual(&self) -> bool {
        self.manual
    }

    /// The `signaled` word.
    fn signaled(&self) -> Result<&AtomicU32> {
        self.segment.atomic_u32(SIGNALED)
    }

    /// Sets the event, waking one sleeper (auto reset) or all (manual
    /// reset); without `os_sync_wait_on_address`, a polling waiter sees it
    /// within about a millisecond.
    pub(crate) fn set(&self) -> Result<()> {
        let signaled = self.signaled()?;
        signaled.store(1, Ordering::SeqCst);
        if let Some(api) = address_wait::api() {
            if self.segment.atomic_u32(WAITERS)?.load(Ordering::SeqCst) > 0 {
                api.wake(signaled, self.manual);
            }
        }
        Ok(())
    }

    /// Clears the event.
    pub(crate) fn reset(&self) -> Result<()> {
        self.signaled()?.store(0, Ordering::SeqCst);
        Ok(())
    }

    /// Takes the signal if it is there: consumes it for auto reset.
    fn try_take(&self, signaled: &AtomicU32) -> bool {
        if self.manual {
            signaled.load(Ordering::SeqCst) == 1
        } else {
            signaled
                .compare_exchange(1, 0, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        }
    }

    /// Waits until set, at most `timeout` (forever when `None`); whether it
    /// was set. Looks at least once, even with a zero timeout.
    pub(crate) fn wait(&self, timeout: Option<Duration>) -> Result<bool> {
        let signaled = self.signaled()?;
        if self.try_take(signaled) {
            return Ok(true);
        }
        // A timeout too long to express is no timeout.
        let deadline = timeout.and_then(|timeout| Instant::now().checked_add(timeout));
        if let Some(api) = address_wait::api() {
            let waiters = self.segment.atomic_u32(WAITERS)?;
            loop {
                waiters.fetch_add(1, Ordering::SeqCst);
                let taken = self.try_take(signaled);
                let remaining =
                    deadline.map(|deadline| deadline.saturating_duration_since(Instant::now()));
                if !taken && remaining != Some(Duration::ZERO) {
                    api.wait(signaled, remaining);
                }
                waiters.fetch_sub(1, Ordering::SeqCst);
                if taken || self.try_take(signaled) {
                    return Ok(true);
                }
                if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                    return Ok(false);
                }
            }
        }
        let mut nap = FIRST_NAP;
        loop {
            let pause = match deadline {
                None => nap,
                Some(deadline) => {
                    let remaining = deadline.saturating_duration_since(Instant::now());
                    if remaining.is_zero() {
                        return Ok(self.try_take(signaled));
                    }
                    nap.min(remaining)
                }
            };
            std::thread::sleep(pause);
            if self.try_take(signaled) {
                return Ok(true);
            }
            nap = (nap * 2).min(LONGEST_NAP);
        }
    }
}

/// A doorbell for the channel where there is no futex: sleepers poll, with
/// a short sleep that grows to 1 ms, so an idle waiter uses almost no CPU.
pub(crate) struct Doorbell;

impl Doorbell {
    /// The doorbell `which` of the channel called `name` (no OS object).
    pub(crate) fn open(_name: &str, _which: &str) -> Result<Doorbell> {
        Ok(Doorbell)
    }

    /// Bumps `word`; pollers notice.
    pub(crate) fn ring(&self, word: &std::sync::atomic::AtomicU32) {
        word.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// Sleeps a little while `word == seen`, at most `timeout`.
    pub(crate) fn wait(
        &self,
        word: &std::sync::atomic::AtomicU32,
        seen: u32,
        timeout: Option<std::time::Duration>,
    ) {
        let nap =
            std::time::Duration::from_millis(1).min(timeout.unwrap_or(std::time::Duration::MAX));
        if word.load(std::sync::atomic::Ordering::SeqCst) == seen {
            std::thread::sleep(nap);
        }
    }
}
