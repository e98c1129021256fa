"""Python to Python between two processes: shmio.Channel against the usual
ways, printed as a markdown table with ratios.

    python python/bench/bench.py [--quick]

Measured, each in a fresh pair of processes (multiprocessing spawn):
- round trip of a 16-byte bytes message (send, the other side sends it back);
- throughput of 64-byte and of 1 MiB messages one way (the clock stops when
  the receiver has them all and says so);
- a bus call with a 16-character string argument, Python caller to a
  Python listener (its handler returns the argument), against the round
  trips of shmio.Channel and multiprocessing.Pipe of the same run.

Against: multiprocessing.Pipe, multiprocessing.Queue, a
multiprocessing.shared_memory block guarded by a multiprocessing.Lock and
polled (one message slot each way), and faster-fifo's Queue if it is
installed (`pip install faster-fifo`). Each figure is the median of a few
runs.
"""

import argparse
import multiprocessing
import os
import platform
import statistics
import struct
import sys
import time
from multiprocessing import shared_memory

import shmio

SMALL = 16
MIB = 1 << 20


class ShmioChannel:
    """Two shmio channels, one each way."""

    label = "shmio.Channel"

    def __init__(self, max_size: int):
        base = f"shmio-pybench-{os.getpid()}-{time.monotonic_ns()}"
        capacity = 4 if max_size >= MIB else 1024
        self.there = shmio.Channel.create_or_open(base + "-there", capacity=capacity, max_message_size=max_size)
        self.back = shmio.Channel.create_or_open(base + "-back", capacity=capacity, max_message_size=max_size)
        self.names = (self.there.name, self.back.name)

    def parent(self):
        return self.there.send, self.back.recv

    def child_args(self):
        return self.names

    @staticmethod
    def child(names):
        there, back = (shmio.Channel.open(name) for name in names)
        return back.send, there.recv, (there, back)

    def close(self):
        self.there.close()
        self.back.close()


class Pipe:
    label = "multiprocessing.Pipe"

    def __init__(self, max_size: int):
        self.mine, self.theirs = multiprocessing.Pipe()

    def parent(self):
        return self.mine.send_bytes, self.mine.recv_bytes

    def child_args(self):
        return self.theirs

    @staticmethod
    def child(conn):
        return conn.send_bytes, conn.recv_bytes, conn

    def close(self):
        self.mine.close()


class Queue:
    label = "multiprocessing.Queue"

    def __init__(self, max_size: int):
        self.there, self.back = multiprocessing.Queue(), multiprocessing.Queue()

    def parent(self):
        return self.there.put, self.back.get

    def child_args(self):
        return self.there, self.back

    @staticmethod
    def child(queues):
        there, back = queues
        return back.put, there.get, queues

    def close(self):
        for queue in (self.there, self.back):
            queue.close()
            queue.join_thread()


class Mailbox:
    """One message slot in a SharedMemory block (full flag, length, bytes),
    guarded by a Lock, polled by both sides: what people write by hand."""

    HEADER = struct.Struct("<QQ")

    def __init__(self, shm: shared_memory.SharedMemory, lock):
        self.shm, self.lock, self.buf = shm, lock, shm.buf

    def send(self, data: bytes) -> None:
        while True:
            with self.lock:
                full, _ = self.HEADER.unpack_from(self.buf, 0)
                if not full:
                    self.buf[16 : 16 + len(data)] = data
                    self.HEADER.pack_into(self.buf, 0, 1, len(data))
                    return

    def recv(self) -> bytes:
        while True:
            with self.lock:
                full, length = self.HEADER.unpack_from(self.buf, 0)
                if full:
                    data = bytes(self.buf[16 : 16 + length])
                    self.HEADER.pack_into(self.buf, 0, 0, 0)
                    return data


class SharedMemoryLock:
    label = "shared_memory + Lock, polled"

    def __init__(self, max_size: int):
        self.blocks = [shared_memory.SharedMemory(create=True, size=max_size + 16) for _ in range(2)]
        self.locks = [multiprocessing.Lock() for _ in range(2)]
        self.there, self.back = (Mailbox(b, l) for b, l in zip(self.blocks, self.locks))

    def parent(self):
        return self.there.send, self.back.recv

    def child_args(self):
        return [b.name for b in self.blocks], self.locks

    @staticmethod
    def child(args):
        names, locks = args
        blocks = [shared_memory.SharedMemory(name=name) for name in names]
        there, back = (Mailbox(b, l) for b, l in zip(blocks, locks))
        return back.send, there.recv, (blocks, there, back)

    def close(self):
        self.there = self.back = None
        for block in self.blocks:
            block.close()
            block.unlink()


class FasterFifo:
    label = "faster_fifo.Queue"

    def __init__(self, max_size: int):
        import faster_fifo

        size = max(4 * max_size + 4096, 1 << 20)
        self.there, self.back = faster_fifo.Queue(size), faster_fifo.Queue(size)

    def parent(self):
        return self.there.put, lambda: self.back.get(timeout=60)

    def child_args(self):
        return self.there, self.back

    @staticmethod
    def child(queues):
        there, back = queues
        return back.put, lambda: there.get(timeout=60), queues

    def close(self):
        pass


def child_main(kind, args, mode: str, count: int) -> None:
    send, recv, keep = kind.child(args)
    if mode == "echo":
        for _ in range(count):
            send(recv())
    else:
        for _ in range(count):
            recv()
        send(b"done")
    del keep


def bus_listener(group: str, ready, stop) -> None:
    bus = shmio.Bus.join(group)

    @bus.listen("echo")
    def echo(args):
        return args

    ready.set()
    stop.wait()
    bus.close()


def measure_bus(count: int) -> float:
    """Seconds per bus call, Python to Python."""
    group = f"shmio-pybench-bus-{os.getpid()}-{time.monotonic_ns()}"
    ready, stop = multiprocessing.Event(), multiprocessing.Event()
    child = multiprocessing.Process(target=bus_listener, args=(group, ready, stop))
    child.start()
    bus = None
    try:
        if not ready.wait(60):
            raise RuntimeError("the bus listener did not start")
        bus = shmio.Bus.join(group)
        argument = "x" * SMALL
        for _ in range(100):
            bus.call("echo", argument)
        started = time.perf_counter()
        for _ in range(count):
            bus.call("echo", argument)
        elapsed = time.perf_counter() - started
    finally:
        stop.set()
        child.join(60)
        if child.is_alive():
            child.kill()
        if bus is not None:
            bus.close()
    return elapsed / count


def measure(kind_class, mode: str, size: int, count: int) -> float:
    """Seconds per message (round trip: per round trip)."""
    kind = kind_class(max(size, 64))
    child = multiprocessing.Process(target=child_main, args=(kind_class, kind.child_args(), mode, count))
    child.start()
    send, recv = kind.parent()
    message = os.urandom(size)
    try:
        # Warm up: the child is up and the first message has gone through.
        if mode == "echo":
            send(message)
            recv()
            count -= 1
            started = time.perf_counter()
            for _ in range(count):
                send(message)
                recv()
        else:
            started = time.perf_counter()
            for _ in range(count):
                send(message)
            recv()
        elapsed = time.perf_counter() - started
    finally:
        child.join(120)
        if child.is_alive():
            child.kill()
        kind.close()
    return elapsed / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer messages and runs (noisier)")
    options = parser.parse_args()
    # Every Lock, Queue and child of the bench comes from one start method.
    multiprocessing.set_start_method("spawn", force=True)
    runs = 1 if options.quick else 3
    scale = 0.2 if options.quick else 1.0
    kinds = [ShmioChannel, Pipe, Queue, SharedMemoryLock]
    try:
        import faster_fifo  # noqa: F401

        kinds.append(FasterFifo)
    except ImportError:
        print("(faster-fifo is not installed: pip install faster-fifo to compare it)", file=sys.stderr)
    cases = [
        ("round trip, 16 B", "echo", SMALL, int(20_000 * scale), "µs", 1e6),
        ("64 B one way", "sink", 64, int(100_000 * scale), "msg/s", None),
        ("1 MiB one way", "sink", MIB, int(2_000 * scale), "MiB/s", None),
    ]
    results = {}
    for title, mode, size, count, unit, _ in cases:
        for kind in kinds:
            figures = [measure(kind, mode, size, count) for _ in range(runs)]
            results[(title, kind.label)] = statistics.median(figures)
            print(f"  {title:<18} {kind.label:<30} done", file=sys.stderr)

    def show(title: str, unit: str, seconds: float) -> str:
        if unit == "µs":
            return f"{seconds * 1e6:.1f} µs"
        if unit == "msg/s":
            return f"{1 / seconds / 1e3:,.0f} k msg/s"
        return f"{MIB / seconds / MIB:,.0f} MiB/s"

    print(f"\nPython {platform.python_version()}, {platform.system()} {platform.machine()}, {os.cpu_count()} CPUs\n")
    header = "| | " + " | ".join(kind.label for kind in kinds) + " |"
    print(header)
    print("|---" * (len(kinds) + 1) + "|")
    for title, _, _, _, unit, _ in cases:
        base = results[(title, ShmioChannel.label)]
        cells = []
        for kind in kinds:
            seconds = results[(title, kind.label)]
            ratio = "" if kind is ShmioChannel else f" ({seconds / base:.1f}× slower)" if seconds >= base else f" ({base / seconds:.1f}× faster)"
            cells.append(show(title, unit, seconds) + ratio)
        print(f"| {title} | " + " | ".join(cells) + " |")
    print("\nRatios: each against shmio.Channel (\"slower\": it takes longer per message).")

    bus = statistics.median(measure_bus(int(20_000 * scale)) for _ in range(runs))
    channel = results[("round trip, 16 B", ShmioChannel.label)]
    pipe = results[("round trip, 16 B", Pipe.label)]
    print("\n| bus call, 16-character string, Python to Python | shmio.Bus.call | / shmio.Channel round trip (target ≤ 3×) | / multiprocessing.Pipe round trip (target ≤ 0.1×) |")
    print("|---|---|---|---|")
    print(
        f"| the listener's handler returns its argument | {bus * 1e6:.1f} µs "
        f"| {bus / channel:.2f}× ({channel * 1e6:.1f} µs) | {bus / pipe:.3f}× ({pipe * 1e6:.1f} µs) |"
    )


if __name__ == "__main__":
    main()
