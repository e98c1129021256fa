"""Bus: Python listeners and callers, with each other and with Rust's CLI."""

import json
import os
import subprocess
import time

import pytest

import shmio
from conftest import WAIT, run_cli


def wait_for_listener(bus: shmio.Bus, command: str, count: int = 1) -> list[int]:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        pids = bus.listeners(command)
        if len(pids) >= count:
            return pids
        time.sleep(0.02)
    pytest.fail(f"no listener of {command!r} came")


def test_listen_call_broadcast_post(name):
    with shmio.Bus.join(name) as server, shmio.Bus.join(name) as client:
        assert server.group == name
        posted = []

        @server.listen("add")
        def add(args):
            return args["a"] + args["b"]

        assert callable(add) and add({"a": 1, "b": 2}) == 3  # the decorator returns the function
        server.listen("fail", lambda args: 1 / 0)
        server.listen("pass", lambda args: None)
        server.listen("note", posted.append)
        assert client.call("add", {"a": 2, "b": 40}) == 42
        with pytest.raises(shmio.NoListenerError, match="nobody listens to \"nobody\""):
            client.call("nobody", [1])
        assert client.call("pass") is None  # every listener passed
        with pytest.raises(shmio.HandlerError, match="ZeroDivisionError") as failed:
            client.call("fail", timeout=WAIT)
        assert failed.value.pid == server.listeners("fail")[0]
        import os

        pid = os.getpid()
        assert client.call_pid(pid, "add", {"a": 1, "b": 1}) == 2
        with pytest.raises(shmio.NoListenerError, match=f"in process {pid + 1_000_000}"):
            client.call_pid(pid + 1_000_000, "add", {"a": 1, "b": 1})
        server.listen("add", lambda args: "second")
        answers = client.broadcast("add", {"a": 1, "b": 2}, timeout=WAIT)
        assert [reply for _, reply in answers] == [3, "second"]
        assert all(p == pid for p, _ in answers)
        failures = client.broadcast("fail", timeout=WAIT)
        assert isinstance(failures[0][1], shmio.HandlerError)
        assert client.post("note", {"x": 1}) == 1
        deadline = time.monotonic() + WAIT
        while not posted and time.monotonic() < deadline:
            time.sleep(0.01)
        assert posted == [{"x": 1}]
        assert ("add", pid) in client.commands()
        assert server.unlisten("add") == 2
        with pytest.raises(LookupError):
            client.call("add", {"a": 1, "b": 1})
    with pytest.raises(shmio.ClosedError):
        client.call("add")


def test_bad_input(name):
    with shmio.Bus.join(name) as bus:
        with pytest.raises(TypeError):
            bus.listen("x", 42)
        with pytest.raises(shmio.InvalidError):
            bus.call("x", object())
        with pytest.raises(shmio.InvalidError):
            bus.call("x", timeout=-1)
    with pytest.raises(shmio.InvalidError):
        shmio.Bus.join("bad/group")


def test_python_calls_a_rust_listener(cli, name):
    """`shmio listen G echo -- cat` replies with its arguments."""
    with shmio.Bus.join(name) as bus:
        rust = subprocess.Popen(
            [str(cli), "listen", name, "echo", "--count", "1", "--", "cat"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            wait_for_listener(bus, "echo")
            args = {"from": "python", "list": [1, 2.5, None, True]}
            assert bus.call("echo", args, timeout=WAIT) == args
            assert rust.wait(WAIT) == 0
        finally:
            rust.kill()
            rust.wait()


def test_rust_calls_a_python_listener(cli, name):
    with shmio.Bus.join(name) as bus:
        bus.listen("double", lambda args: {"doubled": [x * 2 for x in args]})
        bus.listen("boom", lambda args: (_ for _ in ()).throw(ValueError("no such thing")))
        out = run_cli(cli, "call", name, "double", "[1, 2, 3]", "--timeout", "10s")
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout) == {"doubled": [2, 4, 6]}
        out = run_cli(cli, "call", name, "boom", "--timeout", "10s")
        assert out.returncode != 0
        assert b"ValueError: no such thing" in out.stderr


def test_ctrl_c_leaves_a_call_and_the_bus_usable(name):
    """A call waiting on a slow handler is interrupted; the bus goes on."""
    import _thread
    import threading

    with shmio.Bus.join(name) as server, shmio.Bus.join(name) as client:
        server.listen("slow", lambda args: time.sleep(1.0) or "late")
        threading.Timer(0.2, _thread.interrupt_main).start()
        started = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            client.call("slow", timeout=5)
        assert time.monotonic() - started < 0.8
        server.listen("fast", lambda args: "ok")
        assert client.call("fast", timeout=WAIT) == "ok"


def test_ctrl_c_ends_a_call_within_50_ms(name):
    """A real SIGINT ends a waiting call within the 20 ms the call takes
    to look: the middle of five interrupts, measured in the process
    interrupted (from the signal to the KeyboardInterrupt), is at most
    50 ms."""
    import os
    import sys

    out = subprocess.run(
        [sys.executable, "-c", f"import workers; workers.interrupt_calls({name!r}, 5)"],
        cwd=os.path.dirname(__file__),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    latencies = sorted(float(latency) for latency in out.stdout.split())
    assert len(latencies) == 5, out.stdout
    assert latencies[2] <= 0.050, f"interrupted after {latencies} s"


def test_a_call_waits_for_ever_with_timeout_none_or_inf(name):
    with shmio.Bus.join(name) as bus:
        bus.listen("echo", lambda args: args)
        assert bus.call("echo", 1, timeout=None) == 1
        assert bus.call("echo", 2, timeout=float("inf")) == 2
        assert bus.call_pid(os.getpid(), "echo", 3, timeout=None) == 3
        assert bus.broadcast("echo", 4, timeout=None) == [(os.getpid(), 4)]
        with pytest.raises(shmio.InvalidError):
            bus.call("echo", 5, timeout=-1)


def test_a_process_that_exits_without_closing_leaves_no_names(name):
    """At exit the package leaves every bus (atexit), so the interpreter's
    clean-up closes every object and the names go with the process."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    if not Path("/dev/shm").is_dir():
        pytest.skip("no /dev/shm on this platform")
    script = f"""
import shmio
channel = shmio.Channel.create_or_open({name + "-channel"!r})
mapping = shmio.Mapping.create_or_open({name + "-mapping"!r}, 4096)
guard = mapping.lock()
bus = shmio.Bus.join({name!r})
bus.listen("echo", lambda args: args)
assert shmio.Bus.join({name!r}).call("echo", 1) == 1
"""
    subprocess.run([sys.executable, "-c", script], check=True, timeout=WAIT)
    left = [p.name for p in Path("/dev/shm").iterdir() if name in p.name]
    assert not left, left
