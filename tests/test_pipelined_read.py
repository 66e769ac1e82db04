"""A large file is read, cut and hashed on three threads (p2p/blocks/chunking.py
``_read_pipelined``): the same blocks and hash as one pass over the whole
content, the hashing off the caller's thread, and a file written meanwhile
still raises FileChanged."""

import hashlib
import os
import random
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p2p import limits
from p2p.blocks import chunking
from p2p.blocks.chunking import FileChanged, cut, read_blocks

KiB = 1024
SMALL_MIN = 300 * KiB   # the pipelined path from here in these tests: 16 KiB tier, 128 KiB segments (two of
                        # its maximum blocks), so a file of a few MiB is many segments


@pytest.fixture(autouse=True)
def _small_pipeline(monkeypatch):
    monkeypatch.setattr(limits, "PARALLEL_HASH_MIN", SMALL_MIN, raising=False)
    monkeypatch.setattr(limits, "PIPELINE_SEGMENT", 1, raising=False)


def expected(data: bytes, size=None):
    blocks = [(hashlib.sha256(data[at:at + n]).hexdigest(), n) for at, n in cut(data, size)]
    return len(data), hashlib.sha256(data).hexdigest(), blocks


def content(seed: int, size: int, runs: int) -> bytes:
    """Random bytes with ``runs`` stretches of zeros and of repeats (cuts at the
    minimum and the maximum size)."""
    rng = random.Random(seed)
    data = bytearray(rng.randbytes(size))
    for _ in range(runs):
        at, n = rng.randrange(size), rng.randrange(1, 200 * KiB)
        data[at:at + n] = bytes(min(n, size - at))
    return bytes(data)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2 ** 32), size=st.integers(SMALL_MIN + 1, 3 * 1024 * KiB), runs=st.integers(0, 4))
def test_same_blocks_and_hash_as_one_pass(tmp_path, seed, size, runs):
    data = content(seed, size, runs)
    path = tmp_path / "f"
    path.write_bytes(data)
    seen = []
    got = read_blocks(path, on_block=lambda h, view, fd, at: seen.append((h, at, bytes(view))))
    assert got == expected(data)
    assert [(h, at) for h, at, _ in seen] == [(h, at) for (h, _), (at, _) in zip(got[2], cut(data))]
    assert all(block == data[at:at + len(block)] for _h, at, block in seen)


def test_cut_as_another_size(tmp_path):
    data = content(7, 2 * 1024 * KiB, 2)
    (tmp_path / "f").write_bytes(data)
    tier = 200 * 1024 * KiB   # cut as a file of the 1 MiB tier would be
    assert read_blocks(tmp_path / "f", cut_as=tier) == expected(data, tier)


def test_hashes_run_off_the_callers_thread(tmp_path, monkeypatch):
    """The whole-file hash and the block hashes each run on a thread of their
    own, so they overlap the reading and cutting of the next segment."""
    (tmp_path / "f").write_bytes(os.urandom(2 * 1024 * KiB))
    threads = set()
    real = hashlib.sha256

    class Spy:
        def __init__(self, data=b""):
            self._h = real(data)
            if data:
                threads.add(("block", threading.get_ident()))

        def update(self, data):
            threads.add(("whole", threading.get_ident()))
            self._h.update(data)

        def hexdigest(self):
            return self._h.hexdigest()

    monkeypatch.setattr(chunking.hashlib, "sha256", Spy)
    read_blocks(tmp_path / "f")
    me = threading.get_ident()
    whole = {t for kind, t in threads if kind == "whole"}
    block = {t for kind, t in threads if kind == "block"}
    assert whole and block and me not in whole | block and not whole & block


@pytest.mark.parametrize("change", ["shrink", "grow"])
def test_a_file_written_meanwhile_raises_file_changed(tmp_path, change):
    path = tmp_path / "f"
    path.write_bytes(os.urandom(4 * 1024 * KiB))
    first = []

    def on_block(_h, _view, _fd, _at):
        if not first:   # the first segments are read: change the file under the reader
            first.append(True)
            if change == "shrink":
                os.truncate(path, 1024 * KiB)
            else:
                with open(path, "ab") as fh:
                    fh.write(b"more")
    with pytest.raises(FileChanged):
        read_blocks(path, on_block=on_block)
