"""PendingArchive: large files' blocks served from the file until they reach the store,
archived a slice at a time and only while no transfer runs (Reconciler._archive_job)."""

import os
import time
import types

import gevent
import pytest

from p2p import limits
from p2p.blocks.chunking import hash_file
from p2p.blocks.store import BlockMissing, BlockStore
from p2p.folder import archive as archive_module
from p2p.folder.archive import PendingArchive, slices
from p2p.folder.state import Entry, LocalState
from p2p.net.reconciler import Reconciler
from peers import wait_until


@pytest.fixture
def setup(tmp_path):
    root = tmp_path / "shared"
    root.mkdir()
    store = BlockStore(tmp_path / "blocks")
    data = os.urandom(3 * 128 * 1024 + 5)
    (root / "big.bin").write_bytes(data)
    _size, _digest, blocks = hash_file(root / "big.bin")
    return root, store, PendingArchive(root, store), data, blocks


def test_blocks_are_served_verified_from_the_file_then_archived(setup):
    root, store, archive, data, blocks = setup
    assert archive.register("big.bin", blocks)
    first, size = blocks[0]
    assert archive.read(first) == data[:size]
    handled = archive.store_all("big.bin", blocks)
    archive.forget("big.bin", handled)
    assert all(store.has(h) for h, _ in blocks) and first not in archive
    assert not archive.register("big.bin", blocks)  # nothing left to archive


def test_a_changed_file_serves_nothing_wrong(setup):
    root, store, archive, data, blocks = setup
    archive.register("big.bin", blocks)
    with open(root / "big.bin", "r+b") as f:
        f.write(b"changed")
    with pytest.raises(BlockMissing):
        archive.read(blocks[0][0])
    archive.store_all("big.bin", blocks)
    assert not store.has(blocks[0][0]) and store.has(blocks[1][0])  # only verified blocks are kept


@pytest.fixture
def tracked(setup, tmp_path):
    """The setup's archive with a local state that recorded big.bin as hashed."""
    root, store, _archive, data, blocks = setup
    state = LocalState(tmp_path / "local.db")
    st = os.stat(root / "big.bin")
    state.set("big.bin", Entry.from_stat(st, hash_file(root / "big.bin")[1], "e1"))
    clock_moved_past(st, root)
    return root, store, PendingArchive(root, store, state), data, blocks


def clock_moved_past(st: os.stat_result, directory) -> None:
    """Wait until the file system stamps a change later than ``st``'s (its clock
    is coarse: a change within the same tick would look like none)."""
    probe = directory / "probe"

    def later():
        probe.write_bytes(b"")
        return os.stat(probe).st_ctime_ns > max(st.st_mtime_ns, st.st_ctime_ns)
    wait_until(later, 5, "the file system's clock to move", interval=0.001)
    probe.unlink()


@pytest.fixture
def hashes(monkeypatch):
    """Every sha256 the archive computes (its input sizes)."""
    seen = []
    real = archive_module.hashlib.sha256

    def spy(data=b""):
        seen.append(len(data))
        return real(data)
    monkeypatch.setattr(archive_module.hashlib, "sha256", spy)
    return seen


def test_a_block_read_for_a_peer_from_the_unchanged_file_is_not_hashed_again(tracked, hashes):
    root, store, archive, data, blocks = tracked
    archive.register("big.bin", blocks)
    first, size = blocks[0]
    assert archive.read(first, trust_unchanged=True) == data[:size]
    assert hashes == []
    assert archive.read(first) == data[:size] and hashes == [size]   # other readers verify
    archive.store_all("big.bin", blocks)                              # and the store gets hashed blocks only
    assert len(hashes) == 1 + len(blocks)


def test_a_new_file_the_scan_found_is_served_from_its_file_without_a_second_hash(tmp_path, hashes):
    """The scan registers a new large file before the local state records it:
    the entry it has just hashed the file as is what a read for a peer trusts
    (else the sender hashed each of its blocks once more as it served it)."""
    from test_bad_names import local_loop, make
    loop = local_loop(tmp_path)
    archive = PendingArchive(loop.root, loop.scanner.store, loop.state)
    loop.reconciler.archive_later = lambda path, blocks, entry=None: archive.register(path, blocks, entry)
    data = os.urandom(limits.ARCHIVE_LATER_MIN + 4096)
    make(loop.root, "big.bin", data)
    loop._scan(["big.bin"])
    (event,) = loop.sent
    first, size = event.blocks[0]
    assert first in archive and not loop.scanner.store.has(first)
    hashes.clear()   # (the scan's own)
    assert archive.read(first, trust_unchanged=True) == data[:size]
    assert hashes == []


def test_a_file_changed_with_its_mtime_put_back_is_hashed(tracked):
    root, store, archive, data, blocks = tracked
    archive.register("big.bin", blocks)
    st = os.stat(root / "big.bin")
    with open(root / "big.bin", "r+b") as f:
        f.write(b"changed")
    os.utime(root / "big.bin", ns=(st.st_atime_ns, st.st_mtime_ns))   # the ctime still moves
    with pytest.raises(BlockMissing):
        archive.read(blocks[0][0], trust_unchanged=True)


def test_a_file_changed_before_it_was_registered_is_hashed(tracked):
    root, store, archive, data, blocks = tracked
    with open(root / "big.bin", "r+b") as f:   # after the scan recorded it, before register
        f.write(b"changed")
    archive.register("big.bin", blocks)
    with pytest.raises(BlockMissing):
        archive.read(blocks[0][0], trust_unchanged=True)
    assert archive.read(blocks[1][0], trust_unchanged=True) == data[blocks[0][1]:blocks[0][1] + blocks[1][1]]


def test_a_file_moved_before_archiving_is_archived_from_its_new_place(setup):
    root, store, archive, data, blocks = setup
    archive.register("big.bin", blocks)
    os.rename(root / "big.bin", root / "moved.bin")
    archive.register("moved.bin", blocks)
    archive.forget("big.bin", archive.store_all("big.bin", blocks))   # the old job finds nothing of its own
    assert blocks[0][0] in archive
    archive.forget("moved.bin", archive.store_all("moved.bin", blocks))
    assert all(store.has(h) for h, _ in blocks)


# -- the node archives a file a slice at a time, only while no transfer runs --------------------
def _archiving_node(root, store, monkeypatch):
    """A reconciler with only what archiving uses; ``node`` stands for the
    transfers the node would report (its fetcher's jobs, when it last served)."""
    monkeypatch.setattr(limits, "ARCHIVE_QUIET", 0.01)
    monkeypatch.setattr(limits, "ARCHIVE_SLICE", 128 * 1024)   # a few content-defined blocks a slice
    node = types.SimpleNamespace(fetcher=types.SimpleNamespace(jobs={}), last_served=0.0)

    def quiet(seconds):
        return not node.fetcher.jobs and time.monotonic() - node.last_served >= seconds
    reconciler = Reconciler(
        root=root, history=None, state=None, store=store, archive=PendingArchive(root, store), writer=None,
        unsynced=None, fetcher=node.fetcher, rescan=None,
        pools=(None, types.SimpleNamespace(apply=lambda fn, args: fn(*args))), gates=(), ignored=None,
        quiet=quiet, label=None, spawn=gevent.spawn)
    return node, reconciler


def _wait(condition, seconds=5.0):
    for _ in range(int(seconds / 0.01)):
        if condition():
            return True
        gevent.sleep(0.01)
    return False


def test_the_archive_waits_while_a_transfer_runs(setup, monkeypatch):
    root, store, _archive, data, blocks = setup
    node, reconciler = _archiving_node(root, store, monkeypatch)
    node.fetcher.jobs["other.bin"] = object()          # a transfer is under way
    reconciler.archive_later("big.bin", blocks)
    gevent.sleep(0.2)
    assert not any(store.has(h) for h, _ in blocks)
    del node.fetcher.jobs["other.bin"]
    assert _wait(lambda: all(store.has(h) for h, _ in blocks))
    assert blocks[0][0] not in reconciler.archive


def test_a_transfer_that_starts_stops_the_archive_after_one_slice(setup, monkeypatch):
    root, store, _archive, data, blocks = setup
    node, reconciler = _archiving_node(root, store, monkeypatch)
    store_some = reconciler.archive.store_some

    def then_a_transfer_starts(path, part):
        node.fetcher.jobs["other.bin"] = object()
        return store_some(path, part)
    reconciler.archive.store_some = then_a_transfer_starts
    reconciler.archive_later("big.bin", blocks)
    assert _wait(lambda: store.has(blocks[0][0]))
    gevent.sleep(0.2)
    first = len(next(slices(blocks, limits.ARCHIVE_SLICE)))
    assert 0 < first < len(blocks)
    assert [store.has(h) for h, _ in blocks] == [True] * first + [False] * (len(blocks) - first)
    reconciler.archive.store_some = store_some
    del node.fetcher.jobs["other.bin"]
    assert _wait(lambda: all(store.has(h) for h, _ in blocks))


def test_a_new_file_is_archived_only_after_its_peers_fetched_it(setup, monkeypatch):
    """The sender's case: its event has just left, nothing is served yet, and
    the archive must not start before the peers' requests arrive."""
    root, store, _archive, data, blocks = setup
    node, reconciler = _archiving_node(root, store, monkeypatch)
    monkeypatch.setattr(limits, "ARCHIVE_QUIET", 0.1)
    reconciler.archive_later("big.bin", blocks)   # the file was scanned, its event sent
    serving = gevent.spawn(lambda: [setattr(node, "last_served", time.monotonic()) or gevent.sleep(0.02)
                                    for _ in range(15)])   # a peer fetches it from us for 0.3 s
    gevent.sleep(0.25)
    assert not any(store.has(h) for h, _ in blocks)
    serving.join()
    assert _wait(lambda: all(store.has(h) for h, _ in blocks))
