"""Block store and chunking: round trips, corruption detection, atomic file writes, pruning."""

import hashlib
import os
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2p import limits
from p2p.blocks.chunking import WHOLE, FileChanged, chunk_sizes, cut, hash_file, read_blocks
from p2p.blocks.store import BlockMissing, BlockStore, CorruptBlock
from stored import age, lose, overwrite, raw, stored_at


def sha(data):
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def store(tmp_path):
    return BlockStore(tmp_path / ".p2p" / "blocks")


def test_chunk_sizes_grow_by_tiers_so_a_file_has_a_bounded_number_of_blocks():
    small = (limits.CHUNK_AVG // 4, limits.CHUNK_AVG, limits.CHUNK_AVG * 4)
    assert chunk_sizes(0) == chunk_sizes(limits.WHOLE_FILE_BLOCK) == WHOLE
    assert chunk_sizes(limits.WHOLE_FILE_BLOCK + 1) == chunk_sizes(limits.CHUNK_AVG * limits.CHUNKS_PER_FILE) == small
    assert chunk_sizes(limits.CHUNK_AVG * limits.CHUNKS_PER_FILE + 1)[1] == limits.CHUNK_TIER_GROWTH * limits.CHUNK_AVG
    assert chunk_sizes(10 ** 14) == (limits.CHUNK_AVG_MAX // 4, limits.CHUNK_AVG_MAX, limits.MAX_BLOCK)
    for size in (10 ** 6, 10 ** 8, 5 * 10 ** 8, 3 * 10 ** 9, 10 ** 11):
        minimum, average, maximum = chunk_sizes(size)
        assert minimum < average < maximum <= limits.MAX_BLOCK
        assert size <= average * limits.CHUNKS_PER_FILE or average == limits.CHUNK_AVG_MAX


def test_a_file_up_to_the_whole_file_size_is_one_block_and_a_larger_one_is_cut(tmp_path):
    for size, blocks in ((1, 1), (limits.WHOLE_FILE_BLOCK, 1)):
        data = random.Random(size).randbytes(size)
        assert list(cut(data)) == [(0, size)]
        write_path = tmp_path / f"f{size}"
        write_path.write_bytes(data)
        assert read_blocks(write_path) == (size, sha(data), [(sha(data), size)])
    larger = random.Random(2).randbytes(limits.WHOLE_FILE_BLOCK + 1)
    assert len(list(cut(larger))) > 1


def chunks_of(data, size=None):
    return [(sha(data[o:o + n]), n) for o, n in cut(data, size)]


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2 ** 32), size=st.integers(1, 600_000), where=st.floats(0, 1),
       length=st.integers(1, 5000), insert=st.booleans())
def test_an_insert_or_delete_moves_only_the_blocks_near_it(seed, size, where, length, insert):
    """Content-defined cuts: after an edit anywhere, every block but those within a
    few maximum chunk sizes of it keeps its hash (so it is not sent again)."""
    rng = random.Random(seed)
    data = rng.randbytes(size)
    at = int(where * size)
    edited = data[:at] + rng.randbytes(length) + data[at:] if insert else data[:at] + data[at + length:]
    before = {h for h, _ in chunks_of(data, size)}
    after = chunks_of(edited, size)   # cut as the same tier (sizes near a tier's edge differ by one tier)
    moved = sum(n for h, n in after if h not in before)
    assert moved <= (length if insert else 0) + 3 * chunk_sizes(size)[2]
    offset = 0
    for h, n in after:   # every block before the edit is unchanged (but one the file's end cut)
        if offset + n > at or offset + n >= min(size, len(edited)):
            break
        assert h in before
        offset += n


@settings(max_examples=40, deadline=None)
@given(data=st.binary(max_size=200_000) | st.integers(0, 300_000).map(lambda n: random.Random(n).randbytes(n)))
def test_any_content_round_trips_through_its_blocks(tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("rt")
    store = BlockStore(folder / "blocks")
    (folder / "f").write_bytes(data)
    size, digest, blocks = store.ingest_file(folder / "f")
    assert (size, digest, blocks) == (len(data), sha(data), chunks_of(data))
    minimum, _, maximum = chunk_sizes(len(data))
    assert all(minimum <= n <= maximum for _, n in blocks[:-1]) and all(n <= maximum for _, n in blocks[-1:])
    store.write_file(blocks, digest, folder / "copy")
    assert (folder / "copy").read_bytes() == data


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
    data = random.Random(seed).randbytes(size)
    path.write_bytes(data)
    return data


BLOCK = limits.CHUNK_AVG * 4   # the largest block of a file that is cut
CUT = limits.WHOLE_FILE_BLOCK   # files larger than this are cut; smaller ones are one block


@pytest.mark.parametrize("size", [0, 1, limits.CHUNK_AVG // 4, BLOCK, CUT, CUT + 1, CUT + 3 * BLOCK + 17])
def test_file_round_trip(tmp_path, store, size):
    original = tmp_path / "original.bin"
    data = write(original, size)
    os.chmod(original, 0o640)
    assert hash_file(original) == (size, sha(data), chunks_of(data))
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
    data = write(source, CUT + 2 * BLOCK + 5)
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
    data = write(a, CUT + 3 * BLOCK)
    (tmp_path / "b.bin").write_bytes(data[:BLOCK] + b"ten bytes!" + data[BLOCK:])
    (tmp_path / "zeros.bin").write_bytes(bytes(CUT + 3 * BLOCK))
    store.ingest_file(a)
    before = store.total_bytes()
    _, _, blocks = store.ingest_file(tmp_path / "b.bin")   # the same content but for an insert
    assert before < store.total_bytes() <= before + 10 + 2 * BLOCK
    assert store.missing(blocks + blocks) == []
    _, _, zeros = store.ingest_file(tmp_path / "zeros.bin")
    assert len(zeros) > 1 and len({h for h, _ in zeros}) == 1


def test_read_blocks_detects_a_file_that_changes_size(tmp_path):
    path = tmp_path / "growing.bin"
    write(path, CUT + 2 * BLOCK)

    def grow(_hash, _data, _fd, _offset):
        with open(path, "ab") as out:
            out.write(b"more")

    with pytest.raises(FileChanged):
        read_blocks(path, on_block=grow)
    assert issubclass(FileChanged, OSError)


@pytest.mark.parametrize("size", [100, CUT + 2 * BLOCK])
def test_read_blocks_given_a_stat_reads_that_file_unchanged_or_raises(tmp_path, size):
    """``expect`` (the scanner's lstat) replaces a second lstat after the read:
    a file renamed over the path after it, or written (another mtime) before
    or while it is read, raises FileChanged; the file as it was stat'ed is read."""
    path = tmp_path / "f.bin"
    write(path, size)
    before = os.lstat(path)
    assert read_blocks(path, expect=before) == read_blocks(path)
    other = tmp_path / "other.bin"
    write(other, size)
    os.replace(other, path)                     # same size, another inode
    with pytest.raises(FileChanged, match="replaced or written"):
        read_blocks(path, expect=before)
    now = os.lstat(path)

    def touch(_hash, _data, _fd, _offset):
        os.utime(path, ns=(now.st_atime_ns, now.st_mtime_ns + 1))   # written meanwhile: same size

    with pytest.raises(FileChanged):
        read_blocks(path, on_block=touch, expect=now)


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
