//! The Python exception hierarchy, and how every `shmio::Error` maps into it.
//!
//! `shmio.Error` derives `Exception`; each subclass that has a matching
//! builtin derives it too (`NotFoundError` is a `FileNotFoundError`,
//! `InvalidError` a `ValueError`, ...), so callers can catch either. The
//! classes are made with `type(...)` at import, because `create_exception!`
//! takes one base and these need two.

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyModule, PyTuple, PyType};

/// One exception class: its name, its bases besides `shmio.Error` (as
/// builtins' names), and its docstring.
struct Spec {
    name: &'static str,
    builtin_bases: &'static [&'static str],
    doc: &'static str,
}

/// Every class below `shmio.Error`, in the order of `Kind`.
const SPECS: &[Spec] = &[
    Spec {
        name: "NotFoundError",
        builtin_bases: &["FileNotFoundError"],
        doc: "No object (or backing file) with that name exists.",
    },
    Spec {
        name: "AlreadyExistsError",
        builtin_bases: &["FileExistsError"],
        doc: "`create` found the name already taken.",
    },
    Spec {
        name: "AccessError",
        builtin_bases: &["PermissionError"],
        doc: "The OS refused access, the object belongs to another user, or the mapping is read-only.",
    },
    Spec {
        name: "TimeoutError",
        builtin_bases: &["TimeoutError"],
        doc: "A wait with a timeout ran out (or an opened object was never sized by its creator).",
    },
    Spec {
        name: "InvalidError",
        builtin_bases: &["ValueError"],
        doc: "An invalid name, size, offset, option or message (too large, not encodable, not decodable).",
    },
    Spec {
        name: "ClosedError",
        builtin_bases: &[],
        doc: "The object was used after `close()` (an `InvalidError`, so a `ValueError`).",
    },
    Spec {
        name: "CorruptError",
        builtin_bases: &[],
        doc: "Bytes in shared memory break the framing they claim to follow.",
    },
    Spec {
        name: "ResourceError",
        builtin_bases: &[],
        doc: "Out of a resource: handles, space, address space, channel seats or bus listener slots.",
    },
    Spec {
        name: "WouldBlockError",
        builtin_bases: &["BlockingIOError"],
        doc: "A channel was full or empty (try_send / try_recv return False / None instead).",
    },
    Spec {
        name: "DeadlockError",
        builtin_bases: &["RuntimeError"],
        doc: "This thread already holds the mutex: locking it again would deadlock.",
    },
    Spec {
        name: "OwnerDiedError",
        builtin_bases: &[],
        doc: "The previous owner of a mutex died holding it.",
    },
    Spec {
        name: "HandlerError",
        builtin_bases: &[],
        doc: "A bus listener's handler failed; `pid` is the listener's process id.",
    },
    Spec {
        name: "ListenerDiedError",
        builtin_bases: &[],
        doc: "A bus listener died (or left) while it was called; `pid` is its process id.",
    },
    Spec {
        name: "DisconnectedError",
        builtin_bases: &["BrokenPipeError"],
        doc: "A channel's wait can never end: it is empty (or full) and every other handle on it has closed.",
    },
    Spec {
        name: "NoListenerError",
        builtin_bases: &["LookupError"],
        doc: "A bus call found no listener of its command (in the process asked, for `call_pid`); a call every listener passed returns None.",
    },
    Spec {
        name: "PostIncompleteError",
        builtin_bases: &[],
        doc: "A bus post did not reach every listener: `reached` is how many it did, `full` the pids whose inboxes were full.",
    },
    Spec {
        name: "LaggedError",
        builtin_bases: &[],
        doc: "A topic's subscriber fell behind and messages were overwritten before it read them: `missed` is how many; the next receive goes on from the oldest one held.",
    },
    Spec {
        name: "UnsupportedError",
        builtin_bases: &["NotImplementedError"],
        doc: "What was asked for does not exist on this platform.",
    },
    Spec {
        name: "OsError",
        builtin_bases: &["OSError"],
        doc: "Any other failure of an OS call.",
    },
];

/// The classes, by position in `SPECS`.
#[derive(Clone, Copy)]
pub(crate) enum Kind {
    NotFound,
    AlreadyExists,
    Access,
    Timeout,
    Invalid,
    Closed,
    Corrupt,
    Resource,
    WouldBlock,
    Deadlock,
    OwnerDied,
    Handler,
    ListenerDied,
    Disconnected,
    NoListener,
    PostIncomplete,
    Lagged,
    Unsupported,
    Os,
}

/// `shmio.Error` and its subclasses, made once at import.
struct Classes {
    base: Py<PyType>,
    kinds: Vec<Py<PyType>>,
}

static CLASSES: PyOnceLock<Classes> = PyOnceLock::new();

/// Makes the classes and adds them to the module.
pub(crate) fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = module.py();
    let builtins = PyModule::import(py, "builtins")?;
    let make_type = builtins.getattr("type")?;
    let namespace = |doc: &str| -> PyResult<Bound<'_, PyDict>> {
        let dict = PyDict::new(py);
        dict.set_item("__doc__", doc)?;
        dict.set_item("__module__", "shmio")?;
        Ok(dict)
    };
    let exception = builtins.getattr("Exception")?;
    let base = make_type
        .call1((
            "Error",
            PyTuple::new(py, [exception])?,
            namespace(
                "The base of every error shmio raises; `str(e)` is the Rust error's message.",
            )?,
        ))?
        .cast_into::<PyType>()?;
    module.add("Error", &base)?;
    let mut kinds: Vec<Py<PyType>> = Vec::with_capacity(SPECS.len());
    for spec in SPECS {
        // ClosedError is an InvalidError (so a ValueError), as for closed files.
        let first = if spec.name == "ClosedError" {
            kinds[Kind::Invalid as usize].bind(py).clone().into_any()
        } else {
            base.clone().into_any()
        };
        let mut bases = vec![first];
        for builtin in spec.builtin_bases {
            bases.push(builtins.getattr(*builtin)?);
        }
        let class = make_type
            .call1((spec.name, PyTuple::new(py, bases)?, namespace(spec.doc)?))?
            .cast_into::<PyType>()?;
        module.add(spec.name, &class)?;
        kinds.push(class.unbind());
    }
    let classes = Classes {
        base: base.unbind(),
        kinds,
    };
    // A second import of the module (a sub-interpreter) keeps the first classes.
    let _ = CLASSES.set(py, classes);
    Ok(())
}

/// A new exception of `kind` saying `message`.
pub(crate) fn new_error(py: Python<'_>, kind: Kind, message: impl Into<String>) -> PyErr {
    let message = message.into();
    match CLASSES.get(py) {
        Some(classes) => PyErr::from_type(classes.kinds[kind as usize].bind(py).clone(), message),
        None => PyRuntimeError::new_err(message),
    }
}

/// Whether `error` is one of `kind`'s.
pub(crate) fn is_kind(py: Python<'_>, error: &PyErr, kind: Kind) -> bool {
    CLASSES
        .get(py)
        .is_some_and(|classes| error.is_instance(py, classes.kinds[kind as usize].bind(py)))
}

/// The base class `shmio.Error`, for errors of no finer kind.
fn base_error(py: Python<'_>, message: String) -> PyErr {
    match CLASSES.get(py) {
        Some(classes) => PyErr::from_type(classes.base.bind(py).clone(), message),
        None => PyRuntimeError::new_err(message),
    }
}

/// `shmio.ClosedError` for an object used after `close()`.
pub(crate) fn closed(py: Python<'_>, what: &str) -> PyErr {
    new_error(
        py,
        Kind::Closed,
        format!("I/O operation on a closed {what}"),
    )
}

/// `shmio.InvalidError` with `message`.
pub(crate) fn invalid(py: Python<'_>, message: impl Into<String>) -> PyErr {
    new_error(py, Kind::Invalid, message)
}

/// The Python exception for a Rust error, carrying its message (and, for
/// bus errors, the pids involved as attributes).
pub(crate) fn to_py(py: Python<'_>, error: shmio::Error) -> PyErr {
    use shmio::Error as E;
    let message = error.to_string();
    let kind = match &error {
        E::NotFound { .. } | E::FileNotFound { .. } => Kind::NotFound,
        E::AlreadyExists { .. } => Kind::AlreadyExists,
        E::PermissionDenied { .. } | E::ForeignOwner { .. } | E::ReadOnly { .. } => Kind::Access,
        E::TimedOut { .. } | E::NotReady { .. } | E::Interrupted { .. } => Kind::Timeout,
        E::InvalidName { .. }
        | E::WrongKind { .. }
        | E::InvalidSize { .. }
        | E::TooLarge { .. }
        | E::UnexpectedEof { .. }
        | E::OutOfBounds { .. }
        | E::Misaligned { .. }
        | E::InvalidSeek { .. }
        | E::InvalidOptions { .. }
        | E::Decode { .. }
        | E::UndecodableMessage { .. }
        | E::Encode { .. }
        | E::Mismatch { .. }
        | E::MessageTooLarge { .. }
        | E::Inherited { .. } => Kind::Invalid,
        E::Corrupt { .. } => Kind::Corrupt,
        E::OutOfAddressSpace { .. }
        | E::TooManyHandles { .. }
        | E::NoSpace { .. }
        | E::TooManyParticipants { .. }
        | E::TooManyListeners { .. } => Kind::Resource,
        E::Full | E::Empty | E::WouldBlock => Kind::WouldBlock,
        E::WouldDeadlock { .. } => Kind::Deadlock,
        E::OwnerDied { .. } => Kind::OwnerDied,
        E::Handler { .. } => Kind::Handler,
        E::ListenerDied { .. } => Kind::ListenerDied,
        E::NoListener { .. } => Kind::NoListener,
        E::Disconnected { .. } => Kind::Disconnected,
        E::PostIncomplete { .. } => Kind::PostIncomplete,
        E::Lagged { .. } => Kind::Lagged,
        E::Unsupported { .. } => Kind::Unsupported,
        E::Os { .. } => Kind::Os,
        _ => return base_error(py, message),
    };
    let err = new_error(py, kind, message);
    // Attributes that let a caller act without parsing the message.
    let value = err.value(py);
    let _ = match &error {
        E::Handler { pid, .. } | E::ListenerDied { pid } => value.setattr("pid", *pid),
        E::Lagged { missed, .. } => value.setattr("missed", *missed),
        E::PostIncomplete { reached, full, .. } => value
            .setattr("reached", *reached)
            .and_then(|()| value.setattr("full", full.clone())),
        E::Os { source, .. } => match source.raw_os_error() {
            Some(errno) => value.setattr("errno", errno),
            None => Ok(()),
        },
        _ => Ok(()),
    };
    err
}

/// `Result<T, shmio::Error>` into `PyResult<T>`.
pub(crate) trait IntoPyResult<T> {
    /// The Python exception for the error, if any.
    fn py(self, py: Python<'_>) -> PyResult<T>;
}

impl<T> IntoPyResult<T> for shmio::Result<T> {
    fn py(self, py: Python<'_>) -> PyResult<T> {
        self.map_err(|error| to_py(py, error))
    }
}
