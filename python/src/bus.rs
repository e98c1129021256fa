//! `shmio.Bus`: named commands between processes (Python and Rust): join
//! a group, listen to commands, call them, broadcast, post.
//!
//! A handler runs on the bus's dispatch thread (a Rust thread), which
//! attaches to the interpreter to call the Python function. So that it can,
//! every call that may wait for a handler or the dispatch thread (a call,
//! `close()`, the bus's end) releases the GIL while it waits.
//!
//! A member inherited by a forked child is its parent's (its inbox seat,
//! its dispatch thread, its listeners): on first use the child joins the
//! group anew, as a member with no listeners (see `inherited.rs`).

use std::sync::mpsc;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple, PyType};
use serde_json::Value;
use shmio::{Bus, BusOptions, Listener};

use crate::aio::{Awaiting, Made};
use crate::errors::{closed, invalid, to_py, IntoPyResult};
use crate::inherited::{drop_quietly, retried_if_inherited, with_keywords};
use crate::json::{from_json, to_json};
use crate::unpoisoned;
use crate::wait::SLICE;

/// A member of a bus group: listens to commands and calls them.
///
/// Handlers get the arguments as JSON values (dict, list, str, int,
/// float, bool, None) and return the reply as one; returning None passes
/// the call to the next listener; raising gives the caller `HandlerError`
/// with the exception's text. They run on the bus's dispatch thread.
#[pyclass(module = "shmio", name = "Bus", frozen)]
pub(crate) struct PyBus {
    member: Arc<Member>,
    group: String,
    /// What it joined with, for joining again in a forked child, whose
    /// inherited member is its parent.
    options: BusOptions,
    /// The keywords `join` was given, for pickling.
    keywords: JoinKeywords,
}

/// `Bus.join`'s keywords, as given (None: the default).
#[derive(Clone, Copy)]
struct JoinKeywords {
    inbox_capacity: Option<u32>,
    max_message_size: Option<u32>,
    permissions: Option<u32>,
}

/// A bus and the listeners registered through it: what leaving drops.
struct Member {
    bus: StdMutex<Option<Arc<Bus>>>,
    listeners: StdMutex<Vec<Listener>>,
}

impl Member {
    /// Takes the bus and its listeners out, to be dropped by the caller
    /// with the GIL released (the bus's end joins its dispatch thread,
    /// which may be waiting to attach).
    fn take(&self) -> (Vec<Listener>, Option<Arc<Bus>>) {
        let listeners = std::mem::take(&mut *unpoisoned::lock(&self.listeners));
        let bus = unpoisoned::lock(&self.bus).take();
        (listeners, bus)
    }
}

/// Every member of this process not yet left, so that the interpreter's
/// exit can leave them (`close_all_buses`, registered with `atexit`)
/// while threads can still attach: a dispatch thread running at
/// finalization would stop the interpreter's clean-up, and the names of
/// every object still open would outlive the process.
static MEMBERS: StdMutex<Vec<std::sync::Weak<Member>>> = StdMutex::new(Vec::new());

/// Leaves every bus this process is still a member of (run at exit).
#[pyfunction]
pub(crate) fn close_all_buses(py: Python<'_>) {
    let members: Vec<std::sync::Weak<Member>> = std::mem::take(&mut *unpoisoned::lock(&MEMBERS));
    let taken: Vec<_> = members
        .iter()
        .filter_map(std::sync::Weak::upgrade)
        .map(|member| member.take())
        .collect();
    // In a forked child these are the parent's members, whose end touches
    // nothing of the parent's.
    py.detach(|| drop_quietly(taken));
}

/// `bus.listen(name)` used as a decorator: registers the function it decorates.
#[pyclass(module = "shmio", frozen)]
pub(crate) struct ListenDecorator {
    bus: Py<PyBus>,
    command: String,
}

#[pymethods]
impl ListenDecorator {
    /// Registers `handler` for the command, and returns it unchanged.
    fn __call__<'py>(
        &self,
        py: Python<'py>,
        handler: Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.bus
            .get()
            .register(py, &self.command, handler.clone().unbind())?;
        Ok(handler)
    }
}

/// `Type: message` for a Python exception, as a caller will read it.
fn describe(py: Python<'_>, error: &PyErr) -> String {
    let name = error
        .get_type(py)
        .name()
        .map(|name| name.to_string())
        .unwrap_or_else(|_| "Exception".to_owned());
    format!("{name}: {}", error.value(py))
}

/// Runs `work` (a bus call that may wait up to its timeout) so that Ctrl-C
/// interrupts the wait: on the main thread, where signals arrive, `work`
/// runs on a helper thread while this one checks signals every slice (an
/// interrupted call finishes, unheard, within its own timeout); elsewhere
/// (a handler on the dispatch thread, which must read its own inbox), it
/// runs right here with the GIL released.
fn interruptible<T: Send + 'static>(
    py: Python<'_>,
    work: impl FnOnce() -> T + Send + 'static,
) -> PyResult<T> {
    let threading = py.import("threading")?;
    let on_main = threading
        .call_method0("current_thread")?
        .is(&threading.call_method0("main_thread")?);
    if !on_main {
        return Ok(py.detach(work));
    }
    let (done, result) = mpsc::channel();
    std::thread::Builder::new()
        .name("shmio-bus-call".to_owned())
        .spawn(move || {
            let _ = done.send(work());
        })
        .map_err(|e| PyRuntimeError::new_err(format!("cannot start a thread for the call: {e}")))?;
    let mut result = result;
    loop {
        // The receiver goes into the detached wait and comes back (it is Send, not Sync).
        let (outcome, back) = py.detach(move || (result.recv_timeout(SLICE), result));
        result = back;
        match outcome {
            Ok(value) => return Ok(value),
            Err(mpsc::RecvTimeoutError::Timeout) => py.check_signals()?,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(PyRuntimeError::new_err("the bus call's thread failed"))
            }
        }
    }
}

/// Runs `work` detached from the interpreter, giving it a question to
/// ask while it waits: whether a signal came (Python's handler for it ran,
/// on the main thread). If one did, what its handler raised (Ctrl-C's
/// `KeyboardInterrupt`) is the result.
fn interrupted_by_signals<T: Send>(
    py: Python<'_>,
    work: impl FnOnce(&dyn Fn() -> bool) -> T + Send,
) -> PyResult<T> {
    let raised: StdMutex<Option<PyErr>> = StdMutex::new(None);
    let interrupted = || {
        Python::attach(|py| match py.check_signals() {
            Ok(()) => false,
            Err(error) => {
                *unpoisoned::lock(&raised) = Some(error);
                true
            }
        })
    };
    let result = py.detach(|| work(&interrupted));
    match unpoisoned::into_inner(raised) {
        Some(error) => Err(error),
        None => Ok(result),
    }
}

/// Gives the calling thread (a bus's dispatch thread, which runs every
/// handler of its member) a Python thread state it keeps for its life.
/// Attaching from a thread without one makes one and frees it again each
/// time (`PyGILState_Ensure`/`Release` with nothing outstanding): that was
/// most of a Python handler's cost, ~8 µs a call. With one kept, attaching
/// only takes the GIL. The state is never freed by the thread (it would
/// need the GIL while the interpreter may be finalizing): the interpreter
/// frees every thread state at exit, one per dispatch thread that ran a
/// handler.
fn keep_thread_state() {
    thread_local! {
        static KEPT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    KEPT.with(|kept| {
        if kept.replace(true) {
            return;
        }
        // SAFETY: this thread holds no GIL here (handlers run detached), so
        // Ensure makes this thread's state and takes the GIL (PyO3's Ensure
        // hangs, rather than exiting the thread, if the interpreter is
        // finalizing), and SaveThread at once releases the GIL it took,
        // keeping the state, whose count of holders stays at one.
        unsafe {
            pyo3::ffi::PyGILState_Ensure();
            pyo3::ffi::PyEval_SaveThread();
        }
    });
}

/// A timeout in seconds as a Duration: None, `inf` or more seconds than a
/// Duration holds wait for ever (as long as the library's clock reaches).
fn duration(py: Python<'_>, seconds: Option<f64>) -> PyResult<Duration> {
    match seconds {
        None => Ok(Duration::MAX),
        Some(seconds) if seconds.is_nan() || seconds < 0.0 => Err(invalid(
            py,
            format!("timeout must be None or >= 0 seconds, not {seconds}"),
        )),
        Some(seconds) => Ok(Duration::try_from_secs_f64(seconds).unwrap_or(Duration::MAX)),
    }
}

impl PyBus {
    fn bus(&self, py: Python<'_>) -> PyResult<Arc<Bus>> {
        let bus = unpoisoned::lock(&self.member.bus);
        bus.clone().ok_or_else(|| closed(py, "Bus"))
    }

    /// Makes `call` on this process's member: see `retried_if_inherited`.
    fn on_bus<T>(
        &self,
        py: Python<'_>,
        call: impl FnMut(&Arc<Bus>) -> PyResult<shmio::Result<T>>,
    ) -> PyResult<T> {
        let bus = self.bus(py)?;
        retried_if_inherited(py, bus, |inherited| self.rejoin(py, inherited), call)
    }

    /// Joins the group in this process in place of `inherited`, the
    /// member of the process this one was forked from, whose listeners
    /// go with it (they are the parent's, and stay registered for it);
    /// the member in place afterwards (another thread's, if it rejoined first).
    fn rejoin(&self, py: Python<'_>, inherited: &Arc<Bus>) -> PyResult<Arc<Bus>> {
        let options = self.options.clone();
        let group = self.group.clone();
        let joined = Arc::new(py.detach(move || options.join(&group)).py(py)?);
        // In `Member::take`'s order: listeners, then the bus.
        let mut listeners = unpoisoned::lock(&self.member.listeners);
        let mut slot = unpoisoned::lock(&self.member.bus);
        let (current, unused) = match slot.as_ref() {
            Some(current) if Arc::ptr_eq(current, inherited) => {
                let replaced = slot.replace(Arc::clone(&joined));
                let parents = std::mem::take(&mut *listeners);
                (Ok(joined), (parents, replaced))
            }
            Some(current) => (Ok(Arc::clone(current)), (Vec::new(), Some(joined))),
            None => (Err(closed(py, "Bus")), (Vec::new(), Some(joined))),
        };
        drop(slot);
        drop(listeners);
        py.detach(|| drop_quietly(unused));
        current
    }

    fn register(&self, py: Python<'_>, command: &str, handler: Py<PyAny>) -> PyResult<()> {
        if !handler.bind(py).is_callable() {
            return Err(pyo3::exceptions::PyTypeError::new_err(
                "a bus handler must be callable",
            ));
        }
        let listener = self.on_bus(py, |bus| {
            let handler = handler.clone_ref(py);
            Ok(py.detach(|| {
                bus.listen(
                    command,
                    move |args: Value| -> Result<Option<Value>, String> {
                        keep_thread_state();
                        Python::attach(|py| {
                            let args = from_json(py, &args).map_err(|e| describe(py, &e))?;
                            let reply = handler
                                .bind(py)
                                .call1((args,))
                                .map_err(|e| describe(py, &e))?;
                            if reply.is_none() {
                                return Ok(None);
                            }
                            to_json(&reply).map(Some).map_err(|e| describe(py, &e))
                        })
                    },
                )
            }))
        })?;
        unpoisoned::lock(&self.member.listeners).push(listener);
        Ok(())
    }

    /// Drops the bus and its listeners with the GIL released: the bus's
    /// end joins its dispatch thread, which may be waiting for the GIL.
    /// A forked child's inherited member ends touching nothing of its parent's.
    fn shut(&self, py: Python<'_>) {
        let taken = self.member.take();
        py.detach(|| drop_quietly(taken));
    }
}

#[pymethods]
impl PyBus {
    /// Joins the bus group `group` (created if it does not exist).
    /// `inbox_capacity` and `max_message_size` size this member's inbox.
    // A class method, not a static one, so that pickle finds it through
    // the class (`__reduce__`).
    #[classmethod]
    #[pyo3(signature = (group, *, inbox_capacity=None, max_message_size=None, permissions=None))]
    fn join(
        _cls: &Bound<'_, PyType>,
        py: Python<'_>,
        group: &str,
        inbox_capacity: Option<u32>,
        max_message_size: Option<u32>,
        permissions: Option<u32>,
    ) -> PyResult<Self> {
        let mut options = Bus::options();
        if let Some(capacity) = inbox_capacity {
            options.inbox_capacity(capacity);
        }
        if let Some(size) = max_message_size {
            options.max_message_size(size);
        }
        if let Some(permissions) = permissions {
            options.permissions(permissions);
        }
        let bus = py.detach(|| options.join(group)).py(py)?;
        let keywords = JoinKeywords {
            inbox_capacity,
            max_message_size,
            permissions,
        };
        let group = bus.group().to_owned();
        let member = Arc::new(Member {
            bus: StdMutex::new(Some(Arc::new(bus))),
            listeners: StdMutex::new(Vec::new()),
        });
        let mut members = unpoisoned::lock(&MEMBERS);
        members.retain(|member| member.strong_count() > 0);
        members.push(Arc::downgrade(&member));
        drop(members);
        Ok(PyBus {
            group,
            member,
            options,
            keywords,
        })
    }

    /// The group's name.
    #[getter]
    fn group(&self) -> &str {
        &self.group
    }

    /// Listens to `command` with `handler(args) -> reply`: `bus.listen("add",
    /// fn)` registers `fn` and returns it; `@bus.listen("add")` is the
    /// decorator form. Listeners of a command, in every process, are asked
    /// in the order they registered.
    #[pyo3(signature = (command, handler=None))]
    fn listen(
        slf: Bound<'_, Self>,
        command: &str,
        handler: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        match handler {
            Some(handler) => {
                slf.get().register(py, command, handler.clone().unbind())?;
                Ok(handler.unbind())
            }
            None => {
                slf.get().bus(py)?;
                let decorator = ListenDecorator {
                    bus: slf.unbind(),
                    command: command.to_owned(),
                };
                Ok(Py::new(py, decorator)?.into_any())
            }
        }
    }

    /// Stops every listener of `command` this member registered; how many.
    fn unlisten(&self, py: Python<'_>, command: &str) -> PyResult<usize> {
        let any = !unpoisoned::lock(&self.member.listeners).is_empty();
        if any {
            // In a forked child the listeners are the parent's: rejoining
            // lets them go (still registered for the parent), none to stop.
            self.on_bus(py, |bus| Ok(py.detach(|| bus.listeners(command)).map(drop)))?;
        }
        let mut listeners = unpoisoned::lock(&self.member.listeners);
        let (gone, kept): (Vec<Listener>, Vec<Listener>) = std::mem::take(&mut *listeners)
            .into_iter()
            .partition(|l| l.command() == command);
        *listeners = kept;
        drop(listeners);
        let count = gone.len();
        py.detach(|| drop(gone));
        Ok(count)
    }

    /// Calls `command` with `args`: its listeners are asked in order until
    /// one replies, whose reply is returned; None if all passed;
    /// `NoListenerError` if none listens. At most `timeout` seconds in all
    /// (`TimeoutError`; None or `inf`: for ever).
    /// `HandlerError` if the handler raised, `ListenerDiedError` if it died.
    #[pyo3(signature = (command, args=None, timeout=5.0))]
    fn call<'py>(
        &self,
        py: Python<'py>,
        command: &str,
        args: Option<Bound<'py, PyAny>>,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.call_inner(py, None, command, args, timeout)
    }

    /// Calls `command` with `args` and awaits the reply (asyncio): the
    /// awaitable of `call`, with its rules and errors, waiting at most
    /// `timeout` seconds in all (None or `inf`: for ever). Cancelling the
    /// task stops the call: a reply that comes later is dropped, never
    /// handed to another call.
    #[pyo3(signature = (command, args=None, timeout=5.0))]
    fn call_async<'py>(
        &self,
        py: Python<'py>,
        command: &str,
        args: Option<Bound<'py, PyAny>>,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let args = args_json(args.as_ref())?;
        let within = duration(py, timeout)?;
        let bus = self.bus(py)?;
        let command = command.to_owned();
        let message = format!("timed out calling {command:?} in {:?}", self.group);
        let calling = async move {
            let reply = bus
                .call_async::<Value, Value>(&command, &args, within)
                .await;
            Box::new(move |py: Python<'_>| match reply.py(py)? {
                Some(reply) => Ok(from_json(py, &reply)?.unbind()),
                None => Ok(py.None()),
            }) as Made
        };
        Awaiting::coroutine(py, calling, None, &message)
    }

    /// As `call`, asking only the listeners in the process `pid`.
    #[pyo3(signature = (pid, command, args=None, timeout=5.0))]
    fn call_pid<'py>(
        &self,
        py: Python<'py>,
        pid: u32,
        command: &str,
        args: Option<Bound<'py, PyAny>>,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.call_inner(py, Some(pid), command, args, timeout)
    }

    /// Calls `command` on every listener at once; a list of `(pid,
    /// outcome)` in registration order, where the outcome is the reply (None
    /// if it passed) or the exception that stands for its failure
    /// (`TimeoutError`, `HandlerError`, `ListenerDiedError`).
    #[pyo3(signature = (command, args=None, timeout=5.0))]
    fn broadcast<'py>(
        &self,
        py: Python<'py>,
        command: &str,
        args: Option<Bound<'py, PyAny>>,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyList>> {
        let args = args_json(args.as_ref())?;
        let timeout = duration(py, timeout)?;
        let replies = self.on_bus(py, |bus| {
            let (bus, command, args) = (Arc::clone(bus), command.to_owned(), args.clone());
            interruptible(py, move || {
                bus.broadcast::<Value, Value>(&command, &args, timeout)
            })
        })?;
        let list = PyList::empty(py);
        for answer in replies.answers {
            let outcome = match answer.outcome {
                Ok(Some(reply)) => from_json(py, &reply)?,
                Ok(None) => py.None().into_bound(py),
                Err(error) => to_py(py, error).into_value(py).into_bound(py).into_any(),
            };
            list.append(PyTuple::new(
                py,
                [answer.pid.into_pyobject(py)?.into_any(), outcome],
            )?)?;
        }
        Ok(list)
    }

    /// Queues `command` with `args` for every listener without waiting;
    /// how many it was queued for. `PostIncompleteError` if some inboxes
    /// were full.
    #[pyo3(signature = (command, args=None))]
    fn post(
        &self,
        py: Python<'_>,
        command: &str,
        args: Option<Bound<'_, PyAny>>,
    ) -> PyResult<usize> {
        let args = args_json(args.as_ref())?;
        self.on_bus(py, |bus| Ok(py.detach(|| bus.post(command, &args))))
    }

    /// The pids of the listeners of `command`, in the order they are asked.
    fn listeners(&self, py: Python<'_>, command: &str) -> PyResult<Vec<u32>> {
        let found = self.on_bus(py, |bus| Ok(py.detach(|| bus.listeners(command))))?;
        Ok(found.into_iter().map(|info| info.pid).collect())
    }

    /// Every listener of the group as `(command, pid)` pairs.
    fn commands(&self, py: Python<'_>) -> PyResult<Vec<(String, u32)>> {
        let found = self.on_bus(py, |bus| Ok(py.detach(|| bus.commands())))?;
        Ok(found
            .into_iter()
            .map(|info| (info.command, info.pid))
            .collect())
    }

    /// Leaves the group: stops this member's listeners and its dispatch
    /// thread. In a forked child that never used it, the member is the
    /// parent's copy, and closing it leaves the parent's member as it was.
    fn close(&self, py: Python<'_>) {
        self.shut(py);
    }

    /// Pickles as `Bus.join(group, ...)` with the keywords it was joined
    /// with: where it is unpickled (a child of multiprocessing's spawn or
    /// forkserver) it joins the group as a new member, with no listeners.
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<(Bound<'py, PyAny>, (String,))> {
        let py = slf.py();
        let this = slf.get();
        this.bus(py)?;
        let join = slf.get_type().getattr("join")?;
        let keywords = PyDict::new(py);
        let given = [
            ("inbox_capacity", this.keywords.inbox_capacity),
            ("max_message_size", this.keywords.max_message_size),
            ("permissions", this.keywords.permissions),
        ];
        for (keyword, value) in given {
            if let Some(value) = value {
                keywords.set_item(keyword, value)?;
            }
        }
        Ok((with_keywords(join, &keywords)?, (this.group.clone(),)))
    }

    /// Whether `close()` was called on this member.
    #[getter]
    fn closed(&self) -> bool {
        unpoisoned::lock(&self.member.bus).is_none()
    }

    fn __enter__(slf: Py<Self>, py: Python<'_>) -> PyResult<Py<Self>> {
        slf.get().bus(py)?;
        Ok(slf)
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, PyTuple>) -> bool {
        self.shut(py);
        false
    }

    fn __repr__(&self) -> String {
        let closed = if self.closed() { " closed" } else { "" };
        format!("<shmio.Bus {:?}{closed}>", self.group)
    }
}

impl PyBus {
    fn call_inner<'py>(
        &self,
        py: Python<'py>,
        pid: Option<u32>,
        command: &str,
        args: Option<Bound<'py, PyAny>>,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let args = args_json(args.as_ref())?;
        let timeout = duration(py, timeout)?;
        let reply = self.on_bus(py, |bus| match pid {
            Some(pid) => {
                let (bus, command, args) = (Arc::clone(bus), command.to_owned(), args.clone());
                interruptible(py, move || {
                    bus.call_pid::<Value, Value>(pid, &command, &args, timeout)
                })
            }
            // On the calling thread, asking every 20 ms whether Ctrl-C
            // came: no thread to start or hand over to, per call.
            None => interrupted_by_signals(py, |interrupted| {
                bus.call_interruptible::<Value, Value>(command, &args, timeout, interrupted)
            }),
        })?;
        match reply {
            Some(reply) => from_json(py, &reply),
            None => Ok(py.None().into_bound(py)),
        }
    }
}

impl Drop for PyBus {
    fn drop(&mut self) {
        // The bus's end joins its dispatch thread, which may be waiting to
        // attach to run a handler: wait detached.
        Python::attach(|py| self.shut(py));
    }
}

/// A call's arguments as JSON: `null` when none were given.
fn args_json(args: Option<&Bound<'_, PyAny>>) -> PyResult<Value> {
    args.map_or(Ok(Value::Null), to_json)
}
