//! Cross-process synchronisation on Linux: a robust, process-shared pthread
//! mutex and a futex event, each in its own small named segment (see
//! `sync/segment.rs` for the segment's header).
//!
//! **Mutex.** A `pthread_mutex_t` set up `PTHREAD_PROCESS_SHARED`,
//! `PTHREAD_MUTEX_ROBUST` and `PTHREAD_MUTEX_ERRORCHECK`. glibc locks an
//! uncontended mutex with one compare-and-swap in user space (no system
//! call) and keeps it on the thread's robust list, which the kernel walks
//! when the thread dies, SIGKILL included: the next locker gets `EOWNERDEAD`,
//! marks the mutex consistent and is told its previous owner died. Relocking
//! from the holding thread is `EDEADLK`, never a silent re-entry.
//!
//! **Event.** State after the segment header: `signaled: u32` (the futex
//! word, 0 or 1), `waiters: u32` (how many are about to sleep or sleeping),
//! `manual: u32` (1 for manual reset). `set` stores 1 and calls `FUTEX_WAKE`
//! only when `waiters` is non-zero, so a set with nobody waiting is no
//! system call; a waiter counts itself in before its last check, and
//! `FUTEX_WAIT` re-checks the word in the kernel, so no wake-up is lost
//! (both sides use sequentially consistent operations). A waiter killed while
//! sleeping leaves `waiters` one too high: later sets then make one wasted
//! system call, nothing worse.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use rustix::io::Errno;
use rustix::thread::futex;

use crate::error::{Error, Result};
use crate::mapping::Mapping;
use crate::sync::segment::{self, Sharing, SIGNALED, STATE_OFFSET, WAITERS};
use crate::sys::{LockState, ObjectId};

/// A robust process-shared pthread mutex in a named segment.
pub(crate) struct RawMutex {
    segment: Mapping,
    mutex: *mut libc::pthread_mutex_t,
}

// SAFETY: the pthread mutex is process-shared: any thread may lock it, and
// the pointer stays valid while `segment` keeps the memory mapped.
unsafe impl Send for RawMutex {}
// SAFETY: as for Send; pthread mutex calls are thread-safe.
unsafe impl Sync for RawMutex {}

impl RawMutex {
    /// Creates or opens the mutex called `name`; whether it existed.
    pub(crate) fn create_or_open(
        name: &str,
        sharing: &Sharing<'_>,
        owner: Option<ObjectId>,
    ) -> Result<(RawMutex, bool)> {
        const _: () = assert!(size_of::<libc::pthread_mutex_t>() as u64 + STATE_OFFSET <= 4096);
        let (segment, existed) = segment::create_or_open_owned(
            &segment::mutex_name(name),
            segment::SEGMENT_SIZE,
            sharing,
            owner,
            segment::MUTEX_MAGIC,
            "a shmio mutex",
            &|window| {
                let mutex = mutex_ptr(window.base());
                // SAFETY: `mutex` points at zeroed, aligned, unshared memory
                // of the segment that no one else reads before `ready`.
                unsafe { init_mutex(mutex) }.map_err(|errno| os("set up", name, errno))
            },
        )?;
        let mutex = mutex_ptr(segment.window.base());
        Ok((RawMutex { segment, mutex }, existed))
    }

    /// Locks, waiting at most `timeout` (forever when `None`).
    #[inline]
    pub(crate) fn lock(&self, name: &str, timeout: Option<Duration>) -> Result<LockState> {
        let code = match timeout {
            // SAFETY: `self.mutex` is an initialised process-shared mutex in
            // memory that stays mapped while `self` lives.
            None => unsafe { libc::pthread_mutex_lock(self.mutex) },
            Some(timeout) => {
                let deadline = realtime_deadline(timeout);
                // SAFETY: as above; `deadline` is a valid timespec.
                unsafe { libc::pthread_mutex_timedlock(self.mutex, &deadline) }
            }
        };
        self.outcome(name, code)
    }

    /// Locks if nobody holds it.
    #[inline]
    pub(crate) fn try_lock(&self, name: &str) -> Result<LockState> {
        // SAFETY: as in `lock`.
        let code = unsafe { libc::pthread_mutex_trylock(self.mutex) };
        self.outcome(name, code)
    }

    /// Unlocks.
    ///
    /// # Safety
    /// The calling thread holds the lock.
    #[inline]
    pub(crate) unsafe fn unlock(&self) {
        // SAFETY: the caller holds the lock; the mutex stays mapped.
        unsafe { libc::pthread_mutex_unlock(self.mutex) };
    }

    /// What a pthread lock call's result means.
    #[inline]
    fn outcome(&self, name: &str, code: i32) -> Result<LockState> {
        if code == 0 {
            return Ok(LockState::Acquired);
        }
        self.unusual_outcome(name, code)
    }

    /// The outcomes other than a plain lock, kept off the hot path.
    #[cold]
    fn unusual_outcome(&self, name: &str, code: i32) -> Result<LockState> {
        match code {
            libc::EOWNERDEAD => {
                // SAFETY: EOWNERDEAD means this thread now holds the mutex.
                unsafe { libc::pthread_mutex_consistent(self.mutex) };
                Ok(LockState::OwnerDied)
            }
            libc::EBUSY | libc::ETIMEDOUT => Ok(LockState::Busy),
            libc::EDEADLK => Err(Error::WouldDeadlock {
                name: name.to_owned(),
            }),
            errno => Err(os("lock", name, Errno::from_raw_os_error(errno))),
        }
    }

    /// The segment, for tests of its layout.
    #[allow(dead_code)]
    pub(crate) fn segment(&self) -> &Mapping {
        &self.segment
    }
}

/// The mutex's place in the segment that starts at `base`.
fn mutex_ptr(base: std::ptr::NonNull<u8>) -> *mut libc::pthread_mutex_t {
    // In bounds (checked at compile time above) and 8-aligned: the segment
    // is page-aligned and STATE_OFFSET is a multiple of 64.
    base.as_ptr().wrapping_add(STATE_OFFSET as usize).cast()
}

/// Sets up a robust, process-shared, error-checking mutex at `mutex`.
///
/// # Safety
/// `mutex` points at writable, suitably aligned memory that nothing else uses yet.
unsafe fn init_mutex(mutex: *mut libc::pthread_mutex_t) -> std::result::Result<(), Errno> {
    let check = |code: i32| {
        if code == 0 {
            Ok(())
        } else {
            Err(Errno::from_raw_os_error(code))
        }
    };
    let mut attr = std::mem::MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
    // SAFETY: `attr` is initialised by pthread_mutexattr_init before any other
    // use and destroyed at the end; `mutex` is the caller's promise.
    unsafe {
        check(libc::pthread_mutexattr_init(attr.as_mut_ptr()))?;
        let attr = attr.as_mut_ptr();
        let result = check(libc::pthread_mutexattr_setpshared(
            attr,
            libc::PTHREAD_PROCESS_SHARED,
        ))
        .and_then(|()| {
            check(libc::pthread_mutexattr_setrobust(
                attr,
                libc::PTHREAD_MUTEX_ROBUST,
            ))
        })
        .and_then(|()| {
            check(libc::pthread_mutexattr_settype(
                attr,
                libc::PTHREAD_MUTEX_ERRORCHECK,
            ))
        })
        .and_then(|()| check(libc::pthread_mutex_init(mutex, attr)));
        libc::pthread_mutexattr_destroy(attr);
        result
    }
}

/// `timeout` from now as an absolute `CLOCK_REALTIME` time, saturating.
fn realtime_deadline(timeout: Duration) -> libc::timespec {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Realtime);
    let total_nanos = u128::try_from(now.tv_nsec).unwrap_or(0) + timeout.subsec_nanos() as u128;
    let secs = now
        .tv_sec
        .saturating_add(i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX))
        .saturating_add((total_nanos / 1_000_000_000) as i64);
    libc::timespec {
        tv_sec: secs as libc::time_t,
        tv_nsec: (total_nanos % 1_000_000_000) as libc::c_long,
    }
}

/// A futex event in a named segment.
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

    fn word(&self, offset: u64) -> Result<&AtomicU32> {
        self.segment.atomic_u32(offset)
    }

    /// Sets the event, waking one waiter (auto reset) or all (manual reset).
    pub(crate) fn set(&self) -> Result<()> {
        let signaled = self.word(SIGNALED)?;
        signaled.store(1, Ordering::SeqCst);
        if self.word(WAITERS)?.load(Ordering::SeqCst) > 0 {
            let count = if self.manual { i32::MAX as u32 } else { 1 };
            futex::wake(signaled, futex::Flags::empty(), count)
                .map_err(|e| os("wake", "event", e))?;
        }
        Ok(())
    }

    /// Clears the event.
    pub(crate) fn reset(&self) -> Result<()> {
        self.word(SIGNALED)?.store(0, Ordering::SeqCst);
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

    /// Waits until set, at most `timeout` (forever when `None`); whether it was set.
    pub(crate) fn wait(&self, timeout: Option<Duration>) -> Result<bool> {
        let signaled = self.word(SIGNALED)?;
        if self.try_take(signaled) {
            return Ok(true);
        }
        let deadline = timeout.map(|timeout| Instant::now() + timeout);
        let waiters = self.word(WAITERS)?;
        loop {
            waiters.fetch_add(1, Ordering::SeqCst);
            if self.try_take(signaled) {
                waiters.fetch_sub(1, Ordering::SeqCst);
                return Ok(true);
            }
            let remaining =
                deadline.map(|deadline| deadline.saturating_duration_since(Instant::now()));
            let result = match remaining {
                Some(remaining) if remaining.is_zero() => Err(Errno::TIMEDOUT),
                Some(remaining) => {
                    let timespec = futex::Timespec {
                        tv_sec: remaining.as_secs() as i64,
                        tv_nsec: i64::from(remaining.subsec_nanos()),
                    };
                    futex::wait(signaled, futex::Flags::empty(), 0, Some(&timespec))
                }
                None => futex::wait(signaled, futex::Flags::empty(), 0, None),
            };
            waiters.fetch_sub(1, Ordering::SeqCst);
            match result {
                Ok(()) | Err(Errno::AGAIN) | Err(Errno::INTR) => {}
                Err(Errno::TIMEDOUT) => return Ok(self.try_take(signaled)),
                Err(errno) => return Err(os("wait", "event", errno)),
            }
            if self.try_take(signaled) {
                return Ok(true);
            }
        }
    }
}

fn os(op: &'static str, name: &str, errno: Errno) -> Error {
    crate::sys::unix::os_error(op, name, errno)
}

/// A doorbell for the channel: a futex on a word in shared memory.
/// `ring` bumps the word and wakes one sleeper; `wait` sleeps while the
/// word still holds the value the sleeper saw.
pub(crate) struct Doorbell;

impl Doorbell {
    /// The doorbell `which` of the channel called `name` (no OS object on Linux).
    pub(crate) fn open(_name: &str, _which: &str) -> Result<Doorbell> {
        Ok(Doorbell)
    }

    /// Bumps `word` and wakes one process sleeping on it.
    pub(crate) fn ring(&self, word: &AtomicU32) {
        word.fetch_add(1, Ordering::SeqCst);
        let _ = futex::wake(word, futex::Flags::empty(), 1);
    }

    /// Sleeps while `word == seen`, at most `timeout`.
    pub(crate) fn wait(&self, word: &AtomicU32, seen: u32, timeout: Option<Duration>) {
        let timespec = timeout.map(|timeout| futex::Timespec {
            tv_sec: i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(timeout.subsec_nanos()),
        });
        let _ = futex::wait(word, futex::Flags::empty(), seen, timespec.as_ref());
    }
}
