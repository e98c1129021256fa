"""Topic: publish and subscribe, fan-out across threads and processes,
history, lag under overwrite, samples in place under block (numpy without
a copy), records, timeouts and close."""

import math
import os
import pickle
import subprocess
import sys
import threading
import time

import pytest

import shmio
from conftest import WAIT


def test_settings_publish_recv_records_and_timeouts(name):
    with shmio.Topic.create_or_open(name, capacity=8, max_message_size=64, history=2) as topic:
        assert not topic.existed and not topic.closed
        assert (topic.name, topic.capacity, topic.max_message_size, topic.history) == (name, 8, 64, 2)
        assert topic.overflow == "overwrite"
        assert topic.subscribers == 0 and topic.published == 0
        assert repr(topic) == f'<shmio.Topic "{name}" capacity=8 max_message_size=64 history=2 overflow=overwrite>'
        opened = shmio.Topic.open(name)
        assert opened.existed and opened.capacity == 8 and opened.history == 2
        with shmio.Topic.create_or_open(name, 8, 64, 2) as same:
            assert same.existed
        with pytest.raises(shmio.InvalidError):
            shmio.Topic.create_or_open(name, capacity=8, max_message_size=64, history=2, overflow="block")
        subscriber = opened.subscribe()
        assert topic.subscribers == 1 and subscriber.name == name and subscriber.pending == 0
        assert subscriber.try_recv() is None
        with pytest.raises(shmio.TimeoutError) as timed_out:
            subscriber.recv(timeout=0)
        assert isinstance(timed_out.value, TimeoutError)
        started = time.monotonic()
        with pytest.raises(shmio.TimeoutError):
            subscriber.recv(timeout=0.1)
        assert time.monotonic() - started >= 0.09
        topic.publish(b"one")
        topic.publish(bytearray(b"two"), timeout=0)
        assert topic.try_publish(memoryview(b"three"))
        topic.publish_record({"k": [1, 2.5, None], "s": "é"})
        assert topic.published == 4 and subscriber.pending == 4
        assert subscriber.recv(timeout=math.inf) == b"one"
        assert subscriber.recv(timeout=0) == b"two"
        assert subscriber.try_recv() == b"three"
        assert subscriber.recv_record(timeout=1) == {"k": [1, 2.5, None], "s": "é"}
        topic.publish(b"not json")
        with pytest.raises(shmio.InvalidError):
            subscriber.recv_record(timeout=1)
        with pytest.raises(shmio.InvalidError):
            topic.publish(b"x" * 65)  # larger than max_message_size
        with pytest.raises(shmio.InvalidError):
            topic.publish_record({"a": object()})
        with pytest.raises(TypeError):
            topic.publish("text")
        with pytest.raises(shmio.InvalidError):
            subscriber.recv(timeout=-1)
        assert subscriber.try_recv() is None  # nothing sent by the failures
        subscriber.close()
        assert topic.subscribers == 0
        opened.close()
    with pytest.raises(shmio.ClosedError):
        topic.publish(b"x")
    with pytest.raises(shmio.ClosedError):
        subscriber.recv(timeout=0)


def test_bad_settings(name):
    with pytest.raises(shmio.InvalidError):
        shmio.Topic.create_or_open(name, capacity=0)
    with pytest.raises(shmio.InvalidError):
        shmio.Topic.create_or_open(name, capacity=-1)
    with pytest.raises(shmio.InvalidError):
        shmio.Topic.create_or_open(name, capacity=4, history=4)  # history < capacity
    with pytest.raises(shmio.InvalidError, match="overflow"):
        shmio.Topic.create_or_open(name, overflow="drop")  # type: ignore[arg-type]
    with pytest.raises(shmio.NotFoundError):
        shmio.Topic.open(name)


def test_fan_out_to_subscribers_on_threads(name):
    """Every subscriber gets every message, in order, while the publisher
    waits for the slowest (block)."""
    count = 2_000
    with shmio.Topic.create_or_open(name, capacity=16, max_message_size=16, overflow="block") as topic:
        subscribers = [topic.subscribe() for _ in range(3)]
        got: list[list[bytes]] = [[] for _ in subscribers]

        def read(i: int) -> None:
            for message in subscribers[i]:
                if message == b"end":
                    break
                got[i].append(message)

        threads = [threading.Thread(target=read, args=(i,)) for i in range(len(subscribers))]
        for thread in threads:
            thread.start()
        for i in range(count):
            topic.publish(b"%d" % i, timeout=WAIT)
        topic.publish(b"end", timeout=WAIT)
        for thread in threads:
            thread.join(WAIT)
            assert not thread.is_alive()
        expected = [b"%d" % i for i in range(count)]
        assert all(messages == expected for messages in got)
        for subscriber in subscribers:
            subscriber.close()


SUBSCRIBER_CHILD = """
import sys
import shmio

topic = shmio.Topic.open(sys.argv[1])
subscriber = topic.subscribe()
topic.close()  # the subscription lives on its own
print("ready", flush=True)
for message in subscriber:
    if message == b"end":
        break
    print(message.decode(), flush=True)
print(subscriber.recv_record(timeout=20)["sum"], flush=True)
subscriber.close()
"""


def test_fan_out_to_subscribers_in_other_processes(name):
    """Two Python processes subscribe by name and print what they get."""
    with shmio.Topic.create_or_open(name, capacity=8, max_message_size=64, overflow="block") as topic:
        children = [
            subprocess.Popen(
                [sys.executable, "-c", SUBSCRIBER_CHILD, name],
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        try:
            for child in children:
                assert child.stdout is not None
                assert child.stdout.readline().strip() == "ready"
            assert topic.subscribers == 2
            words = [f"word-{i}" for i in range(50)]  # more than the capacity: the publisher waits
            for word in words:
                topic.publish(word.encode(), timeout=WAIT)
            topic.publish(b"end", timeout=WAIT)
            topic.publish_record({"sum": 42}, timeout=WAIT)
            for child in children:
                out, _ = child.communicate(timeout=WAIT)
                assert child.returncode == 0
                assert out.split() == [*words, "42"]
        finally:
            for child in children:
                child.kill()
                child.wait()


def test_history_for_a_late_subscriber(name):
    with shmio.Topic.create_or_open(name, capacity=8, max_message_size=16, history=3) as topic:
        for i in range(5):
            topic.publish(b"%d" % i)
        late = topic.subscribe()
        assert late.pending == 3
        assert [late.recv(timeout=1) for _ in range(3)] == [b"2", b"3", b"4"]
        assert late.try_recv() is None
        topic.publish(b"5")
        assert late.recv(timeout=1) == b"5"
        late.close()


def test_overwrite_lag_raises_lagged_error_then_goes_on(name):
    with shmio.Topic.create_or_open(name, capacity=4, max_message_size=16) as topic:
        subscriber = topic.subscribe()
        for i in range(10):
            topic.publish(b"%d" % i, timeout=0)  # never waits under overwrite
        with pytest.raises(shmio.LaggedError) as lagged:
            subscriber.recv(timeout=1)
        assert isinstance(lagged.value, shmio.Error)
        assert lagged.value.missed == 6
        assert "6 message" in str(lagged.value)
        assert [subscriber.recv(timeout=1) for _ in range(4)] == [b"6", b"7", b"8", b"9"]
        with pytest.raises(shmio.UnsupportedError, match='overflow="block"'):
            subscriber.recv_sample(timeout=1)
        subscriber.close()


def test_a_held_sample_blocks_the_publisher_until_released(name):
    with shmio.Topic.create_or_open(name, capacity=2, max_message_size=16, overflow="block") as topic:
        assert topic.overflow == "block"
        subscriber = topic.subscribe()
        topic.publish(b"first")
        topic.publish(b"second")
        sample = subscriber.recv_sample(timeout=1)
        assert len(sample) == 5 and bytes(sample) == b"first" and not sample.released
        assert repr(sample) == f'<shmio.Sample of "{name}" len=5>'
        assert not topic.try_publish(b"third")
        with pytest.raises(shmio.TimeoutError):
            topic.publish(b"third", timeout=0.1)
        with pytest.raises(shmio.InvalidError, match="holds a sample"):
            subscriber.recv(timeout=0)
        with pytest.raises(shmio.InvalidError, match="holds a sample"):
            subscriber.recv_sample(timeout=0)

        published = threading.Event()

        def publish() -> None:
            topic.publish(b"third", timeout=WAIT)
            published.set()

        thread = threading.Thread(target=publish)
        thread.start()
        assert not published.wait(0.2), "published while the sample held its slot"
        sample.release()
        assert sample.released and repr(sample).endswith(" released>")
        sample.release()  # twice does nothing
        assert published.wait(WAIT)
        thread.join(WAIT)
        with pytest.raises(shmio.ClosedError):
            memoryview(sample)
        assert subscriber.recv(timeout=1) == b"second"
        with subscriber.recv_sample(timeout=1) as third:
            assert bytes(third) == b"third"
        assert third.released
        subscriber.close()


def test_a_dropped_sample_releases_its_message(name):
    with shmio.Topic.create_or_open(name, capacity=2, max_message_size=16, overflow="block") as topic:
        subscriber = topic.subscribe()
        topic.publish(b"a")
        topic.publish(b"b")
        sample = subscriber.recv_sample(timeout=1)
        assert not topic.try_publish(b"c")
        del sample
        assert topic.try_publish(b"c")
        assert [subscriber.recv(timeout=1) for _ in range(2)] == [b"b", b"c"]
        subscriber.close()


def test_numpy_reads_a_sample_in_place(name):
    np = pytest.importorskip("numpy")
    values = np.arange(32, dtype=np.float64)
    with shmio.Topic.create_or_open(name, capacity=4, max_message_size=1024, overflow="block") as topic:
        subscriber = topic.subscribe()
        topic.publish(values.tobytes())
        sample = subscriber.recv_sample(timeout=1)
        array = np.frombuffer(sample, dtype=np.float64)
        assert (array == values).all()
        assert not array.flags.writeable
        view = memoryview(sample)
        assert view.readonly and view.obj is sample and view.nbytes == values.nbytes
        # No copy: every buffer is the same memory, the sample's own.
        again = np.frombuffer(view, dtype=np.float64)
        assert np.shares_memory(array, again)
        assert array.__array_interface__["data"][0] == again.__array_interface__["data"][0]
        with pytest.raises(BufferError):
            sample.release()
        with pytest.raises(BufferError):
            subscriber.close()
        with pytest.raises(BufferError):
            with sample:
                pass
        assert not sample.released
        del array, again
        view.release()
        sample.release()
        assert sample.released
        topic.publish(b"next")
        assert subscriber.recv(timeout=1) == b"next"
        subscriber.close()


def test_a_buffer_keeps_the_memory_mapped_when_everything_else_goes(name):
    np = pytest.importorskip("numpy")
    topic = shmio.Topic.create_or_open(name, capacity=2, max_message_size=64, overflow="block")
    subscriber = topic.subscribe()
    topic.publish(np.full(8, 7, dtype=np.int64).tobytes())
    array = np.frombuffer(subscriber.recv_sample(timeout=1), dtype=np.int64)
    topic.close()
    del subscriber
    assert (array == 7).all()  # the topic's memory is still mapped
    del array


def test_closing_ends_blocked_receives_iteration_and_publishes(name):
    topic = shmio.Topic.create_or_open(name, capacity=1, max_message_size=16, overflow="block")
    subscriber = topic.subscribe()
    topic.publish(b"first")
    got = []
    first = threading.Event()

    def iterate() -> None:
        for message in subscriber:
            got.append(message)
            first.set()

    reader = threading.Thread(target=iterate)
    reader.start()
    assert first.wait(WAIT)
    subscriber.close()
    reader.join(WAIT)
    assert not reader.is_alive(), "the loop ended when the subscriber closed"
    assert got == [b"first"]
    assert list(subscriber) == []

    other = topic.subscribe()
    raised = []

    def blocked_recv() -> None:
        try:
            other.recv()
        except shmio.ClosedError as error:
            raised.append(error)

    thread = threading.Thread(target=blocked_recv)
    thread.start()
    time.sleep(0.1)  # into the wait
    other.close()
    thread.join(WAIT)
    assert not thread.is_alive() and len(raised) == 1

    # A publisher waiting for a slow subscriber ends when its topic closes.
    slow = topic.subscribe()
    topic.publish(b"fills it")

    def blocked_publish() -> None:
        try:
            topic.publish(b"no room")
        except shmio.ClosedError as error:
            raised.append(error)

    thread = threading.Thread(target=blocked_publish)
    thread.start()
    time.sleep(0.1)  # into the wait
    topic.close()
    thread.join(WAIT)
    assert not thread.is_alive() and len(raised) == 2
    assert slow.recv(timeout=1) == b"fills it"  # the subscriber lives on
    slow.close()


def test_closing_a_subscriber_releases_its_sample(name):
    with shmio.Topic.create_or_open(name, capacity=1, max_message_size=16, overflow="block") as topic:
        subscriber = topic.subscribe()
        topic.publish(b"held")
        sample = subscriber.recv_sample(timeout=1)
        with subscriber:
            pass
        assert subscriber.closed and sample.released
        assert topic.subscribers == 0 and topic.try_publish(b"free")
        with pytest.raises(shmio.ClosedError):
            subscriber.recv_sample(timeout=0)


def test_pickles_as_open_by_name(name):
    with shmio.Topic.create_or_open(name, capacity=4, max_message_size=16, history=1) as topic:
        topic.publish(b"kept")
        clone = pickle.loads(pickle.dumps(topic))
        assert clone.existed and clone.name == name and clone.history == 1
        subscriber = clone.subscribe()
        assert subscriber.recv(timeout=1) == b"kept"
        subscriber.close()
        clone.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork")
def test_a_forked_child_publishes_through_the_inherited_topic(name):
    with shmio.Topic.create_or_open(name, capacity=4, max_message_size=16) as topic:
        subscriber = topic.subscribe()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                topic.publish(b"from the child")
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert subscriber.recv(timeout=WAIT) == b"from the child"
        subscriber.close()


def test_large_frames_come_from_the_pool_and_are_never_overwritten_while_held(name):
    # From 16 KiB under block, payloads live in a pool of chunks reused as
    # soon as every subscriber is past them: a held frame must keep its
    # chunk while newer frames flow through the others.
    np = pytest.importorskip("numpy")
    frame = 64 << 10
    with shmio.Topic.create_or_open(name, capacity=4, max_message_size=frame, overflow="block") as topic:
        subscriber = topic.subscribe()
        topic.publish(np.full(frame, 1, dtype=np.uint8).tobytes())
        held = subscriber.recv_sample(timeout=1)
        first = np.frombuffer(held, dtype=np.uint8)
        # The held frame is this subscriber's cursor: three more fit, the
        # fourth would overwrite what it holds.
        for value in (2, 3, 4):
            topic.publish(np.full(frame, value, dtype=np.uint8).tobytes())
        assert not topic.try_publish(np.full(frame, 5, dtype=np.uint8).tobytes())
        assert (first == 1).all(), "the held frame is untouched"
        del first
        held.release()
        for value in (2, 3, 4):
            with subscriber.recv_sample(timeout=1) as sample:
                assert (np.frombuffer(sample, dtype=np.uint8) == value).all()
        topic.publish(np.full(frame, 6, dtype=np.uint8).tobytes())
        assert subscriber.recv(timeout=1) == bytes([6]) * frame
        subscriber.close()
