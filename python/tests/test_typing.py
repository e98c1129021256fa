"""The type stubs as a user's `mypy --strict` meets them: the buffer
protocol (a mapping's, a topic sample's), a handler decorated with
`@bus.listen` keeping its type, and a subscriber's messages."""

import subprocess
import sys
import textwrap

import pytest

USER_CODE = textwrap.dedent(
    """
    import numpy as np
    import shmio

    def use(m: shmio.Mapping, bus: shmio.Bus) -> int:
        view = memoryview(m)
        array = np.frombuffer(memoryview(m), dtype=np.uint8)

        @bus.listen("double")
        def double(x: int) -> int:
            return x * 2

        return double(len(view) + int(array[0]))

    def subscribe(topic: shmio.Topic) -> float:
        with topic.subscribe() as subscriber:
            total = 0.0
            for message in subscriber:
                total += len(message)
                break
            try:
                record = subscriber.recv_record(timeout=0.5)
            except shmio.LaggedError as lagged:
                return float(lagged.missed)
            with subscriber.recv_sample(timeout=None) as sample:
                array = np.frombuffer(memoryview(sample), dtype=np.float64)
                total += float(array.sum()) + len(sample)
            return total + len(str(record))
    """
)


def test_mypy_strict_accepts_what_the_readmes_do(tmp_path):
    pytest.importorskip("mypy")
    path = tmp_path / "user.py"
    path.write_text(USER_CODE)
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
