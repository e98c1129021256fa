//! `shmio.Channel`: a bounded multi-producer multi-consumer message queue
//! between processes, by name.

use std::sync::{Arc, Mutex as StdMutex};

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple, PyType};
use shmio::{Channel, ChannelGeometry, ChannelOptions};

use crate::aio::{self, Awaiting};
use crate::bytes::{bytes_of, copy_into, len_of};
use crate::errors::{closed, invalid, is_kind, new_error, IntoPyResult, Kind};
use crate::inherited::{drop_quietly, retried_if_inherited};
use crate::json::{from_json, to_json};
use crate::unpoisoned;
use crate::wait::{deadline, sliced_raw};

/// A message queue in shared memory, found by name, that a crashed
/// process cannot wedge. Any number of processes (Python or Rust) send
/// and receive; each message goes to exactly one receiver, and one
/// sender's messages arrive in the order sent.
///
/// Blocking calls (`send`, `recv`, iteration) release the GIL and can be
/// interrupted with Ctrl-C. `try_send` returns False when the channel is
/// full and `try_recv` None when it is empty (they never raise for that).
///
/// A channel inherited by a forked child opens the channel anew in the
/// child on first use; one pickled (multiprocessing's spawn) opens it by
/// name where it is unpickled.
#[pyclass(module = "shmio", name = "Channel", frozen)]
pub(crate) struct PyChannel {
    channel: StdMutex<Option<Arc<Channel>>>,
    name: String,
    geometry: ChannelGeometry,
    /// A buffer reused by receives that find a message waiting, so a
    /// stream of large messages does not allocate (and fault in) a fresh
    /// one each time before the copy into Python's `bytes`.
    scratch: StdMutex<Vec<u8>>,
    /// What it was opened with (whose channels to trust), for opening it
    /// again in a forked child, whose inherited handle is its parent's.
    options: ChannelOptions,
}

/// The value of a timed-out attempt inside a sliced wait.
fn timed_out<T>(result: shmio::Result<T>) -> shmio::Result<Option<T>> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(error) if error.is_timed_out() => Ok(None),
        Err(error) => Err(error),
    }
}

impl PyChannel {
    fn wrap(channel: Channel, options: ChannelOptions) -> PyChannel {
        PyChannel {
            name: channel.name().to_owned(),
            geometry: channel.geometry(),
            channel: StdMutex::new(Some(Arc::new(channel))),
            scratch: StdMutex::new(Vec::new()),
            options,
        }
    }

    fn channel(&self, py: Python<'_>) -> PyResult<Arc<Channel>> {
        let channel = unpoisoned::lock(&self.channel);
        channel.clone().ok_or_else(|| closed(py, "Channel"))
    }

    /// Makes `call` on this process's handle: see `retried_if_inherited`.
    fn on_channel<T>(
        &self,
        py: Python<'_>,
        call: impl FnMut(&Arc<Channel>) -> PyResult<shmio::Result<T>>,
    ) -> PyResult<T> {
        let channel = self.channel(py)?;
        retried_if_inherited(py, channel, |inherited| self.reopen(py, inherited), call)
    }

    /// Opens the channel in this process in place of `inherited`, a
    /// handle of the process this one was forked from; the handle in
    /// place afterwards (another thread's, if it reopened first).
    fn reopen(&self, py: Python<'_>, inherited: &Arc<Channel>) -> PyResult<Arc<Channel>> {
        let options = self.options.clone();
        let name = self.name.clone();
        let opened = Arc::new(py.detach(move || options.open(&name)).py(py)?);
        let mut slot = unpoisoned::lock(&self.channel);
        let (current, unused) = match slot.as_ref() {
            Some(current) if Arc::ptr_eq(current, inherited) => {
                let replaced = slot.replace(Arc::clone(&opened));
                (Ok(opened), replaced)
            }
            Some(current) => (Ok(Arc::clone(current)), Some(opened)),
            None => (Err(closed(py, "Channel")), Some(opened)),
        };
        drop(slot);
        py.detach(|| drop_quietly(unused));
        current
    }

    fn timeout_error(&self, py: Python<'_>) -> PyErr {
        new_error(py, Kind::Timeout, self.waiting_on())
    }

    /// What a wait on this channel that timed out says.
    fn waiting_on(&self) -> String {
        format!("timed out waiting on {:?}", self.name)
    }

    /// Runs `attempt` (a wait of at most the slice it is given) in slices
    /// until it succeeds or `timeout` seconds (None: forever) pass
    /// (`TimeoutError`). A `close()` from another thread meanwhile ends
    /// the wait too (`ClosedError`, within a slice): a shutdown never
    /// waits for a message or for room.
    fn wait<T: Send>(
        &self,
        py: Python<'_>,
        timeout: Option<f64>,
        mut attempt: impl FnMut(&Channel, std::time::Duration) -> shmio::Result<T> + Send,
    ) -> PyResult<T> {
        let deadline = deadline(py, timeout)?;
        let waited = self.on_channel(py, |channel| {
            sliced_raw(py, deadline, |slice| {
                if self.closed() {
                    return Err(shmio::Error::Interrupted {
                        name: self.name.clone(),
                    });
                }
                timed_out(attempt(channel, slice))
            })
        });
        match waited {
            Ok(Some(done)) => Ok(done),
            Ok(None) => Err(self.timeout_error(py)),
            Err(_) if self.closed() => Err(closed(py, "Channel")),
            Err(error) => Err(error),
        }
    }

    fn send_bytes(&self, py: Python<'_>, message: &[u8], timeout: Option<f64>) -> PyResult<()> {
        self.wait(py, timeout, |channel, slice| {
            channel.send_timeout(message, slice)
        })
    }

    /// Receives a message (waiting at most `timeout` seconds; None:
    /// forever) and hands it to `make`, which copies it into a Python
    /// object. The message lands in the channel's reused buffer (in a
    /// buffer of its own if another thread is using that one).
    fn recv_with<T>(
        &self,
        py: Python<'_>,
        timeout: Option<f64>,
        make: impl FnOnce(&[u8]) -> PyResult<T>,
    ) -> PyResult<T> {
        let mut own = Vec::new();
        let mut scratch = self.scratch.try_lock().ok();
        let buf: &mut Vec<u8> = match scratch.as_deref_mut() {
            Some(scratch) => scratch,
            None => &mut own,
        };
        self.wait(py, timeout, |channel, slice| {
            channel.recv_into_timeout(&mut *buf, slice)
        })?;
        make(buf)
    }
}

#[pymethods]
impl PyChannel {
    /// Opens the channel called `name`, creating it with this geometry if
    /// there is none: `capacity` messages of at most `max_message_size`
    /// bytes. `InvalidError` if it exists with another geometry.
    #[staticmethod]
    #[pyo3(signature = (name, capacity=1024, max_message_size=4096, *, permissions=None))]
    fn create_or_open(
        py: Python<'_>,
        name: &str,
        capacity: i64,
        max_message_size: i64,
        permissions: Option<u32>,
    ) -> PyResult<Self> {
        let capacity = u32::try_from(capacity)
            .map_err(|_| invalid(py, format!("invalid capacity {capacity}")))?;
        let max_message_size = u32::try_from(max_message_size)
            .map_err(|_| invalid(py, format!("invalid max_message_size {max_message_size}")))?;
        let mut options = Channel::options();
        options
            .capacity(capacity)
            .max_message_size(max_message_size);
        if let Some(permissions) = permissions {
            options.permissions(permissions);
        }
        let channel = py.detach(|| options.create_or_open(name)).py(py)?;
        Ok(PyChannel::wrap(channel, options))
    }

    /// Opens an existing channel, whatever its geometry; `NotFoundError` if there is none.
    // A class method, not a static one, so that pickle finds it through
    // the class (`__reduce__`).
    #[classmethod]
    fn open(_cls: &Bound<'_, PyType>, py: Python<'_>, name: &str) -> PyResult<Self> {
        let options = Channel::options();
        let channel = py.detach(|| options.open(name)).py(py)?;
        Ok(PyChannel::wrap(channel, options))
    }

    /// The name.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// How many messages it holds before a send waits.
    #[getter]
    fn capacity(&self) -> u32 {
        self.geometry.capacity
    }

    /// The largest message, in bytes.
    #[getter]
    fn max_message_size(&self) -> u32 {
        self.geometry.max_message_size
    }

    /// True when an existing channel was opened rather than created.
    #[getter]
    fn existed(&self, py: Python<'_>) -> PyResult<bool> {
        Ok(self.channel(py)?.existed())
    }

    /// Sends the bytes-like `message`, waiting while the channel is full
    /// (at most `timeout` seconds if given: `TimeoutError`). A message
    /// larger than `max_message_size` is `InvalidError`, and nothing is sent.
    #[pyo3(signature = (message, timeout=None))]
    fn send(
        &self,
        py: Python<'_>,
        message: &Bound<'_, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<()> {
        let message = bytes_of(message)?;
        self.send_bytes(py, &message, timeout)
    }

    /// Awaits room and sends `message` (asyncio): the awaitable of `send`,
    /// at most `timeout` seconds if given (`TimeoutError`). Cancelling the
    /// task sends nothing, or the whole message if it already had room.
    #[pyo3(signature = (message, timeout=None))]
    fn send_async<'py>(
        &self,
        py: Python<'py>,
        message: &Bound<'py, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let message = bytes_of(message)?.into_owned();
        let channel = self.channel(py)?;
        let sending = async move { aio::none(channel.send_async(&message).await) };
        Awaiting::coroutine(py, sending, timeout, &self.waiting_on())
    }

    /// Awaits a message (asyncio): the awaitable of `recv`, at most
    /// `timeout` seconds if given (`TimeoutError`). Cancelling the task
    /// loses no message: one is taken only by the step that returns it.
    #[pyo3(signature = (timeout=None))]
    fn recv_async<'py>(
        &self,
        py: Python<'py>,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let channel = self.channel(py)?;
        let receiving = async move { aio::bytes(channel.recv_async().await) };
        Awaiting::coroutine(py, receiving, timeout, &self.waiting_on())
    }

    /// Sends `message` if there is room; False (nothing sent) if the channel is full.
    fn try_send(&self, py: Python<'_>, message: &Bound<'_, PyAny>) -> PyResult<bool> {
        let message = bytes_of(message)?;
        self.on_channel(py, |channel| {
            Ok(match channel.try_send(&message) {
                Ok(()) => Ok(true),
                Err(shmio::Error::Full) => Ok(false),
                Err(error) => Err(error),
            })
        })
    }

    /// Receives a message, waiting while the channel is empty (at most
    /// `timeout` seconds if given: `TimeoutError`).
    #[pyo3(signature = (timeout=None))]
    fn recv<'py>(&self, py: Python<'py>, timeout: Option<f64>) -> PyResult<Bound<'py, PyBytes>> {
        self.recv_with(py, timeout, |message| Ok(PyBytes::new(py, message)))
    }

    /// Receives a message into the writable bytes-like `buffer`; returns
    /// its length. The buffer must hold `max_message_size` bytes, so that
    /// any message fits: a smaller one is `InvalidError` before anything is
    /// received (no message is lost).
    #[pyo3(signature = (buffer, timeout=None))]
    fn recv_into(
        &self,
        py: Python<'_>,
        buffer: &Bound<'_, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<usize> {
        let room = len_of(buffer)?;
        let largest = self.channel(py)?.geometry().max_message_size as usize;
        if room < largest {
            return Err(invalid(
                py,
                format!(
                    "a buffer of {room} bytes is smaller than this channel's messages may be \
                     ({largest} bytes): nothing was received"
                ),
            ));
        }
        self.recv_with(py, timeout, |message| {
            if message.len() > room {
                return Err(invalid(
                    py,
                    format!(
                        "a message of {} bytes does not fit in a buffer of {room}",
                        message.len()
                    ),
                ));
            }
            copy_into(buffer, message)
        })
    }

    /// Receives a message if there is one; None if the channel is empty.
    fn try_recv<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let mut own = Vec::new();
        let mut scratch = self.scratch.try_lock().ok();
        let buf: &mut Vec<u8> = match scratch.as_deref_mut() {
            Some(scratch) => scratch,
            None => &mut own,
        };
        let received = self.on_channel(py, |channel| {
            Ok(match channel.try_recv_into(&mut *buf) {
                Ok(()) => Ok(true),
                Err(shmio::Error::Empty) => Ok(false),
                Err(error) => Err(error),
            })
        })?;
        Ok(received.then(|| PyBytes::new(py, buf)))
    }

    /// Sends `value` (dict, list, str, int, float, bool, None) as JSON, as
    /// Rust's `send_record` does.
    #[pyo3(signature = (value, timeout=None))]
    fn send_record(
        &self,
        py: Python<'_>,
        value: &Bound<'_, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<()> {
        let json = serde_json::to_vec(&to_json(value)?).map_err(|e| invalid(py, e.to_string()))?;
        self.send_bytes(py, &json, timeout)
    }

    /// Receives a message sent with `send_record` (Python's or Rust's) and
    /// decodes it; `InvalidError` if it is not JSON.
    #[pyo3(signature = (timeout=None))]
    fn recv_record<'py>(
        &self,
        py: Python<'py>,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let value: serde_json::Value = self.recv_with(py, timeout, |message| {
            serde_json::from_slice(message)
                .map_err(|e| invalid(py, format!("the message does not decode as JSON: {e}")))
        })?;
        from_json(py, &value)
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// The next message, waiting as long as it takes (a blocking `recv`);
    /// the iteration ends once the channel is closed (by another thread,
    /// say), or once it is empty and every other handle on it has closed
    /// (`DisconnectedError` for `recv`).
    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        if self.closed() {
            return Ok(None);
        }
        match self.recv(py, None) {
            Ok(message) => Ok(Some(message)),
            Err(_) if self.closed() => Ok(None),
            Err(error) if is_kind(py, &error, Kind::Disconnected) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Closes this handle (the name goes with the last handle anywhere).
    /// In a forked child that never used it, the handle is the parent's
    /// copy, and closing it leaves the parent's channel as it was.
    fn close(&self, py: Python<'_>) {
        let channel = unpoisoned::lock(&self.channel).take();
        py.detach(|| drop_quietly(channel));
    }

    /// Pickles as `Channel.open(name)`: the channel is opened by name where
    /// it is unpickled (in a child of multiprocessing's spawn or forkserver).
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<(Bound<'py, PyAny>, (String,))> {
        let py = slf.py();
        slf.get().channel(py)?;
        Ok((slf.get_type().getattr("open")?, (slf.get().name.clone(),)))
    }

    /// Whether `close()` was called on this handle.
    #[getter]
    fn closed(&self) -> bool {
        unpoisoned::lock(&self.channel).is_none()
    }

    fn __enter__(slf: Py<Self>, py: Python<'_>) -> PyResult<Py<Self>> {
        slf.get().channel(py)?;
        Ok(slf)
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, PyTuple>) -> bool {
        self.close(py);
        false
    }

    fn __repr__(&self) -> String {
        format!(
            "<shmio.Channel {:?} capacity={} max_message_size={}{}>",
            self.name,
            self.geometry.capacity,
            self.geometry.max_message_size,
            if self.closed() { " closed" } else { "" }
        )
    }
}
