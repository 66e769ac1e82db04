"""The whole-file check of a received file, hashed as its blocks land (RunningHash).

RunningHash replaces a second read of the file before its rename: whatever
the order, the threads and the source of the bytes (in memory or read back),
it must hash exactly what the file holds, and a received file whose content
is not its event's hash must still never be placed (ContentMismatch).
"""

import hashlib
import os
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2p.blocks.store import BlockStore
from p2p.folder.apply import ContentMismatch, FolderWriter
from p2p.folder.running_hash import RunningHash
from p2p.folder.state import LocalState
from p2p.history.event import Event

from peers import wait_until
from rogue import file_event


def cut(content: bytes, sizes):
    """content cut at the given block sizes (the last block takes the rest)."""
    blocks, at = [], 0
    for size in sizes:
        if at >= len(content):
            break
        blocks.append((at, content[at:at + size]))
        at += size
    if at < len(content):
        blocks.append((at, content[at:]))
    return blocks


@settings(max_examples=150, deadline=None)
@given(content=st.binary(min_size=0, max_size=3000), sizes=st.lists(st.integers(1, 700), max_size=12),
       order=st.randoms(use_true_random=False), in_memory=st.lists(st.booleans(), min_size=20, max_size=20))
def test_any_order_of_writes_hashes_exactly_the_file(content, sizes, order, in_memory):
    blocks = cut(content, sizes)
    file = bytearray(len(content))
    running = RunningHash(len(content), lambda offset, count: bytes(file[offset:offset + count]))
    order.shuffle(blocks)
    for i, (offset, data) in enumerate(blocks):
        file[offset:offset + len(data)] = data
        running.written(offset, len(data), data if in_memory[i % 20] else None)
        if i % 3 == 0:   # a block written again (a block that repeats, a resumed one) changes nothing
            running.written(offset, len(data), data)
    assert running.finish() == (hashlib.sha256(content).hexdigest(), len(content))


def test_blocks_from_many_threads_hash_the_file():
    content = os.urandom(64 * 4096 + 17)
    blocks = cut(content, [4096] * 65)
    file = bytearray(len(content))
    running = RunningHash(len(content), lambda offset, count: bytes(file[offset:offset + count]))

    def land(part):
        for offset, data in part:
            file[offset:offset + len(data)] = data
            running.written(offset, len(data), data)
    threads = [threading.Thread(target=land, args=(blocks[i::4],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert running.finish() == (hashlib.sha256(content).hexdigest(), len(content))


def test_a_block_landing_while_the_one_before_is_hashed_is_hashed_from_memory_not_read_back():
    """Several threads land a large file's blocks: the one next in line waits
    for the hash of the block before (it is short) instead of leaving its bytes
    to be read back from the file."""
    content = os.urandom(2 * 4096)
    reads, reading, go_on = [], threading.Event(), threading.Event()

    def read(offset, count):
        reads.append(offset)
        reading.set()
        go_on.wait(10)
        return content[offset:offset + count]
    running = RunningHash(len(content), read)
    first = threading.Thread(target=running.written, args=(0, 4096))   # no data: hashed from the file, slowly
    first.start()
    assert reading.wait(10)
    second = threading.Thread(target=running.written, args=(4096, 4096, content[4096:]))
    second.start()
    wait_until(lambda: getattr(running._lock, "_waiters", None) or not second.is_alive(), 10, "the second block to land")
    go_on.set()
    first.join(10)
    second.join(10)
    assert running.finish() == (hashlib.sha256(content).hexdigest(), len(content))
    assert reads == [0]


def test_a_short_file_is_told_apart():
    running = RunningHash(10, lambda offset, count: b"12345"[offset:offset + count])
    running.written(0, 5, b"12345")
    assert running.finish() == (hashlib.sha256(b"12345").hexdigest(), 5)


# -- PendingFile: every byte placed is checked against the event's hash --------------------------------
BLOCK = 300 * 1024


@pytest.fixture(params=["hashed as the blocks land", "hashed before the rename"])
def writer(tmp_path, monkeypatch, request):
    """A FolderWriter; its files count as large (over ARCHIVE_LATER_MIN: hashed
    as their blocks land) or not (hashed whole before the rename)."""
    from p2p import limits
    if request.param == "hashed as the blocks land":
        monkeypatch.setattr(limits, "ARCHIVE_LATER_MIN", 0)
    root, home = tmp_path / "shared", tmp_path / "home"
    root.mkdir()
    home.mkdir()
    state = LocalState(home / "local.json")
    yield FolderWriter(root, state, BlockStore(home / "blocks"), case_folding=False)
    state.close()


def large_event(content: bytes, whole_hash: str = None) -> Event:
    raw = file_event("R" * 32, 1, "big.bin", content)
    raw["blocks"] = [[hashlib.sha256(content[at:at + BLOCK]).hexdigest(), len(content[at:at + BLOCK])]
                     for at in range(0, len(content), BLOCK)]
    if whole_hash is not None:
        raw["hash"] = whole_hash
    return Event.from_dict(raw)


def write_all(pending, content: bytes, order=None) -> None:
    offsets = list(range(0, len(content), BLOCK))
    for at in order(offsets) if order else offsets:
        pending.write_block([at], content[at:at + BLOCK])


def test_a_large_file_written_out_of_order_is_placed(writer):
    content = os.urandom(5 * BLOCK + 123)
    pending = writer.begin_file("big.bin", large_event(content))
    write_all(pending, content, order=lambda offsets: offsets[::-1])
    pending.commit()
    assert (writer.root / "big.bin").read_bytes() == content


def test_a_corrupted_block_fails_the_whole_file_check(writer):
    """A block whose bytes are not the version's (say a store copy made without
    verification, or a bug that skipped its check) is caught before the rename."""
    content = os.urandom(5 * BLOCK + 123)
    corrupted = bytearray(content)
    corrupted[2 * BLOCK + 7] ^= 1
    pending = writer.begin_file("big.bin", large_event(content))
    write_all(pending, bytes(corrupted))
    with pytest.raises(ContentMismatch):
        pending.commit()
    assert os.listdir(writer.root) == [], "a mismatching file was placed or left behind"


def test_a_block_changed_on_disk_before_it_was_hashed_fails_the_check(writer):
    """Blocks hashed from the file (out of order, or copied in the kernel) are
    hashed as the file holds them, not as they were meant to be."""
    content = os.urandom(4 * BLOCK)
    pending = writer.begin_file("big.bin", large_event(content))
    for at in (BLOCK, 2 * BLOCK, 3 * BLOCK):   # the first block comes last: the others wait, unhashed
        pending.write_block([at], content[at:at + BLOCK])
    os.pwrite(pending.fd, b"X", 2 * BLOCK + 5)   # the disk lost or changed a byte meanwhile
    pending.write_block([0], content[:BLOCK])
    with pytest.raises(ContentMismatch):
        pending.commit()


def test_blocks_that_do_not_make_up_the_events_hash_are_never_placed(writer):
    content = os.urandom(3 * BLOCK)
    pending = writer.begin_file("big.bin", large_event(content, whole_hash=hashlib.sha256(b"other").hexdigest()))
    write_all(pending, content)
    with pytest.raises(ContentMismatch):
        pending.commit()
    assert os.listdir(writer.root) == []


def test_a_file_with_a_block_never_written_fails_the_check(writer):
    content = os.urandom(3 * BLOCK)
    pending = writer.begin_file("big.bin", large_event(content))
    pending.write_block([0], content[:BLOCK])
    pending.write_block([2 * BLOCK], content[2 * BLOCK:])
    with pytest.raises(ContentMismatch):
        pending.commit()
