"""Packed small blocks (p2p/blocks/store.py): round trips, no file per small
block, torn pack tails and lost index rows read as missing (never served),
the index rebuilt from the packs, prune and repack bounding the disk."""

import hashlib
import os
import stat
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p2p import limits
from p2p.blocks import store as store_module
from p2p.blocks.store import BlockMissing, BlockStore, CorruptBlock
from stored import age, raw

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
blobs = st.lists(st.binary(min_size=0, max_size=3000), min_size=1, max_size=30)


def sha(data):
    return hashlib.sha256(data).hexdigest()


def files_in(root):
    return [os.path.join(d, n) for d, _, names in os.walk(root) for n in names]


def private_modes_only(root):
    for d, dirs, names in os.walk(root):
        assert stat.S_IMODE(os.stat(d).st_mode) == 0o700, d
        for name in names:
            assert stat.S_IMODE(os.stat(os.path.join(d, name)).st_mode) == 0o600, name


def test_small_files_cost_no_file_creation_each(tmp_path):
    store = BlockStore(tmp_path / "blocks")
    for i in range(200):
        source = tmp_path / f"f{i}.txt"
        source.write_bytes(f"small file {i}\n".encode() * (i + 1))
        store.ingest_file(source)
    assert len(files_in(store.root)) <= 4, files_in(store.root)   # a pack and the index (with its -wal, -shm)
    assert store.total_bytes() == sum(len(f"small file {i}\n".encode()) * (i + 1) for i in range(200))
    private_modes_only(store.root)


def test_a_large_block_stays_a_file_of_its_own(tmp_path):
    store = BlockStore(tmp_path / "blocks")
    big = os.urandom(limits.PACKED_BLOCK_MAX + 1)
    store.put(sha(big), big)
    assert store._packed(sha(big)) is None and store._path(sha(big)).read_bytes() == big
    assert store.get(sha(big)) == big and store.total_bytes() == len(big)


def test_has_finds_packed_and_file_blocks_and_looks_for_no_file_it_cannot_have(tmp_path, monkeypatch):
    store = BlockStore(tmp_path / "blocks")
    small, big = b"a packed block", os.urandom(limits.PACKED_BLOCK_MAX + 1)
    store.put(sha(small), small)
    looked = []
    exists = store_module.os.path.exists
    monkeypatch.setattr(store_module.os.path, "exists", lambda path: looked.append(path) or exists(path))
    assert store.has(sha(small)) and not store.has(sha(b"never stored"))
    assert looked == []   # no fan-out directory: neither block can be a file
    store.put(sha(big), big)
    assert store.has(sha(big)) and store.has(sha(small))
    other = next(h for h in (sha(str(i).encode()) for i in range(100_000)) if h[:2] == sha(big)[:2] and h != sha(big))
    assert not store.has(other)   # its fan-out directory exists: looked for
    assert str(store._path(other)) in looked


@SETTINGS
@given(data=blobs)
def test_round_trip_survives_a_restart_and_a_lost_index(tmp_path_factory, data):
    root = tmp_path_factory.mktemp("store") / "blocks"
    store = BlockStore(root)
    for blob in data:
        store.put(sha(blob), blob)
    unique = {sha(b): b for b in data}
    assert store.total_bytes() == sum(map(len, unique.values()))
    store.close()   # a restart
    for reopened in (BlockStore(root), _without_index(root)):
        assert {h: reopened.get(h) for h in unique} == unique
        assert reopened.total_bytes() == sum(map(len, unique.values()))
        reopened.close()
    private_modes_only(root)


def _without_index(root):
    for name in os.listdir(root):
        if name.startswith("blocks.db"):
            os.unlink(root / name)
    return BlockStore(root)   # rebuilt from the packs' records


@SETTINGS
@given(data=blobs, cut=st.integers(min_value=1, max_value=40_000))
def test_a_torn_pack_tail_is_missing_never_served(tmp_path_factory, data, cut):
    """A crash cut the pack after the index recorded its blocks: the torn ones
    fail verification, lose their rows and read as absent; the rest are intact."""
    root = tmp_path_factory.mktemp("store") / "blocks"
    store = BlockStore(root)
    for blob in data:
        store.put(sha(blob), blob)
    where = {sha(b): store._packed(sha(b)) for b in data}
    pack = store._pack_path(store._pack)
    store.close()
    keep = max(0, pack.stat().st_size - cut)
    os.truncate(pack, keep)
    after = BlockStore(root)
    for blob in data:
        _, offset, length = where[sha(blob)]
        if offset + length <= keep or not length:   # whole (an empty block is whole anywhere)
            assert after.get(sha(blob)) == blob
        elif after.has(sha(blob)):
            with pytest.raises(CorruptBlock):
                after.get(sha(blob))
            assert not after.has(sha(blob))
            with pytest.raises(BlockMissing):
                after.get(sha(blob))
    assert after.total_bytes() == sum(len(b) for b in {sha(b): b for b in data}.values() if after.has(sha(b)))
    after.close()
    rebuilt = _without_index(root)   # the rebuild stops at the torn record
    assert all(rebuilt.get(sha(b)) == b for b in data if rebuilt.has(sha(b)))


def test_a_row_whose_bytes_never_reached_the_disk_is_dropped(tmp_path):
    store = BlockStore(tmp_path / "blocks")
    blob = b"written, then lost in a power cut" * 10
    store.put(sha(blob), blob)
    pack, offset, size = store._packed(sha(blob))
    fd = os.open(store._pack_path(pack), os.O_WRONLY)
    os.pwrite(fd, b"\0" * size, offset)   # the page never written back
    os.close(fd)
    dest = os.open(tmp_path / "out", os.O_WRONLY | os.O_CREAT)
    with pytest.raises(CorruptBlock):
        store.copy_into(sha(blob), dest, [0], verify=False)   # a packed block is verified anyway
    os.close(dest)
    assert os.path.getsize(tmp_path / "out") == 0 and not store.has(sha(blob)) and store.total_bytes() == 0
    store.put(sha(blob), blob)   # fetched again
    assert store.get(sha(blob)) == blob


@SETTINGS
@given(data=st.lists(st.binary(min_size=1, max_size=1500), min_size=4, max_size=40, unique=True),
       kept=st.integers(min_value=0, max_value=39), budget=st.integers(min_value=0, max_value=30_000))
def test_prune_repacks_so_the_disk_stays_bounded(tmp_path_factory, monkeypatch, data, kept, budget):
    monkeypatch.setattr(limits, "PACK_MAX_BYTES", 4096)   # many packs
    root = tmp_path_factory.mktemp("store") / "blocks"
    store = BlockStore(root)
    for i, blob in enumerate(data):
        store.put(sha(blob), blob)
        age(store, sha(blob), 1000 + i)
    keep = {sha(data[kept % len(data)])}
    store.prune(keep, max_bytes=budget)
    live = [b for b in data if store.has(sha(b))]
    assert sha(data[kept % len(data)]) in {sha(b) for b in live}
    assert store.total_bytes() == sum(map(len, live)) <= max(budget, len(data[kept % len(data)]))
    assert all(store.get(sha(b)) == b for b in live) and all(raw(store, sha(b)) is None
                                                             for b in data if b not in live)
    packs = sorted(store.packs.iterdir())
    closed = sum(p.stat().st_size for p in packs[:-1])
    records = sum(len(b) + 36 for b in live)
    assert closed <= 2 * records + 4096, "a closed pack mostly dead was not repacked"
    total = store.total_bytes()
    store.close()
    reopened = BlockStore(root)
    assert all(reopened.get(sha(b)) == b for b in live) and reopened.total_bytes() == total


def test_a_killed_peer_loses_no_block_it_stored(tmp_path):
    """Index changes are committed in groups; a process killed before the
    commit left its records in the last pack, and the next start indexes them."""
    root = tmp_path / "blocks"
    script = (
        "import hashlib, os, sys\n"
        "from p2p.blocks.store import BlockStore\n"
        "store = BlockStore(sys.argv[1])\n"
        "for i in range(300):\n"
        "    data = b'killed before the commit %d' % i\n"
        "    store.put(hashlib.sha256(data).hexdigest(), data)\n"
        "os.kill(os.getpid(), 9)\n")
    done = subprocess.run([sys.executable, "-c", script, str(root)], timeout=60)
    assert done.returncode == -9
    store = BlockStore(root)
    assert all(store.get(sha(b"killed before the commit %d" % i)) == b"killed before the commit %d" % i
               for i in range(300))
    assert store.total_bytes() == sum(len(b"killed before the commit %d" % i) for i in range(300))


def test_flush_merges_the_wal_so_it_stays_small(tmp_path, monkeypatch):
    monkeypatch.setattr(limits, "INDEX_CHECKPOINT_ROWS", 100)
    store = BlockStore(tmp_path / "blocks")
    wal = tmp_path / "blocks" / "blocks.db-wal"
    for i in range(2000):
        data = b"block %d" % i
        store.put(sha(data), data)
        if i % 50 == 0:
            store.flush()
    grown = wal.stat().st_size
    for i in range(2000, 4000):
        data = b"block %d" % i
        store.put(sha(data), data)
        if i % 50 == 0:
            store.flush()
    assert wal.stat().st_size <= 2 * grown   # reused from its start after each checkpoint, not grown
    assert all(store.get(sha(b"block %d" % i)) == b"block %d" % i for i in range(0, 4000, 97))


@SETTINGS
@given(data=blobs, pack_max=st.sampled_from([200, 5000, limits.PACK_MAX_BYTES]), again=st.booleans())
def test_a_batch_of_blocks_is_one_pack_write_and_reads_back_together(tmp_path_factory, monkeypatch, data,
                                                                     pack_max, again):
    """put_many: one write per pack the batch goes to (packs still split at
    PACK_MAX_BYTES), every block indexed, a block named twice or stored before
    packed once; get_many reads them all back, verified, with one open per pack."""
    monkeypatch.setattr(limits, "PACK_MAX_BYTES", pack_max)
    root = tmp_path_factory.mktemp("store") / "blocks"
    store = BlockStore(root)
    if again:
        store.put(sha(data[0]), data[0])
    writes, opens = [], []
    real_write, real_open = store_module._write_all, os.open
    monkeypatch.setattr(store_module, "_write_all", lambda fd, d, offset=None: (writes.append(len(d)),
                                                                               real_write(fd, d, offset)))
    store.put_many([(sha(b), b) for b in data], verified=True)
    unique = {sha(b): b for b in data}
    new = [h for h in unique if not (again and h == sha(data[0]))]
    assert sum(writes) == sum(len(unique[h]) + store_module.RECORD.size for h in new)
    assert len(writes) == len({store._packed(h)[0] for h in new})   # one write per pack they went to
    largest = max(map(len, data)) + store_module.RECORD.size   # a record past the bound goes alone in a pack
    assert all(os.path.getsize(store._pack_path(n)) <= max(pack_max, largest) for n in store._pack_numbers())
    assert store.total_bytes() == sum(map(len, unique.values()))
    monkeypatch.setattr(store_module.os, "open", lambda *a, **k: (opens.append(a[0]), real_open(*a, **k))[1])
    assert store.get_many(list(unique) + ["0" * 64]) == unique
    assert len(opens) == len({store._packed(h)[0] for h in unique})
    monkeypatch.setattr(store_module.os, "open", real_open)
    store.close()
    for reopened in (BlockStore(root), _without_index(root)):   # a restart, a lost index
        assert reopened.get_many(list(unique)) == unique
        reopened.close()


def test_reading_a_batch_leaves_a_torn_block_out_and_forgets_it(tmp_path):
    store = BlockStore(tmp_path / "blocks")
    blobs = [f"block {i} ".encode() * 20 for i in range(5)]
    store.put_many([(sha(b), b) for b in blobs])
    pack, offset, size = store._packed(sha(blobs[2]))
    fd = os.open(store._pack_path(pack), os.O_WRONLY)
    os.pwrite(fd, b"\0" * size, offset)   # the page never written back
    os.close(fd)
    found = store.get_many([sha(b) for b in blobs])
    assert found == {sha(b): b for i, b in enumerate(blobs) if i != 2}
    assert not store.has(sha(blobs[2])) and store.total_bytes() == sum(len(b) for i, b in enumerate(blobs) if i != 2)
    with pytest.raises(CorruptBlock):
        store.put_many([(sha(blobs[1]), blobs[2])])   # data checked against the hash named, unless verified


def test_a_small_block_an_older_store_kept_as_a_file_stays_one_and_is_not_packed_again(tmp_path):
    old, new = b"kept as a file by an older store", b"a block of this version"
    fan = tmp_path / "blocks" / sha(old)[:2]
    fan.mkdir(parents=True)
    (fan / sha(old)).write_bytes(old)
    store = BlockStore(tmp_path / "blocks")   # lists the fan-out directories once
    store.put_many([(sha(old), old), (sha(new), new)])
    assert store._packed(sha(old)) is None and store._packed(sha(new)) is not None
    assert store.get(sha(old)) == old and store.total_bytes() == len(old) + len(new)
    store.close()
