"""Split file content into content-defined chunks ("blocks"), and hash a file.

Plain blocking code (the node calls it from its thread pool). A file is cut
where FastCDC's gear hash of the bytes just before says so (``pyfastcdc``,
compiled; it releases the GIL while it looks for a cut), so a cut depends on
the content around it, not on its offset: an insert or a delete moves the
cuts near it only, and every other block keeps its hash. The chunk sizes
depend on the file's size by tiers (``chunk_sizes``): a file of at most
``limits.WHOLE_FILE_BLOCK`` bytes is one block (``WHOLE``); then an average
of ``limits.CHUNK_AVG`` up to ``CHUNK_AVG * limits.CHUNKS_PER_FILE`` bytes,
then ``limits.CHUNK_TIER_GROWTH`` times larger per tier (never above
``limits.CHUNK_AVG_MAX``), so a file has at most about ``CHUNKS_PER_FILE``
blocks until its largest tier (docs/EVENTS.md says why these sizes). A file
shorter than its tier's minimum is one block; an empty file has no blocks.
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
    The average is FastCDC's parameter (its mean chunk is about average + minimum);
    ``WHOLE`` (average 0) for a file small enough to be one block."""
    if size <= limits.WHOLE_FILE_BLOCK:
        return WHOLE
    average = limits.CHUNK_AVG
    while average < limits.CHUNK_AVG_MAX and size > average * limits.CHUNKS_PER_FILE:
        average = min(average * limits.CHUNK_TIER_GROWTH, limits.CHUNK_AVG_MAX)
    return average // 4, average, min(average * 4, limits.MAX_BLOCK)


WHOLE = (0, 0, limits.WHOLE_FILE_BLOCK)   # the tier of files that are one block
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
    tier = len(view) if size is None else size
    if chunk_sizes(tier) == WHOLE:
        yield 0, len(view)
        return
    for chunk in _chunker(tier).cut_buf(view):
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
    single = ""   # the content's hash when one block is the whole file
    blocks: List[Block] = []
    with open(path, "rb", buffering=0) as handle:
        fd = handle.fileno()
        opened = os.fstat(fd)
        size = opened.st_size
        offset = 0
        if size:
            for data in _pieces(handle, size, size if cut_as is None else cut_as):
                count = len(data)
                if offset + count > size:
                    raise FileChanged(f"{path}: grew while being read")
                digest = hashlib.sha256(data).hexdigest()
                if offset == 0 and count == size:
                    single = digest   # the block is the whole file (a piece more would raise): hashed once
                else:
                    whole.update(data)
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
    return size, single or whole.hexdigest(), blocks


def _pieces(handle, size: int, tier: int) -> Iterator[memoryview]:
    """The blocks of the open file ``handle`` (``size`` bytes at open), cut as
    a file of ``tier`` bytes is: the whole file at once when that is one block."""
    if chunk_sizes(tier) != WHOLE:
        for chunk in _chunker(tier).cut_stream(handle):
            yield memoryview(chunk.data)[:chunk.length]
        return
    buffer = memoryview(bytearray(min(size, limits.WHOLE_FILE_BLOCK) + 1))   # one byte more: a file that grew
    count = handle.readinto(buffer)
    if count:
        yield buffer[:count]


def hash_file(path) -> Tuple[int, str, List[Block]]:
    """(size, sha256 hex, blocks) of the file at ``path``, reading it once."""
    return read_blocks(path)
