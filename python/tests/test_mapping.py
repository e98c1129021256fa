"""Mapping: the cursor, offsets, records, the buffer protocol (numpy), the
lifetime of names, and clear errors for bad input."""

import ctypes
import json
import multiprocessing
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import shmio
from conftest import WAIT, run_cli, unique
import workers


def test_create_open_and_the_cursor(name):
    with shmio.Mapping.create_or_open(name, 4096) as first:
        assert not first.existed and len(first) == 4096 and first.size == 4096
        assert first.name == name
        second = shmio.Mapping.open(name)
        assert second.existed and len(second) == 4096
        assert first.write(b"hello world") == 11
        assert first.tell() == 11
        assert second.read(5) == b"hello"
        assert second.tell() == 5
        assert second.seek(-5, 2) == 4091
        assert second.read() == bytes(5)
        assert second.read(10) == b""  # at the end
        second.seek(6)
        buffer = bytearray(5)
        assert second.readinto(buffer) == 5 and buffer == b"world"
        assert second.seek(2, 1) == 13
        second.close()
        assert second.closed


def test_create_refuses_a_taken_name_and_open_a_missing_one(name):
    with shmio.Mapping.create(name, 4096):
        with pytest.raises(shmio.AlreadyExistsError) as taken:
            shmio.Mapping.create(name, 4096)
        assert isinstance(taken.value, FileExistsError) and name in str(taken.value)
    with pytest.raises(shmio.NotFoundError) as missing:
        shmio.Mapping.open(name)
    assert isinstance(missing.value, FileNotFoundError)


def test_read_at_and_write_at_leave_the_cursor(name):
    with shmio.Mapping.create_or_open(name, 4096) as mapping:
        mapping.write_at(100, bytearray(b"abc"))
        mapping.write_at(103, memoryview(b"def"))
        assert mapping.read_at(100, 6) == b"abcdef"
        assert mapping.tell() == 0


def test_anonymous_and_file_backed(tmp_path):
    with shmio.Mapping.anonymous(4096) as anonymous:
        assert anonymous.name is None
        anonymous.write(b"x")
        assert anonymous.read_at(0, 1) == b"x"
    path = tmp_path / "backing"
    with shmio.Mapping.map_file(path, 8192) as mapping:
        mapping.write(b"on disk")
        mapping.flush()
    assert path.read_bytes()[:7] == b"on disk"
    assert path.stat().st_size == 8192
    named = unique("file")
    with shmio.Mapping.create_or_open(named, 8192, file=tmp_path / "named", permissions=0o600) as mapping:
        mapping.write(b"named file")
    assert (tmp_path / "named").read_bytes()[:10] == b"named file"


def test_records_round_trip(name):
    value = {"name": "job", "ids": [1, 2, 3], "ratio": 0.25, "ok": True, "none": None, "nested": {"a": ["b"]}}
    with shmio.Mapping.create_or_open(name, 4096) as mapping:
        written = mapping.write_record(value)
        payload = json.dumps(value, separators=(",", ":"), sort_keys=True).encode()
        assert written == shmio.RECORD_HEADER_LEN + len(payload)
        mapping.write_record(["second", 2])
        mapping.seek(0)
        assert mapping.read_record() == value
        assert mapping.read_record() == ["second", 2]
        assert mapping.read_record() is None  # nothing written there
        mapping.write_record_at(1000, (1, "tuple"))
        assert mapping.read_record_at(1000) == [1, "tuple"]


def test_records_cross_language(cli, name):
    """A record Python writes is read by Rust (the CLI's `read --record`,
    `Mapping::read_record_at`), and one Rust writes (`write --record`,
    `Mapping::write_record_at`) is read by Python: the same framing (u32
    length + JSON) both ways."""
    value = {"from": "python", "n": [1, 2, 3], "f": 0.5, "ok": True, "none": None}
    with shmio.Mapping.create_or_open(name, 4096) as mapping:
        written = mapping.write_record(value)
        raw = run_cli(cli, "read", name, "--len", str(written))
        assert raw.returncode == 0, raw.stderr
        (length,) = struct.unpack("<I", raw.stdout[:4])
        assert length == written - 4
        out = run_cli(cli, "read", name, "--record")
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout) == value
        # The other way: Rust encodes the record at offset 512.
        theirs = {"from": "rust", "ok": True, "list": ["a", 1, 2.25, None]}
        out = run_cli(cli, "write", name, "--record", "--offset", "512", input=json.dumps(theirs).encode())
        assert out.returncode == 0, out.stderr
        assert mapping.read_record_at(512) == theirs


def test_the_buffer_protocol_shows_the_shared_memory(name):
    with shmio.Mapping.create_or_open(name, 4096) as mapping:
        view = memoryview(mapping)
        assert len(view) == 4096 and not view.readonly
        view[:5] = b"HELLO"
        assert mapping.read_at(0, 5) == b"HELLO"
        with pytest.raises(BufferError):
            mapping.close()
        view.release()
        array = np.frombuffer(mapping, dtype=np.uint32)
        other = np.frombuffer(mapping, dtype=np.uint8)
        assert np.shares_memory(array, other)
        array[1] = 0xDEADBEEF
        assert mapping.read_at(4, 4) == struct.pack("<I", 0xDEADBEEF)
        with pytest.raises(BufferError):
            mapping.close()
        del array, other
        mapping.close()
        assert mapping.closed


def test_numpy_across_processes_without_a_copy(name):
    """A child writes an array into the mapping through numpy; the parent's
    array over the same mapping sees it, without reading or copying."""
    with shmio.Mapping.create_or_open(name, 1 << 16) as mapping:
        mine = np.frombuffer(mapping, dtype=np.float64, count=1000)
        before = mine.copy()
        values = [float(i) * 1.5 for i in range(1000)]
        child = multiprocessing.get_context("spawn").Process(target=workers.write_array, args=(name, values))
        child.start()
        child.join(WAIT)
        assert child.exitcode == 0
        assert not np.array_equal(before, mine)
        assert np.array_equal(mine, np.array(values))
        del mine


def test_read_only_mapping(name):
    with shmio.Mapping.create_or_open(name, 4096) as writer:
        writer.write(b"data")
        with shmio.Mapping.open(name, read_only=True) as reader:
            assert reader.read_only and reader.read(4) == b"data"
            with pytest.raises(shmio.AccessError) as refused:
                reader.write_at(0, b"x")
            assert isinstance(refused.value, PermissionError)
            with pytest.raises(TypeError):
                ctypes.c_char.from_buffer(reader)  # wants a writable buffer
            with pytest.raises(TypeError):
                memoryview(reader)[0:1] = b"x"
            view = memoryview(reader)
            assert view.readonly and bytes(view[:4]) == b"data"
            view.release()


def test_name_lives_while_rust_holds_it(cli, name):
    """A channel opened by Python stays while Rust holds it, and goes with
    the last holder."""
    shm = Path("/dev/shm")
    if not shm.is_dir():
        pytest.skip("no /dev/shm on this platform")
    channel = shmio.Channel.create_or_open(name, capacity=8, max_message_size=64)
    channel.send(b"first")
    rust = subprocess.Popen(
        [str(cli), "recv", name, "--count", "2", "--timeout", "2s"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert rust.stdout.readline() == b"first\n"  # Rust has it open
        channel.close()
        assert any(name in p.name for p in shm.iterdir()), "the name went while Rust held it"
        rust.wait(WAIT)
    finally:
        rust.kill()
        rust.wait()
    deadline = time.monotonic() + 5
    while any(name in p.name for p in shm.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not any(name in p.name for p in shm.iterdir()), "the name outlived its last holder"


def test_bad_input_raises_clear_errors(name, tmp_path):
    with pytest.raises(shmio.InvalidError, match="size must be >= 0"):
        shmio.Mapping.create_or_open(name, -1)
    with pytest.raises(shmio.InvalidError):
        shmio.Mapping.create_or_open(name, 0)
    with pytest.raises(shmio.InvalidError):
        shmio.Mapping.create_or_open("bad/name", 4096)
    with pytest.raises(TypeError):
        shmio.Mapping.create_or_open(name, "4096")
    with pytest.raises(TypeError):
        shmio.Mapping.create_or_open(42, 4096)
    with shmio.Mapping.create_or_open(name, 4096) as mapping:
        with pytest.raises(shmio.InvalidError):
            mapping.read_at(4090, 10)
        with pytest.raises(ValueError):
            mapping.read_at(-1, 1)
        with pytest.raises(shmio.InvalidError):
            mapping.write_at(4095, b"too long")
        assert mapping.read_at(4095, 1) == b"\0"  # nothing written
        with pytest.raises(shmio.InvalidError, match="cannot seek -1 bytes from the start"):
            mapping.seek(-1)
        with pytest.raises(shmio.InvalidError):
            mapping.seek(0, 7)
        # At or past the end a read is empty, as io.BytesIO's.
        assert mapping.seek(0, 2) == 4096 and mapping.read(1) == b""
        assert mapping.seek(5000) == 5000
        assert mapping.read() == b"" and mapping.read(3) == b""
        assert mapping.readinto(bytearray(4)) == 0
        with pytest.raises(TypeError):
            mapping.write("text is not bytes")
        with pytest.raises(TypeError):
            mapping.readinto(b"immutable")
        with pytest.raises(shmio.InvalidError):
            mapping.write_record({1: "int keys"})
        with pytest.raises(shmio.InvalidError):
            mapping.write_record(object())
        with pytest.raises(shmio.InvalidError):
            mapping.write_record(float("nan"))
        mapping.seek(4094)
        with pytest.raises(shmio.InvalidError):
            mapping.write(b"abc")
        assert mapping.tell() == 4094  # the cursor stays on error
        # Its own buffer into its own method: a clear error, not a panic.
        with pytest.raises(BufferError, match="its own methods"):
            mapping.write(mapping)
        with pytest.raises(BufferError, match="its own methods"):
            mapping.readinto(mapping)
        assert mapping.tell() == 4094
    for use in (
        lambda: mapping.read(),
        lambda: mapping.write(b"x"),
        lambda: len(mapping),
        lambda: mapping.lock(),
        lambda: memoryview(mapping),
    ):
        with pytest.raises(ValueError) as closed:
            use()
        assert isinstance(closed.value, shmio.ClosedError), closed.value
    mapping.close()  # twice is fine
    with pytest.raises(shmio.InvalidError):
        shmio.Mapping.anonymous(4096).lock()  # no name, no mutex
