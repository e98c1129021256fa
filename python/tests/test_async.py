"""asyncio: the awaitable waits (channel, subscriber, event, bus) against
other processes (the Rust CLI, multiprocessing children), timeouts, and
cancellation that loses and repeats nothing."""

import asyncio
import multiprocessing
import random
import subprocess

import pytest

import shmio

from conftest import WAIT, unique
from workers import MESSAGE, produce


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, WAIT * 3))


def test_a_channel_awaits_what_the_rust_cli_sends_and_back(cli, name):
    async def main():
        with shmio.Channel.create_or_open(name, capacity=16, max_message_size=256) as channel:
            sender = await asyncio.create_subprocess_exec(str(cli), "send", name, stdin=subprocess.PIPE)
            sender.stdin.write(b"alpha\nbeta\n")
            sender.stdin.close()
            assert await channel.recv_async(timeout=WAIT) == b"alpha"
            assert await channel.recv_async(timeout=WAIT) == b"beta"
            assert await sender.wait() == 0
            await channel.send_async(b"gamma", timeout=WAIT)
            receiver = await asyncio.create_subprocess_exec(
                str(cli), "recv", name, "--count", "1", "--timeout", "10s", stdout=subprocess.PIPE
            )
            out, _ = await receiver.communicate()
            assert out.splitlines() == [b"gamma"]

    run(main())


def test_a_timeout_is_shmios_timeout_error(name):
    async def main():
        with shmio.Channel.create_or_open(name) as channel:
            with pytest.raises(shmio.TimeoutError):
                await channel.recv_async(timeout=0.05)
            with shmio.Event(unique("event")) as event:
                assert await event.wait_async(timeout=0.05) is False
                event.set()
                assert await event.wait_async(timeout=WAIT) is True

    run(main())


def test_cancelled_receives_lose_and_repeat_nothing(name):
    """A producer process sends 5,000 numbered messages; each receive races
    a short timer (asyncio.wait_for cancels the loser): every message
    arrives once, in order."""
    count = 5000

    async def main():
        with shmio.Channel.create_or_open(name, capacity=16, max_message_size=64) as channel:
            child = multiprocessing.get_context("spawn").Process(target=produce, args=(name, 0, count))
            child.start()
            rng = random.Random()
            expected, cancelled = 0, 0
            loop = asyncio.get_running_loop()
            began = loop.time()
            while expected < count:
                assert loop.time() - began < WAIT * 2, f"at {expected} of {count}"
                try:
                    message = await asyncio.wait_for(channel.recv_async(), rng.uniform(0, 0.002))
                except asyncio.TimeoutError:
                    cancelled += 1
                    continue
                assert MESSAGE.unpack(message) == (0, expected)
                expected += 1
            await loop.run_in_executor(None, child.join, WAIT)
            assert child.exitcode == 0
            assert channel.try_recv() is None, "nothing repeated"
            assert cancelled > 0, "some receives were cancelled"

    run(main())


def test_many_tasks_share_channels(name):
    """100 tasks on 10 channels, 2,000 messages sent by a process: each once."""

    async def main():
        channels = [
            shmio.Channel.create_or_open(f"{name}-{i}", capacity=16, max_message_size=64) for i in range(10)
        ]
        received = []

        async def consume(channel):
            while True:
                message = await channel.recv_async(timeout=WAIT)
                if message == b"stop":
                    return
                received.append(message)

        # Handles of their own: the receivers' handle alone is disconnected.
        senders = [shmio.Channel.open(f"{name}-{i}") for i in range(10)]
        tasks = [asyncio.create_task(consume(channels[i % 10])) for i in range(100)]
        for i in range(2000):
            await senders[i % 10].send_async(MESSAGE.pack(0, i), timeout=WAIT)
        for sender in senders:
            for _ in range(10):
                await sender.send_async(b"stop", timeout=WAIT)
        await asyncio.gather(*tasks)
        assert sorted(MESSAGE.unpack(m)[1] for m in received) == list(range(2000))
        for channel in channels + senders:
            channel.close()

    run(main())


def test_a_subscriber_awaits_and_cancelling_it_skips_nothing(cli, name):
    async def main():
        with shmio.Topic.create_or_open(name, overflow="block", capacity=8, max_message_size=64) as topic:
            with topic.subscribe() as subscriber:
                with pytest.raises(asyncio.TimeoutError):
                    await asyncio.wait_for(subscriber.recv_async(), 0.05)
                publisher = await asyncio.create_subprocess_exec(str(cli), "publish", name, "one", "two", "three")
                got = [await subscriber.recv_async(timeout=WAIT) for _ in range(3)]
                assert got == [b"one", b"two", b"three"]
                assert await publisher.wait() == 0
                pending = asyncio.ensure_future(subscriber.recv_async())
                await asyncio.sleep(0.01)
                with pytest.raises(shmio.InvalidError):
                    subscriber.recv(timeout=0)  # the awaited receive has it
                pending.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await pending
                topic.publish(b"four")
                assert subscriber.recv(timeout=WAIT) == b"four"
                # Under block, an awaited publish waits for the subscriber.
                for n in range(8):
                    await topic.publish_async(b"%d" % n, timeout=WAIT)
                with pytest.raises(shmio.TimeoutError):
                    await topic.publish_async(b"full", timeout=0.05)
                waiting = asyncio.ensure_future(topic.publish_async(b"eight", timeout=WAIT))
                assert subscriber.recv(timeout=WAIT) == b"0"
                await waiting
                assert [subscriber.recv(timeout=WAIT) for _ in range(8)][-1] == b"eight"

    run(main())


def test_a_bus_call_is_awaited(cli, name):
    async def main():
        with shmio.Bus.join(name) as bus:
            bus.listen("add", lambda args: args["a"] + args["b"])
            assert await bus.call_async("add", {"a": 1, "b": 2}, timeout=WAIT) == 3
            with pytest.raises(shmio.NoListenerError):
                await bus.call_async("nobody", timeout=WAIT)

    run(main())


@pytest.mark.parametrize("kind", ["recv", "subscriber", "event"])
def test_ctrl_c_ends_an_awaited_wait_as_a_blocking_one(name, kind):
    """Under asyncio.run, a SIGINT cancels the task awaiting the receive:
    KeyboardInterrupt comes at once, and the object stays usable."""
    import os
    import signal
    import sys
    import time

    child = subprocess.Popen(
        [sys.executable, "-c", f"import workers; workers.await_in({kind!r}, {name!r})"],
        cwd=os.path.dirname(__file__),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline().strip() == "ready"
        time.sleep(0.3)  # the future asleep with the waiter thread
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


def test_a_mutex_is_acquired_by_awaiting_an_unlock(name):
    """acquire_async waits, without blocking the loop, for another
    process's hold to end; a timeout says False; the count under the lock
    is exact with a blocking locker in another process."""
    import sys

    async def main():
        mutex = shmio.Mutex(name)  # (`with mutex:` would take it)
        holder = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            "import shmio, sys\n"
            f"m = shmio.Mutex({name!r}); m.acquire(); print('held', flush=True)\n"
            "sys.stdin.readline(); m.release()",
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert (await holder.stdout.readline()).strip() == b"held"
        assert await mutex.acquire_async(timeout=0.05) is False
        taking = asyncio.ensure_future(mutex.acquire_async(timeout=WAIT))
        ticks = 0
        while not taking.done() and ticks < 5:
            await asyncio.sleep(0.01)  # the loop runs meanwhile
            ticks += 1
        assert not taking.done() and ticks == 5
        holder.stdin.write(b"go\n")
        await holder.stdin.drain()
        assert await taking is True
        assert mutex.locked()
        with pytest.raises(shmio.DeadlockError):
            await mutex.acquire_async()
        mutex.release()
        assert await holder.wait() == 0
        mutex.close()

    run(main())
