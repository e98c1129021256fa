//! asyncio's awaitables: a future of the library (`Channel::recv_async`
//! and the like), held by an [`Awaiting`] that the driver coroutine
//! `shmio._aio.drive` polls on the event loop's thread. The waker it polls
//! with hands a wake-up to the loop (`loop.call_soon_threadsafe`), from
//! whichever thread wakes it (the library's waiter thread, most often), so
//! no thread waits per awaitable and an idle one costs no CPU.
//!
//! Cancelling the task (`asyncio.wait_for`, Ctrl-C under `asyncio.run`)
//! drops the Rust future (`Awaiting::cancel`, in the driver's `finally`),
//! with the library's cancel safety: nothing taken is lost.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex as StdMutex};
use std::task::{Context, Poll, Wake, Waker};

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::errors::{invalid, IntoPyResult};
use crate::unpoisoned;

/// What a finished future gives: its Python value, made with the GIL.
pub(crate) type Made = Box<dyn FnOnce(Python<'_>) -> PyResult<Py<PyAny>> + Send>;

/// What a future that gives nothing gives Python: None, or its error.
pub(crate) fn none(done: shmio::Result<()>) -> Made {
    Box::new(move |py: Python<'_>| {
        done.py(py)?;
        Ok(py.None())
    })
}

/// What a future that receives a message gives Python: `bytes`, or its
/// error.
pub(crate) fn bytes(received: shmio::Result<Vec<u8>>) -> Made {
    Box::new(move |py: Python<'_>| {
        let message = received.py(py)?;
        Ok(PyBytes::new(py, &message).into_any().unbind())
    })
}

/// A library future on its way to a [`Made`].
type Op = Pin<Box<dyn Future<Output = Made> + Send>>;

/// A library future for asyncio: `poll(wake)` once per wake-up, by the
/// driver coroutine (`shmio._aio.drive`), which awaits it.
#[pyclass(module = "shmio", name = "_Awaiting", frozen)]
pub(crate) struct Awaiting {
    op: StdMutex<Option<Op>>,
}

impl Awaiting {
    /// The coroutine that awaits `future` on the running event loop, at
    /// most `timeout` seconds if given (then shmio's `TimeoutError`, which
    /// says `timed_out`).
    pub(crate) fn coroutine<'py>(
        py: Python<'py>,
        future: impl Future<Output = Made> + Send + 'static,
        timeout: Option<f64>,
        timed_out: &str,
    ) -> PyResult<Bound<'py, PyAny>> {
        Awaiting::drive(py, future, timeout, timed_out, None)
    }

    /// As [`coroutine`](Self::coroutine), giving `instead` rather than
    /// raising when `timeout` passes (`Event.wait_async`'s False).
    pub(crate) fn coroutine_or<'py>(
        py: Python<'py>,
        future: impl Future<Output = Made> + Send + 'static,
        timeout: Option<f64>,
        timed_out: &str,
        instead: Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        Awaiting::drive(py, future, timeout, timed_out, Some(instead))
    }

    fn drive<'py>(
        py: Python<'py>,
        future: impl Future<Output = Made> + Send + 'static,
        timeout: Option<f64>,
        timed_out: &str,
        instead: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let awaiting = Awaiting {
            op: StdMutex::new(Some(Box::pin(future))),
        };
        let drive = py.import("shmio._aio")?.getattr("drive")?;
        match instead {
            None => drive.call1((awaiting, timeout, timed_out)),
            Some(instead) => drive.call1((awaiting, timeout, timed_out, instead)),
        }
    }
}

#[pymethods]
impl Awaiting {
    /// Polls the future once: `(True, value)` when it is done, else
    /// `(False, None)`, and `wake()` will be called (from any thread) when
    /// it should be polled again.
    fn poll(&self, py: Python<'_>, wake: Py<PyAny>) -> PyResult<(bool, Py<PyAny>)> {
        let waker = Waker::from(Arc::new(LoopWaker(wake)));
        let polled = py.detach(|| {
            let mut slot = unpoisoned::lock(&self.op);
            let op = slot.as_mut()?;
            let mut cx = Context::from_waker(&waker);
            match op.as_mut().poll(&mut cx) {
                Poll::Ready(made) => {
                    *slot = None;
                    Some(Some(made))
                }
                Poll::Pending => Some(None),
            }
        });
        match polled {
            None => Err(invalid(py, "this awaitable has finished or was cancelled")),
            Some(Some(made)) => Ok((true, made(py)?)),
            Some(None) => Ok((false, py.None())),
        }
    }

    /// Drops the future (a cancelled task): what it had not taken stays.
    fn cancel(&self, py: Python<'_>) {
        let op = unpoisoned::lock(&self.op).take();
        py.detach(move || drop(op));
    }
}

/// A waker that asks the event loop to poll again: it calls the driver's
/// `wake` (a `loop.call_soon_threadsafe`) with the GIL. What that raises
/// (a loop closed since) is dropped: no one waits any more. The library
/// may wake with a lock of its own held (the bus's mailroom); no thread
/// holding the GIL waits for those, as every call of these bindings into
/// the bus is made detached.
struct LoopWaker(Py<PyAny>);

impl Wake for LoopWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        Python::attach(|py| {
            if let Err(error) = self.0.call0(py) {
                drop(error);
            }
        });
    }
}
