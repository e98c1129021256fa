"""What a forked child does with the objects it inherits, and what it
leaves of its parent's: names, locks, bus listeners, channel messages.

A child made with os.fork() runs inside pytest's process: it never returns
into pytest (it ends with os._exit, or is killed). A child that ends
through the interpreter's own exit (sys.exit, with atexit) is the child of
a plain script run as a subprocess.
"""

import json
import multiprocessing
import os
import select
import signal
import struct
import subprocess
import sys
import threading
import traceback
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import pytest

import shmio
from conftest import WAIT, run_cli, unique
import workers

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
# What a forked child may do with a lock, and the names in /dev/shm, are Linux's.
on_linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="checked on Linux")

# Messages the parent sends before the fork, and how many a child takes.
SENT = 30
TAKEN = 10
# How long a wait that is meant to time out waits.
SHORT = 0.2


def wait_for_exit(pid: int, timeout: float = WAIT) -> int:
    """The wait status of the child `pid`, waiting at most `timeout`
    seconds for it to end (then it is killed, and the test fails)."""
    pidfd = os.pidfd_open(pid)
    try:
        ended = bool(select.select([pidfd], [], [], timeout)[0])
    finally:
        os.close(pidfd)
    if not ended:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail(f"the child {pid} did not end within {timeout} s")
    _, status = os.waitpid(pid, 0)
    return status


def read_line(fd: int, timeout: float = WAIT) -> bytes:
    """One line from the pipe `fd`, waiting at most `timeout` seconds."""
    line = b""
    while not line.endswith(b"\n"):
        ready, _, _ = select.select([fd], [], [], timeout)
        assert ready, "the child said nothing in time"
        chunk = os.read(fd, 4096)
        assert chunk, f"the child ended without saying anything (so far: {line!r})"
        line += chunk
    return line


def fork(body, *, then=lambda: None) -> tuple[int, dict]:
    """Forks a child that runs `body()` (a JSON-able report), writes the
    report to a pipe and runs `then()`; it ends with os._exit(0), or 1 if
    anything raised. Returns the child's pid and its report."""
    report_r, report_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(report_r)
            report = body()
            os.write(report_w, (json.dumps(report) + "\n").encode())
            then()
            code = 0
        except BaseException:
            traceback.print_exc()
            os.write(report_w, b'{"failed": true}\n')
        finally:
            os._exit(code)
    os.close(report_w)
    try:
        report = json.loads(read_line(report_r))
    finally:
        os.close(report_r)
    assert "failed" not in report, "the child failed (its traceback is on stderr)"
    return pid, report


@dataclass
class Objects:
    """One of each, made by the parent, which holds the two locks and listens on the bus."""

    mapping: shmio.Mapping
    mutex: shmio.Mutex
    event: shmio.Event
    channel: shmio.Channel
    bus: shmio.Bus
    guard: shmio.LockGuard

    def close(self) -> None:
        if self.guard.held:
            self.guard.release()
        if self.mutex.held:
            self.mutex.release()
        for obj in (self.bus, self.channel, self.event, self.mutex, self.mapping):
            obj.close()


@pytest.fixture
def objects(name):
    mapping = shmio.Mapping.create_or_open(name + "-mapping", 4096)
    mutex = shmio.Mutex(name + "-mutex")
    event = shmio.Event(name + "-event")
    channel = shmio.Channel.create_or_open(name + "-channel", capacity=64, max_message_size=16)
    bus = shmio.Bus.join(name + "-bus")
    bus.listen("echo", lambda args: {"pid": os.getpid(), "args": args})
    guard = mapping.lock(timeout=WAIT)
    assert mutex.acquire(timeout=WAIT)
    for number in range(SENT):
        channel.send(b"%d" % number, timeout=WAIT)
    made = Objects(mapping, mutex, event, channel, bus, guard)
    yield made
    made.close()


def use_inherited(objects: Objects) -> dict:
    """In the child: uses every inherited object; what it saw."""
    objects.mapping.write_at(0, b"the child was here")
    try:
        objects.mapping.lock(timeout=SHORT).release()
        mapping_lock = "taken"
    except shmio.TimeoutError:
        mapping_lock = "waited"
    except shmio.DeadlockError:
        mapping_lock = "deadlock"
    mutex_taken = objects.mutex.acquire(timeout=SHORT)
    objects.event.set()
    received = [int(objects.channel.recv(timeout=WAIT)) for _ in range(TAKEN)]
    # The parent's listeners are not the child's to stop.
    unlistened = objects.bus.unlisten("echo")
    reply = objects.bus.call("echo", "from the child", timeout=WAIT)
    return {
        "unlistened": unlistened,
        "mapping_lock": mapping_lock,
        "mutex_taken": mutex_taken,
        "received": received,
        "reply": reply,
        "listeners": objects.bus.listeners("echo"),
    }


def close_all(objects: Objects) -> dict:
    """In the child: closes every inherited object (none may raise)."""
    for obj in (objects.mapping, objects.mutex, objects.event, objects.channel, objects.bus):
        obj.close()
    return {"received": []}


def shm_names(objects: Objects) -> list[Path]:
    base = Path("/dev/shm")
    return [
        base / objects.mapping.name,
        base / (objects.mutex.name + "@mutex"),
        base / (objects.event.name + "@event"),
        base / objects.channel.name,
        base / objects.bus.group,
    ]


def assert_parent_intact(objects: Objects, cli: Path, listeners: list[int], child_received: list[int]) -> None:
    """After the child ended: the parent's names stay, its locks are held,
    its listener answers, and every message is received exactly once."""
    for path in shm_names(objects):
        assert path.exists(), f"{path} is gone"
    shmio.Mapping.open(objects.mapping.name).close()
    shmio.Mutex.open(objects.mutex.name).close()
    shmio.Event.open(objects.event.name).close()
    shmio.Channel.open(objects.channel.name).close()

    assert objects.guard.held and objects.mutex.held
    seen = {}

    def from_another_thread() -> None:
        try:
            objects.mapping.lock(timeout=SHORT)
            seen["mapping"] = "taken"
        except shmio.TimeoutError:
            seen["mapping"] = "waited"
        seen["mutex"] = objects.mutex.acquire(timeout=SHORT)

    thread = threading.Thread(target=from_another_thread)
    thread.start()
    thread.join(WAIT)
    assert seen == {"mapping": "waited", "mutex": False}

    assert objects.bus.listeners("echo") == listeners
    out = run_cli(cli, "call", objects.bus.group, "echo", '"from the CLI"', "--timeout", "10s")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"pid": os.getpid(), "args": "from the CLI"}

    rest = []
    while (message := objects.channel.try_recv()) is not None:
        rest.append(int(message))
    assert sorted(child_received + rest) == list(range(SENT))

    # The locks were never the child's: released and taken again, no owner died.
    objects.guard.release()
    objects.mutex.release()
    with objects.mapping.lock(timeout=WAIT) as again:
        assert not again.owner_died
    with objects.mutex.lock(timeout=WAIT) as again:
        assert not again.owner_died


def assert_used_as_its_own(objects: Objects, report: dict) -> None:
    """What the child saw: its own lock identity, the parent's handler."""
    assert report["mapping_lock"] == "waited"
    assert report["mutex_taken"] is False
    assert report["unlistened"] == 0
    assert report["reply"] == {"pid": os.getpid(), "args": "from the child"}
    # The child's member is a new one, with no listeners: the parent's only.
    assert report["listeners"] == [os.getpid()]
    assert objects.mapping.read_at(0, 18) == b"the child was here"
    assert objects.event.wait(timeout=WAIT)


def run_mp_fork_child(body, report_w: int) -> None:
    """A multiprocessing target: runs `body()` and writes its report, then returns."""
    os.write(report_w, (json.dumps(body()) + "\n").encode())


ENDINGS = ["close-unused", "use-then-close", "exit-handlers", "return", "os-exit", "sigkill"]


@on_linux
@pytest.mark.parametrize("ending", ENDINGS)
def test_a_forked_child_leaves_its_parent_intact(objects, cli, ending):
    listeners = objects.bus.listeners("echo")
    assert listeners == [os.getpid()]
    if ending == "return":
        report_r, report_w = os.pipe()
        child = multiprocessing.get_context("fork").Process(
            target=run_mp_fork_child, args=(lambda: use_inherited(objects), report_w)
        )
        child.start()
        os.close(report_w)
        try:
            report = json.loads(read_line(report_r))
        finally:
            os.close(report_r)
        child.join(WAIT)
        assert child.exitcode == 0
    else:
        body = {"close-unused": lambda: close_all(objects)}.get(ending, lambda: use_inherited(objects))
        hold_r, hold_w = os.pipe()

        def then() -> None:
            if ending == "use-then-close":
                close_all(objects)
            elif ending == "exit-handlers":
                shmio.close_all_buses()  # what atexit runs at the interpreter's exit
            elif ending == "sigkill":
                select.select([hold_r], [], [], WAIT)  # until the parent kills it

        pid, report = fork(body, then=then)
        if ending == "sigkill":
            os.kill(pid, signal.SIGKILL)
            status = wait_for_exit(pid)
            assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        else:
            assert os.waitstatus_to_exitcode(wait_for_exit(pid)) == 0
        os.close(hold_r)
        os.close(hold_w)
    if ending != "close-unused":
        assert_used_as_its_own(objects, report)
    assert_parent_intact(objects, cli, listeners, report["received"])


EXITING_CHILD = r"""
import json, os, sys
import shmio

group, channel_name, mapping_name, use = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "use"
bus = shmio.Bus.join(group)
bus.listen("echo", lambda args: {"pid": os.getpid(), "args": args})
caller = shmio.Bus.join(group)
channel = shmio.Channel.create_or_open(channel_name, capacity=8, max_message_size=64)
mapping = shmio.Mapping.create_or_open(mapping_name, 4096)
guard = mapping.lock()
pid = os.fork()
if pid == 0:
    if use:
        reply = bus.call("echo", "from the child", timeout=10)
        channel.send_record(reply, timeout=10)
    sys.exit(0)  # the interpreter's exit: atexit (close_all_buses), then every object's end
_, status = os.waitpid(pid, 0)
print(json.dumps({
    "exitcode": os.waitstatus_to_exitcode(status),
    "parent": os.getpid(),
    "listeners": bus.listeners("echo"),
    "call": caller.call("echo", "after", timeout=10),
    "child": channel.recv_record(timeout=10) if use else None,
    "held": guard.held,
    "mapping": shmio.Mapping.open(mapping_name).size,
}), flush=True)
"""


@on_linux
@pytest.mark.parametrize("use", ["use", "unused"])
def test_a_forked_child_that_exits_through_the_interpreter(name, use):
    """The child of a plain script ends with sys.exit(0): its exit handlers
    (close_all_buses) and its objects' ends leave the parent's bus, lock
    and names as they were, and no PanicException reaches Python."""
    out = subprocess.run(
        [sys.executable, "-c", EXITING_CHILD, name + "-bus", name + "-channel", name + "-mapping", use],
        capture_output=True,
        timeout=WAIT,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert "Panic" not in out.stderr and "panicked" not in out.stderr, out.stderr
    result = json.loads(out.stdout)
    parent = result["parent"]
    assert result["exitcode"] == 0
    assert result["listeners"] == [parent]
    assert result["call"] == {"pid": parent, "args": "after"}
    if use == "use":
        assert result["child"] == {"pid": parent, "args": "from the child"}
    assert result["held"] is True
    assert result["mapping"] == 4096


@on_linux
def test_a_fork_counter_under_the_mapping_lock_is_exact(name):
    processes, times = 4, 10_000
    with shmio.Mapping.create_or_open(name, 4096) as mapping, shmio.Event(name + "-start", manual_reset=True) as start:
        # The parent takes the lock first, so it holds the lock's name too:
        # the children end with os._exit (multiprocessing's fork children
        # do), which closes nothing, and a name only they held would stay.
        with mapping.lock(timeout=WAIT):
            mapping.write_at(0, struct.pack("<Q", 0))
        context = multiprocessing.get_context("fork")
        children = [
            context.Process(target=workers.count_under_lock, args=(mapping, start, times)) for _ in range(processes)
        ]
        for child in children:
            child.start()
        start.set()  # all at once, so that they contend
        for child in children:
            child.join(60)
        assert [child.exitcode for child in children] == [0] * processes
        assert struct.unpack("<Q", mapping.read_at(0, 8)) == (processes * times,)


@on_linux
def test_a_forked_child_that_dies_holding_the_lock_leaves_it_owner_died(name):
    with shmio.Mapping.create_or_open(name, 4096) as mapping:

        kept = []

        def take() -> dict:
            kept.append(mapping.lock(timeout=WAIT))  # held until the process ends
            return {}

        pid, _ = fork(take, then=lambda: os._exit(0))
        assert os.waitstatus_to_exitcode(wait_for_exit(pid)) == 0
        with mapping.lock(timeout=WAIT) as guard:
            assert guard.owner_died
            guard.mark_consistent()
        with mapping.lock(timeout=WAIT) as guard:
            assert not guard.owner_died


@on_linux
def test_a_forked_child_waits_for_the_parents_hold(name):
    """A child's lock() waits for the parent (not DeadlockError), and gets
    the lock once the parent lets it go."""
    with shmio.Mapping.create_or_open(name, 4096) as mapping, shmio.Event(name + "-released") as released:
        guard = mapping.lock(timeout=WAIT)

        def first_try() -> dict:
            try:
                mapping.lock(timeout=SHORT)
                first = "taken"
            except shmio.TimeoutError:
                first = "waited"
            # The parent's hold is not the child's.
            return {"first": first, "held_here": guard.held}

        def after_the_release() -> None:
            assert released.wait(timeout=WAIT)
            with mapping.lock(timeout=WAIT) as mine:
                assert not mine.owner_died

        pid, report = fork(first_try, then=after_the_release)
        assert report == {"first": "waited", "held_here": False}
        assert guard.held
        guard.release()
        released.set()
        assert os.waitstatus_to_exitcode(wait_for_exit(pid)) == 0


@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_every_start_method_passes_every_object(name, method):
    """As Process args: inherited under fork, pickled under forkserver and
    spawn; the child uses each, the parent sees it."""
    if method not in multiprocessing.get_all_start_methods():
        pytest.skip(f"no {method} here")
    if method == "fork" and not sys.platform.startswith("linux"):
        pytest.skip("an inherited mutex is the child's own on Linux")
    with (
        shmio.Mapping.create_or_open(name + "-mapping", 4096) as mapping,
        closing(shmio.Mutex(name + "-mutex")) as mutex,
        shmio.Event(name + "-event") as event,
        shmio.Channel.create_or_open(name + "-channel", capacity=8, max_message_size=256) as channel,
        shmio.Bus.join(name + "-bus") as bus,
    ):
        bus.listen("echo", lambda args: {"pid": os.getpid(), "args": args})
        assert mutex.acquire(timeout=WAIT)
        child = multiprocessing.get_context(method).Process(
            target=workers.use_what_it_was_given, args=(mapping, mutex, event, channel, bus)
        )
        child.start()
        try:
            report = channel.recv_record(timeout=WAIT)
            assert event.wait(timeout=WAIT)
        finally:
            child.join(WAIT)
        assert child.exitcode == 0
        assert report == {
            "pid": child.pid,
            "mutex_taken": False,
            "reply": {"pid": os.getpid(), "args": "from the child"},
        }
        assert mapping.read_at(0, 14) == b"from the child"
        assert mutex.held
        mutex.release()


def test_pickling(name, tmp_path):
    import pickle

    with shmio.Mapping.create_or_open(name, 4096) as mapping:
        copy = pickle.loads(pickle.dumps(mapping))
        copy.write_at(0, b"same memory")
        assert mapping.read_at(0, 11) == b"same memory"
        copy.close()
        read_only = pickle.loads(pickle.dumps(shmio.Mapping.open(name, read_only=True)))
        assert read_only.read_only and read_only.read_at(0, 11) == b"same memory"
        read_only.close()
    for nameless in (shmio.Mapping.anonymous(4096), shmio.Mapping.map_file(tmp_path / "file", 4096)):
        with nameless, pytest.raises(TypeError, match="without a name"):
            pickle.dumps(nameless)
    with (
        closing(shmio.Mutex(name + "-mutex")) as mutex,
        shmio.Event(name + "-event") as event,
        shmio.Channel.create_or_open(name + "-channel", capacity=4, max_message_size=16) as channel,
        shmio.Bus.join(name + "-bus", inbox_capacity=8) as bus,
    ):
        for original in (mutex, event, channel):
            with closing(pickle.loads(pickle.dumps(original))) as copy:
                assert type(copy) is type(original) and copy.name == original.name
        with pickle.loads(pickle.dumps(bus)) as copy:
            assert copy.group == bus.group
            bus.listen("echo", lambda args: args)
            assert copy.call("echo", 7, timeout=WAIT) == 7
        channel.close()
        with pytest.raises(shmio.ClosedError):
            pickle.dumps(channel)
