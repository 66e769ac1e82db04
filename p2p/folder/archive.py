"""Blocks of large current files that are not in the block store yet.

Storing a large file's blocks (for history) while it is being hashed or
received would write its content twice on the critical path. Instead, a file
larger than ``limits.ARCHIVE_LATER_MIN`` is hashed (or received) first, its
event sent (or its file renamed into place), and its blocks are copied into
the store right after, in the background. Until then they are served from the
file itself, each read verified against its hash: if the file changed
meanwhile, that block is simply not available here (peers that have it serve
it; `restore` reports the version as pruned). A block read for a peer
(``read(..., trust_unchanged=True)``) skips that hash when the file's stat
(size, mtime, inode, ctime) is, before and after the read, the one the local
state recorded when the blocks were hashed: the test the scan itself uses to
see a change (the receiver verifies every block anyway); what goes into the
store is always hashed. The node archives a file a
slice (``limits.ARCHIVE_SLICE``) at a time, each only once no transfer has
run for ``limits.ARCHIVE_QUIET``, so a transfer that starts meanwhile waits
for one slice at most. The start-up scan re-archives whatever a crash left
out. Blocking reads: callers use a thread pool for
large files.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from p2p.blocks.store import BlockMissing, BlockStore

log = logging.getLogger("p2p.archive")


Signature = Tuple[int, int, int, int]   # a file's size, mtime (ns), inode and ctime (ns)


def _signature(st: os.stat_result) -> Signature:
    return st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns


class PendingArchive:
    """``state``: the local state (what the scan recorded of each file), so a
    block read for a peer can skip its hash while its file is unchanged;
    None: every read is hashed."""

    def __init__(self, root: Path, store: BlockStore, state=None):
        self.root = root
        self.store = store
        self.state = state
        # block hash -> (path, offset, size, the file's signature when its blocks were hashed, or None)
        self._where: Dict[str, Tuple[str, int, int, Optional[Signature]]] = {}

    def register(self, path: str, blocks: Iterable[Tuple[str, int]], entry=None) -> bool:
        """Remember where the blocks of ``path`` the store lacks are; True if any.
        The latest location wins (a file moved before it was archived).
        ``entry``: the local entry of the version those blocks were hashed from,
        when the caller has it before the local state does (a scan registers a
        new file before it records the file); else the local state's."""
        blocks = list(blocks)
        signature = self._hashed_as(path, sum(size for _hash, size in blocks), entry)
        offset, added = 0, False
        for block_hash, size in blocks:
            if not self.store.has(block_hash):
                self._where[block_hash] = (path, offset, size, signature)
                added = True
            offset += size
        return added

    def _hashed_as(self, path: str, size: int, entry=None) -> Optional[Signature]:
        """The signature of the file at ``path`` if it is still the one ``entry``
        (by default the local state's) recorded (``size`` bytes) when its blocks
        were hashed, else None."""
        if entry is None and self.state is not None:
            entry = self.state.get(path)
        if entry is None or entry.kind != "file" or entry.size != size:
            return None
        try:
            st = os.stat(self.root / path)
        except OSError:
            return None
        return _signature(st) if entry.same_stat(st) else None

    def __contains__(self, block_hash: str) -> bool:
        return block_hash in self._where

    def read(self, block_hash: str, trust_unchanged: bool = False) -> bytes:
        """The block, read from its file and verified; BlockMissing if it is not
        there. ``trust_unchanged``: not hashed if the file's signature is the
        one its blocks were hashed with, before and after the read."""
        try:
            path, offset, size, signature = self._where[block_hash]
            with open(self.root / path, "rb", buffering=0) as handle:
                fd = handle.fileno()
                unchanged = trust_unchanged and signature is not None and _signature(os.fstat(fd)) == signature
                data = os.pread(fd, size, offset)
                unchanged = unchanged and _signature(os.fstat(fd)) == signature
        except (KeyError, OSError):
            raise BlockMissing(block_hash) from None
        if len(data) != size or not unchanged and hashlib.sha256(data).hexdigest() != block_hash:
            raise BlockMissing(block_hash)  # the file changed since: not here any more
        return data

    def store_all(self, path: str, blocks: Iterable[Tuple[str, int]]) -> List[str]:
        """Copy the file's missing blocks into the store (verified); the hashes handled."""
        handled, lost = self.store_some(path, blocks)
        warn_changed(path, lost)
        return handled

    def store_some(self, path: str, blocks: Iterable[Tuple[str, int]]) -> Tuple[List[str], int]:
        """``store_all`` without the warning, for a caller that archives a file
        a slice at a time: the hashes handled, and how many of them were not
        kept (their file changed)."""
        handled, kept = [], 0
        for block_hash, _size in blocks:
            where = self._where.get(block_hash)
            if where is None or where[0] != path:
                continue
            handled.append(block_hash)
            try:
                self.store.put(block_hash, self.read(block_hash), verified=True)
                kept += 1
            except BlockMissing:
                pass
        return handled, len(handled) - kept

    def forget(self, path: str, hashes: Iterable[str]) -> None:
        """Drop the entries of ``path`` (not those re-registered elsewhere since)."""
        for block_hash in hashes:
            if self._where.get(block_hash, ("",))[0] == path:
                del self._where[block_hash]


def warn_changed(path: str, lost: int) -> None:
    """Say once that ``lost`` blocks of ``path`` could not be archived."""
    if lost:
        log.warning("%s changed before its content was archived: %d of its blocks are not in the "
                    "history here", path, lost)


def slices(blocks: Sequence[Tuple[str, int]], size: int) -> Iterator[Sequence[Tuple[str, int]]]:
    """``blocks`` cut into consecutive runs of about ``size`` bytes (at least one block each)."""
    start, total = 0, 0
    for i, (_hash, block_size) in enumerate(blocks):
        total += block_size
        if total >= size:
            yield blocks[start:i + 1]
            start, total = i + 1, 0
    if start < len(blocks):
        yield blocks[start:]
