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

A file over ``limits.PARALLEL_HASH_MIN`` is read in segments of its own
(``_read_pipelined``) and hashed on two more threads while the caller reads
and cuts the next segment: one takes the whole-file sha256, one the blocks'
(hashlib releases the GIL on large buffers), so reading, cutting and the two
hashes overlap instead of running one after the other.
"""

from __future__ import annotations

import hashlib
import itertools
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
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
                cut_as: Optional[int] = None, expect: Optional[os.stat_result] = None) -> Tuple[int, str, List[Block]]:
    """Read ``path`` once: (size, sha256 hex of the content, [(block sha256 hex, block size)]).

    ``on_block(hash, data, fd, offset)`` is called for every block as it is
    read; ``data`` is a view of a buffer reused for the next block, ``fd`` and
    ``offset`` say where the block lies in the file (for in-kernel copies).
    Raises FileChanged if the file is not ``size`` bytes all along (its size
    at open), or is written meanwhile. ``expect``: the caller's ``lstat`` of
    ``path`` just before, taken as the file's size and mtime at open (no
    ``fstat`` then); one ``fstat`` after the read checks that the file read is
    that one, unchanged (inode, size, mtime), so the caller need not ``lstat``
    the path again (a file renamed over it meanwhile is a new watcher event).
    """
    whole = hashlib.sha256()
    single = ""   # the content's hash when one block is the whole file
    blocks: List[Block] = []
    with open(path, "rb", buffering=0) as handle:
        fd = handle.fileno()
        opened = os.fstat(fd) if expect is None else expect
        size = opened.st_size
        offset = 0
        tier = size if cut_as is None else cut_as
        if size > limits.PARALLEL_HASH_MIN and chunk_sizes(tier) != WHOLE:
            whole_hash = _read_pipelined(path, handle, opened, size, tier, on_block, blocks)
            _check_read(path, fd, expect)
            return size, whole_hash, blocks
        if size:
            for data in _pieces(handle, size, tier):
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
        _check_read(path, fd, expect)
    return size, single or whole.hexdigest(), blocks


def _check_read(path, fd: int, expect: Optional[os.stat_result]) -> None:
    """Raise FileChanged unless the file read (``fd``) is the one ``expect``
    describes (if given), with the same size and mtime still."""
    if expect is None:
        return
    now = os.fstat(fd)
    if (now.st_ino, now.st_dev, now.st_size, now.st_mtime_ns) != (
            expect.st_ino, expect.st_dev, expect.st_size, expect.st_mtime_ns):
        raise FileChanged(f"{path}: replaced or written while being read")


def _read_pipelined(path, handle, opened: os.stat_result, size: int, tier: int,
                    on_block: Optional[Callable[[str, memoryview, int, int], None]], blocks: List[Block]) -> str:
    """``read_blocks`` of a large file (``size`` bytes at open, cut as a file
    of ``tier`` bytes), appending to ``blocks``: the sha256 hex of the content.

    The file is read a segment at a time into the next of a ring of reused
    buffers (no page faults per segment), after the last block of the
    previous segment (which may have been cut by that segment's end rather
    than by its content; with at least one maximum block after a block's
    start, its cut is the one a single pass over the whole file finds). The
    new bytes go to the whole-file hash and the segment's final blocks to the
    block hash, each on its own thread, in order; at most
    ``limits.PIPELINE_IN_FLIGHT`` segments are in flight (bounded memory)."""
    cutter, maximum = _chunker(tier), chunk_sizes(tier)[2]
    segment = max(limits.PIPELINE_SEGMENT, 2 * maximum)   # more than a maximum block: one at least is final
    fd, whole = handle.fileno(), hashlib.sha256()
    carry, carry_at, read = memoryview(b""), 0, 0
    in_flight: deque = deque()   # (whole hash done, block digests, buffer, [(offset, length)], file offset)
    # one more buffer than segments in flight: the next is neither in flight nor the carry's
    ring = [memoryview(bytearray(maximum + segment))
            for _ in range(min(limits.PIPELINE_IN_FLIGHT + 1, size // segment + 1))]
    with ThreadPoolExecutor(1) as whole_thread, ThreadPoolExecutor(1) as block_thread:
        for turn in itertools.count():
            buffer = ring[turn % len(ring)]
            buffer[:len(carry)] = carry
            count = _read_fully(handle, buffer[len(carry):len(carry) + min(segment, size + 1 - read)])
            read += count
            if read > size:
                raise FileChanged(f"{path}: grew while being read")
            last = read == size
            if not last and count < segment:
                raise FileChanged(f"{path}: shrank while being read")
            data = buffer[:len(carry) + count]
            hashed = whole_thread.submit(whole.update, data[len(carry):])
            cuts = [(chunk.offset, chunk.length) for chunk in cutter.cut_buf(data)]
            if not last:   # cut by the segment's end: read again with the next one
                carry = data[cuts.pop()[0]:]
            digests = block_thread.submit(_digests, data, cuts)
            in_flight.append((hashed, digests, data, cuts, carry_at))
            carry_at += len(data) - len(carry) if not last else len(data)
            while in_flight and (last or len(in_flight) >= limits.PIPELINE_IN_FLIGHT):
                _take_segment(path, fd, opened, in_flight.popleft(), on_block, blocks)
            if last:
                break
    if handle.read(1):
        raise FileChanged(f"{path}: grew while being read")
    return whole.hexdigest()


def _read_fully(handle, view: memoryview) -> int:
    """Fill ``view`` from ``handle``; fewer bytes only at the end of the file."""
    done = 0
    while done < len(view):
        count = handle.readinto(view[done:])
        if not count:
            break
        done += count
    return done


def _digests(data: memoryview, cuts) -> List[str]:
    return [hashlib.sha256(data[at:at + length]).hexdigest() for at, length in cuts]


def _take_segment(path, fd: int, opened: os.stat_result, segment, on_block, blocks: List[Block]) -> None:
    """Wait for a segment's hashes (in order) and record its blocks; FileChanged
    if the file was written meanwhile (checked every CHECK_EVERY blocks)."""
    hashed, digests, data, cuts, base = segment
    hashed.result()
    for digest, (at, length) in zip(digests.result(), cuts):
        blocks.append((digest, length))
        if on_block is not None:
            on_block(digest, data[at:at + length], fd, base + at)
        if len(blocks) % CHECK_EVERY == 0 and os.fstat(fd).st_mtime_ns != opened.st_mtime_ns:
            raise FileChanged(f"{path}: still being written")


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


def hash_file(path, expect: Optional[os.stat_result] = None) -> Tuple[int, str, List[Block]]:
    """(size, sha256 hex, blocks) of the file at ``path``, reading it once (``expect``: as ``read_blocks``)."""
    return read_blocks(path, expect=expect)
