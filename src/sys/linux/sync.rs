//! Linux's primitives for cross-process synchronisation, over memory the
//! caller owns (a named object's state; see `sync/`): a robust,
//! process-shared pthread mutex, and futex waits and wakes on a word.
//!
//! **Lock.** A `pthread_mutex_t` set up `PTHREAD_PROCESS_SHARED` and
//! `PTHREAD_MUTEX_ROBUST`, then the holder's token. glibc locks an
//! uncontended mutex with one compare-and-swap in user space (no system
//! call) and keeps it on the thread's robust list, which the kernel walks
//! when the thread dies, SIGKILL included: the next locker gets `EOWNERDEAD`,
//! marks the mutex consistent and is told its previous owner died. (The
//! kernel compares the thread id in the futex word with the dying thread's
//! id in that thread's own pid namespace, so this works across containers.)
//!
//! *Relocking from the holding thread* is `Error::WouldDeadlock`, never a
//! silent re-entry nor a deadlock. It is not glibc's error check, which
//! compares thread ids: two threads in two pid namespaces can have the same
//! id, and the second would be told it already holds the first's lock. The
//! holder writes its *token* beside the mutex instead: a number unique to
//! the thread in every process (a random per-process value and a per-thread
//! count), and clears it before it unlocks; a thread that finds its own
//! token there holds the lock. The mutex is of the normal type, so a thread
//! of another namespace with the same id simply waits its turn.
//!
//! **Seat.** A participant of a channel proves it is alive by holding a
//! lock the kernel drops when it dies (see `Seat`), never by a pid.
//!
//! **Waker.** `FUTEX_WAIT` sleeps while the word holds the value the sleeper
//! saw (the kernel checks it atomically with going to sleep, so no wake-up
//! is lost); `FUTEX_WAKE` wakes up to a number of sleepers. No OS object is
//! needed.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use rustix::io::Errno;
use rustix::thread::futex;

use crate::error::{Error, Result};
use crate::owner::Trust;
use crate::sys::unix::{os_error, Object};
use crate::sys::{LockState, Origin};

/// A lock's state in shared memory.
#[repr(C)]
struct State {
    mutex: libc::pthread_mutex_t,
    /// The holder's token (see the module docs), 0 when nobody holds it or
    /// its holder died holding it.
    holder: AtomicU64,
}

/// A robust process-shared pthread mutex in shared memory.
pub(crate) struct RobustLock {
    state: NonNull<State>,
}

// SAFETY: the pthread mutex is process-shared: any thread may lock it, and
// the memory stays mapped while the caller keeps it (see `open`).
unsafe impl Send for RobustLock {}
// SAFETY: as for Send; pthread mutex calls are thread-safe.
unsafe impl Sync for RobustLock {}

impl RobustLock {
    /// The bytes of shared memory a lock keeps its state in.
    pub(crate) const STATE_LEN: u64 = size_of::<State>() as u64;

    /// Sets up a new lock's state at `state`.
    ///
    /// # Safety
    /// `state` points at [`Self::STATE_LEN`] writable, 8-aligned bytes of
    /// mapped memory that no other process uses yet.
    pub(crate) unsafe fn init(state: NonNull<u8>, name: &str) -> Result<()> {
        let state = state.cast::<State>();
        // SAFETY: the caller's promise; `holder` is zeroed memory, a valid
        // AtomicU64 of 0 (nobody holds the lock).
        unsafe { init_mutex(&raw mut (*state.as_ptr()).mutex) }
            .map_err(|errno| os_error("set up", name, errno))
    }

    /// The lock whose state is at `state`. Linux keeps no other object, so
    /// its names (the lock's, `_name`, and its state's object's, `_os_name`)
    /// and `_trust` have nothing to find or check.
    ///
    /// # Safety
    /// `state` points at a lock's state set up by [`Self::init`], which stays
    /// mapped for as long as the returned value lives.
    pub(crate) unsafe fn open(
        _name: &str,
        _os_name: &str,
        state: NonNull<u8>,
        _trust: &Trust,
    ) -> Result<Self> {
        Ok(RobustLock {
            state: state.cast(),
        })
    }

    /// The pthread mutex.
    #[inline]
    fn mutex(&self) -> *mut libc::pthread_mutex_t {
        // SAFETY: `state` points at a live State (see `open`); no reference
        // is made, only the field's address taken.
        unsafe { &raw mut (*self.state.as_ptr()).mutex }
    }

    /// The holder's token.
    #[inline]
    fn holder(&self) -> &AtomicU64 {
        // SAFETY: as in `mutex`; an atomic may be shared freely.
        unsafe { &(*self.state.as_ptr()).holder }
    }

    /// Locks, waiting at most `timeout` (forever when `None`).
    #[inline]
    pub(crate) fn lock(&self, name: &str, timeout: Option<Duration>) -> Result<LockState> {
        let me = self.not_mine(name)?;
        let code = match timeout {
            // SAFETY: the mutex is an initialised process-shared mutex in
            // memory that stays mapped while `self` lives.
            None => unsafe { libc::pthread_mutex_lock(self.mutex()) },
            Some(timeout) => {
                let deadline = realtime_deadline(timeout);
                // SAFETY: as above; `deadline` is a valid timespec.
                unsafe { libc::pthread_mutex_timedlock(self.mutex(), &deadline) }
            }
        };
        self.outcome(name, code, me)
    }

    /// Locks if nobody holds it.
    #[inline]
    pub(crate) fn try_lock(&self, name: &str) -> Result<LockState> {
        let me = self.not_mine(name)?;
        // SAFETY: as in `lock`.
        let code = unsafe { libc::pthread_mutex_trylock(self.mutex()) };
        self.outcome(name, code, me)
    }

    /// Unlocks.
    ///
    /// # Safety
    /// The calling thread holds the lock.
    #[inline]
    pub(crate) unsafe fn unlock(&self) {
        self.holder().store(0, Ordering::Relaxed);
        // SAFETY: the caller holds the lock; the mutex stays mapped.
        unsafe { libc::pthread_mutex_unlock(self.mutex()) };
    }

    /// This thread's token, or [`Error::WouldDeadlock`] if this thread
    /// holds the lock already: only it can have written its token there,
    /// and it clears it before it lets go.
    #[inline]
    fn not_mine(&self, name: &str) -> Result<u64> {
        let me = thread_token();
        if self.holder().load(Ordering::Relaxed) == me {
            return Err(Error::WouldDeadlock {
                name: name.to_owned(),
            });
        }
        Ok(me)
    }

    /// What a pthread lock call's result means; `me` is the caller's token.
    #[inline]
    fn outcome(&self, name: &str, code: i32, me: u64) -> Result<LockState> {
        if code == 0 {
            self.holder().store(me, Ordering::Relaxed);
            return Ok(LockState::Acquired);
        }
        self.unusual_outcome(name, code, me)
    }

    /// The outcomes other than a plain lock, kept off the hot path.
    #[cold]
    fn unusual_outcome(&self, name: &str, code: i32, me: u64) -> Result<LockState> {
        match code {
            libc::EOWNERDEAD => {
                // SAFETY: EOWNERDEAD means this thread now holds the mutex.
                unsafe { libc::pthread_mutex_consistent(self.mutex()) };
                self.holder().store(me, Ordering::Relaxed);
                Ok(LockState::OwnerDied)
            }
            libc::EBUSY | libc::ETIMEDOUT => Ok(LockState::Busy),
            libc::EDEADLK => Err(Error::WouldDeadlock {
                name: name.to_owned(),
            }),
            errno => Err(os_error("lock", name, Errno::from_raw_os_error(errno))),
        }
    }
}

/// This thread's token: unique to it among the threads of every process
/// (see the module docs), never 0. A forked child's thread is not the
/// thread it was copied from: it gets a token of its own, drawn from the
/// child's own process key.
#[inline]
fn thread_token() -> u64 {
    thread_local! {
        static TOKEN: std::cell::Cell<(Origin, u64)> =
            std::cell::Cell::new((Origin::here(), new_token()));
    }
    TOKEN.with(|token| {
        let (origin, value) = token.get();
        if origin.is_here() {
            return value;
        }
        let value = new_token();
        token.set((Origin::here(), value));
        value
    })
}

/// A token for a new thread: this process's key (see
/// `sys::forks::process_key`) mixed with a count.
fn new_token() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let process = crate::sys::process_key();
    let thread = NEXT.fetch_add(1, Ordering::Relaxed);
    // splitmix64's finaliser, so neighbouring counts give unrelated tokens.
    let mut x = process ^ thread.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (x ^ (x >> 31)) | 1
}

/// Sets up a robust, process-shared, normal-type mutex at `mutex`.
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
                libc::PTHREAD_MUTEX_NORMAL,
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

/// Sleeping on a word of shared memory until another process changes it:
/// a futex, which needs no OS object.
pub(crate) struct Waker;

impl Waker {
    /// The waker of the words of the object called `_name` (`_which` tells
    /// its wakers apart where each is an OS object; none here).
    pub(crate) fn open(_name: &str, _which: &str, _trust: &Trust) -> Result<Waker> {
        Ok(Waker)
    }

    /// Sleeps while `word == expected`, at most `timeout` (forever when
    /// `None`); may return early (a wake-up, a signal): callers look again.
    pub(crate) fn wait(&self, word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
        let timespec = timeout.map(|timeout| futex::Timespec {
            tv_sec: i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(timeout.subsec_nanos()),
        });
        let _ = futex::wait(word, futex::Flags::empty(), expected, timespec.as_ref());
    }

    /// Wakes up to `count` processes sleeping on `word`.
    pub(crate) fn wake(&self, word: &AtomicU32, count: u32) {
        let _ = futex::wake(word, futex::Flags::empty(), count.min(i32::MAX as u32));
    }
}

/// A participant's seat in an object: proof that the process holding it is
/// alive, without naming the process. Seat `i` is an open-file-description
/// write lock (`F_OFD_SETLK`) on byte [`SEAT_BASE`]` + i` of the object's
/// file. The kernel drops it when the description closes, which a process
/// that dies does, `kill -9` included; the lock belongs to no pid, so it
/// means the same in every pid namespace that sees the file.
pub(crate) struct Seat {
    /// The seat's own open file description of the object, which owns the
    /// lock (kept to unlock it on drop).
    fd: OwnedFd,
    index: u32,
    /// The process that took it. A forked child shares the description,
    /// so the lock on it, but the seat is its parent's to let go.
    origin: Origin,
}

/// Where seat locks start: far past the end of any object, so that they
/// never meet a lock someone takes on the object's bytes.
const SEAT_BASE: libc::off_t = libc::off_t::MAX / 2;

impl Seat {
    /// Takes seat `index` of `object` if no one holds it (`None` if someone
    /// does). `_os_name` names nothing here: the lock is on the object itself.
    pub(crate) fn take(
        object: &Object,
        _os_name: &str,
        index: u32,
        name: &str,
    ) -> Result<Option<Seat>> {
        let fd = own_description(object.fd.as_fd())?;
        match ofd_lock(fd.as_fd(), libc::F_OFD_SETLK, libc::F_WRLCK, index) {
            Ok(_) => {}
            Err(Errno::AGAIN | Errno::ACCESS) => return Ok(None),
            Err(errno) => return Err(os_error("take a seat in", name, errno)),
        }
        Ok(Some(Seat {
            fd,
            index,
            origin: Origin::here(),
        }))
    }

    /// Whether someone holds seat `index` of `object`. Only a write lock
    /// counts, which only a process that may write the object can take, so
    /// a reader cannot make a dead seat look taken. Where the kernel cannot
    /// tell, the seat counts as held: nothing is repaired on a guess.
    /// Every seat has a description of its own, so this process's seats,
    /// the caller's included, read as held (callers know their own).
    pub(crate) fn is_held(object: &Object, _os_name: &str, index: u32, _trust: &Trust) -> bool {
        let found = ofd_lock(object.fd.as_fd(), libc::F_OFD_GETLK, libc::F_RDLCK, index);
        !matches!(found, Ok(kind) if kind == libc::F_UNLCK as libc::c_short)
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        if !self.origin.is_here() {
            return;
        }
        let _ = ofd_lock(
            self.fd.as_fd(),
            libc::F_OFD_SETLK,
            libc::F_UNLCK,
            self.index,
        );
    }
}

/// A new open file description of the file `fd` is open on, for a seat's
/// lock. Locks through one description never conflict, so participants
/// of one object in one process that shared a description (a topic's
/// publisher and its subscriptions share a mapping) would take the same
/// seat, and each read the other's as free. Reopened through
/// `/proc/self/fd`, this process's own descriptor: no path anyone else
/// can change. Without `/proc`, a duplicate (the same description): then
/// only one participant per handle is told apart.
fn own_description(fd: BorrowedFd<'_>) -> Result<OwnedFd> {
    use rustix::fs::{Mode, OFlags};
    let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    let flags = OFlags::RDWR | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK;
    match rustix::fs::open(path.as_str(), flags, Mode::empty()) {
        Ok(own) => Ok(own),
        Err(_) => crate::sys::unix::duplicate(fd),
    }
}

/// `fcntl(fd, command, …)` with an open-file-description lock of type
/// `kind` on seat `index`'s byte; the lock type the kernel left in the
/// request (`F_UNLCK` when `F_OFD_GETLK` found no conflicting lock).
fn ofd_lock(
    fd: BorrowedFd<'_>,
    command: libc::c_int,
    kind: libc::c_int,
    index: u32,
) -> std::result::Result<libc::c_short, Errno> {
    // SAFETY: `flock` is plain data; all-zero is a valid value (l_pid must be 0).
    let mut request: libc::flock = unsafe { std::mem::zeroed() };
    request.l_type = kind as libc::c_short;
    request.l_whence = libc::SEEK_SET as libc::c_short;
    request.l_start = SEAT_BASE + index as libc::off_t;
    request.l_len = 1;
    // SAFETY: a live descriptor, an OFD lock command, and a pointer to a
    // `flock` that outlives the call.
    let result = unsafe { libc::fcntl(fd.as_raw_fd(), command, &mut request) };
    if result == -1 {
        let code = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
        return Err(Errno::from_raw_os_error(code));
    }
    Ok(request.l_type)
}

/// How many words one [`wait_any`] watches besides the doorbell:
/// `futex_waitv` takes 128 in all.
pub(crate) const WATCH_MAX: usize = 127;

/// How long [`wait_any`] naps between looks where the kernel (before
/// Linux 5.16) has no `futex_waitv`.
const POLL_NAP: Duration = Duration::from_millis(1);

/// The waiter thread's own word, beside the words it watches: rung when
/// what it watches changes. A futex on the heap (process-private memory,
/// woken with the same shared-key flags it is waited with).
pub(crate) struct Doorbell {
    word: Box<AtomicU32>,
}

impl Doorbell {
    /// A doorbell nobody rang yet.
    pub(crate) fn new() -> Result<Doorbell> {
        Ok(Doorbell {
            word: Box::new(AtomicU32::new(0)),
        })
    }

    /// What the doorbell reads now: pass it to [`wait_any`], read before
    /// looking at what to watch, so a ring after that look is not missed.
    pub(crate) fn seen(&self) -> u32 {
        self.word.load(Ordering::SeqCst)
    }

    /// Rings: a [`wait_any`] sleeping since an earlier [`seen`](Doorbell::seen) returns.
    pub(crate) fn ring(&self) {
        self.word.fetch_add(1, Ordering::SeqCst);
        let _ = futex::wake(&self.word, futex::Flags::empty(), 1);
    }
}

/// A word [`wait_any`] watches: it returns once `word != expected` or
/// someone wakes sleepers on it through `bell`.
pub(crate) struct Watch<'a> {
    pub(crate) word: &'a AtomicU32,
    pub(crate) expected: u32,
    /// Wakes lone sleepers on the word; the futex is the word itself here.
    #[allow(dead_code)]
    pub(crate) bell: &'a Waker,
}

/// Sleeps until the doorbell reads other than `seen`, one of `watches`
/// (at most [`WATCH_MAX`]) changes or is woken, or `timeout` passes; may
/// return early: the caller looks at what changed. One `futex_waitv`
/// (Linux 5.16); older kernels nap on the doorbell at most [`POLL_NAP`]
/// while there are words to watch.
pub(crate) fn wait_any(
    doorbell: &Doorbell,
    seen: u32,
    watches: &[Watch<'_>],
    timeout: Option<Duration>,
) {
    static NO_WAITV: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !watches.is_empty() && !NO_WAITV.load(Ordering::Relaxed) {
        let mut waits = Vec::with_capacity(watches.len() + 1);
        for (word, expected) in std::iter::once((&*doorbell.word, seen))
            .chain(watches.iter().map(|watch| (watch.word, watch.expected)))
        {
            let mut wait = futex::Wait::new();
            wait.val = u64::from(expected);
            wait.uaddr = futex::WaitPtr::new(word.as_ptr().cast());
            wait.flags = futex::WaitFlags::SIZE_U32;
            waits.push(wait);
        }
        let deadline = timeout.map(|timeout| {
            let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
            let nanos = u64::try_from(now.tv_nsec).unwrap_or(0) + u64::from(timeout.subsec_nanos());
            futex::Timespec {
                tv_sec: now
                    .tv_sec
                    .saturating_add(i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX / 2))
                    .saturating_add((nanos / 1_000_000_000) as i64),
                tv_nsec: (nanos % 1_000_000_000) as i64,
            }
        });
        match futex::waitv(
            &waits,
            futex::WaitvFlags::empty(),
            deadline.as_ref(),
            rustix::time::ClockId::Monotonic,
        ) {
            Err(Errno::NOSYS) => NO_WAITV.store(true, Ordering::Relaxed),
            _ => return,
        }
    }
    let nap = match (watches.is_empty(), timeout) {
        (true, timeout) => timeout,
        (false, Some(timeout)) => Some(timeout.min(POLL_NAP)),
        (false, None) => Some(POLL_NAP),
    };
    Waker.wait(&doorbell.word, seen, nap);
}
