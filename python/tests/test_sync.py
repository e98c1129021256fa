"""Mutex (and a mapping's lock), Event, and Ctrl-C during blocking waits."""

import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

import shmio
from conftest import WAIT, run_cli, unique
import workers


def test_mutex_acquire_release_and_timeouts(name):
    mutex = shmio.Mutex(name)
    assert not mutex.existed and mutex.name == name
    assert mutex.acquire(timeout=1)
    assert mutex.held and not mutex.owner_died
    with pytest.raises(shmio.DeadlockError):
        mutex.acquire(timeout=0.1)
    took = []
    other = threading.Thread(target=lambda: took.append(shmio.Mutex(name).acquire(timeout=0.2)))
    other.start()
    other.join(WAIT)
    assert took == [False]  # held by this thread
    mutex.release()
    with pytest.raises(RuntimeError):
        mutex.release()
    with mutex as guard:
        assert guard.held and not guard.owner_died
    with mutex.lock(timeout=1) as guard:
        pass
    assert not guard.held
    with pytest.raises(shmio.InvalidError):
        mutex.acquire(timeout=-2)
    mutex.close()
    with pytest.raises(shmio.ClosedError):
        mutex.acquire()


def test_mutex_speaks_threading_locks_language(name):
    """`acquire(blocking=True, timeout=-1)` and `locked()` as
    `threading.Lock` has them."""
    mutex = shmio.Mutex(name)
    assert not mutex.locked()
    assert mutex.acquire(True)  # blocking, for ever: not a 1-second timeout
    assert mutex.locked()
    mutex.release()
    assert mutex.acquire(blocking=False)
    with pytest.raises(ValueError):
        mutex.acquire(False, 1.0)
    other = []
    thread = threading.Thread(
        target=lambda: other.append(
            (shmio.Mutex(name).locked(), shmio.Mutex(name).acquire(blocking=False))
        )
    )
    thread.start()
    thread.join(WAIT)
    assert other == [(True, False)], "held by this thread, seen from another"
    mutex.release()
    assert mutex.acquire(timeout=float("inf"))
    mutex.release()
    mutex.close()


def test_event_speaks_threading_events_language(name):
    event = shmio.Event(name, manual_reset=True)
    with pytest.raises(shmio.InvalidError, match="AutoReset"):
        shmio.Event(name, manual_reset=False)  # a mismatch names both modes
    assert shmio.Event(name).manual_reset, "no mode asked: the creator's"
    assert not event.is_set()
    event.set()
    assert event.is_set() and event.is_set(), "is_set takes nothing"
    assert event.wait(timeout=float("inf"))
    event.clear()
    assert not event.is_set()
    assert not event.wait(timeout=0.01)
    event.close()


def test_mapping_lock_excludes_another_process(cli, name):
    """Rust's `shmio lock NAME -- CMD` takes the same mutex as m.lock()."""
    with shmio.Mapping.create_or_open(name, 4096) as mapping:
        with mapping.lock(timeout=5):
            rust = subprocess.Popen([str(cli), "lock", name, "--", "true"])
            time.sleep(0.5)
            assert rust.poll() is None, "Rust took the lock Python holds"
        assert rust.wait(WAIT) == 0


def _kill_holder(name: str, how) -> None:
    ready = unique("ready")
    event = shmio.Event(ready)
    child = multiprocessing.get_context("spawn").Process(target=how, args=(name, ready))
    child.start()
    try:
        assert event.wait(timeout=WAIT), "the child never took the lock"
        if how is workers.hold_lock_and_die:
            os.kill(child.pid, signal.SIGKILL)
        child.join(WAIT)
    finally:
        if child.is_alive():
            child.kill()
            child.join()
    event.close()


@pytest.mark.parametrize("how", [workers.hold_lock_and_die, workers.hold_lock_and_exit])
def test_a_dead_holder_is_reported_to_the_next_python_locker(name, how):
    with shmio.Mapping.create_or_open(name, 4096) as mapping:
        _kill_holder(name, how)
        with mapping.lock(timeout=WAIT) as state:
            assert state.owner_died
        with mapping.lock(timeout=WAIT) as state:
            assert state.owner_died, "told until the data is marked consistent"
            state.mark_consistent()
            assert not state.owner_died
        with mapping.lock(timeout=WAIT) as state:
            assert not state.owner_died
        with pytest.raises(RuntimeError):
            state.mark_consistent()


def test_a_dead_python_holder_is_reported_to_rust(cli, name):
    with shmio.Mapping.create_or_open(name, 4096):
        _kill_holder(name, workers.hold_lock_and_die)
        out = run_cli(cli, "lock", name, "--", "true")
        assert out.returncode == 0, out.stderr
        assert b"died holding it" in out.stderr


def test_event_auto_and_manual_reset(name):
    auto = shmio.Event(name)
    assert not auto.manual_reset
    assert not auto.wait(timeout=0.05)
    auto.set()
    assert auto.wait(timeout=1)
    assert not auto.wait(timeout=0.05)  # taken by the first wait
    manual = shmio.Event(unique("manual"), manual_reset=True)
    assert manual.manual_reset
    manual.set()
    assert manual.wait(timeout=1) and manual.wait(timeout=1)
    manual.reset()
    assert not manual.wait(timeout=0.05)
    opened = shmio.Event.open(name)
    assert opened.existed and not opened.manual_reset
    threading.Timer(0.1, opened.set).start()
    started = time.monotonic()
    assert auto.wait(timeout=WAIT)
    assert time.monotonic() - started < 5
    for event in (auto, manual, opened):
        event.close()
    with pytest.raises(shmio.ClosedError):
        auto.set()


@pytest.mark.parametrize("kind", ["recv", "topic", "event", "mutex"])
def test_ctrl_c_interrupts_a_blocking_wait_quickly(name, kind):
    holder = None
    if kind == "mutex":
        holder = shmio.Mutex(name)
        assert holder.acquire(timeout=1)
    child = subprocess.Popen(
        [sys.executable, "-c", f"import workers; workers.block_in({kind!r}, {name!r})"],
        cwd=os.path.dirname(__file__),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline().strip() == "ready"
        time.sleep(0.3)  # well inside the wait
        sent = time.monotonic()
        child.send_signal(signal.SIGINT)
        line = child.stdout.readline().split()
        elapsed = time.monotonic() - sent
        assert line and line[0] == "interrupted", line
        assert elapsed < 0.5, f"KeyboardInterrupt came after {elapsed:.3f} s"
        assert child.stdout.readline().strip() == "usable"
        assert child.wait(WAIT) == 0
    finally:
        child.kill()
        child.wait()
        if holder is not None:
            holder.release()
            holder.close()


@pytest.mark.parametrize("kind", ["mapping", "mutex", "event", "channel", "topic", "subscriber", "bus"])
def test_every_object_says_it_is_closed(name, kind):
    """`.closed`, a repr that says so, and `with` on a closed object raises."""
    make = {
        "mapping": lambda: shmio.Mapping.create_or_open(name, 4096),
        "mutex": lambda: shmio.Mutex(name),
        "event": lambda: shmio.Event(name),
        "channel": lambda: shmio.Channel.create_or_open(name, capacity=4, max_message_size=16),
        "topic": lambda: shmio.Topic.create_or_open(name, capacity=4, max_message_size=16),
        "subscriber": lambda: shmio.Topic.create_or_open(name, capacity=4, max_message_size=16).subscribe(),
        "bus": lambda: shmio.Bus.join(name),
    }[kind]
    obj = make()
    assert not obj.closed and not repr(obj).endswith(" closed>"), repr(obj)
    obj.close()
    assert obj.closed and repr(obj).endswith(" closed>"), repr(obj)
    with pytest.raises(shmio.ClosedError):
        with obj:
            pass
