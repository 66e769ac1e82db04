"""Test helpers that reach into a block store's layout (packs and block files)
to age, damage or read a block as a crash or a bad disk would."""

import os

from p2p.blocks.store import BlockStore


def raw(store: BlockStore, block_hash: str):
    """The bytes stored under ``block_hash``, unverified, or None."""
    where = store._packed(block_hash)
    if where is not None:
        pack, offset, size = where
        with open(store._pack_path(pack), "rb") as handle:
            handle.seek(offset)
            return handle.read(size)
    path = store._path(block_hash)
    return path.read_bytes() if path.exists() else None


def overwrite(store: BlockStore, block_hash: str, data: bytes) -> None:
    """Replace a stored block's bytes in place (same length in a pack)."""
    where = store._packed(block_hash)
    if where is None:
        store._path(block_hash).write_bytes(data)
        return
    pack, offset, size = where
    assert len(data) == size, "a packed block is overwritten with as many bytes"
    fd = os.open(store._pack_path(pack), os.O_WRONLY)
    try:
        os.pwrite(fd, data, offset)
    finally:
        os.close(fd)


def age(store: BlockStore, block_hash: str, when: float) -> None:
    """Make ``block_hash`` look stored at ``when`` (unix seconds)."""
    if store._packed(block_hash) is not None:
        with store._lock:
            store._db.execute("UPDATE packed SET stored = ? WHERE hash = ?", (when, bytes.fromhex(block_hash)))
    else:
        os.utime(store._path(block_hash), (when, when))


def stored_at(store: BlockStore, block_hash: str) -> float:
    return {h: t for h, t, _ in store._entries()}[block_hash]


def lose(store: BlockStore, block_hash: str) -> None:
    """The block vanishes from the store (its row or its file)."""
    if store._packed(block_hash) is not None:
        with store._lock:
            store._db.execute("DELETE FROM packed WHERE hash = ?", (bytes.fromhex(block_hash),))
    else:
        os.unlink(store._path(block_hash))
