"""Drives shmio's awaitables on asyncio's event loop (see ``aio.rs``)."""

import asyncio

from ._shmio import TimeoutError as _TimeoutError


def _resolve(future):
    if not future.done():
        future.set_result(None)


async def _await(awaiting):
    loop = asyncio.get_running_loop()
    try:
        while True:
            woken = loop.create_future()

            def wake(woken=woken):
                loop.call_soon_threadsafe(_resolve, woken)

            done, value = awaiting.poll(wake)
            if done:
                return value
            await woken
    finally:
        # Cancelled (or done): the Rust future goes now, not at a
        # garbage collection.
        awaiting.cancel()


_RAISE = object()


async def drive(awaiting, timeout, timed_out, instead=_RAISE):
    """Awaits ``awaiting``; at most ``timeout`` seconds if given, then
    raises shmio's ``TimeoutError`` saying ``timed_out`` (or gives
    ``instead``)."""
    if timeout is None:
        return await _await(awaiting)
    try:
        return await asyncio.wait_for(_await(awaiting), timeout)
    except asyncio.TimeoutError:
        if instead is not _RAISE:
            return instead
        raise _TimeoutError(timed_out) from None


async def acquire(mutex, timeout):
    """``Mutex.acquire_async``: tries the lock, and awaits an unlock while
    another holds it; whether it was taken within ``timeout`` seconds."""

    async def take():
        while True:
            if mutex.acquire(blocking=False):
                return True
            await mutex._wait_unlocked()

    if timeout is None:
        return await take()
    try:
        return await asyncio.wait_for(take(), timeout)
    except asyncio.TimeoutError:
        return False
