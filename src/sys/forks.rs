//! What a forked child inherits, and what of it is its own.
//!
//! `fork()` copies a process: its memory, so every handle the parent had,
//! and its descriptors, which share their open file descriptions with the
//! parent's, and with them the locks that live on a description (a name's
//! `flock` lease, a seat's `F_OFD_SETLK`). A child that used those would act
//! as its parent: its close would remove the parent's name, its seat would
//! be the parent's, its lock token the parent's thread's. So:
//!
//! - **Origin.** A handle that stands for its process (a seat, a held lock,
//!   a channel's participant, a bus member) records the [`Origin`] it was
//!   made in. In a forked child it is not [`Origin::is_here`]: the layers
//!   above refuse to use it and drop it without touching what it stands for.
//!   Forks are counted by a `pthread_atfork` child handler, never by pid: a
//!   pid means nothing in another pid namespace, and a child made with
//!   `unshare(CLONE_NEWPID)` may have its parent's number.
//! - **Leases.** A name's lease is what a child may get of its own
//!   ([`LeaseLock`]). A child's copy of a lease is no share at all until the
//!   child first uses the handle (the layers above call
//!   `Object::share_here`): then, if the lease passes to children and the
//!   name is still the object, the child opens the object anew (a new open
//!   file description) and takes its own shared `flock` there, and from
//!   then on it holds the name as any other holder does. Not at the fork:
//!   most forks exec at once (every `Command` with a `pre_exec` hook), and a
//!   lease held by such a child between its fork and its exec would make a
//!   parent that closes in that moment think it is not the last holder,
//!   and leave the name stale. A lease that does not pass (a channel's, a
//!   bus's: the child cannot use those handles) is never the child's.
//! - **Tokens.** [`process_key`] is new in every child, so what a thread
//!   signs with (a lock's holder token) is never its parent's.
//!
//! `posix_spawn` and `vfork` run no handlers; they exec at once and keep
//! nothing (every descriptor shmio opens is close-on-exec). A raw `clone`
//! system call without `CLONE_VM` is not seen: use `fork()`.

use std::os::fd::{AsFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;

/// How many forks this process is from the first process that used shmio
/// (each child adds one): a handle made at another count was made in an
/// ancestor.
static FORKS: AtomicU64 = AtomicU64::new(0);

/// A random value of this process, drawn again in every child (0: not yet).
/// (Linux's lock tokens start from it; macOS's lock knows threads by id.)
#[cfg(target_os = "linux")]
static KEY: AtomicU64 = AtomicU64::new(0);

/// The process a handle was made in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Origin(u64);

impl Origin {
    /// This process.
    #[inline]
    pub(crate) fn here() -> Origin {
        watch_forks();
        Origin(FORKS.load(Ordering::Relaxed))
    }

    /// Whether this is still the process the handle was made in (false in
    /// a forked child).
    #[inline]
    pub(crate) fn is_here(self) -> bool {
        FORKS.load(Ordering::Relaxed) == self.0
    }
}

/// A value of this process that no other process has (a forked child gets
/// its own), never 0: what a lock's thread tokens start from.
#[cfg(target_os = "linux")]
pub(crate) fn process_key() -> u64 {
    watch_forks();
    let key = KEY.load(Ordering::Relaxed);
    if key != 0 {
        return key;
    }
    let fresh = fresh_key();
    match KEY.compare_exchange(0, fresh, Ordering::Relaxed, Ordering::Relaxed) {
        Ok(_) => fresh,
        Err(drawn) => drawn,
    }
}

/// A new key: this process's id, two clocks and the forks so far, mixed.
/// Two processes alive at once have different ids in one pid namespace,
/// and in two namespaces the clocks tell them apart.
#[cfg(target_os = "linux")]
fn fresh_key() -> u64 {
    use rustix::time::{clock_gettime, ClockId};
    let nanos = |clock| {
        let time = clock_gettime(clock);
        (time.tv_sec as u64)
            .wrapping_mul(1_000_000_000)
            .wrapping_add(time.tv_nsec as u64)
    };
    let mut x = u64::from(
        rustix::process::getpid()
            .as_raw_nonzero()
            .get()
            .unsigned_abs(),
    );
    for part in [
        nanos(ClockId::Realtime),
        nanos(ClockId::Monotonic),
        FORKS.load(Ordering::Relaxed),
    ] {
        // splitmix64's finaliser over each part in turn.
        x = (x ^ part).wrapping_add(0x9e37_79b9_7f4a_7c15);
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^= x >> 31;
    }
    x | 1
}

/// Registers the fork handler, once, before the first handle exists.
fn watch_forks() {
    static WATCH: Once = Once::new();
    WATCH.call_once(|| {
        // SAFETY: the handler is an `extern "C"` function with no arguments
        // that only stores to atomics. Registering fails only for want of
        // memory; forks are then not seen (nothing worse than before).
        unsafe {
            libc::pthread_atfork(None, None, Some(in_child));
        }
    });
}

/// After a fork, in the child (its only thread): count the fork and forget
/// the parent's key. Atomic stores only, as a handler must.
extern "C" fn in_child() {
    FORKS.fetch_add(1, Ordering::Relaxed);
    #[cfg(target_os = "linux")]
    KEY.store(0, Ordering::Relaxed);
}

/// The share of the lease held through the description the lease was made
/// with (the object's, or a lease file's).
const MADE_WITH: u32 = 0;
/// No share: a forked child's copy that does not pass to children, or
/// whose name was gone when the child first used it.
const NO_SHARE: u32 = 1;
/// A thread of this process is taking its share right now.
const TAKING: u32 = 2;
/// Codes from here on are a description of this process's own: fd + OWN.
const OWN: u32 = 3;

/// A holder's share in a name's lease, as far as forks go: which
/// descriptor, if any, holds this process's shared lock (see the module
/// docs).
///
/// One word says it, so that a forked child sees at once that it is not the
/// state of its own process: the fork count it is for (its low 32 bits) and
/// a code (`MADE_WITH`, `NO_SHARE`, `TAKING`, or `OWN` + a descriptor).
pub(crate) struct LeaseLock {
    state: AtomicU64,
    /// Whether a forked child may take a share of its own.
    passes: bool,
}

impl LeaseLock {
    /// The share of a holder whose shared lock is on the description the
    /// lease is made with; `passes`: whether a forked child may take one.
    pub(crate) fn new(passes: bool) -> LeaseLock {
        watch_forks();
        LeaseLock {
            state: AtomicU64::new(state_of(forks(), MADE_WITH)),
            passes,
        }
    }

    /// The descriptor whose description holds this process's share:
    /// `made_with` (the one the lease was made with), or one of this
    /// process's own. In a forked child that has no share yet, `take` is
    /// asked for one, given the descriptor the parent's share is on: a new
    /// description of the object, locked shared, if its name is still the
    /// object (`None` if not). `None`: this process has no share.
    pub(crate) fn share<'a>(
        &'a self,
        made_with: BorrowedFd<'a>,
        take: impl FnOnce(BorrowedFd<'_>) -> Option<OwnedFd>,
    ) -> Option<BorrowedFd<'a>> {
        let now = forks();
        let mut take = Some(take);
        loop {
            let state = self.state.load(Ordering::Acquire);
            if is_for(state, now) {
                match code_of(state) {
                    TAKING => std::hint::spin_loop(),
                    code => return self.fd_of(code, made_with),
                }
                continue;
            }
            // A state of an ancestor: this process takes its own share, once.
            let claimed = self.state.compare_exchange(
                state,
                state_of(now, TAKING),
                Ordering::Acquire,
                Ordering::Acquire,
            );
            if claimed.is_err() {
                continue;
            }
            let inherited = code_of(state);
            let code = match (self.passes, inherited, take.take()) {
                (true, MADE_WITH, Some(take)) => take(made_with),
                (true, code, Some(take)) if code >= OWN => {
                    // SAFETY: the ancestor's own descriptor, which this
                    // process has a copy of until the end of this block.
                    take(unsafe { BorrowedFd::borrow_raw(fd_in(code)) })
                }
                _ => None,
            }
            .map_or(NO_SHARE, |fd| code_for(fd.into_raw_fd()));
            if inherited >= OWN {
                // SAFETY: this process's copy of its ancestor's share,
                // which it must not keep alive, and nothing borrows it now.
                drop(unsafe { OwnedFd::from_raw_fd(fd_in(inherited)) });
            }
            self.state.store(state_of(now, code), Ordering::Release);
            return self.fd_of(code, made_with);
        }
    }

    /// This process's share, without taking one: `None` in a forked child
    /// that never took one (its copy of the lease lets go of nothing).
    pub(crate) fn held<'a>(&'a self, made_with: BorrowedFd<'a>) -> Option<BorrowedFd<'a>> {
        let state = self.state.load(Ordering::Acquire);
        if !is_for(state, forks()) {
            return None;
        }
        self.fd_of(code_of(state), made_with)
    }

    /// The descriptor a code says.
    fn fd_of<'a>(&'a self, code: u32, made_with: BorrowedFd<'a>) -> Option<BorrowedFd<'a>> {
        match code {
            MADE_WITH => Some(made_with),
            NO_SHARE | TAKING => None,
            // SAFETY: a descriptor of this process's own share, closed only
            // when `self` is dropped (after every borrow of it).
            code => Some(unsafe { BorrowedFd::borrow_raw(fd_in(code)) }),
        }
    }
}

impl Drop for LeaseLock {
    /// Closes this process's own description (its share goes with it), or
    /// its copy of an ancestor's.
    fn drop(&mut self) {
        let code = code_of(*self.state.get_mut());
        if code >= OWN {
            // SAFETY: the descriptor the state owns, borrowed by no one now.
            drop(unsafe { OwnedFd::from_raw_fd(fd_in(code)) });
        }
    }
}

/// The forks so far, as a state keeps them.
fn forks() -> u32 {
    FORKS.load(Ordering::Relaxed) as u32
}

fn state_of(forks: u32, code: u32) -> u64 {
    u64::from(forks) << 32 | u64::from(code)
}

fn is_for(state: u64, forks: u32) -> bool {
    (state >> 32) as u32 == forks
}

fn code_of(state: u64) -> u32 {
    state as u32
}

fn code_for(fd: RawFd) -> u32 {
    fd.unsigned_abs() + OWN
}

fn fd_in(code: u32) -> RawFd {
    (code - OWN) as RawFd
}

/// Whether `a` and `b` are the same file (device and inode).
pub(in crate::sys) fn same_file(a: BorrowedFd<'_>, b: impl AsFd) -> bool {
    match (rustix::fs::fstat(a), rustix::fs::fstat(b)) {
        (Ok(a), Ok(b)) => a.st_dev == b.st_dev && a.st_ino == b.st_ino,
        _ => false,
    }
}
