"""Channel: send and receive, records, iteration, Python with Rust, and
many processes at once."""

import multiprocessing
import multiprocessing.connection
import struct
import subprocess

import pytest

import shmio
from conftest import WAIT, run_cli, unique
import workers


def test_send_recv_try_and_records(name):
    with shmio.Channel.create_or_open(name, capacity=4, max_message_size=64) as sender:
        assert not sender.existed and sender.capacity == 4 and sender.max_message_size == 64
        receiver = shmio.Channel.open(name)
        assert receiver.existed and receiver.capacity == 4
        assert receiver.try_recv() is None
        sender.send(b"one")
        sender.send(bytearray(b"two"))
        sender.send(memoryview(b"three"))
        assert receiver.recv(timeout=1) == b"one"
        buffer = bytearray(64)
        assert receiver.recv_into(buffer) == 3 and buffer[:3] == b"two"
        assert receiver.try_recv() == b"three"
        for i in range(4):
            assert sender.try_send(b"%d" % i)
        assert not sender.try_send(b"full")
        with pytest.raises(shmio.TimeoutError) as timed_out:
            sender.send(b"full", timeout=0.05)
        assert isinstance(timed_out.value, TimeoutError)
        assert [next(receiver) for _ in range(4)] == [b"0", b"1", b"2", b"3"]
        with pytest.raises(shmio.TimeoutError):
            receiver.recv(timeout=0.05)
        sender.send_record({"k": [1, 2.5, None]})
        assert receiver.recv_record(timeout=1) == {"k": [1, 2.5, None]}
        receiver.close()


def test_iteration_is_a_blocking_recv(name):
    with shmio.Channel.create_or_open(name, capacity=8, max_message_size=16) as channel:
        for word in (b"a", b"b", b"c"):
            channel.send(word)
        got = []
        for message in channel:
            got.append(message)
            if len(got) == 3:
                break
        assert got == [b"a", b"b", b"c"]


def test_bad_input(name):
    with pytest.raises(shmio.InvalidError):
        shmio.Channel.create_or_open(name, capacity=-1)
    with pytest.raises(shmio.InvalidError):
        shmio.Channel.create_or_open(name, capacity=0)
    with pytest.raises(shmio.NotFoundError):
        shmio.Channel.open(name)
    with shmio.Channel.create_or_open(name, capacity=4, max_message_size=8) as channel:
        with pytest.raises(shmio.InvalidError):
            shmio.Channel.create_or_open(name, capacity=8, max_message_size=8)  # another geometry
        with pytest.raises(shmio.InvalidError):
            channel.send(b"much too large")
        with pytest.raises(TypeError):
            channel.send("text")
        with pytest.raises(shmio.InvalidError):
            channel.send(b"x", timeout=-1)
        channel.send(b"12345678")
        with pytest.raises(shmio.InvalidError, match="nothing was received"):
            channel.recv_into(bytearray(2))
        assert channel.recv(timeout=1) == b"12345678"  # not lost
        channel.send(b"not json")
        with pytest.raises(shmio.InvalidError):
            channel.recv_record(timeout=1)
        with pytest.raises(shmio.InvalidError):
            channel.send_record({"a": object()})
    with pytest.raises(shmio.ClosedError):
        channel.send(b"x")
    with pytest.raises(ValueError):
        channel.recv()


def test_python_sends_rust_receives_and_back(cli, name):
    with shmio.Channel.create_or_open(name, capacity=16, max_message_size=256) as channel:
        for line in (b"alpha", b"beta", b"gamma"):
            channel.send(line)
        out = run_cli(cli, "recv", name, "--count", "3", "--timeout", "10s")
        assert out.returncode == 0, out.stderr
        assert out.stdout.splitlines() == [b"alpha", b"beta", b"gamma"]
        out = run_cli(cli, "send", name, '{"from":"rust","n":[1,2]}')
        assert out.returncode == 0, out.stderr
        assert channel.recv_record(timeout=WAIT) == {"from": "rust", "n": [1, 2]}
        out = run_cli(cli, "send", name, input=b"one\ntwo\n")
        assert out.returncode == 0, out.stderr
        assert channel.recv(timeout=WAIT) == b"one"
        assert channel.recv(timeout=WAIT) == b"two"


def test_four_producers_four_consumers_exactly_once_in_order(name):
    """4 producer and 4 consumer processes (spawn), 20,000 messages per
    producer: every message arrives exactly once, and each consumer sees
    each producer's messages in the order sent."""
    producers, consumers, count = 4, 4, 20_000
    context = multiprocessing.get_context("spawn")
    channel = shmio.Channel.create_or_open(name, capacity=256, max_message_size=16)
    outs = [unique("out") for _ in range(consumers)]
    # Each consumer's share is at most every message.
    capacity = producers * count * workers.MESSAGE.size
    consuming = [context.Process(target=workers.consume, args=(name, out, capacity)) for out in outs]
    producing = [context.Process(target=workers.produce, args=(name, p, count)) for p in range(producers)]
    processes = consuming + producing
    for process in processes:
        process.start()
    try:
        for process in producing:
            process.join(120)
            assert process.exitcode == 0
        for _ in consumers * [None]:
            channel.send(workers.STOP, timeout=WAIT)
        seen = {p: [] for p in range(producers)}
        for out in outs:
            mapping = None
            for _ in range(1200):
                try:
                    mapping = shmio.Mapping.open(out)
                    break
                except shmio.NotFoundError:
                    multiprocessing.connection.wait([], 0.05)
            assert mapping is not None, "a consumer never reported"
            (length,) = struct.unpack("<Q", mapping.read(8))
            data = mapping.read(length)
            shmio.Event(out + "-read").set()
            mapping.close()
            last = {}
            for producer, sequence in workers.MESSAGE.iter_unpack(data):
                assert sequence > last.get(producer, -1), "a producer's messages out of order"
                last[producer] = sequence
                seen[producer].append(sequence)
        for producer in range(producers):
            assert sorted(seen[producer]) == list(range(count)), f"producer {producer}: lost or doubled messages"
        for process in consuming:
            process.join(WAIT)
            assert process.exitcode == 0
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
            process.join()
        channel.close()



def test_closing_a_channel_wakes_its_blocked_readers(name):
    """A shutdown never waits for a message or room: `close()` from another
    thread ends a `for` loop over the channel, and a blocked `recv` or
    `send` with ClosedError."""
    import threading
    import time

    channel = shmio.Channel.create_or_open(name, capacity=4, max_message_size=16)
    channel.send(b"first")
    got = []
    first = threading.Event()

    def iterate() -> None:
        for message in channel:
            got.append(message)
            first.set()

    reader = threading.Thread(target=iterate)
    reader.start()
    assert first.wait(WAIT)
    channel.close()
    reader.join(WAIT)
    assert not reader.is_alive(), "the loop ended when the channel closed"
    assert got == [b"first"]

    other = shmio.Channel.create_or_open(name, capacity=4, max_message_size=16)
    raised = []

    def blocked_recv() -> None:
        try:
            other.recv()
        except shmio.ClosedError as error:
            raised.append(error)

    thread = threading.Thread(target=blocked_recv)
    thread.start()
    time.sleep(0.1)  # into the wait: nothing signals "now waiting"
    other.close()
    thread.join(WAIT)
    assert not thread.is_alive() and len(raised) == 1

    # The same for a send waiting for room.
    full = shmio.Channel.create_or_open(name + "-full", capacity=1, max_message_size=16)
    full.send(b"fills it")

    def blocked_send() -> None:
        try:
            full.send(b"no room")
        except shmio.ClosedError as error:
            raised.append(error)

    thread = threading.Thread(target=blocked_send)
    thread.start()
    time.sleep(0.1)  # into the wait
    full.close()
    thread.join(WAIT)
    assert not thread.is_alive() and len(raised) == 2


def test_iteration_ends_when_every_sender_has_gone(cli, name):
    """A channel whose other handles have all closed, once empty, ends a
    `for` loop over it, and `recv` raises DisconnectedError (a
    BrokenPipeError), as crossbeam's channels say "disconnected"."""
    with shmio.Channel.create_or_open(name, capacity=8, max_message_size=16) as channel:
        out = run_cli(cli, "send", name, input=b"one\ntwo\n")
        assert out.returncode == 0, out.stderr
        assert list(channel) == [b"one", b"two"]
        with pytest.raises(BrokenPipeError):
            channel.recv(timeout=60)
        assert isinstance(shmio.DisconnectedError("x"), shmio.Error)
