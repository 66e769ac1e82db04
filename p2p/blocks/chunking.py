"""Split file content into blocks: the block size for a file, and hashing a file.

Plain blocking code (the node calls it from its thread pool). A file of size
S is cut into blocks of ``block_size_for(S)`` bytes (the last one shorter):
128 KiB for files up to 32 MiB, doubling so a file has at most
``limits.BLOCKS_PER_FILE`` blocks, never more than ``limits.MAX_BLOCK``.
An empty file has no blocks. A large file's whole-content hash runs in a
second thread beside its block hashes (two cores: the scan of a new large
file, which its event waits for, takes half the time).
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, List, Optional, Tuple

from p2p import limits

Block = Tuple[str, int]
CHECK_EVERY = 8   # blocks between checks that the file is not still being written


class FileChanged(OSError):
    """The file's size changed while it was being read: hash it again later."""


def block_size_for(size: int) -> int:
    block = limits.MIN_BLOCK
    while block < limits.MAX_BLOCK and -(-size // block) > limits.BLOCKS_PER_FILE:
        block *= 2
    return block


def read_blocks(path, on_block: Optional[Callable[[str, memoryview, int, int], None]] = None
                ) -> Tuple[int, str, List[Block]]:
    """Read ``path`` once: (size, sha256 hex of the content, [(block sha256 hex, block size)]).

    ``on_block(hash, data, fd, offset)`` is called for every block as it is
    read; ``data`` is a view of a buffer reused for the next block, ``fd`` and
    ``offset`` say where the block lies in the file (for in-kernel copies).
    Raises FileChanged if the size at the end differs from the size at open.
    """
    whole = hashlib.sha256()
    blocks: List[Block] = []
    with open(path, "rb", buffering=0) as handle, ThreadPoolExecutor(1) as beside:
        opened = os.fstat(handle.fileno())
        size = opened.st_size
        block_size = block_size_for(size)
        # reused buffers (no allocation per block); a large file's whole hash runs in
        # a second thread, one buffer behind the block hashes (hashlib frees the GIL)
        parallel = size > limits.PARALLEL_HASH_MIN
        buffers = [memoryview(bytearray(min(block_size, size))) for _ in range(2 if parallel else 1)]
        hashing = [None] * len(buffers)   # the whole hash's pending update of each buffer
        offset, remaining = 0, size
        while remaining:
            turn = len(blocks) % len(buffers)
            if hashing[turn] is not None:
                hashing[turn].result()
            buffer = buffers[turn]
            count = handle.readinto(buffer[:min(block_size, remaining)])
            if not count:
                raise FileChanged(f"{path}: shrank while being read")
            data = buffer[:count]
            if parallel:
                hashing[turn] = beside.submit(whole.update, data)
            else:
                whole.update(data)
            digest = hashlib.sha256(data).hexdigest()
            blocks.append((digest, count))
            if on_block is not None:
                on_block(digest, data, handle.fileno(), offset)
            remaining -= count
            offset += count
            if remaining and count < block_size:  # a short read: blocks would no longer align
                raise FileChanged(f"{path}: changed while being read")
            if len(blocks) % CHECK_EVERY == 0 and os.fstat(handle.fileno()).st_mtime_ns != opened.st_mtime_ns:
                raise FileChanged(f"{path}: still being written")  # stop early: hash it when quiet
        if handle.read(1):
            raise FileChanged(f"{path}: grew while being read")
        for pending in hashing:
            if pending is not None:
                pending.result()
    return size, whole.hexdigest(), blocks


def hash_file(path) -> Tuple[int, str, List[Block]]:
    """(size, sha256 hex, blocks) of the file at ``path``, reading it once."""
    return read_blocks(path)
