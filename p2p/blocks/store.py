"""The content-addressed block store under ``HOME/.p2p/blocks/``.

A block lives at ``blocks/ab/abcdef...`` (its sha256 hex, fanned out by the
first two hex digits). Every block is verified on the way in and on the way
out; a block is written to a temporary name and renamed, so no partial block
is ever visible under its hash. Block files are 0600 and their directories
0700 (``p2p.security.private``): only the peer's user reads them. Blocks are not fsynced one by one: a block
torn by a crash fails verification, is removed and is fetched again. A
block's file mtime is the last time its content was stored, which is what
``prune(max_age=...)`` measures. Old blocks stay after a file changes so the
history can be restored; ``prune`` bounds the store by age and total size.
``total_bytes`` walks the store once, then keeps a running total (`p2p
status` asks it every second).

Plain blocking code: the node calls it from its thread pool.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import threading
from pathlib import Path
from typing import Iterable, Iterator, List, Optional, Set, Tuple

from p2p.blocks.chunking import Block, read_blocks
from p2p.history.paths import TEMP_PREFIX
from p2p.security.private import PRIVATE_DIR, PRIVATE_FILE


class BlockMissing(KeyError):
    """The store has no block with this hash."""

    def __init__(self, block_hash: str):
        super().__init__(block_hash)
        self.hash = block_hash

    def __str__(self) -> str:
        return f"block {self.hash} is not in the block store"


class CorruptBlock(ValueError):
    """Data whose sha256 is not the hash it was stored or offered under."""

    def __init__(self, block_hash: str, detail: str = ""):
        super().__init__(f"block {block_hash}: content does not match its hash{detail}")
        self.hash = block_hash


class BlockStore:
    def __init__(self, root: Path, *, create: bool = True):
        """``create=False`` for readers (``p2p restore``): a missing store is
        left missing, and every block in it reads as absent."""
        self.root = Path(root)
        if create:
            self.root.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
        self._size_lock = threading.Lock()
        self._bytes: Optional[int] = None   # running total once counted (total_bytes)

    def _path(self, block_hash: str) -> Path:
        if len(block_hash) != 64 or not all(c in "0123456789abcdef" for c in block_hash):
            raise ValueError(f"not a sha256 hex digest: {block_hash!r}")
        return self.root / block_hash[:2] / block_hash

    # -- single blocks -----------------------------------------------------
    def has(self, block_hash: str) -> bool:
        return self._path(block_hash).exists()

    def get(self, block_hash: str) -> bytes:
        """The block's bytes, verified. BlockMissing if absent; CorruptBlock (and the
        bad file is removed) if its content no longer matches its hash."""
        path = self._path(block_hash)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise BlockMissing(block_hash) from None
        if hashlib.sha256(data).hexdigest() != block_hash:
            self._remove(path)
            raise CorruptBlock(block_hash, " (removed from the store)")
        return data

    def put(self, block_hash: str, data, *, verified: bool = False) -> None:
        """Store ``data`` under ``block_hash`` after checking that it is its sha256
        (``verified=True``: the caller has just checked it against this very
        ``block_hash``, as ``Session.request_block`` does; never pass it for
        data checked against a hash someone else named)."""
        if not verified and hashlib.sha256(data).hexdigest() != block_hash:
            raise CorruptBlock(block_hash)
        self._store(block_hash, data)

    def _store(self, block_hash: str, data, source_fd: Optional[int] = None, offset: int = 0) -> None:
        """Write a block file atomically: copied in the kernel from ``source_fd``
        at ``offset`` when given (no copy through user space), else from ``data``."""
        path = self._path(block_hash)
        if path.exists():
            os.utime(path)  # stored again: it is recent content
            return
        temp = path.with_name(f"{TEMP_PREFIX}{secrets.token_hex(8)}")
        try:
            try:
                fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
            except FileNotFoundError:  # the first block of its fan-out directory
                path.parent.mkdir(mode=PRIVATE_DIR, exist_ok=True)
                fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
            try:
                if source_fd is None or not _copy_range(source_fd, fd, len(data), offset, 0):
                    _write_all(fd, data, 0)
            finally:
                os.close(fd)
            with self._size_lock:
                new = not path.exists()
                os.replace(temp, path)
                if new and self._bytes is not None:
                    self._bytes += len(data)
        except BaseException:
            _unlink_quietly(temp)
            raise

    def copy_into(self, block_hash: str, dest_fd: int, offsets, *, verify: bool = True,
                  buffer: Optional[memoryview] = None) -> int:
        """Write a stored block at each of ``offsets`` in ``dest_fd``, in the kernel
        when the file system allows (copy_file_range); return its size. With
        ``verify`` the block is first read (into ``buffer`` when given) and
        checked against its hash."""
        path = self._path(block_hash)
        try:
            src = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            raise BlockMissing(block_hash) from None
        try:
            size = os.fstat(src).st_size
            view = None
            if verify:
                view = buffer[:size] if buffer is not None and len(buffer) >= size else memoryview(bytearray(size))
                if os.preadv(src, [view], 0) != size or hashlib.sha256(view).hexdigest() != block_hash:
                    self._remove(path)
                    raise CorruptBlock(block_hash, " (removed from the store)")
            for offset in offsets:
                if not _copy_range(src, dest_fd, size, 0, offset):
                    if view is None:
                        view = memoryview(bytearray(size))
                        os.preadv(src, [view], 0)
                    _write_all(dest_fd, view, offset)
        finally:
            os.close(src)
        return size

    def missing(self, blocks: Iterable[Block]) -> List[Block]:
        """The blocks (hash, size) not in the store, without duplicates, in order."""
        seen: Set[str] = set()
        lacking = []
        for block_hash, size in blocks:
            if block_hash not in seen:
                seen.add(block_hash)
                if not self.has(block_hash):
                    lacking.append((block_hash, size))
        return lacking

    # -- files -------------------------------------------------------------
    def ingest_file(self, path) -> Tuple[int, str, List[Block]]:
        """Hash ``path`` into blocks, storing those the store lacks; reads the file once."""
        return read_blocks(path, on_block=self._store)

    def write_file(self, blocks: Iterable[Block], expected_hash: str, dest_path, *,
                   mode: Optional[int] = None, mtime_ns: Optional[int] = None) -> None:
        """Assemble ``blocks`` into ``dest_path`` atomically.

        Writes ``.p2p-tmp-<random>`` beside the destination, fsyncs, checks the
        whole content against ``expected_hash``, applies ``mode``/``mtime_ns``
        when given, then renames over the destination. BlockMissing or
        CorruptBlock if a block is unavailable; nothing is left behind on error.
        """
        dest = Path(dest_path)
        temp = dest.with_name(f"{TEMP_PREFIX}{secrets.token_hex(8)}")
        whole = hashlib.sha256()
        try:
            with open(temp, "xb") as out:
                for block_hash, _size in blocks:
                    data = self.get(block_hash)
                    whole.update(data)
                    out.write(data)
                out.flush()
                if whole.hexdigest() != expected_hash:
                    raise CorruptBlock(expected_hash, f" (assembled {whole.hexdigest()} for {dest})")
                if mode is not None:
                    os.fchmod(out.fileno(), mode & 0o777)  # never setuid, setgid or sticky
                os.fsync(out.fileno())
            if mtime_ns is not None:
                os.utime(temp, ns=(mtime_ns, mtime_ns))
            os.replace(temp, dest)
        except BaseException:
            _unlink_quietly(temp)
            raise

    # -- size and retention ------------------------------------------------
    def _entries(self) -> Iterator[Tuple[str, float, int]]:
        """(hash, mtime, size) of every stored block; stray temp files are skipped."""
        for fan in os.scandir(self.root):
            if not fan.is_dir(follow_symlinks=False):
                continue
            for entry in os.scandir(fan.path):
                if entry.name.startswith(TEMP_PREFIX):
                    continue
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                yield entry.name, st.st_mtime, st.st_size

    def total_bytes(self) -> int:
        """The bytes of every stored block: counted once (a walk of the
        store), then kept as a running total by every store and removal."""
        with self._size_lock:
            if self._bytes is None:
                self._bytes = sum(size for _, _, size in self._entries())
            return self._bytes

    def _remove(self, path: Path) -> None:
        with self._size_lock:
            try:
                size = path.stat().st_size
                os.unlink(path)
            except OSError:
                return
            if self._bytes is not None:
                self._bytes -= size

    def prune(self, keep: Set[str], max_bytes: Optional[int] = None, max_age: Optional[float] = None,
              now: Optional[float] = None) -> int:
        """Remove blocks not in ``keep``, oldest first, while the store is over
        ``max_bytes`` or a block is older than ``max_age`` seconds (at ``now``,
        unix seconds: required with max_age). Returns how many were removed."""
        if max_age is not None and now is None:
            raise ValueError("prune(max_age=...) needs now")
        entries = sorted(self._entries(), key=lambda item: item[1])
        total = sum(size for _, _, size in entries)
        pruned = 0
        for block_hash, mtime, size in entries:
            too_big = max_bytes is not None and total > max_bytes
            too_old = max_age is not None and now - mtime > max_age
            if not (too_big or too_old):
                break  # oldest first: later blocks are younger, and the total only shrinks
            if block_hash in keep:
                continue
            self._remove(self.root / block_hash[:2] / block_hash)
            total -= size
            pruned += 1
        return pruned


def _copy_range(src: int, dst: int, count: int, src_offset: int, dst_offset: Optional[int] = None) -> bool:
    """Copy in the kernel (copy_file_range); False if this file system cannot."""
    try:
        while count:
            done = os.copy_file_range(src, dst, count, src_offset, dst_offset)
            if not done:
                return False
            count -= done
            src_offset += done
            if dst_offset is not None:
                dst_offset += done
        return True
    except OSError:
        return False


def _write_all(fd: int, data, offset: Optional[int] = None) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view) if offset is None else os.pwrite(fd, view, offset)
        view = view[written:]
        if offset is not None:
            offset += written


def _unlink_quietly(path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
