"""shmio: shared memory between processes, the very objects Rust processes use.

Named mappings (:class:`Mapping`), a robust named mutex (:class:`Mutex`,
``Mapping.lock()``), a named event (:class:`Event`), a message queue
(:class:`Channel`), publish–subscribe (:class:`Topic`) and a command bus
(:class:`Bus`), found by name from any process of the same user, Python or
Rust, with the same layout and guarantees. Errors are :class:`Error` and its subclasses, which also derive
the matching builtins (``NotFoundError`` is a ``FileNotFoundError``,
``InvalidError`` a ``ValueError``, ...).
"""

import atexit
import os as _os
from importlib import metadata as _metadata

from ._shmio import (
    RECORD_HEADER_LEN,
    AccessError,
    AlreadyExistsError,
    Bus,
    Channel,
    ClosedError,
    CorruptError,
    DeadlockError,
    DisconnectedError,
    Error,
    Event,
    HandlerError,
    InvalidError,
    LaggedError,
    ListenDecorator,
    ListenerDiedError,
    LockGuard,
    Mapping,
    Mutex,
    NoListenerError,
    NotFoundError,
    OsError,
    OwnerDiedError,
    PostIncompleteError,
    ResourceError,
    Sample,
    Subscriber,
    TimeoutError,
    Topic,
    UnsupportedError,
    WouldBlockError,
    _forget_inherited_holds,
    close_all_buses,
)

# Leave every bus at exit, while its dispatch thread can still attach to the
# interpreter: then every object is closed as the interpreter ends, and the
# names go with their last holder as they do in Rust.
atexit.register(close_all_buses)

# A forked child's copy of the forking thread's held locks is not a hold:
# the parent still holds them. Forgotten, the child's lock() waits for the
# parent instead of raising DeadlockError. (Forks by os.fork, so by
# multiprocessing's fork start method; no fork on Windows.)
if hasattr(_os, "register_at_fork"):
    _os.register_at_fork(after_in_child=_forget_inherited_holds)

try:
    __version__ = _metadata.version("shmio")
except _metadata.PackageNotFoundError:  # run from the sources, not installed
    __version__ = "0.0.0"

__all__ = [
    "RECORD_HEADER_LEN",
    "AccessError",
    "AlreadyExistsError",
    "Bus",
    "Channel",
    "ClosedError",
    "CorruptError",
    "DeadlockError",
    "DisconnectedError",
    "Error",
    "Event",
    "HandlerError",
    "InvalidError",
    "LaggedError",
    "ListenDecorator",
    "ListenerDiedError",
    "NoListenerError",
    "LockGuard",
    "Mapping",
    "Mutex",
    "NotFoundError",
    "OsError",
    "OwnerDiedError",
    "PostIncompleteError",
    "ResourceError",
    "Sample",
    "Subscriber",
    "TimeoutError",
    "Topic",
    "UnsupportedError",
    "WouldBlockError",
    "close_all_buses",
]
