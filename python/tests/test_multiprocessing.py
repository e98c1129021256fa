"""multiprocessing with fork and with threads."""

import multiprocessing
import sys
import threading

import pytest

import shmio
from conftest import WAIT, unique
import workers


@pytest.mark.skipif(sys.platform == "win32", reason="no fork on Windows")
def test_fork_children_see_the_same_memory(name):
    channel_name = unique("channel")
    with shmio.Mapping.create_or_open(name, 4096) as mapping, shmio.Channel.create_or_open(
        channel_name, capacity=4, max_message_size=256
    ) as channel:
        child = multiprocessing.get_context("fork").Process(
            target=workers.fork_child, args=(name, channel_name, mapping, channel)
        )
        child.start()
        child.join(WAIT)
        assert child.exitcode == 0
        report = channel.recv_record(timeout=WAIT)
        assert report == {"pid": child.pid, "mapping": "from the fork"}
        assert mapping.read_at(0, 13) == b"from the fork"


def test_threads_share_a_channel_and_a_lock(name):
    counter = unique("counter")
    with shmio.Channel.create_or_open(name, capacity=64, max_message_size=16) as channel, shmio.Mapping.create_or_open(
        counter, 4096
    ) as mapping:
        def work(n: int) -> None:
            for _ in range(200):
                with mapping.lock(timeout=WAIT):
                    value = int.from_bytes(mapping.read_at(0, 8), "little")
                    mapping.write_at(0, (value + 1).to_bytes(8, "little"))
                channel.send(b"%d" % n, timeout=WAIT)

        got = []
        receiver = threading.Thread(target=lambda: got.extend(channel.recv(timeout=WAIT) for _ in range(800)))
        receiver.start()
        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(WAIT)
        receiver.join(WAIT)
        assert len(got) == 800 and sorted(set(got)) == [b"0", b"1", b"2", b"3"]
        assert int.from_bytes(mapping.read_at(0, 8), "little") == 800
