"""The type stubs as a user's `mypy --strict` meets them: the buffer
protocol, and a handler decorated with `@bus.listen` keeping its type."""

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
