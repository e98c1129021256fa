//! `shmio.Event`: a flag one process sets and others wait for, by name.

use std::sync::{Arc, Mutex as StdMutex};

use pyo3::prelude::*;
use pyo3::types::PyType;
use shmio::{EventMode, NamedEvent};

use crate::aio::{Awaiting, Made};
use crate::errors::{closed, IntoPyResult};
use crate::unpoisoned;
use crate::wait::{deadline, sliced};

/// A cross-process event found by name (created, unset, if there is none).
///
/// Auto reset (the default, unlike `threading.Event`): a `set()` wakes one
/// waiter and resets as that waiter returns. `manual_reset=True` behaves as
/// `threading.Event`: a `set()` wakes every waiter and stays set until
/// `clear()` (or `reset()`). The creator's mode holds for everyone.
#[pyclass(module = "shmio", name = "Event", frozen)]
pub(crate) struct PyEvent {
    event: StdMutex<Option<Arc<NamedEvent>>>,
    name: String,
}

impl PyEvent {
    fn event(&self, py: Python<'_>) -> PyResult<Arc<NamedEvent>> {
        let event = unpoisoned::lock(&self.event);
        event.clone().ok_or_else(|| closed(py, "Event"))
    }

    fn wrap(event: NamedEvent) -> PyEvent {
        PyEvent {
            name: event.name().to_owned(),
            event: StdMutex::new(Some(Arc::new(event))),
        }
    }
}

#[pymethods]
impl PyEvent {
    /// Opens the event called `name`, creating it if there is none (in
    /// manual-reset mode if `manual_reset`, else auto reset). Given,
    /// `manual_reset` must match an existing event's (`InvalidError` if
    /// not); None takes the existing event's mode.
    #[new]
    #[pyo3(signature = (name, manual_reset=None, *, permissions=None))]
    fn new(
        py: Python<'_>,
        name: &str,
        manual_reset: Option<bool>,
        permissions: Option<u32>,
    ) -> PyResult<Self> {
        let mut options = NamedEvent::options();
        if let Some(manual_reset) = manual_reset {
            options.reset(if manual_reset {
                EventMode::ManualReset
            } else {
                EventMode::AutoReset
            });
        }
        if let Some(permissions) = permissions {
            options.permissions(permissions);
        }
        py.detach(|| options.create_or_open(name))
            .py(py)
            .map(PyEvent::wrap)
    }

    /// Opens an existing event, in its creator's mode; `NotFoundError` if there is none.
    #[classmethod]
    fn open(_cls: &Bound<'_, PyType>, py: Python<'_>, name: &str) -> PyResult<Self> {
        py.detach(|| NamedEvent::open(name))
            .py(py)
            .map(PyEvent::wrap)
    }

    /// The name.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// True when an existing event was opened rather than created.
    #[getter]
    fn existed(&self, py: Python<'_>) -> PyResult<bool> {
        Ok(self.event(py)?.existed())
    }

    /// Whether the event resets only on `reset()` (the creator's choice).
    #[getter]
    fn manual_reset(&self, py: Python<'_>) -> PyResult<bool> {
        Ok(self.event(py)?.mode() == EventMode::ManualReset)
    }

    /// Sets the event: wakes one waiter (auto reset) or all (manual reset).
    fn set(&self, py: Python<'_>) -> PyResult<()> {
        self.event(py)?.set().py(py)
    }

    /// Clears the event.
    fn reset(&self, py: Python<'_>) -> PyResult<()> {
        self.event(py)?.reset().py(py)
    }

    /// Whether the event is set, taking nothing (`threading.Event.is_set`).
    fn is_set(&self, py: Python<'_>) -> PyResult<bool> {
        self.event(py)?.is_set().py(py)
    }

    /// Clears the event (`threading.Event.clear`; the same as `reset`).
    fn clear(&self, py: Python<'_>) -> PyResult<()> {
        self.event(py)?.reset().py(py)
    }

    /// Waits at most `timeout` seconds (None: forever) for the event (and,
    /// in auto-reset mode, takes it); whether it was set. Ctrl-C interrupts.
    #[pyo3(signature = (timeout=None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let event = self.event(py)?;
        let deadline = deadline(py, timeout)?;
        let set = sliced(py, deadline, |slice| match event.wait_timeout(slice) {
            Ok(()) => Ok(Some(())),
            Err(error) if error.is_timed_out() => Ok(None),
            Err(error) => Err(error),
        })?;
        Ok(set.is_some())
    }

    /// Awaits the event (asyncio; in auto-reset mode, takes it): the
    /// awaitable of `wait`, at most `timeout` seconds if given; whether it
    /// was set. Cancelling the task takes nothing.
    #[pyo3(signature = (timeout=None))]
    fn wait_async<'py>(
        &self,
        py: Python<'py>,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let event = self.event(py)?;
        let waiting = async move {
            let set = event.wait_async().await;
            Box::new(move |py: Python<'_>| {
                set.py(py)?;
                Ok(true.into_pyobject(py)?.to_owned().into_any().unbind())
            }) as Made
        };
        let message = format!("timed out waiting on {:?}", self.name);
        Awaiting::coroutine_or(
            py,
            waiting,
            timeout,
            &message,
            false.into_pyobject(py)?.to_owned().into_any(),
        )
    }

    /// Closes this handle (the name goes with the last handle anywhere).
    fn close(&self, py: Python<'_>) {
        let event = unpoisoned::lock(&self.event).take();
        py.detach(|| drop(event));
    }

    /// Whether `close()` was called on this handle.
    #[getter]
    fn closed(&self) -> bool {
        unpoisoned::lock(&self.event).is_none()
    }

    fn __enter__(slf: Py<Self>, py: Python<'_>) -> PyResult<Py<Self>> {
        slf.get().event(py)?;
        Ok(slf)
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, pyo3::types::PyTuple>) -> bool {
        self.close(py);
        false
    }

    /// Pickles as `Event.open(name)`: the event is opened by name where it
    /// is unpickled (a child of multiprocessing's spawn or forkserver).
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<(Bound<'py, PyAny>, (String,))> {
        slf.get().event(slf.py())?;
        Ok((slf.get_type().getattr("open")?, (slf.get().name.clone(),)))
    }

    fn __repr__(&self) -> String {
        let closed = if self.closed() { " closed" } else { "" };
        format!("<shmio.Event {:?}{closed}>", self.name)
    }
}
