//! What a process made by `fork()` does with the handles it inherited, and
//! how an object pickled for another process opens there by name.
//!
//! `multiprocessing` forks by default on Linux, and a forked child gets
//! every object its parent had, unpickled. A `Mapping`, a `Mutex` and an
//! `Event` need nothing here: the Rust library makes an inherited handle
//! the child's own (a lease on the name and a lock identity of its own).
//! A `Channel` or a `Bus` handle stands for the process that opened it (a
//! participant seat, a group member with its dispatch thread), so the
//! library refuses every use of it in a child with `Error::Inherited`;
//! the Python object then opens the channel (joins the group) anew in this
//! process, with the options it was first opened with, and makes the call
//! once more. The child is told by that error, never by comparing process
//! ids, which mean nothing across pid namespaces.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::errors::IntoPyResult;

/// Makes `call` on `handle`; if the handle turns out to be inherited,
/// makes it once more on the handle `reopen` gives in its place (which
/// must have replaced the inherited one for good, so it is never used
/// again). `call` keeps the Rust error apart from Python's (a signal
/// handler's exception), so that only the library's verdict decides.
pub(crate) fn retried_if_inherited<H: Send + Sync, T>(
    py: Python<'_>,
    handle: Arc<H>,
    reopen: impl FnOnce(&Arc<H>) -> PyResult<Arc<H>>,
    mut call: impl FnMut(&Arc<H>) -> PyResult<shmio::Result<T>>,
) -> PyResult<T> {
    match call(&handle)? {
        Err(shmio::Error::Inherited { .. }) => {
            let fresh = reopen(&handle)?;
            // Dropping the parent's handle touches nothing of the parent's;
            // the slot that held it has let it go already.
            py.detach(|| drop_quietly(handle));
            call(&fresh)?.py(py)
        }
        result => result.py(py),
    }
}

/// Drops `value`, swallowing a panic in its `Drop`: closing is the last
/// thing an object does (at exit, from `close()`, by the garbage
/// collector), and a failure to close is nothing its caller can act on,
/// while a panic would reach Python as a `PanicException`.
pub(crate) fn drop_quietly<T>(value: T) {
    // Unwind safety: nothing of `value` is seen after a panic; it is gone.
    let _ = std::panic::catch_unwind(AssertUnwindSafe(move || drop(value)));
}

/// `callable` with `keywords` bound (`functools.partial`), or itself when
/// there are none: what `__reduce__` returns to reopen an object by name
/// with the options it was opened with.
pub(crate) fn with_keywords<'py>(
    callable: Bound<'py, PyAny>,
    keywords: &Bound<'py, PyDict>,
) -> PyResult<Bound<'py, PyAny>> {
    if keywords.is_empty() {
        return Ok(callable);
    }
    callable
        .py()
        .import("functools")?
        .getattr("partial")?
        .call((callable,), Some(keywords))
}
