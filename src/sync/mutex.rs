//! [`NamedMutex`]: a mutex every thread of every process can take by name,
//! which a holder's death never wedges.

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::mapping::Window;
use crate::mapping::{Mapping, DEFAULT_MODE};
use crate::name::Name;
use crate::object::{self, Kind, Sharing};
use crate::owner::Trust;
use crate::sys::{self, Disposition, LockState};

/// A cross-process mutex, found by name.
///
/// It excludes every thread of every process, and is not recursive on any
/// platform: locking it again from the thread that holds it is
/// [`Error::WouldDeadlock`], never a silent re-entry. A holder that dies
/// holding it (killed, crashed, `panic = "abort"`) never wedges the others:
/// the next `lock` acquires it and returns [`LockError::OwnerDied`], which
/// carries the guard, so the caller can repair the data the mutex protects.
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
///     Err(shmio::LockError::OwnerDied(_guard)) => { /* repair, then go on */ }
///     Err(shmio::LockError::Failed(e)) => return Err(e.into()),
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct NamedMutex {
    /// The lock; declared before the object whose memory it points into.
    raw: sys::RobustLock,
    /// The mutex's state: the header, a mapping's identity, the lock's state.
    object: Mapping,
    name: String,
}

/// Where the lock's own state starts in the mutex's object (after the
/// header and, for a mapping's mutex, the mapping's identity; a line of its own).
const STATE: u64 = 64;
/// The size of a mutex's object.
const SIZE: u64 = 4096;
const _: () = assert!(STATE + sys::RobustLock::STATE_LEN <= SIZE);

/// The result of [`NamedMutex::lock`]: the guard, or why there is none.
pub type LockResult<'a> = std::result::Result<MutexGuard<'a>, LockError<'a>>;

/// The result of [`NamedMutex::try_lock`] and [`NamedMutex::lock_timeout`]:
/// `Ok(None)` when someone else holds it.
pub type TryLockResult<'a> = std::result::Result<Option<MutexGuard<'a>>, LockError<'a>>;

/// Why a lock came back without a plain guard.
///
/// With `?` it becomes a [`shmio::Error`](Error) ([`Error::OwnerDied`]
/// releases the lock), an `io::Error` or a `Box<dyn Error>`; it borrows the
/// mutex, so it is not itself a `std::error::Error` (which would need `'static`).
pub enum LockError<'a> {
    /// The lock is held now, but its previous owner died holding it: the
    /// data it protects may be half-changed. The guard is here; repair the
    /// data, then go on (or drop the guard to unlock).
    OwnerDied(MutexGuard<'a>),
    /// The lock could not be taken.
    Failed(Error),
}

impl<'a> LockError<'a> {
    /// The guard, when the lock is held (its previous owner died).
    pub fn into_guard(self) -> Option<MutexGuard<'a>> {
        match self {
            LockError::OwnerDied(guard) => Some(guard),
            LockError::Failed(_) => None,
        }
    }
}

impl fmt::Debug for LockError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockError::OwnerDied(guard) => {
                f.debug_tuple("OwnerDied").field(&guard.mutex.name).finish()
            }
            LockError::Failed(error) => f.debug_tuple("Failed").field(error).finish(),
        }
    }
}

impl fmt::Display for LockError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockError::OwnerDied(guard) => write!(f, "{}", owner_died(&guard.mutex.name)),
            LockError::Failed(error) => error.fmt(f),
        }
    }
}

// `LockError` borrows its mutex (the guard does), so it cannot be `'static`
// and deliberately does not implement `std::error::Error`: that leaves room
// for the conversions below, so `mutex.lock()?` works in functions that
// return `shmio::Result`, `io::Result` or `Box<dyn Error>` alike.

impl From<LockError<'_>> for Box<dyn std::error::Error> {
    fn from(error: LockError<'_>) -> Self {
        Box::new(Error::from(error))
    }
}

impl From<LockError<'_>> for Box<dyn std::error::Error + Send + Sync> {
    fn from(error: LockError<'_>) -> Self {
        Box::new(Error::from(error))
    }
}

impl From<LockError<'_>> for Error {
    /// An owner that died becomes [`Error::OwnerDied`] (and the lock is released).
    fn from(error: LockError<'_>) -> Error {
        match error {
            LockError::OwnerDied(guard) => owner_died(&guard.mutex.name),
            LockError::Failed(error) => error,
        }
    }
}

impl From<LockError<'_>> for std::io::Error {
    fn from(error: LockError<'_>) -> std::io::Error {
        Error::from(error).into()
    }
}

fn owner_died(name: &str) -> Error {
    Error::OwnerDied {
        name: name.to_owned(),
    }
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
            .map_err(|error| error.of("mutex", name.as_str()))
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
            Kind::Mutex,
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

    /// Waits for the mutex and takes it.
    #[inline]
    pub fn lock(&self) -> LockResult<'_> {
        match self.guard(self.raw.lock(&self.name, None)) {
            Ok(Some(guard)) => Ok(guard),
            Ok(None) => Err(LockError::Failed(Error::Os {
                op: "lock",
                target: self.name.clone(),
                source: std::io::Error::other("the lock call returned without the lock"),
            })),
            Err(error) => Err(error),
        }
    }

    /// Takes the mutex if nobody holds it; `Ok(None)` if someone does.
    pub fn try_lock(&self) -> TryLockResult<'_> {
        self.guard(self.raw.try_lock(&self.name))
    }

    /// Waits at most `timeout` for the mutex; `Ok(None)` if it stayed held.
    pub fn lock_timeout(&self, timeout: Duration) -> TryLockResult<'_> {
        self.guard(self.raw.lock(&self.name, Some(timeout)))
    }

    /// What a lock call's outcome gives the caller.
    #[inline]
    fn guard(&self, state: Result<LockState>) -> TryLockResult<'_> {
        // In a forked child, a first lock makes the child a holder of the
        // mutex's name (see `Mapping::used`).
        self.object.used();
        let guard = || MutexGuard {
            mutex: self,
            origin: sys::Origin::here(),
            _not_send: PhantomData,
        };
        match state {
            Ok(LockState::Acquired) => Ok(Some(guard())),
            Ok(LockState::OwnerDied) => Err(LockError::OwnerDied(guard())),
            Ok(LockState::Busy) => Ok(None),
            Err(error) => Err(LockError::Failed(error)),
        }
    }
}

// A mapping's own mutex belongs to this layer, so its methods live here.
impl Mapping {
    /// Locks the named mutex that belongs to this mapping: `NAME.mutex`
    /// (aardio's `process.command` convention), opened on first use and
    /// shared by every clone of this handle.
    ///
    /// ```
    /// use shmio::Mapping;
    ///
    /// # let name = format!("shmio-doc-lock-{}", std::process::id());
    /// let mut map = Mapping::create_or_open(&name, 4096)?;
    /// {
    ///     let _guard = map.lock()?;
    ///     let count: u64 = map.read_value_at(0)?;
    ///     map.write_value_at(0, &(count + 1))?;
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// An anonymous or file-only mapping has no name, and so no mutex:
    /// [`Error::InvalidOptions`].
    pub fn lock(&self) -> LockResult<'_> {
        self.used();
        let mutex = match self.mutex() {
            Ok(mutex) => mutex,
            Err(error) => return Err(LockError::Failed(error)),
        };
        mutex.lock()
    }

    /// The named mutex that [`lock`](Self::lock) takes.
    pub fn mutex(&self) -> Result<&NamedMutex> {
        self.companion(|map| {
            let Some(name) = map.name() else {
                return Err(Error::InvalidOptions {
                    reason: "only a named mapping has a mutex",
                });
            };
            NamedMutex::of_mapping(name, map.object(), map.trust())
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
    mutex: &'a NamedMutex,
    /// The process whose thread took the lock.
    origin: sys::Origin,
    _not_send: PhantomData<*const ()>,
}

impl MutexGuard<'_> {
    /// The mutex held.
    pub fn mutex(&self) -> &NamedMutex {
        self.mutex
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
        unsafe { self.mutex.raw.unlock() };
    }
}

impl fmt::Debug for MutexGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MutexGuard")
            .field("mutex", &self.mutex.name)
            .finish()
    }
}
