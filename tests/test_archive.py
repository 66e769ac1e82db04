"""PendingArchive: large files' blocks served from the file until they reach the store."""

import os

import pytest

from p2p.blocks.chunking import hash_file
from p2p.blocks.store import BlockMissing, BlockStore
from p2p.folder.archive import PendingArchive


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


def test_a_file_moved_before_archiving_is_archived_from_its_new_place(setup):
    root, store, archive, data, blocks = setup
    archive.register("big.bin", blocks)
    os.rename(root / "big.bin", root / "moved.bin")
    archive.register("moved.bin", blocks)
    archive.forget("big.bin", archive.store_all("big.bin", blocks))   # the old job finds nothing of its own
    assert blocks[0][0] in archive
    archive.forget("moved.bin", archive.store_all("moved.bin", blocks))
    assert all(store.has(h) for h, _ in blocks)
