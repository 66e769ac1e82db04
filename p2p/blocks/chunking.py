"""Split file content into content-defined chunks ("blocks"), and hash a file.

Plain blocking code (the node calls it from its thread pool). A file is cut
where FastCDC's gear hash of the bytes just before says so (``pyfastcdc``,
compiled; it releases the GIL while it looks for a cut), so a cut depends on
the content around it, not on its offset: an insert or a delete moves the
cuts near it only, and every other block keeps its hash. The chunk sizes
depend on the file's size by tiers (``chunk_sizes``): an average of
``limits.CHUNK_AVG`` up to ``CHUNK_AVG * limits.CHUNKS_PER_FILE`` bytes,
then four times larger per tier (never above ``limits.CHUNK_AVG_MAX``), so a
file has at most about ``CHUNKS_PER_FILE`` blocks until its largest tier
(docs/EVENTS.md says why these sizes). A file shorter than its tier's
minimum is one block; an empty file has no blocks.
"""

from __future__ import annotations

import hashlib
import os
from typing import Callable, Iterator, List, Optional, Tuple

from pyfastcdc import FastCDC

from p2p import limits

Block = Tuple[str, int]
CHECK_EVERY = 64   # blocks between checks that the file is not still being written


class FileChanged(OSError):
    """The file's size changed while it was being read: hash it again later."""


def chunk_sizes(size: int) -> Tuple[int, int, int]:
    """(minimum, average, maximum) chunk size for a file of ``size`` bytes.
    The average is FastCDC's parameter (its mean chunk is about average + minimum)."""
    average = limits.CHUNK_AVG
    while average < limits.CHUNK_AVG_MAX and size > average * limits.CHUNKS_PER_FILE:
        average = min(average * 4, limits.CHUNK_AVG_MAX)
    return average // 4, average, min(average * 4, limits.MAX_BLOCK)


_chunkers = {}


def _chunker(size: int) -> FastCDC:
    """The (stateless, reusable) FastCDC cutter of a file of ``size`` bytes' tier."""
    minimum, average, maximum = chunk_sizes(size)
    cutter = _chunkers.get(average)
    if cutter is None:
        cutter = _chunkers[average] = FastCDC(average, min_size=minimum, max_size=maximum)
    return cutter


def cut(data, size: Optional[int] = None) -> Iterator[Tuple[int, int]]:
    """(offset, length) of each chunk of ``data`` (in memory), cut as a file of
    ``size`` bytes (default: ``len(data)``) would be."""
    view = memoryview(data)
    if not len(view):
        return
    for chunk in _chunker(len(view) if size is None else size).cut_buf(view):
        yield chunk.offset, chunk.length


def read_blocks(path, on_block: Optional[Callable[[str, memoryview, int, int], None]] = None,
                cut_as: Optional[int] = None) -> Tuple[int, str, List[Block]]:
    """Read ``path`` once: (size, sha256 hex of the content, [(block sha256 hex, block size)]).

    ``on_block(hash, data, fd, offset)`` is called for every block as it is
    read; ``data`` is a view of a buffer reused for the next block, ``fd`` and
    ``offset`` say where the block lies in the file (for in-kernel copies).
    Raises FileChanged if the file is not ``size`` bytes all along (its size
    at open), or is written meanwhile.
    """
    whole = hashlib.sha256()
    blocks: List[Block] = []
    with open(path, "rb", buffering=0) as handle:
        fd = handle.fileno()
        opened = os.fstat(fd)
        size = opened.st_size
        offset = 0
        if size:
            for chunk in _chunker(size if cut_as is None else cut_as).cut_stream(handle):
                data = chunk.data
                count = chunk.length
                if offset + count > size:
                    raise FileChanged(f"{path}: grew while being read")
                whole.update(data)
                digest = hashlib.sha256(data).hexdigest()
                blocks.append((digest, count))
                if on_block is not None:
                    on_block(digest, data, fd, offset)
                offset += count
                if len(blocks) % CHECK_EVERY == 0 and os.fstat(fd).st_mtime_ns != opened.st_mtime_ns:
                    raise FileChanged(f"{path}: still being written")  # stop early: hash it when quiet
        if offset < size:
            raise FileChanged(f"{path}: shrank while being read")
        if handle.read(1):
            raise FileChanged(f"{path}: grew while being read")
    return size, whole.hexdigest(), blocks


def hash_file(path) -> Tuple[int, str, List[Block]]:
    """(size, sha256 hex, blocks) of the file at ``path``, reading it once."""
    return read_blocks(path)
