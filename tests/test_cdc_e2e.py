"""Content-defined blocks end to end: an insert or a delete in a large file,
or a copy of it under another name, moves only the blocks near the edit
(real `p2p run` processes on loopback; the bytes are the sender's counters
in `p2p status --json`)."""

import os
import random

import pytest

from p2p import limits
from peers import wait_until

pytestmark = pytest.mark.slow

SIZE = 16 * limits.MiB
EDIT_BUDGET = 256 * limits.KiB   # the new event (~800 blocks, ~60 KB of JSON) and a few blocks of <= 64 KiB


def sent_to_b(a) -> int:
    return sum(p["sent"] for p in a.status()["peers"])


def put(peer, rel: str, data: bytes) -> None:
    """Write beside the folder, then rename in: one scan of the whole new content."""
    staged = peer.home / "staged"
    staged.write_bytes(data)
    os.replace(staged, peer.path(rel))


def test_an_insert_a_delete_and_an_edited_copy_move_only_the_blocks_near_the_edit(make_peer):
    a = make_peer("a").start()
    b = make_peer("b", peers=[a]).start()
    data = random.Random(13).randbytes(SIZE)
    put(a, "big.bin", data)
    wait_until(lambda: b.has("big.bin", data), 60, "the file on b")
    edits = [("big.bin", data[:limits.MiB] + b"0123456789" + data[limits.MiB:]),        # 10 bytes inserted
             ("big.bin", data[:SIZE // 2] + data[SIZE // 2 + limits.MiB:]),             # 1 MiB deleted
             ("copy.bin", data[:3 * limits.MiB] + b"x" * 100 + data[3 * limits.MiB:])]  # another name
    for rel, content in edits:
        before = sent_to_b(a)
        put(a, rel, content)
        wait_until(lambda: b.has(rel, content), 60, f"{rel} edited on b")
        moved = sent_to_b(a) - before
        assert moved < EDIT_BUDGET, f"{rel}: {moved} bytes sent for a small edit of a {SIZE} byte file"
