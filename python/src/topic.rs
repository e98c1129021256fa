//! `shmio.Topic`, `shmio.Subscriber` and `shmio.Sample`: publish–subscribe
//! between processes, by name, and a received message lent to Python in
//! place through the buffer protocol.
//!
//! A `Subscriber`'s Rust half takes `&mut self` to receive, so it lives in
//! a mutex that a blocking receive takes for one slice of its wait at a
//! time (with the GIL released): `close()` from another thread, or a
//! second thread's receive, waits at most one slice for it. A `Sample`
//! shares that mutex: while it is held the subscriber stays at its message
//! (under `Overflow::Block` no publisher overwrites it), and while a buffer
//! of it lives the sample cannot be released nor the subscriber closed, so
//! the memory the buffer points at stays mapped and unchanged.

use std::ffi::c_int;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use pyo3::exceptions::{PyBufferError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple, PyType};
use shmio::{Held, Overflow, Subscriber, Topic, TopicOptions};

use crate::aio::{self, Awaiting};
use crate::bytes::bytes_of;
use crate::errors::{closed, invalid, new_error, IntoPyResult, Kind};
use crate::inherited::{drop_quietly, retried_if_inherited};
use crate::json::{from_json, to_json};
use crate::unpoisoned;
use crate::wait::{deadline, sliced_raw};

/// The value of a timed-out attempt inside a sliced wait.
fn timed_out<T>(result: shmio::Result<T>) -> shmio::Result<Option<T>> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(error) if error.is_timed_out() => Ok(None),
        Err(error) => Err(error),
    }
}

/// The Python spelling of an overflow policy.
fn overflow_name(overflow: Overflow) -> &'static str {
    match overflow {
        Overflow::Block => "block",
        _ => "overwrite",
    }
}

fn timeout_error(py: Python<'_>, name: &str) -> PyErr {
    new_error(py, Kind::Timeout, format!("timed out waiting on {name:?}"))
}

/// A publish–subscribe topic between processes, found by name. Any number
/// of processes (Python or Rust) publish to it and subscribe to it; every
/// subscriber gets every message published after it subscribed (after the
/// last `history` messages), each publisher's in the order published.
///
/// `overflow="overwrite"` (the default): a publisher never waits, and a
/// subscriber that falls behind by more than `capacity` messages gets
/// `LaggedError` (then goes on from the oldest message held).
/// `overflow="block"`: a publisher waits for the slowest live subscriber;
/// a subscriber can then read a message in place (`recv_sample`).
///
/// Blocking calls release the GIL and can be interrupted with Ctrl-C.
#[pyclass(module = "shmio", name = "Topic", frozen)]
pub(crate) struct PyTopic {
    topic: StdMutex<Option<Arc<Topic>>>,
    name: String,
    capacity: u32,
    max_message_size: u32,
    history: u32,
    overflow: Overflow,
    /// What it was opened with, for opening it again in a forked child,
    /// whose inherited handle is its parent's.
    options: TopicOptions,
}

impl PyTopic {
    fn wrap(topic: Topic, options: TopicOptions) -> PyTopic {
        PyTopic {
            name: topic.name().to_owned(),
            capacity: topic.capacity(),
            max_message_size: topic.max_message_size(),
            history: topic.history(),
            overflow: topic.overflow(),
            topic: StdMutex::new(Some(Arc::new(topic))),
            options,
        }
    }

    fn topic(&self, py: Python<'_>) -> PyResult<Arc<Topic>> {
        let topic = unpoisoned::lock(&self.topic);
        topic.clone().ok_or_else(|| closed(py, "Topic"))
    }

    /// Makes `call` on this process's handle: see `retried_if_inherited`.
    fn on_topic<T>(
        &self,
        py: Python<'_>,
        call: impl FnMut(&Arc<Topic>) -> PyResult<shmio::Result<T>>,
    ) -> PyResult<T> {
        let topic = self.topic(py)?;
        retried_if_inherited(py, topic, |inherited| self.reopen(py, inherited), call)
    }

    /// Opens the topic in this process in place of `inherited`, a handle
    /// of the process this one was forked from (as the Channel does).
    fn reopen(&self, py: Python<'_>, inherited: &Arc<Topic>) -> PyResult<Arc<Topic>> {
        let options = self.options.clone();
        let name = self.name.clone();
        let opened = Arc::new(py.detach(move || options.open(&name)).py(py)?);
        let mut slot = unpoisoned::lock(&self.topic);
        let (current, unused) = match slot.as_ref() {
            Some(current) if Arc::ptr_eq(current, inherited) => {
                let replaced = slot.replace(Arc::clone(&opened));
                (Ok(opened), replaced)
            }
            Some(current) => (Ok(Arc::clone(current)), Some(opened)),
            None => (Err(closed(py, "Topic")), Some(opened)),
        };
        drop(slot);
        py.detach(|| drop_quietly(unused));
        current
    }

    /// Publishes, waiting in slices (only under `overflow="block"` is
    /// there anything to wait for); a `close()` from another thread ends
    /// the wait with `ClosedError`.
    fn publish_bytes(&self, py: Python<'_>, message: &[u8], timeout: Option<f64>) -> PyResult<()> {
        let deadline = deadline(py, timeout)?;
        let waited = self.on_topic(py, |topic| {
            sliced_raw(py, deadline, |slice| {
                if self.closed() {
                    return Err(shmio::Error::Interrupted {
                        name: self.name.clone(),
                    });
                }
                timed_out(topic.publish_timeout(message, slice))
            })
        });
        match waited {
            Ok(Some(())) => Ok(()),
            Ok(None) => Err(timeout_error(py, &self.name)),
            Err(_) if self.closed() => Err(closed(py, "Topic")),
            Err(error) => Err(error),
        }
    }
}

#[pymethods]
impl PyTopic {
    /// Opens the topic called `name`, creating it with these settings if
    /// there is none: `capacity` messages of at most `max_message_size`
    /// bytes, the last `history` of which a new subscriber gets first, and
    /// `overflow` ("overwrite" or "block"). `InvalidError` if it exists
    /// with other settings.
    #[staticmethod]
    #[pyo3(signature = (name, capacity=1024, max_message_size=4096, history=0, overflow="overwrite", *, permissions=None))]
    fn create_or_open(
        py: Python<'_>,
        name: &str,
        capacity: i64,
        max_message_size: i64,
        history: i64,
        overflow: &str,
        permissions: Option<u32>,
    ) -> PyResult<Self> {
        let capacity = u32::try_from(capacity)
            .map_err(|_| invalid(py, format!("invalid capacity {capacity}")))?;
        let max_message_size = u32::try_from(max_message_size)
            .map_err(|_| invalid(py, format!("invalid max_message_size {max_message_size}")))?;
        let history = u32::try_from(history)
            .map_err(|_| invalid(py, format!("invalid history {history}")))?;
        let overflow = match overflow {
            "overwrite" => Overflow::Overwrite,
            "block" => Overflow::Block,
            other => {
                return Err(invalid(
                    py,
                    format!("overflow must be \"overwrite\" or \"block\", not {other:?}"),
                ))
            }
        };
        let mut options = Topic::options();
        options
            .capacity(capacity)
            .max_message_size(max_message_size)
            .history(history)
            .overflow(overflow);
        if let Some(permissions) = permissions {
            options.permissions(permissions);
        }
        let topic = py.detach(|| options.create_or_open(name)).py(py)?;
        Ok(PyTopic::wrap(topic, options))
    }

    /// Opens an existing topic, whatever its settings; `NotFoundError` if there is none.
    // A class method, not a static one, so that pickle finds it through
    // the class (`__reduce__`).
    #[classmethod]
    fn open(_cls: &Bound<'_, PyType>, py: Python<'_>, name: &str) -> PyResult<Self> {
        let options = Topic::options();
        let topic = py.detach(|| options.open(name)).py(py)?;
        Ok(PyTopic::wrap(topic, options))
    }

    /// The name.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// How many messages it holds.
    #[getter]
    fn capacity(&self) -> u32 {
        self.capacity
    }

    /// The largest message, in bytes.
    #[getter]
    fn max_message_size(&self) -> u32 {
        self.max_message_size
    }

    /// How many of the last messages a new subscriber gets first.
    #[getter]
    fn history(&self) -> u32 {
        self.history
    }

    /// "overwrite" or "block": what a subscriber that falls behind costs.
    #[getter]
    fn overflow(&self) -> &'static str {
        overflow_name(self.overflow)
    }

    /// True when an existing topic was opened rather than created.
    #[getter]
    fn existed(&self, py: Python<'_>) -> PyResult<bool> {
        Ok(self.topic(py)?.existed())
    }

    /// How many subscribers (of every process) hold a cursor now.
    #[getter]
    fn subscribers(&self, py: Python<'_>) -> PyResult<usize> {
        Ok(self.topic(py)?.subscribers())
    }

    /// How many messages have been published (by every process).
    #[getter]
    fn published(&self, py: Python<'_>) -> PyResult<u64> {
        Ok(self.topic(py)?.published())
    }

    /// Publishes the bytes-like `message` to every subscriber. Under
    /// overflow="block" it waits while the slowest subscriber has not read
    /// the message it would overwrite (at most `timeout` seconds if given:
    /// `TimeoutError`). A message larger than `max_message_size` is
    /// `InvalidError`, and nothing is published.
    #[pyo3(signature = (message, timeout=None))]
    fn publish(
        &self,
        py: Python<'_>,
        message: &Bound<'_, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<()> {
        let message = bytes_of(message)?;
        self.publish_bytes(py, &message, timeout)
    }

    /// Publishes `message`, awaiting room under overflow="block"
    /// (asyncio): the awaitable of `publish`, at most `timeout` seconds if
    /// given (`TimeoutError`). Cancelling the task publishes nothing, or the
    /// whole message if it already had room.
    #[pyo3(signature = (message, timeout=None))]
    fn publish_async<'py>(
        &self,
        py: Python<'py>,
        message: &Bound<'py, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let message = bytes_of(message)?.into_owned();
        let topic = self.topic(py)?;
        let publishing = async move { aio::none(topic.publish_async(&message).await) };
        let timed_out = format!("timed out waiting on {:?}", self.name);
        Awaiting::coroutine(py, publishing, timeout, &timed_out)
    }

    /// Publishes `message` if no subscriber holds it back; False (nothing
    /// published) if one does (only under overflow="block").
    fn try_publish(&self, py: Python<'_>, message: &Bound<'_, PyAny>) -> PyResult<bool> {
        let message = bytes_of(message)?;
        self.on_topic(py, |topic| {
            Ok(match topic.try_publish(&message) {
                Ok(()) => Ok(true),
                Err(shmio::Error::Full) => Ok(false),
                Err(error) => Err(error),
            })
        })
    }

    /// Publishes `value` (dict, list, str, int, float, bool, None) as
    /// JSON, as Rust's `publish_record` does.
    #[pyo3(signature = (value, timeout=None))]
    fn publish_record(
        &self,
        py: Python<'_>,
        value: &Bound<'_, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<()> {
        let json = serde_json::to_vec(&to_json(value)?).map_err(|e| invalid(py, e.to_string()))?;
        self.publish_bytes(py, &json, timeout)
    }

    /// A new subscriber: it gets every message published from now on,
    /// after the topic's last `history` messages. It lives on its own:
    /// closing this topic handle leaves it receiving.
    fn subscribe(&self, py: Python<'_>) -> PyResult<PySubscriber> {
        let topic = self.topic(py)?;
        // The subscription takes a participant seat of its own and keeps
        // the mapping alive: this handle may close while it receives.
        let subscriber = py.detach(move || topic.subscribe()).py(py)?;
        Ok(PySubscriber {
            state: Arc::new(StdMutex::new(SubscriberState {
                subscriber: Some(subscriber),
                held: None,
                ticket: 0,
                exports: 0,
                scratch: Vec::new(),
                lent: false,
                closed: false,
            })),
            closed: AtomicBool::new(false),
            name: self.name.clone(),
            overflow: self.overflow,
        })
    }

    /// Closes this handle (the name goes with the last handle anywhere,
    /// subscribers included).
    fn close(&self, py: Python<'_>) {
        let topic = unpoisoned::lock(&self.topic).take();
        py.detach(|| drop_quietly(topic));
    }

    /// Whether `close()` was called on this handle.
    #[getter]
    fn closed(&self) -> bool {
        unpoisoned::lock(&self.topic).is_none()
    }

    /// Pickles as `Topic.open(name)`: opened by name where it is unpickled
    /// (in a child of multiprocessing's spawn or forkserver).
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<(Bound<'py, PyAny>, (String,))> {
        let py = slf.py();
        slf.get().topic(py)?;
        Ok((slf.get_type().getattr("open")?, (slf.get().name.clone(),)))
    }

    fn __enter__(slf: Py<Self>, py: Python<'_>) -> PyResult<Py<Self>> {
        slf.get().topic(py)?;
        Ok(slf)
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, PyTuple>) -> bool {
        self.close(py);
        false
    }

    fn __repr__(&self) -> String {
        format!(
            "<shmio.Topic {:?} capacity={} max_message_size={} history={} overflow={}{}>",
            self.name,
            self.capacity,
            self.max_message_size,
            self.history,
            overflow_name(self.overflow),
            if self.closed() { " closed" } else { "" }
        )
    }
}

/// What a subscriber's receives and its sample share.
struct SubscriberState {
    /// None once closed.
    subscriber: Option<Subscriber>,
    /// The message a live `Sample` holds in place.
    held: Option<Held>,
    /// Which sample holds `held`: one more for each sample handed out, so
    /// that a released sample never acts on a later one's message.
    ticket: u64,
    /// How many buffers of the held sample are alive.
    exports: usize,
    /// Reused by receives, so a stream of messages does not allocate one
    /// buffer each before the copy into Python's `bytes`.
    scratch: Vec<u8>,
    /// Whether an awaited receive has the subscriber (`subscriber` is
    /// None until it gives it back).
    lent: bool,
    /// Whether `close()` was called (an awaited receive then drops the
    /// subscriber instead of giving it back).
    closed: bool,
}

impl SubscriberState {
    /// Lets go of the held message, if any: the subscriber moves past it.
    fn release_held(&mut self) {
        if let Some(held) = self.held.take() {
            if let Some(subscriber) = self.subscriber.as_mut() {
                subscriber.release(held);
            }
        }
    }
}

/// What one slice of a receive found.
enum Slice<T> {
    Got(T),
    Closed,
    SampleHeld,
    Lent,
}

/// A subscriber lent to an awaited receive, given back when it is done
/// or dropped (dropped instead if the subscriber was closed meanwhile).
struct Lent {
    state: Arc<StdMutex<SubscriberState>>,
    subscriber: Option<Subscriber>,
}

impl Drop for Lent {
    fn drop(&mut self) {
        let mut state = unpoisoned::lock(&self.state);
        state.lent = false;
        if state.closed {
            drop(state);
            drop_quietly(self.subscriber.take());
        } else {
            state.subscriber = self.subscriber.take();
        }
    }
}

/// One subscription to a `Topic`: gets every message published after it
/// was made, in order, at its own pace. `recv` copies a message into
/// `bytes`; `recv_sample` (overflow="block") lends it in place, for
/// `memoryview` and `numpy.frombuffer` without a copy. `for message in
/// subscriber:` receives until the subscriber is closed.
///
/// Under overflow="overwrite" a receive raises `LaggedError` (`.missed`)
/// when messages were overwritten before it read them; the next receive
/// goes on from the oldest message held.
#[pyclass(module = "shmio", name = "Subscriber", frozen)]
pub(crate) struct PySubscriber {
    state: Arc<StdMutex<SubscriberState>>,
    /// Set by `close()`, so that `closed` and `repr` never wait for a
    /// receive's slice.
    closed: AtomicBool,
    name: String,
    overflow: Overflow,
}

impl PySubscriber {
    /// Runs `attempt` on the subscriber (a wait of at most the slice it is
    /// given) in slices, each with the state locked and the GIL released,
    /// until it gives something or `timeout` seconds (None: forever) pass.
    /// A closed subscriber is `ClosedError` (within a slice of a `close()`
    /// from another thread), and one that holds a sample `InvalidError`:
    /// the sample's message must stay where it is.
    fn receive<T: Send>(
        &self,
        py: Python<'_>,
        timeout: Option<f64>,
        mut attempt: impl FnMut(&mut SubscriberState, Duration) -> shmio::Result<T> + Send,
    ) -> PyResult<T> {
        let deadline = deadline(py, timeout)?;
        let waited = sliced_raw(py, deadline, |slice| {
            let mut state = unpoisoned::lock(&self.state);
            if state.lent {
                return Ok(Some(Slice::Lent));
            }
            if state.subscriber.is_none() {
                return Ok(Some(Slice::Closed));
            }
            if state.held.is_some() {
                return Ok(Some(Slice::SampleHeld));
            }
            timed_out(attempt(&mut state, slice).map(Slice::Got))
        })?
        .py(py)?;
        match waited {
            Some(Slice::Got(found)) => Ok(found),
            Some(Slice::Closed) => Err(closed(py, "Subscriber")),
            Some(Slice::SampleHeld) => Err(invalid(
                py,
                format!(
                    "this subscriber of {:?} holds a sample: release it first \
                     (sample.release(), or `with subscriber.recv_sample() as sample:`)",
                    self.name
                ),
            )),
            Some(Slice::Lent) => Err(self.lent_error(py)),
            None => Err(timeout_error(py, &self.name)),
        }
    }

    fn lent_error(&self, py: Python<'_>) -> PyErr {
        invalid(
            py,
            format!(
                "an awaited receive of this subscriber of {:?} is in progress",
                self.name
            ),
        )
    }

    /// Receives a message into the reused buffer and hands it to `make`,
    /// which copies it into a Python object.
    fn recv_with<T>(
        &self,
        py: Python<'_>,
        timeout: Option<f64>,
        make: impl FnOnce(&[u8]) -> PyResult<T>,
    ) -> PyResult<T> {
        let mut buf = std::mem::take(&mut unpoisoned::lock(&self.state).scratch);
        let received = self.receive(py, timeout, |state, slice| {
            let subscriber = state.subscriber.as_mut().expect("checked by receive");
            subscriber.recv_into_timeout(&mut buf, slice)
        });
        let made = received.and_then(|()| make(&buf));
        let mut state = unpoisoned::lock(&self.state);
        if buf.capacity() > state.scratch.capacity() {
            state.scratch = buf;
        }
        made
    }
}

#[pymethods]
impl PySubscriber {
    /// The topic's name.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// How many messages are waiting for this subscriber (at most the
    /// topic's capacity).
    #[getter]
    fn pending(&self, py: Python<'_>) -> PyResult<u64> {
        let pending = unpoisoned::lock(&self.state)
            .subscriber
            .as_ref()
            .map(Subscriber::len);
        pending.ok_or_else(|| closed(py, "Subscriber"))
    }

    /// Receives the next message, waiting until one is published (at most
    /// `timeout` seconds if given: `TimeoutError`; 0 tries once).
    #[pyo3(signature = (timeout=None))]
    fn recv<'py>(&self, py: Python<'py>, timeout: Option<f64>) -> PyResult<Bound<'py, PyBytes>> {
        self.recv_with(py, timeout, |message| Ok(PyBytes::new(py, message)))
    }

    /// Awaits the next message (asyncio): the awaitable of `recv`, at most
    /// `timeout` seconds if given (`TimeoutError`). Cancelling the task
    /// loses no message: the subscriber moves past one only in the step
    /// that returns it. Meanwhile the subscriber's other receives are
    /// `InvalidError`.
    #[pyo3(signature = (timeout=None))]
    fn recv_async<'py>(
        &self,
        py: Python<'py>,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let mut state = unpoisoned::lock(&self.state);
        if state.lent {
            return Err(self.lent_error(py));
        }
        if state.held.is_some() {
            return Err(invalid(
                py,
                format!(
                    "this subscriber of {:?} holds a sample: release it first",
                    self.name
                ),
            ));
        }
        let Some(subscriber) = state.subscriber.take() else {
            return Err(closed(py, "Subscriber"));
        };
        state.lent = true;
        drop(state);
        let mut lent = Lent {
            state: Arc::clone(&self.state),
            subscriber: Some(subscriber),
        };
        let receiving = async move {
            let received = match lent.subscriber.as_mut() {
                Some(subscriber) => subscriber.recv_async().await,
                None => Err(shmio::Error::Interrupted {
                    name: String::new(),
                }),
            };
            drop(lent);
            aio::bytes(received)
        };
        let message = format!("timed out waiting on {:?}", self.name);
        Awaiting::coroutine(py, receiving, timeout, &message)
    }

    /// Receives the next message if one is waiting; None if not.
    fn try_recv<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        match self.recv(py, Some(0.0)) {
            Ok(message) => Ok(Some(message)),
            Err(error) if crate::errors::is_kind(py, &error, Kind::Timeout) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Receives a message published with `publish_record` (Python's or
    /// Rust's) and decodes it; `InvalidError` if it is not JSON.
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

    /// Receives the next message in place (overflow="block" only:
    /// `UnsupportedError` under "overwrite", where a publisher may
    /// overwrite it at any time; use `recv` there). The `Sample` supports
    /// the buffer protocol, read-only, without a copy; this subscriber
    /// stays at the message, and publishers wait for it, until the sample
    /// is released (`release()`, `with`, or garbage collection). Until
    /// then every receive of this subscriber is `InvalidError`.
    #[pyo3(signature = (timeout=None))]
    fn recv_sample(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<PySample> {
        if self.overflow != Overflow::Block {
            return Err(new_error(
                py,
                Kind::Unsupported,
                format!(
                    "recv_sample lends a message in place, which needs a topic made with \
                     overflow=\"block\"; {:?} overwrites messages a subscriber has not read: \
                     use recv() (numpy reads its bytes too)",
                    self.name
                ),
            ));
        }
        let (ticket, len) = self.receive(py, timeout, |state, slice| {
            let subscriber = state.subscriber.as_mut().expect("checked by receive");
            let held = subscriber.hold_timeout(slice)?;
            let len = held.len();
            state.held = Some(held);
            state.ticket += 1;
            Ok((state.ticket, len))
        })?;
        Ok(PySample {
            state: Arc::clone(&self.state),
            ticket,
            len,
            name: self.name.clone(),
        })
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// The next message, waiting as long as it takes (a blocking `recv`);
    /// the iteration ends once the subscriber is closed (by another
    /// thread, say). `LaggedError` goes through: a loop started again
    /// goes on from the oldest message held.
    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        if self.closed() {
            return Ok(None);
        }
        match self.recv(py, None) {
            Ok(message) => Ok(Some(message)),
            Err(_) if self.closed() => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Unsubscribes: publishers no longer wait for it. `BufferError` while
    /// buffers of its sample (memoryviews, numpy arrays) are alive; a
    /// sample with none is released. Closing twice does nothing.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let mut state = unpoisoned::lock(&self.state);
        if state.exports > 0 {
            return Err(PyBufferError::new_err(
                "cannot close a subscriber while buffers of its sample (memoryviews, numpy arrays) exist",
            ));
        }
        self.closed.store(true, Ordering::SeqCst);
        state.closed = true;
        state.release_held();
        let gone = state.subscriber.take();
        drop(state);
        py.detach(|| drop_quietly(gone));
        Ok(())
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    fn __enter__(slf: Py<Self>, py: Python<'_>) -> PyResult<Py<Self>> {
        if slf.get().closed() {
            return Err(closed(py, "Subscriber"));
        }
        Ok(slf)
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, PyTuple>) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        format!(
            "<shmio.Subscriber of {:?}{}>",
            self.name,
            if self.closed() { " closed" } else { "" }
        )
    }
}

/// A message a `Subscriber` received in place (`recv_sample`): its bytes
/// in the topic's shared memory, read-only through the buffer protocol
/// (`memoryview(sample)`, `numpy.frombuffer(sample, dtype)`), no copy.
/// The subscriber stays at the message, and publishers wait for it, until
/// `release()` (or the end of `with`, or garbage collection); releasing it
/// while buffers of it are alive is `BufferError`.
#[pyclass(module = "shmio", name = "Sample", frozen)]
pub(crate) struct PySample {
    state: Arc<StdMutex<SubscriberState>>,
    /// The subscriber's ticket when this sample was handed out.
    ticket: u64,
    len: usize,
    name: String,
}

impl PySample {
    fn is_current(&self, state: &SubscriberState) -> bool {
        state.held.is_some() && state.ticket == self.ticket
    }
}

#[pymethods]
impl PySample {
    /// Lets go of the message: the subscriber moves past it. `BufferError`
    /// while buffers of it (memoryviews, numpy arrays) are alive.
    /// Releasing twice does nothing.
    fn release(&self) -> PyResult<()> {
        let mut state = unpoisoned::lock(&self.state);
        if !self.is_current(&state) {
            return Ok(());
        }
        if state.exports > 0 {
            return Err(PyBufferError::new_err(
                "cannot release a sample while buffers of it (memoryviews, numpy arrays) exist",
            ));
        }
        state.release_held();
        Ok(())
    }

    /// Whether it was released (or its subscriber closed).
    #[getter]
    fn released(&self) -> bool {
        !self.is_current(&unpoisoned::lock(&self.state))
    }

    fn __len__(&self) -> usize {
        self.len
    }

    fn __enter__(slf: Py<Self>, py: Python<'_>) -> PyResult<Py<Self>> {
        if slf.get().released() {
            return Err(closed(py, "Sample"));
        }
        Ok(slf)
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, PyTuple>) -> PyResult<bool> {
        self.release()?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        format!(
            "<shmio.Sample of {:?} len={}{}>",
            self.name,
            self.len,
            if self.released() { " released" } else { "" }
        )
    }

    /// The buffer protocol: the message's bytes in shared memory, read-only.
    // `unsafe fn` because PyO3 declares the slot so: CPython calls it with a
    // `view` it owns and that is valid for writing; the one unsafe call
    // inside has its own SAFETY comment.
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if flags & ffi::PyBUF_WRITABLE != 0 {
            return Err(PyBufferError::new_err("a sample is read-only"));
        }
        let mut state = unpoisoned::lock(&this.state);
        let Some(held) = state.held.as_ref().filter(|_| state.ticket == this.ticket) else {
            // Unlocked first: making the exception may run the garbage
            // collector, whose dropping of a sample locks the state.
            drop(state);
            return Err(closed(py, "Sample"));
        };
        let len = isize::try_from(held.len())
            .map_err(|_| PyValueError::new_err("the message is too large for a buffer"))?;
        // SAFETY: `view` is the Py_buffer CPython passed to this slot. The
        // pointer and length are the held message's, in the topic's
        // mapping: it stays mapped and unchanged while the buffer lives,
        // because the subscriber (which keeps the mapping) sits in `state`,
        // which this sample keeps; the subscriber holds the message under
        // Overflow::Block, so no publisher writes its slot; and `release()`
        // and the subscriber's `close()` refuse while `exports` > 0.
        // FillInfo takes its own reference to `slf` for `view.obj`, so this
        // sample outlives the buffer too; CPython never writes through a
        // read-only buffer.
        let filled = unsafe {
            ffi::PyBuffer_FillInfo(
                view,
                slf.as_ptr(),
                held.as_ptr().cast_mut().cast(),
                len,
                1,
                flags,
            )
        };
        if filled != 0 {
            return Err(PyErr::fetch(py));
        }
        state.exports += 1;
        Ok(())
    }

    /// The end of one buffer's life: the last one lets the sample go.
    // `unsafe fn` because PyO3 declares the slot so; it does nothing unsafe
    // (the `view` pointer is not read).
    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {
        let mut state = unpoisoned::lock(&self.state);
        state.exports = state.exports.saturating_sub(1);
    }
}

impl Drop for PySample {
    /// A sample dropped unreleased lets go of its message: no buffer of it
    /// is alive (each would hold a reference to it).
    fn drop(&mut self) {
        let mut state = unpoisoned::lock(&self.state);
        if self.is_current(&state) {
            state.release_held();
        }
    }
}
