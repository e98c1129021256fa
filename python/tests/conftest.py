"""Shared fixtures: unique names, the Rust CLI, and a check that nothing is
left in /dev/shm.

Every name a test uses starts with ``shmio-pytest-<pid>-``, so the session
can check at its end that none of them is left behind.
"""

import itertools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PREFIX = f"shmio-pytest-{os.getpid()}-"
_counter = itertools.count()

# Every wait in these tests is bounded by this many seconds.
WAIT = 20


def unique(kind: str = "obj") -> str:
    """A name no other test (or test run) uses."""
    return f"{PREFIX}{kind}-{next(_counter)}"


@pytest.fixture
def name(request) -> str:
    return unique(request.node.name.split("[")[0][:40])


def _find_cli() -> Path:
    """The `shmio` binary: $SHMIO_CLI, else built with cargo (quick when
    it is up to date) in the workspace's target directory."""
    env = os.environ.get("SHMIO_CLI")
    if env:
        return Path(env)
    cargo = shutil.which("cargo")
    if cargo is None:
        for candidate in (REPO / "target" / "debug" / "shmio", REPO / "target" / "release" / "shmio"):
            if candidate.exists():
                return candidate
        pytest.fail("no cargo to build the shmio CLI, and no SHMIO_CLI")
    subprocess.run([cargo, "build", "-q", "-p", "shmio-cli"], cwd=REPO, check=True, timeout=1800)
    metadata = subprocess.run(
        [cargo, "metadata", "--format-version", "1", "--no-deps"],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    target = Path(json.loads(metadata.stdout)["target_directory"])
    return target / "debug" / ("shmio.exe" if sys.platform == "win32" else "shmio")


@pytest.fixture(scope="session")
def cli() -> Path:
    path = _find_cli()
    assert path.exists(), f"no shmio CLI at {path}"
    return path


def run_cli(cli: Path, *args: str, input: bytes | None = None, timeout: float = WAIT) -> subprocess.CompletedProcess:
    """Runs the CLI to completion, bounded, capturing its output."""
    return subprocess.run([str(cli), *args], input=input, capture_output=True, timeout=timeout)


def shm_leftovers() -> list[str]:
    shm = Path("/dev/shm")
    if not shm.is_dir():
        return []
    return sorted(p.name for p in shm.iterdir() if PREFIX in p.name)


@pytest.fixture(scope="session", autouse=True)
def nothing_left_in_dev_shm():
    yield
    if sys.platform.startswith("linux"):
        # Names go with their last holder; a child's exit may take a moment.
        import time

        deadline = time.monotonic() + 5
        while shm_leftovers() and time.monotonic() < deadline:
            time.sleep(0.05)
        left = shm_leftovers()
        for leftover in left:
            (Path("/dev/shm") / leftover).unlink(missing_ok=True)
        assert not left, f"tests left names in /dev/shm: {left}"
