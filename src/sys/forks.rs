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
//! - **Leases.** A name's lease is what a child gets of its own. Just
//!   before a fork (the `prepare` handler) this process opens each object
//!   whose lease passes to children anew, which makes a new open file
//!   description, and takes a shared `flock` on it; the child keeps that
//!   description as its lease, the parent closes its copy (the `parent`
//!   handler). So the child holds the name as any other holder does, from
//!   the moment it exists: the parent's close cannot remove the name from
//!   under it, and its own close removes it only if it is the last holder.
//!   The registry of leases stays locked from `prepare` to the handler that
//!   ends the fork, so no lease is made or let go half-way through one.
//!   A lease that does not pass (a channel's, a bus's: the child cannot use
//!   those handles) or that could not be prepared is the parent's alone:
//!   the child's copy of it does nothing.
//! - **Tokens.** [`process_key`] is new in every child, so what a thread
//!   signs with (a lock's holder token) is never its parent's.
//!
//! `posix_spawn` and `vfork` run no handlers; they exec at once and keep
//! nothing (every descriptor shmio opens is close-on-exec). A raw `clone`
//! system call without `CLONE_VM` is not seen: use `fork()`.

use std::cell::RefCell;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Once, PoisonError};

use rustix::fs::FlockOperation;

/// How many forks this process is from the first process that used shmio
/// (each child adds one): a handle made at another count was made in an
/// ancestor.
static FORKS: AtomicU64 = AtomicU64::new(0);

/// A random value of this process, drawn again in every child (0: not yet).
/// (Linux's lock tokens start from it; macOS's lock knows threads by id.)
#[cfg(target_os = "linux")]
static KEY: AtomicU64 = AtomicU64::new(0);

/// Every lease of this process, for the fork handlers.
static LEASES: Mutex<Vec<Arc<Slot>>> = Mutex::new(Vec::new());

thread_local! {
    /// The registry, held by the forking thread from `prepare` to the
    /// handler that ends the fork (in the parent and in the child).
    static FORKING: RefCell<Option<MutexGuard<'static, Vec<Arc<Slot>>>>> =
        const { RefCell::new(None) };
}

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

/// Registers the fork handlers, once, before the first handle exists.
fn watch_forks() {
    static WATCH: Once = Once::new();
    WATCH.call_once(|| {
        // SAFETY: the three handlers are `extern "C"` functions with no
        // arguments that never unwind (see each); registering cannot fail
        // but for memory, in which case forks are not seen (nothing worse
        // than before shmio looked).
        unsafe {
            libc::pthread_atfork(Some(prepare), Some(in_parent), Some(in_child));
        }
    });
}

/// One lease's state as the fork handlers see it.
struct Slot {
    /// The descriptor whose open file description holds the lease in the
    /// process that made it (the object's, or a lease file's); it stays
    /// open while the lease lives, in that process and in its children.
    made_with: RawFd,
    /// Whether a forked child gets a lease of its own.
    passes: bool,
    /// This process's own description and lock, when the lease was made in
    /// an ancestor and passed to this process at fork (-1 otherwise).
    own: AtomicI32,
    /// The description prepared for the child being forked now (-1 outside
    /// a fork).
    for_child: AtomicI32,
    /// Whether this process has no share in the lease (made in an ancestor
    /// and not passed on): letting it go does nothing.
    inherited: AtomicBool,
}

/// A holder's share in a name's lease, as far as forks go: which
/// descriptor holds this process's shared lock (see the module docs).
pub(crate) struct LeaseLock {
    slot: Arc<Slot>,
}

impl LeaseLock {
    /// The lease held through `fd`'s open file description (a shared
    /// `flock` on it); `passes`: whether a forked child gets one of its own.
    pub(crate) fn new(fd: BorrowedFd<'_>, passes: bool) -> LeaseLock {
        watch_forks();
        let slot = Arc::new(Slot {
            made_with: std::os::fd::AsRawFd::as_raw_fd(&fd),
            passes,
            own: AtomicI32::new(-1),
            for_child: AtomicI32::new(-1),
            inherited: AtomicBool::new(false),
        });
        leases().push(Arc::clone(&slot));
        LeaseLock { slot }
    }

    /// The descriptor whose description holds this process's shared lock,
    /// `made_with` (the one the lease was made with) unless this process
    /// was given its own at fork; `None` if this process has no share.
    pub(crate) fn fd<'a>(&'a self, made_with: BorrowedFd<'a>) -> Option<BorrowedFd<'a>> {
        if self.slot.inherited.load(Ordering::Relaxed) {
            return None;
        }
        match self.slot.own.load(Ordering::Relaxed) {
            -1 => Some(made_with),
            // SAFETY: `own` is a descriptor this slot owns; it is closed
            // only when the slot is dropped (or replaced in a child, which
            // has no other thread), after every borrow of `self`.
            own => Some(unsafe { BorrowedFd::borrow_raw(own) }),
        }
    }
}

impl Drop for LeaseLock {
    fn drop(&mut self) {
        leases().retain(|slot| !Arc::ptr_eq(slot, &self.slot));
        let own = self.slot.own.swap(-1, Ordering::Relaxed);
        if own != -1 {
            // SAFETY: the slot owned `own`, and nothing borrows it any more.
            drop(unsafe { OwnedFd::from_raw_fd(own) });
        }
    }
}

/// The registry, locked (a panic while it was held left nothing half-done:
/// every change to it is one call).
fn leases() -> MutexGuard<'static, Vec<Arc<Slot>>> {
    LEASES.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Before a fork, in the forking thread: locks the registry and prepares
/// a lease for the child of each lease that passes.
extern "C" fn prepare() {
    // Nothing here may unwind into C: a panic would abort, so there is
    // nothing here that panics (no indexing, no unwrap).
    let leases = leases();
    for slot in leases.iter() {
        if !slot.passes || slot.inherited.load(Ordering::Relaxed) {
            continue;
        }
        let current = match slot.own.load(Ordering::Relaxed) {
            -1 => slot.made_with,
            own => own,
        };
        // SAFETY: `current` stays open while its slot is in the registry,
        // which stays locked until the fork is over.
        let current = unsafe { BorrowedFd::borrow_raw(current) };
        if let Some(fd) = super::os::reopen(current) {
            if rustix::fs::flock(&fd, FlockOperation::NonBlockingLockShared).is_ok() {
                slot.for_child.store(fd.into_raw_fd(), Ordering::Relaxed);
            }
        }
    }
    let _ = FORKING.try_with(|held| {
        if let Ok(mut held) = held.try_borrow_mut() {
            *held = Some(leases);
        }
    });
}

/// After a fork, in the parent: the child's leases are the child's.
extern "C" fn in_parent() {
    let _ = FORKING.try_with(|held| {
        let Ok(mut held) = held.try_borrow_mut() else {
            return;
        };
        if let Some(leases) = held.as_ref() {
            for slot in leases.iter() {
                let fd = slot.for_child.swap(-1, Ordering::Relaxed);
                if fd != -1 {
                    // SAFETY: `prepare` made `fd` for the child; the parent's
                    // copy is this process's to close.
                    drop(unsafe { OwnedFd::from_raw_fd(fd) });
                }
            }
        }
        *held = None;
    });
}

/// After a fork, in the child (its only thread): count the fork, forget
/// the parent's key, and take the leases prepared for it. Only atomics,
/// `close` and the unlocking of the registry happen here.
extern "C" fn in_child() {
    FORKS.fetch_add(1, Ordering::Relaxed);
    #[cfg(target_os = "linux")]
    KEY.store(0, Ordering::Relaxed);
    let _ = FORKING.try_with(|held| {
        let Ok(mut held) = held.try_borrow_mut() else {
            return;
        };
        if let Some(leases) = held.as_ref() {
            for slot in leases.iter() {
                let mine = slot.for_child.swap(-1, Ordering::Relaxed);
                let parents = slot.own.swap(mine, Ordering::Relaxed);
                slot.inherited.store(mine == -1, Ordering::Relaxed);
                if parents != -1 {
                    // SAFETY: the parent's own lease, which this child
                    // inherited a copy of and must not keep alive.
                    drop(unsafe { OwnedFd::from_raw_fd(parents) });
                }
            }
        }
        *held = None;
    });
}

/// Whether `a` and `b` are the same file (device and inode).
pub(in crate::sys) fn same_file(a: BorrowedFd<'_>, b: impl AsFd) -> bool {
    match (rustix::fs::fstat(a), rustix::fs::fstat(b)) {
        (Ok(a), Ok(b)) => a.st_dev == b.st_dev && a.st_ino == b.st_ino,
        _ => false,
    }
}
