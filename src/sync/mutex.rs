//! [`NamedMutex`]: a mutex every thread of every process can take by name,
//! which a holder's death never wedges.
//!
//! Its state is a small named object (`NAME@mutex`), [`MutexObject`]:
//!
//! | offset | field | who changes it |
//! |---|---|---|
//! | 0 | `header: Header`, the object header (see `object.rs`) | the creator, once |
//! | 16 | `mapping: [u64; 2]`, for a mapping's mutex the identity of its mapping (see `object::make_owned`), else 0 | the creator, once |
//! | 32 | spare: the lock's state starts a cache line of its own | |
//! | 64 | `lock: [u8; 1984]`, the platform lock's state (`sys::RobustLock::STATE_LEN` bytes of it: a robust pthread mutex and its holder's token on Linux, a held flag on macOS, none on Windows, whose lock is a kernel object) | the platform's lock |
//! | 2048 | `owner_died: u32`, 1 from the moment a locker finds that the holder died until someone marks the data consistent again | lockers; [`MutexGuard::mark_consistent`] |
//! | 2052 | `unlocks: u32`, a doorbell: counts unlocks made while a future waited | unlockers |
//! | 2056 | `lock_sleepers: u32`, how many futures are about to sleep or sleep on `unlocks` | each [`lock_async`](NamedMutex::lock_async) future, around its sleep |
//! | 2060 | spare, to the object's end at 4096 | |
//!
//! A thread waits for the lock in the platform's lock call. A future cannot
//! (the OS would block its executor's thread): it tries the lock, and
//! sleeps through the process's waiter (`waiter.rs`) on `unlocks`, which
//! an unlocker rings only when `lock_sleepers` says a future sleeps there,
//! so an unlock with no future waiting costs a fence and a load more. A
//! holder that dies rings nothing: a sleeping future finds the lock free
//! (or its owner dead) at its nap's end, within a second.

use std::fmt;
use std::future::poll_fn;
use std::marker::PhantomData;
use std::mem::offset_of;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::Poll;
use std::time::Duration;

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::error::{Error, Result};
use crate::mapping::Window;
use crate::mapping::{Mapping, DEFAULT_MODE};
use crate::name::Name;
use crate::object::{self, Header, ObjectKind, Sharing};
use crate::owner::Trust;
use crate::sys::{self, Disposition, LockState};
use crate::waiter::{Nap, Pause, Step};

/// A cross-process mutex, found by name.
///
/// It excludes every thread of every process, and is not recursive on any
/// platform: locking it again from the thread that holds it is
/// [`Error::WouldDeadlock`], never a silent re-entry. A holder that dies
/// holding it (killed, crashed, `panic = "abort"`) never wedges the others,
/// and its death is never lost: from then on every [`lock`](Self::lock),
/// [`try_lock`](Self::try_lock) and [`lock_timeout`](Self::lock_timeout),
/// in every process, is [`Error::OwnerDied`] (the lock is not kept), until
/// someone takes it with [`lock_to_repair`](Self::lock_to_repair), repairs
/// the data it protects and calls [`MutexGuard::mark_consistent`] (as a
/// poisoned `std::sync::Mutex` stays poisoned until `clear_poison`).
/// The last handle to close removes the name.
///
/// **After `fork()`** a child locks an inherited handle as itself (Linux):
/// its threads are not the parent's, so it waits while the parent holds
/// the lock, and if it dies holding it the others are told the owner died.
/// A guard the child inherited is its parent's hold: dropping the child's
/// copy unlocks nothing. On macOS, whose lock is an `flock` on a
/// description the child shares, an inherited handle is
/// [`Error::Inherited`]: open the mutex again in the child.
///
/// ```
/// use shmio::NamedMutex;
///
/// # let name = format!("shmio-doc-mutex-{}", std::process::id());
/// let mutex = NamedMutex::create_or_open(&name)?;
/// {
///     let _guard = mutex.lock()?; // `?`: an owner that died is an error here
///     // ... read and write the shared data ...
/// }
/// match mutex.lock() {
///     Ok(_guard) => { /* the usual case */ }
///     Err(shmio::Error::OwnerDied { .. }) => {
///         let mut guard = mutex.lock_to_repair()?;
///         // ... repair the shared data ...
///         guard.mark_consistent();
///     }
///     Err(e) => return Err(e),
/// }
/// # Ok::<(), shmio::Error>(())
/// ```
pub struct NamedMutex {
    /// The lock; declared before the object whose memory it points into.
    raw: sys::RobustLock,
    /// The mutex's state: the header, a mapping's identity, the lock's state.
    object: Mapping,
    name: String,
    /// The doorbell of lock futures (`UNLOCKS`), opened when first needed:
    /// on Windows it is a semaphore, which a mutex no future waits on
    /// never makes.
    unlock_bell: OnceLock<Arc<sys::Waker>>,
    /// Whose doorbell `unlock_bell` may open (boxed: rarely read).
    trust: Box<Trust>,
}

/// The mutex's object, as the module docs' table has it: a description of
/// the bytes. Nothing reads or writes it whole: the platform's lock gets a
/// pointer to `lock`, and the owner-died word is reached as an atomic.
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
struct MutexObject {
    header: Header,
    mapping: sys::ObjectId,
    _pad_mapping: [u8; 32],
    lock: [u8; 1984],
    owner_died: u32,
    unlocks: u32,
    lock_sleepers: u32,
    _pad_end: [u8; 2036],
}

/// Where the lock's own state starts in the mutex's object (after the
/// header and, for a mapping's mutex, the mapping's identity; a line of its own).
const STATE: u64 = offset_of!(MutexObject, lock) as u64;
/// The size of a mutex's object.
const SIZE: u64 = size_of::<MutexObject>() as u64;
/// A word that is 1 from the moment a locker finds the holder before it
/// died until someone marks the data consistent again (a line of its own).
const OWNER_DIED: u64 = offset_of!(MutexObject, owner_died) as u64;
/// The doorbell a lock future sleeps on, rung by an unlock.
const UNLOCKS: u64 = offset_of!(MutexObject, unlocks) as u64;
/// How many lock futures sleep on `UNLOCKS` (or are about to).
const LOCK_SLEEPERS: u64 = offset_of!(MutexObject, lock_sleepers) as u64;
// The bytes of this layout version (`object::VERSION`; a number changed
// here changes them); the lock's state keeps a page's alignment to 64
// bytes, and the platform's fits.
const _: () = assert!(STATE == 64 && OWNER_DIED == 2048 && SIZE == 4096);
const _: () = assert!(STATE + sys::RobustLock::STATE_LEN <= OWNER_DIED && OWNER_DIED + 4 <= SIZE);
// `object::make_owned` writes the mapping's identity where this says.
const _: () = assert!(offset_of!(MutexObject, mapping) as u64 == object::OWNER_OFFSET);

/// How a lock call waits.
#[derive(Clone, Copy)]
enum Wait {
    /// Not at all: [`Error::WouldBlock`] if the mutex is held.
    No,
    /// At most this long: [`Error::TimedOut`].
    For(Duration),
    /// As long as it takes.
    Forever,
}

/// Options for creating or opening a [`NamedMutex`]: who may use a new
/// one, and whose existing one may be opened.
///
/// ```
/// use shmio::NamedMutex;
///
/// # let name = format!("shmio-doc-mutex-mode-{}", std::process::id());
/// // Any user in the group may lock it.
/// let mutex = NamedMutex::options().permissions(0o660).create_or_open(&name)?;
/// drop(mutex.lock()?);
/// # Ok::<(), shmio::Error>(())
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct MutexOptions {
    permissions: u32,
    trust: Trust,
    parent_only: bool,
}

impl Default for MutexOptions {
    fn default() -> Self {
        MutexOptions {
            permissions: DEFAULT_MODE,
            trust: Trust::OWN,
            parent_only: false,
        }
    }
}

impl MutexOptions {
    /// Options with every default: owner-only, only the caller's own mutex opened.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the owners whose objects these options accept (for a layer
    /// above that was given its caller's trust).
    pub(crate) fn set_trust(&mut self, trust: Trust) -> &mut Self {
        self.trust = trust;
        self
    }

    /// Makes the mutex part of a handle a forked child cannot use (a
    /// bus's), so that the child gets no share of its name.
    pub(crate) fn parent_only(&mut self) -> &mut Self {
        self.parent_only = true;
        self
    }

    /// Who may make and use the mutex.
    fn sharing(&self) -> Sharing<'_> {
        Sharing {
            permissions: self.permissions,
            trust: &self.trust,
            parent_only: self.parent_only,
            persistent: false,
        }
    }

    crate::owner::sharing_options!("mutex", permissions);

    crate::object::finish_options!(
        NamedMutex,
        "mutex",
        "A holder that died holding it is reported to the next locker."
    );

    /// Creates and/or opens the mutex `name`, as `how` says.
    fn make(&self, name: &str, how: Disposition) -> Result<NamedMutex> {
        let name = Name::new(name)?;
        NamedMutex::make(name.as_str(), how, &self.sharing(), None)
            .map_err(|error| error.of(ObjectKind::Mutex, name.as_str()))
    }

    /// The mutex that [`Mapping::lock`] takes for the named mapping `name`,
    /// whether or not the mapping exists (what `shmio lock NAME` holds):
    /// created or opened as [`Mapping::mutex`] does when the mapping
    /// exists (its permissions, and a holder's death kept for it), else as
    /// by [`create_or_open`](Self::create_or_open).
    ///
    /// ```
    /// use shmio::{Mapping, NamedMutex};
    ///
    /// # let name = format!("shmio-doc-mapping-mutex-{}", std::process::id());
    /// let map = Mapping::create_or_open(&name, 4096)?;
    /// // Excludes every `map.lock()` on the mapping, in any process.
    /// let mutex = NamedMutex::options().create_or_open_for_mapping(&name)?;
    /// drop(mutex.lock()?);
    /// drop(map.lock()?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn create_or_open_for_mapping(&self, name: &str) -> Result<NamedMutex> {
        let opened = Mapping::options()
            .read_only(true)
            .set_trust(self.trust.clone())
            .open(name);
        match opened {
            Ok(map) => NamedMutex::of_mapping(name, map.object(), &self.trust),
            // Kept for "no mapping": the next locker is told of a holder
            // that died, and a mapping made later starts with a fresh mutex.
            Err(Error::NotFound { .. }) => {
                let name = Name::new(name)?;
                NamedMutex::make(
                    &crate::name::lock_name(name.as_str()),
                    Disposition::CreateOrOpen,
                    &self.sharing(),
                    Some(NO_MAPPING),
                )
            }
            Err(error) => Err(error),
        }
    }
}

/// The identity a mapping's mutex records when there is no such mapping.
const NO_MAPPING: sys::ObjectId = [0, 0];

impl NamedMutex {
    /// Opens the mutex called `name`, creating it if there is none, in one
    /// atomic step; [`existed`](Self::existed) tells which happened.
    /// A new mutex is usable by its owner only ([`DEFAULT_MODE`]); another
    /// user's existing one is [`Error::ForeignOwner`] (see [`NamedMutex::options`]).
    pub fn create_or_open(name: &str) -> Result<NamedMutex> {
        NamedMutex::options().create_or_open(name)
    }

    /// Opens an existing mutex.
    pub fn open(name: &str) -> Result<NamedMutex> {
        NamedMutex::options().open(name)
    }

    /// A builder for the other settings: permissions, trusted owners.
    pub fn options() -> MutexOptions {
        MutexOptions::new()
    }

    /// The mutex of the mapping `name` whose object is `object`, opened
    /// trusting `trust`. Whoever may write the mapping may lock it: the
    /// mutex takes its permissions, and trusts the mapping's owner, and
    /// anyone if others may write the mapping (they can do no more harm
    /// with its mutex than with its data). It is this mapping's: a mutex
    /// left by a holder that died is kept (to say so) only for the same
    /// mapping.
    pub(crate) fn of_mapping(
        name: &str,
        object: &sys::Object,
        trust: &Trust,
    ) -> Result<NamedMutex> {
        let permissions = object.permissions().unwrap_or(DEFAULT_MODE);
        let mut trust = trust.and(object.owner());
        if permissions & 0o022 != 0 {
            trust.allow_any(true);
        }
        let sharing = Sharing {
            permissions,
            trust: &trust,
            parent_only: false,
            persistent: false,
        };
        NamedMutex::make(
            &crate::name::lock_name(name),
            Disposition::CreateOrOpen,
            &sharing,
            object.identity(),
        )
    }

    /// Creates and/or opens, as `how` says, the mutex `name` (already
    /// checked or derived by shmio); `owner` is the identity of the mapping
    /// whose mutex this is (see [`object::make_owned`]).
    pub(crate) fn make(
        name: &str,
        how: Disposition,
        sharing: &Sharing<'_>,
        owner: Option<sys::ObjectId>,
    ) -> Result<NamedMutex> {
        let trust = sharing.trust;
        let init = |window: &Window| {
            // SAFETY: the new object's memory, mapped and seen by no other
            // process while the hook runs; STATE + STATE_LEN fits in it (a
            // compile-time check above), and STATE keeps a page's alignment
            // to 64 bytes.
            unsafe { sys::RobustLock::init(window.base().add(STATE as usize), name) }
        };
        let (object, _) = object::make_owned(
            &object::mutex_name(name),
            how,
            SIZE,
            sharing,
            owner,
            ObjectKind::Mutex,
            &init,
        )?;
        let os_name = object.os_name().unwrap_or_default();
        // SAFETY: the lock's state, set up by its creator (the object was
        // checked to be a published mutex), stays mapped while `object`,
        // which the NamedMutex keeps beside the lock and drops after it, lives.
        let raw = unsafe {
            sys::RobustLock::open(name, &os_name, object.base().add(STATE as usize), trust)?
        };
        Ok(NamedMutex {
            raw,
            object,
            name: name.to_owned(),
            unlock_bell: OnceLock::new(),
            trust: Box::new(trust.clone()),
        })
    }

    /// True when an existing mutex was opened rather than created.
    pub fn existed(&self) -> bool {
        self.object.existed()
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Waits for the mutex and takes it. [`Error::OwnerDied`] (and the
    /// mutex not held) while a holder's death is not repaired: see
    /// [`lock_to_repair`](Self::lock_to_repair).
    #[inline]
    pub fn lock(&self) -> Result<MutexGuard<'_>> {
        self.guard(Wait::Forever, false)
    }

    /// Takes the mutex if nobody holds it; [`Error::WouldBlock`] if someone
    /// does, [`Error::OwnerDied`] as for [`lock`](Self::lock).
    pub fn try_lock(&self) -> Result<MutexGuard<'_>> {
        self.guard(Wait::No, false)
    }

    /// Waits at most `timeout` for the mutex; [`Error::TimedOut`] if it
    /// stayed held, [`Error::OwnerDied`] as for [`lock`](Self::lock).
    pub fn lock_timeout(&self, timeout: Duration) -> Result<MutexGuard<'_>> {
        self.guard(Wait::For(timeout), false)
    }

    /// Waits for the mutex and takes it whether or not a holder died
    /// holding it: [`MutexGuard::owner_died`] says whether the data it
    /// protects may be half-changed, and [`MutexGuard::mark_consistent`]
    /// says it is whole again.
    pub fn lock_to_repair(&self) -> Result<MutexGuard<'_>> {
        self.guard(Wait::Forever, true)
    }

    /// As [`lock_to_repair`](Self::lock_to_repair), waiting at most
    /// `timeout` ([`Error::TimedOut`]).
    pub fn lock_to_repair_timeout(&self, timeout: Duration) -> Result<MutexGuard<'_>> {
        self.guard(Wait::For(timeout), true)
    }

    /// Whether a holder died holding the mutex and no one has marked the
    /// data consistent since (read without taking the lock).
    pub fn owner_died(&self) -> Result<bool> {
        Ok(self.owner_died_word()?.load(Ordering::Acquire) == 1)
    }

    /// Awaits the mutex and takes it: the future of [`lock`](Self::lock),
    /// with its results and errors ([`Error::OwnerDied`] included), in any
    /// executor. It tries the lock, spins and yields to its executor for a
    /// while, then sleeps through the process's waiter thread until an
    /// unlock rings (a holder's death within a second).
    ///
    /// The guard is the locking thread's, as [`lock`](Self::lock)'s is (the
    /// OS lock belongs to a thread): it is not `Send`, so a task of a
    /// multi-threaded executor cannot hold it across an `.await` (the
    /// compiler says so); take and drop it between awaits, or lock in a
    /// current-thread runtime.
    ///
    /// **Cancel safety:** the lock is taken in the poll that returns its
    /// guard; a future dropped before it is ready holds nothing and marks
    /// nothing (a holder's death it found stays marked, as for
    /// [`lock`](Self::lock)).
    ///
    /// ```
    /// use shmio::NamedMutex;
    ///
    /// # let name = format!("shmio-doc-mutex-async-{}", std::process::id());
    /// let mutex = NamedMutex::create_or_open(&name)?;
    /// # futures_lite::future::block_on(async {
    /// let guard = mutex.lock_async().await?;
    /// // ... read and write the shared data, awaiting nothing ...
    /// drop(guard);
    /// # Ok::<(), shmio::Error>(()) })?;
    /// # Ok::<(), shmio::Error>(())
    /// ```
    pub async fn lock_async(&self) -> Result<MutexGuard<'_>> {
        let owner_died = self.take_async(false).await?;
        Ok(MutexGuard::new(Holding::Borrowed(self), owner_died))
    }

    /// As [`lock_to_repair`](Self::lock_to_repair), awaiting the mutex
    /// (see [`lock_async`](Self::lock_async)).
    pub async fn lock_to_repair_async(&self) -> Result<MutexGuard<'_>> {
        let owner_died = self.take_async(true).await?;
        Ok(MutexGuard::new(Holding::Borrowed(self), owner_died))
    }

    /// [`take`](Self::take) as a future: tries the lock at every poll,
    /// sleeping on the unlock doorbell in between.
    async fn take_async(&self, repair: bool) -> Result<bool> {
        let unlocks = self.object.atomic_u32(UNLOCKS)?;
        let sleepers = self.object.atomic_u32(LOCK_SLEEPERS)?;
        let mut pause = Pause::new();
        poll_fn(|cx| loop {
            match self.take(Wait::No, repair) {
                Err(Error::WouldBlock) => {}
                taken => {
                    pause.wake_up();
                    return Poll::Ready(taken);
                }
            }
            match pause.step(cx) {
                Step::Look => continue,
                Step::Pending => return Poll::Pending,
                Step::Sleep => {}
            }
            let bell = match self.unlock_bell() {
                Ok(bell) => bell,
                Err(error) => return Poll::Ready(Err(error)),
            };
            // Pairs with the fence in `ring_unlock`: either this try sees
            // the unlock, or the unlocker sees this sleeper and rings.
            let nap = Nap::new(unlocks, sleepers, bell, &self.object);
            match self.take(Wait::No, repair) {
                Err(Error::WouldBlock) => {}
                taken => return Poll::Ready(taken),
            }
            return match pause.sleep(nap, cx) {
                Ok(()) => Poll::Pending,
                Err(error) => Poll::Ready(Err(error)),
            };
        })
        .await
    }

    /// The doorbell of lock futures, opened on first use.
    fn unlock_bell(&self) -> Result<&Arc<sys::Waker>> {
        if let Some(bell) = self.unlock_bell.get() {
            return Ok(bell);
        }
        let os_name = self.object.os_name().unwrap_or_default();
        let bell = Arc::new(sys::Waker::open(&os_name, "unlock", &self.trust)?);
        Ok(self.unlock_bell.get_or_init(|| bell))
    }

    /// Unlocks (the calling thread holds the lock), and rings the unlock
    /// doorbell if a lock future sleeps on it.
    ///
    /// # Safety
    /// The calling thread holds the lock.
    #[inline]
    unsafe fn unlock(&self) {
        // SAFETY: the caller holds the lock.
        unsafe { self.raw.unlock() };
        let (Ok(sleepers), Ok(unlocks)) = (
            self.object.atomic_u32(LOCK_SLEEPERS),
            self.object.atomic_u32(UNLOCKS),
        ) else {
            return;
        };
        // Pairs with a lock future's count and last try (`Nap::new`).
        std::sync::atomic::fence(Ordering::SeqCst);
        let sleeping = sleepers.load(Ordering::SeqCst);
        if sleeping == 0 {
            return;
        }
        unlocks.fetch_add(1, Ordering::SeqCst);
        if let Ok(bell) = self.unlock_bell() {
            bell.wake(unlocks, sleeping);
        }
    }

    /// Takes the lock as `wait` says, and gives its guard.
    fn guard(&self, wait: Wait, repair: bool) -> Result<MutexGuard<'_>> {
        let owner_died = self.take(wait, repair)?;
        Ok(MutexGuard::new(Holding::Borrowed(self), owner_died))
    }

    /// Takes the lock as `wait` says; whether a holder's death is still
    /// unrepaired. Unless `repair`, such a lock is given back at once and
    /// is [`Error::OwnerDied`].
    #[inline]
    fn take(&self, wait: Wait, repair: bool) -> Result<bool> {
        // In a forked child, a first lock makes the child a holder of the
        // mutex's name (see `Mapping::used`).
        self.object.used();
        let state = match wait {
            Wait::No => self.raw.try_lock(&self.name)?,
            Wait::For(timeout) => self.raw.lock(&self.name, Some(timeout))?,
            Wait::Forever => self.raw.lock(&self.name, None)?,
        };
        let word = self.owner_died_word();
        let owner_died = match (state, word) {
            (LockState::Busy, _) => {
                return Err(match wait {
                    Wait::No => Error::WouldBlock,
                    Wait::For(_) => Error::TimedOut {
                        name: self.name.clone(),
                    },
                    Wait::Forever => Error::Os {
                        op: "lock",
                        target: self.name.clone(),
                        source: std::io::Error::other("the lock call returned without the lock")
                            .into(),
                    },
                });
            }
            (LockState::OwnerDied, Ok(word)) => {
                word.store(1, Ordering::Release);
                true
            }
            (LockState::Acquired, Ok(word)) => word.load(Ordering::Acquire) == 1,
            (LockState::Acquired | LockState::OwnerDied, Err(error)) => {
                // SAFETY: this thread took the lock just above.
                unsafe { self.unlock() };
                return Err(error);
            }
        };
        if owner_died && !repair {
            // SAFETY: this thread took the lock just above; no guard was made.
            unsafe { self.unlock() };
            return Err(owner_died_error(&self.name));
        }
        Ok(owner_died)
    }

    /// The word that says a holder's death is unrepaired.
    fn owner_died_word(&self) -> Result<&AtomicU32> {
        self.object.atomic_u32(OWNER_DIED)
    }
}

fn owner_died_error(name: &str) -> Error {
    Error::OwnerDied {
        name: name.to_owned(),
    }
}

// A mapping's own mutex belongs to this layer, so its methods live here.
impl Mapping {
    /// Locks the named mutex that belongs to this mapping: `NAME.mutex`
    /// (aardio's `process.command` convention), opened on first use and
    /// shared by every clone of this handle. The guard does not borrow the
    /// mapping: the cursor methods stay usable under it. A holder's death
    /// is [`Error::OwnerDied`] until repaired, as for [`NamedMutex::lock`]
    /// (see [`lock_to_repair`](Self::lock_to_repair)).
    ///
    /// ```
    /// use std::io::{Seek, SeekFrom, Write};
    /// use shmio::Mapping;
    ///
    /// # let name = format!("shmio-doc-lock-{}", std::process::id());
    /// let mut map = Mapping::create_or_open(&name, 4096)?;
    /// {
    ///     let _guard = map.lock()?;
    ///     let count: u64 = map.read_value_at(0)?;
    ///     map.write_value_at(0, &(count + 1))?;
    ///     map.seek(SeekFrom::Start(8))?;
    ///     map.write_all(b"under the lock")?;
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// An anonymous or file-only mapping has no name, and so no mutex:
    /// [`Error::InvalidOptions`].
    pub fn lock(&self) -> Result<MutexGuard<'static>> {
        self.lock_as(Wait::Forever, false)
    }

    /// As [`lock`](Self::lock), without waiting: [`Error::WouldBlock`] if
    /// the mutex is held.
    pub fn try_lock(&self) -> Result<MutexGuard<'static>> {
        self.lock_as(Wait::No, false)
    }

    /// As [`lock`](Self::lock), waiting at most `timeout`
    /// ([`Error::TimedOut`]).
    pub fn lock_timeout(&self, timeout: Duration) -> Result<MutexGuard<'static>> {
        self.lock_as(Wait::For(timeout), false)
    }

    /// As [`NamedMutex::lock_to_repair`]: the lock, whether or not a holder
    /// died holding it, to repair the mapping's data.
    pub fn lock_to_repair(&self) -> Result<MutexGuard<'static>> {
        self.lock_as(Wait::Forever, true)
    }

    fn lock_as(&self, wait: Wait, repair: bool) -> Result<MutexGuard<'static>> {
        self.used();
        let mutex = self.shared_mutex()?;
        let owner_died = mutex.take(wait, repair)?;
        Ok(MutexGuard::new(
            Holding::Shared(Arc::clone(mutex)),
            owner_died,
        ))
    }

    /// The named mutex that [`lock`](Self::lock) takes.
    pub fn mutex(&self) -> Result<&NamedMutex> {
        self.shared_mutex().map(|mutex| &**mutex)
    }

    fn shared_mutex(&self) -> Result<&Arc<NamedMutex>> {
        self.companion(|map| {
            let Some(name) = map.name() else {
                return Err(Error::InvalidOptions {
                    reason: "only a named mapping has a mutex",
                });
            };
            NamedMutex::of_mapping(name, map.object(), map.trust()).map(Arc::new)
        })
    }
}

impl fmt::Debug for NamedMutex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NamedMutex")
            .field("name", &self.name)
            .field("existed", &self.existed())
            .finish()
    }
}

/// Holds a [`NamedMutex`]; unlocks it on drop. It stays on the thread that
/// locked it (the OS mutexes require that), so it is not `Send`.
///
/// A forked child that inherits a guard does not hold the lock (its parent
/// does): dropping the child's copy leaves the lock to the parent.
#[must_use = "the mutex is unlocked as soon as the guard is dropped"]
pub struct MutexGuard<'a> {
    mutex: Holding<'a>,
    owner_died: bool,
    /// The process whose thread took the lock.
    origin: sys::Origin,
    _not_send: PhantomData<*const ()>,
}

/// The mutex a guard holds: borrowed from a [`NamedMutex`], or shared with
/// the mapping whose mutex it is (so the guard borrows no mapping).
enum Holding<'a> {
    Borrowed(&'a NamedMutex),
    Shared(Arc<NamedMutex>),
}

impl<'a> MutexGuard<'a> {
    fn new(mutex: Holding<'a>, owner_died: bool) -> MutexGuard<'a> {
        MutexGuard {
            mutex,
            owner_died,
            origin: sys::Origin::here(),
            _not_send: PhantomData,
        }
    }

    /// The mutex held.
    pub fn mutex(&self) -> &NamedMutex {
        match &self.mutex {
            Holding::Borrowed(mutex) => mutex,
            Holding::Shared(mutex) => mutex,
        }
    }

    /// Whether a holder died holding the mutex and the data it protects
    /// may be half-changed (only a guard from a `lock_to_repair` says so:
    /// the other lock calls are [`Error::OwnerDied`] then).
    pub fn owner_died(&self) -> bool {
        self.owner_died
    }

    /// Says the data the mutex protects is whole again: from now on the
    /// mutex's lock calls succeed, in every process.
    pub fn mark_consistent(&mut self) {
        if let Ok(word) = self.mutex().owner_died_word() {
            word.store(0, Ordering::Release);
        }
        self.owner_died = false;
    }
}

impl Drop for MutexGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        if !self.origin.is_here() {
            return;
        }
        // SAFETY: a guard exists only while this thread holds the lock, and
        // it is not Send, so this is the holding thread (in the process that
        // took it: a forked child's copy returned above).
        unsafe { self.mutex().unlock() };
    }
}

impl fmt::Debug for MutexGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MutexGuard")
            .field("mutex", &self.mutex().name)
            .field("owner_died", &self.owner_died)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_docs_table_is_the_struct() {
        use crate::doc_tables::{self, layout};
        let layouts = [
            layout!(MutexObject {
                header,
                mapping,
                _pad_mapping,
                lock,
                owner_died,
                unlocks,
                lock_sleepers,
                _pad_end,
            }),
            doc_tables::header(),
        ];
        let rows = doc_tables::check(include_str!("mutex.rs"), &["MutexObject"], &layouts);
        assert_eq!(rows, 8);
    }
}
