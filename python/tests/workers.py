"""Functions that run in child processes (multiprocessing spawn and fork
children import this module, not the tests)."""

import os
import signal
import struct
import time

import shmio

MESSAGE = struct.Struct("<II")  # producer, sequence number
STOP = b"stop"


def hold_lock_and_die(name: str, ready: str) -> None:
    """Takes the mapping's lock, says so, and dies holding it."""
    mapping = shmio.Mapping.open(name)
    guard = mapping.lock(timeout=10)  # noqa: F841 (held until the kill)
    shmio.Event(ready).set()
    time.sleep(60)


def hold_lock_and_exit(name: str, ready: str) -> None:
    """Takes the mapping's lock, says so, and exits at once without releasing it."""
    mapping = shmio.Mapping.open(name)
    guard = mapping.lock(timeout=10)  # noqa: F841 (held until the exit)
    shmio.Event(ready).set()
    os._exit(0)


def write_array(name: str, values: list[float]) -> None:
    """Writes float64 values at the start of the mapping through numpy, in place."""
    import numpy as np

    mapping = shmio.Mapping.open(name)
    array = np.frombuffer(mapping, dtype=np.float64, count=len(values))
    array[:] = values
    del array
    mapping.close()


def produce(channel_name: str, producer: int, count: int) -> None:
    channel = shmio.Channel.open(channel_name)
    for sequence in range(count):
        channel.send(MESSAGE.pack(producer, sequence), timeout=60)
    channel.close()


def consume(channel_name: str, out_name: str, capacity: int) -> None:
    """Receives until STOP, then writes what came (producer, sequence pairs
    in arrival order) into the mapping `out_name`."""
    channel = shmio.Channel.open(channel_name)
    received = bytearray()
    while True:
        message = channel.recv(timeout=60)
        if message == STOP:
            break
        received += message
    channel.close()
    out = shmio.Mapping.create(out_name, max(capacity, 8) + 8)
    out.write(struct.pack("<Q", len(received)))
    out.write(received)
    # Keep the name alive until the parent has opened it.
    shmio.Event(out_name + "-read").wait(timeout=60)
    out.close()


def block_in(kind: str, name: str) -> None:
    """For the Ctrl-C test: blocks in a wait, prints how it ended."""
    import sys

    if kind == "recv":
        obj = shmio.Channel.create_or_open(name, capacity=4, max_message_size=16)
        wait = lambda: obj.recv()  # noqa: E731
    elif kind == "topic":
        topic = shmio.Topic.create_or_open(name, capacity=4, max_message_size=16)
        obj = topic.subscribe()
        wait = lambda: obj.recv()  # noqa: E731
    elif kind == "event":
        obj = shmio.Event(name)
        wait = lambda: obj.wait()  # noqa: E731
    else:
        obj = shmio.Mutex(name)
        wait = lambda: obj.acquire()  # noqa: E731
    print("ready", flush=True)
    started = time.monotonic()
    try:
        wait()
        print("returned", flush=True)
    except KeyboardInterrupt:
        print(f"interrupted {time.monotonic() - started:.3f}", flush=True)
    # Still usable after the interrupt.
    if kind == "recv":
        obj.send(b"after")
        assert obj.recv(timeout=1) == b"after"
    elif kind == "topic":
        topic.publish(b"after")
        assert obj.recv(timeout=1) == b"after"
        topic.close()
    elif kind == "event":
        obj.set()
        assert obj.wait(timeout=1)
    print("usable", flush=True)
    obj.close()
    sys.exit(0)


def interrupt_calls(name: str, times: int) -> None:
    """Calls a listener that never answers in time, `times` times, each
    interrupted by a real SIGINT sent to this process from a thread;
    prints how long each KeyboardInterrupt took to come after its signal."""
    import threading

    release = threading.Event()
    with shmio.Bus.join(name) as server, shmio.Bus.join(name) as client:
        server.listen("stuck", lambda args: release.wait(10) and None)
        latencies = []
        for _ in range(times):
            sent = []

            def interrupt() -> None:
                sent.append(time.monotonic())
                os.kill(os.getpid(), signal.SIGINT)

            timer = threading.Timer(0.1, interrupt)
            timer.start()
            try:
                client.call("stuck", timeout=5)
                print("returned", flush=True)
                return
            except KeyboardInterrupt:
                latencies.append(time.monotonic() - sent[0])
            timer.join()
        release.set()
        print(" ".join(f"{latency:.4f}" for latency in latencies), flush=True)


def sigint_self_soon(delay: float) -> None:
    time.sleep(delay)
    os.kill(os.getpid(), signal.SIGINT)


def fork_child(mapping_name: str, channel_name: str, inherited, inherited_channel) -> None:
    """In a forked child: writes through the inherited mapping, and sends
    through the inherited channel (which opens the channel anew in this
    process on first use)."""
    inherited.write_at(0, b"from the fork")
    inherited_channel.send_record(
        {"pid": os.getpid(), "mapping": shmio.Mapping.open(mapping_name).read_at(0, 13).decode()}
    )


def count_under_lock(mapping, start, times: int) -> None:
    """Once the event `start` is set, adds one to the u64 at offset 0 of
    the mapping `times` times, each under the mapping's lock."""
    counter = struct.Struct("<Q")
    assert start.wait(timeout=60)
    for _ in range(times):
        with mapping.lock(timeout=60):
            (value,) = counter.unpack(mapping.read_at(0, 8))
            mapping.write_at(0, counter.pack(value + 1))


def use_what_it_was_given(mapping, mutex, event, channel, bus) -> None:
    """A multiprocessing child given every kind of object as Process args
    (inherited under fork, pickled under spawn and forkserver): uses each,
    and reports through the channel."""
    mapping.write_at(0, b"from the child")
    taken = mutex.acquire(timeout=0.2)  # the parent holds it
    reply = bus.call("echo", "from the child", timeout=60)
    channel.send_record({"pid": os.getpid(), "mutex_taken": taken, "reply": reply}, timeout=60)
    event.set()


def await_in(kind: str, name: str) -> None:
    """Awaits a receive (or an event) under asyncio.run, says it is ready,
    and reports how a SIGINT ended it; then shows the object still usable."""
    import asyncio

    if kind == "recv":
        obj = shmio.Channel.create_or_open(name)
        waiting = obj.recv_async
    elif kind == "subscriber":
        topic = shmio.Topic.create_or_open(name)
        obj = topic.subscribe()
        waiting = obj.recv_async
    else:
        obj = shmio.Event(name)
        waiting = obj.wait_async

    async def main():
        pending = asyncio.ensure_future(waiting())
        await asyncio.sleep(0)
        print("ready", flush=True)
        await pending

    started = time.monotonic()
    try:
        asyncio.run(main())
        print("returned", flush=True)
    except KeyboardInterrupt:
        print(f"interrupted {time.monotonic() - started:.3f}", flush=True)
    if kind == "recv":
        sender = shmio.Channel.open(name)
        sender.send(b"after")
        assert obj.recv(timeout=1) == b"after"
    elif kind == "subscriber":
        topic.publish(b"after")
        assert obj.recv(timeout=1) == b"after"
    else:
        obj.set()
        assert obj.wait(timeout=1)
    print("usable", flush=True)
