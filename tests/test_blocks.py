"""Block store and chunking: round trips, corruption detection, atomic file writes, pruning."""

import hashlib
import os

import pytest

from p2p import limits
from p2p.blocks.chunking import FileChanged, block_size_for, hash_file, read_blocks
from p2p.blocks.store import BlockMissing, BlockStore, CorruptBlock
from stored import age, lose, overwrite, raw, stored_at


def sha(data):
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def store(tmp_path):
    return BlockStore(tmp_path / ".p2p" / "blocks")


def test_block_size_for():
    assert block_size_for(0) == limits.MIN_BLOCK
    assert block_size_for(limits.MIN_BLOCK * limits.BLOCKS_PER_FILE) == limits.MIN_BLOCK
    assert block_size_for(limits.MIN_BLOCK * limits.BLOCKS_PER_FILE + 1) == 2 * limits.MIN_BLOCK
    assert block_size_for(10 ** 9) == 4 * limits.MiB
    assert block_size_for(10 ** 13) == limits.MAX_BLOCK
    for size in (1, 10 ** 6, 10 ** 8, 3 * 10 ** 9):
        block = block_size_for(size)
        assert block & (block - 1) == 0
        assert -(-size // block) <= limits.BLOCKS_PER_FILE or block == limits.MAX_BLOCK
        assert block == limits.MIN_BLOCK or -(-size // (block // 2)) > limits.BLOCKS_PER_FILE


def test_store_round_trip_and_layout(store):
    data = b"hello blocks"
    store.put(sha(data), data)
    assert store.has(sha(data)) and store.get(sha(data)) == data
    assert raw(store, sha(data)) == data and store._packed(sha(data)) is not None   # small: in a pack
    assert store.total_bytes() == len(data)
    store.put(sha(data), data)  # idempotent
    assert store.total_bytes() == len(data)


def test_put_refuses_data_that_is_not_its_hash(store):
    with pytest.raises(CorruptBlock):
        store.put(sha(b"a"), b"b")
    assert not store.has(sha(b"a"))


def test_missing_block(store):
    with pytest.raises(BlockMissing) as caught:
        store.get(sha(b"nothing"))
    assert caught.value.hash == sha(b"nothing") and isinstance(caught.value, KeyError)
    assert sha(b"nothing") in str(caught.value)


def test_corruption_is_detected_and_the_bad_block_removed(store):
    data = b"precious" * 1000
    store.put(sha(data), data)
    overwrite(store, sha(data), data[:-1] + b"!")
    with pytest.raises(CorruptBlock):
        store.get(sha(data))
    assert raw(store, sha(data)) is None and store.missing([(sha(data), len(data))]) == [(sha(data), len(data))]


def test_bad_hash_names_are_refused(store):
    for name in ("../../etc/passwd", "AB" * 32, "ab"):
        with pytest.raises(ValueError):
            store.has(name)


def write(path, size, seed=0):
    data = bytes((i * 131 + seed) % 251 for i in range(size))
    path.write_bytes(data)
    return data


@pytest.mark.parametrize("size", [0, 1, limits.MIN_BLOCK, limits.MIN_BLOCK + 1, 3 * limits.MIN_BLOCK + 17])
def test_file_round_trip(tmp_path, store, size):
    original = tmp_path / "original.bin"
    data = write(original, size)
    os.chmod(original, 0o640)
    assert hash_file(original) == (size, sha(data), [(sha(data[i:i + limits.MIN_BLOCK]), len(data[i:i + limits.MIN_BLOCK]))
                                                     for i in range(0, size, limits.MIN_BLOCK)])
    got_size, digest, blocks = store.ingest_file(original)
    assert (got_size, digest) == (size, sha(data)) and store.missing(blocks) == []
    dest = tmp_path / "out" / "copy.bin"
    dest.parent.mkdir()
    store.write_file(blocks, digest, dest, mode=0o640, mtime_ns=1_600_000_000_123_456_789)
    assert dest.read_bytes() == data
    assert dest.stat().st_mode & 0o7777 == 0o640 and dest.stat().st_mtime_ns == 1_600_000_000_123_456_789
    assert os.listdir(dest.parent) == ["copy.bin"]


def test_write_file_is_atomic_and_leaves_nothing_on_failure(tmp_path, store):
    source = tmp_path / "source.bin"
    data = write(source, 2 * limits.MIN_BLOCK + 5)
    _, digest, blocks = store.ingest_file(source)
    dest = tmp_path / "dest.bin"
    dest.write_bytes(b"old content")
    # a block goes missing: the old file stays untouched
    lose(store, blocks[1][0])
    with pytest.raises(BlockMissing):
        store.write_file(blocks, digest, dest)
    assert dest.read_bytes() == b"old content" and sorted(os.listdir(tmp_path)) == [".p2p", "dest.bin", "source.bin"]
    store.ingest_file(source)
    with pytest.raises(CorruptBlock):
        store.write_file(blocks, sha(b"other"), dest)  # wrong whole-file hash
    assert dest.read_bytes() == b"old content" and sorted(os.listdir(tmp_path)) == [".p2p", "dest.bin", "source.bin"]
    store.write_file(blocks, digest, dest)
    assert dest.read_bytes() == data


def test_ingest_stores_only_missing_blocks_and_dedups(tmp_path, store):
    a = tmp_path / "a.bin"
    data = write(a, 3 * limits.MIN_BLOCK)
    (tmp_path / "b.bin").write_bytes(data[:limits.MIN_BLOCK] * 3)
    store.ingest_file(a)
    before = store.total_bytes()
    _, _, blocks = store.ingest_file(tmp_path / "b.bin")
    assert store.total_bytes() == before and len({h for h, _ in blocks}) == 1
    assert store.missing(blocks + blocks) == []


def test_read_blocks_detects_a_file_that_changes_size(tmp_path):
    path = tmp_path / "growing.bin"
    write(path, 2 * limits.MIN_BLOCK)

    def grow(_hash, _data, _fd, _offset):
        with open(path, "ab") as out:
            out.write(b"more")

    with pytest.raises(FileChanged):
        read_blocks(path, on_block=grow)
    assert issubclass(FileChanged, OSError)


@pytest.mark.parametrize("size", [1, limits.MIN_BLOCK, 2 * limits.MIN_BLOCK, 5 * limits.MIN_BLOCK + 17])
def test_the_whole_hash_beside_the_block_hashes_gives_the_same_result(tmp_path, store, monkeypatch, size):
    """A large file's whole hash runs in a second thread over reused buffers:
    every buffer must be hashed before it is read into again."""
    path = tmp_path / "large.bin"
    data = write(path, size, seed=7)
    monkeypatch.setattr(limits, "PARALLEL_HASH_MIN", 0)
    seen = []
    expected = (size, sha(data), [(sha(data[i:i + limits.MIN_BLOCK]), len(data[i:i + limits.MIN_BLOCK]))
                                  for i in range(0, size, limits.MIN_BLOCK)])
    assert read_blocks(path, on_block=lambda h, view, fd, offset: seen.append((h, sha(view), offset))) == expected
    assert [(h, offset) for h, _, offset in seen] == [(h, i * limits.MIN_BLOCK) for i, (h, _) in enumerate(expected[2])]
    assert all(h == content for h, content, _ in seen)
    assert store.ingest_file(path) == expected


def test_a_file_that_grows_while_its_whole_hash_runs_beside_is_caught(tmp_path, monkeypatch):
    monkeypatch.setattr(limits, "PARALLEL_HASH_MIN", 0)
    test_read_blocks_detects_a_file_that_changes_size(tmp_path)


def test_prune_oldest_first_never_kept_blocks(store):
    blobs = [bytes([i]) * 1000 for i in range(6)]
    for i, blob in enumerate(blobs):
        store.put(sha(blob), blob)
        age(store, sha(blob), 1000 + i)
    keep = {sha(blobs[0])}
    assert store.prune(keep, max_bytes=4000) == 2  # the oldest unkept: 1 and 2
    assert [store.has(sha(b)) for b in blobs] == [True, False, False, True, True, True]
    assert store.prune(keep, max_age=1.5, now=1005.0) == 1  # older than 1.5 s at 1005: block 3
    assert [store.has(sha(b)) for b in blobs] == [True, False, False, False, True, True]
    assert store.prune(set(), max_bytes=10 ** 9, max_age=10 ** 9, now=1005.0) == 0
    assert store.prune(keep, max_bytes=0) == 2 and store.total_bytes() == 1000
    with pytest.raises(ValueError):
        store.prune(keep, max_age=1.0)


def test_storing_again_refreshes_age(store):
    blob = b"x" * 10
    store.put(sha(blob), blob)
    age(store, sha(blob), 1000)
    store.put(sha(blob), blob)
    assert stored_at(store, sha(blob)) > 1000
