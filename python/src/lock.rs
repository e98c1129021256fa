//! `shmio.Mutex`, a mapping's `lock()`, and `shmio.LockGuard`.
//!
//! A robust mutex is held by a thread, and a Rust `MutexGuard` borrows its
//! mutex, so a hold that lasts across Python calls lives in a thread-local
//! list of guards, each kept beside the `Arc` it borrows (`self_cell`, no
//! `unsafe` here). Releasing takes it out of that list on the same thread;
//! a thread that ends releases what it still holds.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::thread::ThreadId;

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyType;
use shmio::{Mapping, MutexGuard, NamedMutex};

use crate::aio::{self, Awaiting};
use crate::errors::{closed, new_error, IntoPyResult, Kind};
use crate::inherited::drop_quietly;
use crate::unpoisoned;
use crate::wait::{deadline, sliced};

/// What a lock is taken on: a mutex of its own, or a named mapping's.
pub(crate) enum LockSource {
    /// A `shmio.Mutex`.
    Mutex(NamedMutex),
    /// A named mapping, whose mutex (`NAME.mutex`) `Mapping::lock` takes.
    Mapping(Mapping),
}

impl LockSource {
    fn mutex(&self) -> shmio::Result<&NamedMutex> {
        match self {
            LockSource::Mutex(mutex) => Ok(mutex),
            LockSource::Mapping(mapping) => mapping.mutex(),
        }
    }
}

type Guard<'a> = MutexGuard<'a>;

self_cell::self_cell!(
    /// A guard kept with the source it borrows.
    struct Held {
        owner: Arc<LockSource>,
        #[covariant]
        dependent: Guard,
    }
);

/// One hold of this thread: the guard, whether its owner had died, and
/// which hold it is (so a stale `LockGuard` never releases a later hold).
struct Hold {
    held: Held,
    owner_died: bool,
    id: u64,
}

/// The id of the next hold.
static NEXT_HOLD: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// The locks this thread holds for Python code.
    static HOLDS: RefCell<Vec<Hold>> = const { RefCell::new(Vec::new()) };
}

/// Whether this thread holds `source`, and if so whether its owner had died.
fn holding(source: &Arc<LockSource>) -> Option<bool> {
    HOLDS.with(|holds| {
        holds
            .borrow()
            .iter()
            .find(|hold| Arc::ptr_eq(hold.held.borrow_owner(), source))
            .map(|hold| hold.owner_died)
    })
}

/// Tries to take `source` within `slice`, keeping the guard in this
/// thread's list: `Some((owner_died, hold id))` once taken.
fn try_take(
    source: &Arc<LockSource>,
    slice: std::time::Duration,
) -> shmio::Result<Option<(bool, u64)>> {
    let mut owner_died = false;
    let held = Held::try_new(Arc::clone(source), |source| {
        let mutex = source.mutex().map_err(Some)?;
        match mutex.lock_to_repair_timeout(slice) {
            Ok(guard) => {
                owner_died = guard.owner_died();
                Ok(guard)
            }
            Err(error) if error.is_timed_out() => Err(None),
            Err(error) => Err(Some(error)),
        }
    });
    match held {
        Ok(held) => {
            let id = NEXT_HOLD.fetch_add(1, Ordering::Relaxed);
            HOLDS.with(|holds| {
                holds.borrow_mut().push(Hold {
                    held,
                    owner_died,
                    id,
                })
            });
            Ok(Some((owner_died, id)))
        }
        Err(None) => Ok(None),
        Err(Some(error)) => Err(error),
    }
}

/// Waits for `source` (at most `timeout` seconds; None: forever), with
/// the GIL released and Ctrl-C honoured: `Some((owner_died, hold id))` once taken.
pub(crate) fn acquire(
    py: Python<'_>,
    source: &Arc<LockSource>,
    timeout: Option<f64>,
) -> PyResult<Option<(bool, u64)>> {
    let deadline = deadline(py, timeout)?;
    if holding(source).is_some() {
        let name = source.mutex().py(py)?.name().to_owned();
        return Err(new_error(
            py,
            Kind::Deadlock,
            format!("this thread already holds the mutex {name:?}"),
        ));
    }
    // The guard must be made on this thread (it is kept in this thread's
    // list), and `detach` runs its closure on the calling thread.
    sliced(py, deadline, |slice| try_take(source, slice))
}

/// Releases this thread's hold of `source` (only the hold `id`, if
/// given); false if there was none.
pub(crate) fn release(source: &Arc<LockSource>, id: Option<u64>) -> bool {
    let hold = HOLDS.with(|holds| {
        let mut holds = holds.borrow_mut();
        let index = holds.iter().position(|hold| {
            Arc::ptr_eq(hold.held.borrow_owner(), source) && id.is_none_or(|id| hold.id == id)
        })?;
        Some(holds.swap_remove(index))
    });
    // Dropped here, out of the list's borrow: the guard unlocks.
    hold.is_some()
}

/// Says the data under this thread's hold of `source` (only the hold
/// `id`, if given) is whole again (Rust's `MutexGuard::mark_consistent`):
/// the next lockers are no longer told a holder died. False if this
/// thread holds no such hold.
pub(crate) fn mark_consistent(source: &Arc<LockSource>, id: Option<u64>) -> bool {
    HOLDS.with(|holds| {
        let mut holds = holds.borrow_mut();
        let Some(hold) = holds.iter_mut().find(|hold| {
            Arc::ptr_eq(hold.held.borrow_owner(), source) && id.is_none_or(|id| hold.id == id)
        }) else {
            return false;
        };
        hold.held
            .with_dependent_mut(|_, guard| guard.mark_consistent());
        hold.owner_died = false;
        true
    })
}

/// Forgets the holds this thread's list inherited from the parent's
/// forking thread (registered with `os.register_at_fork(after_in_child=...)`):
/// the locks are the parent's, which still holds them, and the child
/// takes them anew (waiting for the parent) rather than finding them held
/// and raising `DeadlockError`. Dropping an inherited guard leaves the
/// lock to the parent.
#[pyfunction(name = "_forget_inherited_holds")]
pub(crate) fn forget_inherited_holds() {
    let inherited = HOLDS.with(|holds| match holds.try_borrow_mut() {
        Ok(mut holds) => std::mem::take(&mut *holds),
        Err(_) => Vec::new(),
    });
    drop_quietly(inherited);
}

fn not_held() -> PyErr {
    PyRuntimeError::new_err("release of a lock this thread does not hold")
}

fn not_held_to_mark() -> PyErr {
    PyRuntimeError::new_err("mark_consistent of a lock this thread does not hold")
}

/// A held lock, as `Mapping.lock()` and `Mutex.lock()` return it; a context
/// manager that releases on exit.
///
/// `owner_died` is True when a holder died holding the lock: the data it
/// protects may be half-changed, and every locker is told so until one
/// calls `mark_consistent()` (Rust's `lock_to_repair`). Release it on the
/// thread that took it.
#[pyclass(module = "shmio", frozen)]
pub(crate) struct LockGuard {
    source: Arc<LockSource>,
    owner_died: AtomicBool,
    hold: u64,
    released: AtomicBool,
    thread: ThreadId,
}

impl LockGuard {
    fn new(source: Arc<LockSource>, owner_died: bool, hold: u64) -> LockGuard {
        LockGuard {
            source,
            owner_died: AtomicBool::new(owner_died),
            hold,
            released: AtomicBool::new(false),
            thread: std::thread::current().id(),
        }
    }

    /// Takes `source` and returns its guard; `shmio.TimeoutError` if the
    /// timeout ran out.
    pub(crate) fn take(
        py: Python<'_>,
        source: Arc<LockSource>,
        timeout: Option<f64>,
    ) -> PyResult<LockGuard> {
        match acquire(py, &source, timeout)? {
            Some((owner_died, hold)) => Ok(LockGuard::new(source, owner_died, hold)),
            None => {
                let name = source.mutex().py(py)?.name().to_owned();
                Err(new_error(
                    py,
                    Kind::Timeout,
                    format!("timed out waiting on {name:?}"),
                ))
            }
        }
    }
}

#[pymethods]
impl LockGuard {
    /// True when a holder died holding the lock and no one has marked the
    /// data consistent since.
    #[getter]
    fn owner_died(&self) -> bool {
        self.owner_died.load(Ordering::SeqCst)
    }

    /// Says the data the lock protects is whole again: later lockers, in
    /// every process, are no longer told a holder died. Call it on the
    /// thread that took the lock, while it holds it.
    fn mark_consistent(&self) -> PyResult<()> {
        if std::thread::current().id() != self.thread
            || self.released.load(Ordering::SeqCst)
            || !mark_consistent(&self.source, Some(self.hold))
        {
            return Err(not_held_to_mark());
        }
        self.owner_died.store(false, Ordering::SeqCst);
        Ok(())
    }

    /// Whether this guard still holds the lock.
    #[getter]
    fn held(&self) -> bool {
        !self.released.load(Ordering::SeqCst)
            && HOLDS.with(|holds| holds.borrow().iter().any(|hold| hold.id == self.hold))
    }

    /// Releases the lock (a second call, or one after the `Mutex` was
    /// released, does nothing). Call it on the thread that took the lock.
    fn release(&self) -> PyResult<()> {
        if std::thread::current().id() != self.thread {
            return Err(PyRuntimeError::new_err(
                "a lock is released on the thread that took it",
            ));
        }
        if !self.released.swap(true, Ordering::SeqCst) {
            release(&self.source, Some(self.hold));
        }
        Ok(())
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<bool> {
        self.release()?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        format!(
            "<shmio.LockGuard held={} owner_died={}>",
            py_bool(self.held()),
            py_bool(self.owner_died())
        )
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        // A guard dropped unreleased (on its own thread) releases, as in Rust.
        if !self.released.load(Ordering::SeqCst) && std::thread::current().id() == self.thread {
            release(&self.source, Some(self.hold));
        }
    }
}

/// A cross-process mutex found by name (created if there is none).
///
/// `acquire(timeout=None) -> bool`, `release()`, `lock(timeout=None) ->
/// LockGuard`, and `with mutex as guard:` (then `guard.owner_died`).
/// It is not recursive: taking it again on the thread that holds it is
/// `DeadlockError`. A holder that dies never wedges it: the next taker
/// gets it with `owner_died` True.
#[pyclass(module = "shmio", name = "Mutex", frozen)]
pub(crate) struct PyMutex {
    source: StdMutex<Option<Arc<LockSource>>>,
    name: String,
}

impl PyMutex {
    fn source(&self, py: Python<'_>) -> PyResult<Arc<LockSource>> {
        let source = unpoisoned::lock(&self.source);
        source.clone().ok_or_else(|| closed(py, "Mutex"))
    }
}

#[pymethods]
impl PyMutex {
    /// Opens the mutex called `name`, creating it if there is none.
    /// `permissions`: the mode bits of a new one (default 0o600).
    #[new]
    #[pyo3(signature = (name, *, permissions=None))]
    fn new(py: Python<'_>, name: &str, permissions: Option<u32>) -> PyResult<Self> {
        let mut options = NamedMutex::options();
        if let Some(permissions) = permissions {
            options.permissions(permissions);
        }
        let mutex = py.detach(|| options.create_or_open(name)).py(py)?;
        Ok(PyMutex {
            name: mutex.name().to_owned(),
            source: StdMutex::new(Some(Arc::new(LockSource::Mutex(mutex)))),
        })
    }

    /// Opens an existing mutex; `NotFoundError` if there is none.
    #[classmethod]
    fn open(_cls: &Bound<'_, PyType>, py: Python<'_>, name: &str) -> PyResult<Self> {
        let mutex = py.detach(|| NamedMutex::open(name)).py(py)?;
        Ok(PyMutex {
            name: mutex.name().to_owned(),
            source: StdMutex::new(Some(Arc::new(LockSource::Mutex(mutex)))),
        })
    }

    /// The name.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// True when an existing mutex was opened rather than created.
    #[getter]
    fn existed(&self, py: Python<'_>) -> PyResult<bool> {
        let source = self.source(py)?;
        Ok(source.mutex().py(py)?.existed())
    }

    /// Takes the mutex, as `threading.Lock.acquire` does: waits at most
    /// `timeout` seconds (-1 or None: for ever) if `blocking`, not at all
    /// if not; whether it was taken. Ctrl-C interrupts the wait.
    #[pyo3(
        signature = (blocking=true, timeout=Some(-1.0)),
        text_signature = "(self, /, blocking=True, timeout=-1)"
    )]
    fn acquire(&self, py: Python<'_>, blocking: bool, timeout: Option<f64>) -> PyResult<bool> {
        let timeout = match (blocking, timeout) {
            (true, Some(-1.0)) => None,
            (true, timeout) => timeout,
            (false, Some(-1.0)) => Some(0.0),
            (false, _) => {
                return Err(pyo3::exceptions::PyValueError::new_err(
                    "can't specify a timeout for a non-blocking call",
                ))
            }
        };
        let source = self.source(py)?;
        Ok(acquire(py, &source, timeout)?.is_some())
    }

    /// Takes the mutex (asyncio), the awaitable of `acquire()`: at most
    /// `timeout` seconds if given; whether it was taken. It tries the lock
    /// and, while another holds it, sleeps with the library's waiter thread
    /// until an unlock; cancelling the task takes nothing. The hold is the
    /// event loop thread's, released with `release()` as `acquire()`'s.
    #[pyo3(signature = (timeout=None))]
    fn acquire_async<'py>(
        slf: &Bound<'py, Self>,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        py.import("shmio._aio")?
            .getattr("acquire")?
            .call1((slf, timeout))
    }

    /// Awaits an unlock (for `acquire_async`): done once the mutex was seen
    /// free, taken and let go at once (or held by a holder that died).
    fn _wait_unlocked<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let source = self.source(py)?;
        let waiting = async move {
            let seen = match source.mutex() {
                Ok(mutex) => mutex.lock_to_repair_async().await.map(drop),
                Err(error) => Err(error),
            };
            aio::none(seen)
        };
        Awaiting::coroutine(py, waiting, None, "")
    }

    /// Whether any thread of any process holds the mutex now (as
    /// `threading.Lock.locked`): a look, which takes nothing.
    fn locked(&self, py: Python<'_>) -> PyResult<bool> {
        let source = self.source(py)?;
        if holding(&source).is_some() {
            return Ok(true);
        }
        let mutex = source.mutex().py(py)?;
        match py.detach(|| mutex.try_lock().map(drop)) {
            Ok(()) | Err(shmio::Error::OwnerDied { .. }) => Ok(false),
            Err(shmio::Error::WouldBlock) => Ok(true),
            Err(error) => Err(error).py(py),
        }
    }

    /// Releases the mutex this thread holds (`RuntimeError` if it holds none).
    fn release(&self, py: Python<'_>) -> PyResult<()> {
        let source = self.source(py)?;
        if release(&source, None) {
            Ok(())
        } else {
            Err(not_held())
        }
    }

    /// Whether this thread holds the mutex.
    #[getter]
    fn held(&self, py: Python<'_>) -> PyResult<bool> {
        Ok(holding(&self.source(py)?).is_some())
    }

    /// Whether this thread holds the mutex and a holder died holding it,
    /// with no one having marked the data consistent since (False when
    /// this thread does not hold it).
    #[getter]
    fn owner_died(&self, py: Python<'_>) -> PyResult<bool> {
        Ok(holding(&self.source(py)?).unwrap_or(false))
    }

    /// Says the data the mutex protects is whole again (see
    /// `LockGuard.mark_consistent`); this thread must hold it.
    fn mark_consistent(&self, py: Python<'_>) -> PyResult<()> {
        if mark_consistent(&self.source(py)?, None) {
            Ok(())
        } else {
            Err(not_held_to_mark())
        }
    }

    /// Takes the mutex and returns its guard; `shmio.TimeoutError` if
    /// `timeout` seconds pass first.
    #[pyo3(signature = (timeout=None))]
    fn lock(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<LockGuard> {
        LockGuard::take(py, self.source(py)?, timeout)
    }

    fn __enter__(&self, py: Python<'_>) -> PyResult<LockGuard> {
        self.lock(py, None)
    }

    /// Whether `close()` was called on this handle.
    #[getter]
    fn closed(&self) -> bool {
        unpoisoned::lock(&self.source).is_none()
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<bool> {
        self.release(py)?;
        Ok(false)
    }

    /// Closes this handle (the name goes with the last handle anywhere).
    fn close(&self, py: Python<'_>) {
        let source = unpoisoned::lock(&self.source).take();
        if let Some(source) = source {
            release(&source, None);
            py.detach(|| drop(source));
        }
    }

    /// Pickles as `Mutex.open(name)`: the mutex is opened by name where it
    /// is unpickled (a child of multiprocessing's spawn or forkserver). A
    /// hold is not pickled: the lock stays with the thread that took it.
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<(Bound<'py, PyAny>, (String,))> {
        slf.get().source(slf.py())?;
        Ok((slf.get_type().getattr("open")?, (slf.get().name.clone(),)))
    }

    fn __repr__(&self) -> String {
        let closed = if self.closed() { " closed" } else { "" };
        format!("<shmio.Mutex {:?}{closed}>", self.name)
    }
}

/// A bool as Python writes it.
fn py_bool(value: bool) -> &'static str {
    if value {
        "True"
    } else {
        "False"
    }
}
