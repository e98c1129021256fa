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
    elif kind == "event":
        obj.set()
        assert obj.wait(timeout=1)
    print("usable", flush=True)
    obj.close()
    sys.exit(0)


def sigint_self_soon(delay: float) -> None:
    time.sleep(delay)
    os.kill(os.getpid(), signal.SIGINT)


def fork_child(mapping_name: str, channel_name: str, inherited, inherited_channel) -> None:
    """In a forked child: writes through the inherited mapping, and opens
    the channel by name (objects with seats are opened anew in a child:
    the inherited one refuses)."""
    inherited.write_at(0, b"from the fork")
    try:
        inherited_channel.send(b"from the wrong process")
        raise AssertionError("an inherited channel was usable")
    except shmio.InvalidError:
        pass
    channel = shmio.Channel.open(channel_name)
    channel.send_record({"pid": os.getpid(), "mapping": shmio.Mapping.open(mapping_name).read_at(0, 13).decode()})
    channel.close()
