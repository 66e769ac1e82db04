"""The content-addressed block store under ``HOME/.p2p/blocks/``.

Blocks of up to ``limits.PACKED_BLOCK_MAX`` bytes (every block of a small
file) are appended to pack files, as git packs objects: ``packs/NNNN.pack``
holds records of a 32-byte sha256, a 4-byte big-endian size and the bytes,
and ``blocks.db`` (SQLite in WAL mode, from the standard library: an indexed
lookup per block and incremental, crash-safe updates, with no file creation
per block) maps each hash to its pack, offset, size and the last time it was
stored. Larger blocks live one file each at ``blocks/ab/abcdef...`` (the hex
hash fanned out by its first two digits), written to a temporary name and
renamed, so no partial one is ever visible under its hash.

Every block is verified on the way in and on the way out. Neither packs nor
block files are fsynced block by block: a block torn by a crash (a pack's
tail, or an index row whose bytes never reached the disk) fails
verification, is removed (its row deleted) and is fetched again, never
served. Index changes are committed in groups (``limits.INDEX_COMMIT_ROWS``
or ``INDEX_COMMIT_INTERVAL``, and at ``flush``, which the node calls with its
history's group commit); the ``tail`` row says up to where the last pack is
indexed, so a start after a kill indexes the records stored after the last
commit (and cuts a torn one off). A lost or unreadable ``blocks.db`` is
rebuilt from the packs' records. Files are 0600 and directories 0700
(``p2p.security.private``): only the peer's user reads them.

Old blocks stay after a file changes so the history can be restored;
``prune`` bounds the store by age and total size (a block's age is the last
time its content was stored: its row's time, or a block file's mtime), then
rewrites every closed pack whose live bytes fell under ``limits.REPACK_BELOW``
of it (its live blocks are copied into the open pack, made durable, and the
old pack deleted). ``total_bytes`` counts the live blocks once, then keeps a
running total (`p2p status` asks it every second).

Plain blocking code, safe from several threads: the node calls it from its
thread pools and, for small blocks, from the hub.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import secrets
import sqlite3
import struct
import threading
import time
from pathlib import Path
from typing import Iterable, Iterator, List, Optional, Set, Tuple

from p2p import limits
from p2p.sqlite_in import rows_in
from p2p.blocks.chunking import Block, read_blocks
from p2p.history.paths import TEMP_PREFIX
from p2p.security.private import PRIVATE_DIR, PRIVATE_FILE, create_private

RECORD = struct.Struct(">32sI")   # a pack record's head: sha256, size; the bytes follow
INDEX = "blocks.db"
PACKS = "packs"
SCHEMA = ("CREATE TABLE IF NOT EXISTS packed (hash BLOB PRIMARY KEY, pack INTEGER NOT NULL, "
          "offset INTEGER NOT NULL, size INTEGER NOT NULL, stored REAL NOT NULL) WITHOUT ROWID",
          "CREATE INDEX IF NOT EXISTS packed_by_pack ON packed (pack)",
          # every record before (pack, end) is indexed, or was removed on purpose
          "CREATE TABLE IF NOT EXISTS tail (one INTEGER PRIMARY KEY CHECK (one = 1), pack INTEGER NOT NULL, "
          "end INTEGER NOT NULL)")


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
        left missing, every block in it reads as absent, and the index is
        only read (the running peer owns it)."""
        self.root = Path(root)
        self.packs = self.root / PACKS
        self._lock = threading.RLock()   # the index, the open pack and the running total
        self._bytes: Optional[int] = None   # running total once counted (total_bytes)
        self._db: Optional[sqlite3.Connection] = None
        self._pack_fd: Optional[int] = None   # the open pack: new small blocks are appended to it
        self._pack = self._pack_end = 0
        self._unsaved = 0            # index changes since the last commit
        self._since = 0.0            # monotonic time of the first of them
        self._unmerged = 0           # index changes committed since the last checkpoint
        self._checkpointer: Optional[sqlite3.Connection] = None   # checkpoints off the lock (flush)
        self._fans: Optional[Set[str]] = None   # the fan-out directories of block files (listed once: _fan_outs)
        if create:
            self.root.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
            self.packs.mkdir(mode=PRIVATE_DIR, exist_ok=True)
            self._db = self._open_index()
        elif (self.root / INDEX).exists():
            self._db = self._connect(self.root / INDEX)

    # -- the index of packed blocks -----------------------------------------
    def _open_index(self) -> sqlite3.Connection:
        """Open ``blocks.db`` (created 0600: SQLite gives its -wal and -shm files
        the same mode); rebuilt from the packs when it is new or unreadable,
        else completed from the records beyond its ``tail`` (those stored
        after the last commit, if the peer was killed); a torn last record is
        cut off, so the next one is written in its place."""
        path = self.root / INDEX
        fresh = not path.exists()
        try:
            db = self._connect(path)
        except sqlite3.DatabaseError:   # torn or foreign: the packs hold every record
            for suffix in ("", "-wal", "-shm"):
                _unlink_quietly(f"{path}{suffix}")
            db, fresh = self._connect(path), True
        numbers = self._pack_numbers()
        db.execute("BEGIN")
        tail = None if fresh else db.execute("SELECT pack, end FROM tail").fetchone()
        end = 0
        for number in numbers:
            if tail is None or number >= tail[0]:
                end = self._index_records(db, number, tail[1] if tail is not None and number == tail[0] else 0)
        if numbers:
            if end > self._pack_path(numbers[-1]).stat().st_size:   # the disk lost committed records
                end = self._index_records(db, numbers[-1], 0)
            if end < self._pack_path(numbers[-1]).stat().st_size:
                os.truncate(self._pack_path(numbers[-1]), end)   # a torn record: new ones go in its place
            db.execute("INSERT OR REPLACE INTO tail VALUES (1, ?, ?)", (numbers[-1], end))
        db.execute("COMMIT")
        return db

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        os.close(create_private(path, os.O_RDWR))
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")   # a lost row is a block fetched again; the packs are the truth
            db.execute("PRAGMA wal_autocheckpoint=0")   # never in a commit (maybe the hub's): flush checkpoints
            db.execute(f"PRAGMA cache_size=-{limits.INDEX_CACHE_KIB}")   # random keys: every page is hot
            for statement in SCHEMA:
                db.execute(statement)
        except BaseException:
            db.close()
            raise
        return db

    def _index_records(self, db: sqlite3.Connection, number: int, start: int) -> int:
        """Index every verified record of pack ``number`` from ``start`` (a
        record's beginning) on; a torn record ends the scan. Returns where it ended."""
        pack = self._pack_path(number)
        stored = pack.stat().st_mtime
        with open(pack, "rb") as handle:
            handle.seek(start)
            offset = start
            while True:
                head = handle.read(RECORD.size)
                if len(head) < RECORD.size:
                    break
                digest, size = RECORD.unpack(head)
                if size > limits.PACKED_BLOCK_MAX:
                    break
                data = handle.read(size)
                if len(data) < size:
                    break
                if hashlib.sha256(data).digest() == digest:
                    db.execute("INSERT OR IGNORE INTO packed VALUES (?, ?, ?, ?, ?)",
                               (digest, number, offset + RECORD.size, size, stored))
                offset += RECORD.size + size
        return offset

    def _changed(self, count: int = 1) -> None:
        """Count ``count`` index changes (call with the lock, in the open transaction):
        changes are committed together, every INDEX_COMMIT_ROWS or
        INDEX_COMMIT_INTERVAL, or at ``flush``."""
        self._unsaved += count
        if self._unsaved >= limits.INDEX_COMMIT_ROWS or time.monotonic() - self._since >= limits.INDEX_COMMIT_INTERVAL:
            self._commit()

    def _begin(self) -> None:
        if not self._db.in_transaction:
            self._db.execute("BEGIN")
            self._since = time.monotonic()

    def flush(self) -> None:
        """Commit the index changes not committed yet: other processes
        (``p2p restore``) see them from now on. The running peer calls it with
        its history's group commit, in its thread pool; a kill loses nothing
        (the records are in the last pack, indexed again at the next start).
        Every INDEX_CHECKPOINT_ROWS changes it also merges the WAL into the
        database, through a connection of its own and without the lock, so
        no other caller waits for that write and its fsync."""
        with self._lock:
            if self._db is None:
                return
            self._commit()
            if self._unmerged < limits.INDEX_CHECKPOINT_ROWS:
                return
            self._unmerged = 0
            if self._checkpointer is None:
                self._checkpointer = sqlite3.connect(self.root / INDEX, isolation_level=None,
                                                     check_same_thread=False)
            checkpointer = self._checkpointer
        checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def _commit(self) -> None:
        if self._db.in_transaction:
            try:
                self._save_tail()
                self._db.execute("COMMIT")
            except sqlite3.OperationalError as exc:   # a full disk, as the callers know it: an OSError
                raise OSError(errno.ENOSPC if "full" in str(exc) else errno.EIO,
                              f"cannot update the block index: {exc}") from exc
        self._unmerged += self._unsaved
        self._unsaved = 0

    def _save_tail(self) -> None:
        if self._pack_fd is not None:
            self._db.execute("INSERT OR REPLACE INTO tail VALUES (1, ?, ?)", (self._pack, self._pack_end))

    def close(self) -> None:
        """Commit, close the open pack and the index; the store is unusable after."""
        with self._lock:
            if self._db is None:
                return
            self._commit()
            if self._pack_fd is not None:
                os.close(self._pack_fd)
                self._pack_fd = None
            if self._checkpointer is not None:
                self._checkpointer.close()
                self._checkpointer = None
            self._db.close()   # the last connection to close merges the WAL
            self._db = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def _pack_numbers(self) -> List[int]:
        try:
            names = os.listdir(self.packs)
        except FileNotFoundError:
            return []
        return sorted(int(name[:-5]) for name in names if name.endswith(".pack") and name[:-5].isdigit())

    def _pack_path(self, number: int) -> Path:
        return self.packs / f"{number:04d}.pack"

    def _packed(self, block_hash: str) -> Optional[Tuple[int, int, int]]:
        """(pack, offset, size) of a packed block, or None."""
        if self._db is None:
            return None
        with self._lock:
            return self._db.execute("SELECT pack, offset, size FROM packed WHERE hash = ?",
                                    (bytes.fromhex(block_hash),)).fetchone()

    def _read_packed(self, block_hash: str) -> Optional[bytes]:
        """A packed block's bytes, verified, or None if it is not packed; a torn
        or altered record loses its row. Its pack is opened with the lock held:
        a repack deletes a pack only after moving its rows, so the descriptor
        reads the bytes the row named."""
        if self._db is None:
            return None
        with self._lock:
            where = self._db.execute("SELECT pack, offset, size FROM packed WHERE hash = ?",
                                     (bytes.fromhex(block_hash),)).fetchone()
            if where is None:
                return None
            try:
                fd = os.open(self._pack_path(where[0]), os.O_RDONLY)
            except FileNotFoundError:   # a row whose pack is gone: as torn
                fd = None
        pack, offset, size = where
        data = b""
        if fd is not None:
            try:
                data = os.pread(fd, size, offset)
            finally:
                os.close(fd)
        if len(data) != size or hashlib.sha256(data).hexdigest() != block_hash:
            self._forget(block_hash, size, where)
            raise CorruptBlock(block_hash, " (removed from the store)")
        return data

    def _forget(self, block_hash: str, size: int, where: Optional[Tuple[int, int, int]] = None) -> None:
        """Delete a packed block's row (only if it still says ``where``, when given)."""
        with self._lock:
            self._begin()
            if where is None:
                gone = self._db.execute("DELETE FROM packed WHERE hash = ?", (bytes.fromhex(block_hash),)).rowcount
            else:
                gone = self._db.execute("DELETE FROM packed WHERE hash = ? AND pack = ? AND offset = ?",
                                        (bytes.fromhex(block_hash), where[0], where[1])).rowcount
            if gone and self._bytes is not None:
                self._bytes -= size
            self._changed()

    def _append(self, block_hash: str, data) -> Tuple[int, int]:
        """Write one record at the open pack's end (a new pack past
        PACK_MAX_BYTES); returns (pack, offset of its bytes). Call with the lock."""
        record = _record(bytes.fromhex(block_hash), data)
        self._open_pack_for(len(record))
        _write_all(self._pack_fd, record, self._pack_end)   # a failed write is overwritten by the next
        offset = self._pack_end + RECORD.size
        self._pack_end += len(record)
        return self._pack, offset

    def _open_pack_for(self, size: int) -> None:
        """Make sure a pack is open with room for ``size`` more bytes (an empty
        pack takes any record): a new one past PACK_MAX_BYTES. Call with the lock."""
        if self._pack_fd is None or (self._pack_end and self._pack_end + size > limits.PACK_MAX_BYTES):
            numbers = self._pack_numbers()
            number = numbers[-1] if numbers else 1
            if self._pack_fd is not None:
                self._commit()   # only the last pack's unindexed tail is scanned at start
                os.close(self._pack_fd)
                self._pack_fd = None
                number += 1
            fd = create_private(self._pack_path(number), os.O_WRONLY)
            end = os.fstat(fd).st_size
            if end and end + size > limits.PACK_MAX_BYTES:
                os.close(fd)
                number += 1
                fd, end = create_private(self._pack_path(number), os.O_WRONLY), 0
            self._pack_fd, self._pack, self._pack_end = fd, number, end

    def _store_packed(self, block_hash: str, data) -> bool:
        """Pack a small block (or note it was stored again); False if it is a
        file of its own already (an older store's): that file is kept."""
        return not self._store_packed_many([(block_hash, data)])

    def _store_packed_many(self, blocks: List[Tuple[str, bytes]]) -> List[Tuple[str, bytes]]:
        """Pack many small blocks under one lock, one index query per 500 and
        one pack write per pack they go to (with their rows inserted before
        the next pack opens, as one block's would be); those stored again
        get their time renewed. Returns those that are files of their own
        already (an older store's): kept as they are."""
        with self._lock:
            now = time.time()
            keys = [bytes.fromhex(block_hash) for block_hash, _ in blocks]
            self._begin()
            present = {key for (key,) in rows_in(self._db, "SELECT hash FROM packed WHERE hash IN ({})", keys)}
            if present:
                self._db.executemany("UPDATE packed SET stored = ? WHERE hash = ?", ((now, key) for key in present))
                self._changed(len(present))
            loose, new = [], []
            for (block_hash, data), key in zip(blocks, keys):
                if key in present:
                    continue
                present.add(key)   # a block named twice is packed once
                if self._is_file(block_hash):
                    loose.append((block_hash, data))
                else:
                    new.append((key, _record(key, data)))
            while new:
                self._open_pack_for(len(new[0][1]))
                room = limits.PACK_MAX_BYTES - self._pack_end
                count, size = 0, 0
                while count < len(new) and (count == 0 or size + len(new[count][1]) <= room):
                    size += len(new[count][1])
                    count += 1
                part, new = new[:count], new[count:]
                _write_all(self._pack_fd, b"".join(record for _, record in part), self._pack_end)
                rows, at = [], self._pack_end
                for key, record in part:
                    rows.append((key, self._pack, at + RECORD.size, len(record) - RECORD.size, now))
                    at += len(record)
                self._pack_end = at
                self._begin()
                self._db.executemany("INSERT INTO packed VALUES (?, ?, ?, ?, ?)", rows)
                if self._bytes is not None:
                    self._bytes += size - len(part) * RECORD.size
                self._changed(len(part))
            return loose

    def _fan_outs(self) -> Set[str]:
        """The names of the fan-out directories (``ab/``) that exist: a block not
        under one is no file of its own, without a ``stat`` per block. Listed
        once; this store is the only one that makes them (``_store``) and
        none is ever removed. Call with the lock."""
        if self._fans is None:
            try:
                self._fans = {name for name in os.listdir(self.root) if len(name) == 2}
            except FileNotFoundError:
                self._fans = set()
        return self._fans

    def _is_file(self, block_hash: str) -> bool:
        """Whether the block is a file of its own (an older store's small block,
        or a large one): looked for only under a fan-out directory that exists,
        so no stat per block of a store that packs them. Call with the lock."""
        fan = block_hash[:2]
        return fan in self._fan_outs() and os.path.exists(os.path.join(self.root, fan, block_hash))

    # -- single blocks -----------------------------------------------------
    def _path(self, block_hash: str) -> Path:
        _check(block_hash)
        return self.root / block_hash[:2] / block_hash

    def has(self, block_hash: str) -> bool:
        """Whether the block is stored: packed, or a file of its own (looked
        for only under a fan-out directory that exists: no stat per block)."""
        _check(block_hash)
        with self._lock:
            return self._packed(block_hash) is not None or self._is_file(block_hash)

    def get(self, block_hash: str) -> bytes:
        """The block's bytes, verified. BlockMissing if absent; CorruptBlock (and the
        bad block is removed) if its content no longer matches its hash."""
        _check(block_hash)
        data = self._read_packed(block_hash)
        if data is not None:
            return data
        return self._get_file(block_hash)

    def get_many(self, hashes: List[str]) -> dict:
        """hash -> verified bytes of those of ``hashes`` the store has: one
        index query per 500 for the packed ones and one open per pack (read in
        offset order), each a file of its own read as ``get`` reads it. A torn
        or altered block loses its row (or file) and is left out, as missing."""
        for block_hash in hashes:
            _check(block_hash)
        found: dict = {}
        if self._db is not None:
            keys = list({bytes.fromhex(block_hash) for block_hash in hashes})
            fds: dict = {}
            with self._lock:   # (opened with the lock: see _read_packed)
                rows = list(rows_in(self._db, "SELECT hash, pack, offset, size FROM packed WHERE hash IN ({})", keys))
                for pack in {row[1] for row in rows}:
                    try:
                        fds[pack] = os.open(self._pack_path(pack), os.O_RDONLY)
                    except FileNotFoundError:   # a row whose pack is gone: as torn
                        pass
            try:
                for digest, pack, offset, size in sorted(rows, key=lambda row: (row[1], row[2])):
                    data = os.pread(fds[pack], size, offset) if pack in fds else b""
                    if len(data) != size or hashlib.sha256(data).digest() != digest:
                        self._forget(digest.hex(), size, (pack, offset, size))
                        continue
                    found[digest.hex()] = data
            finally:
                for fd in fds.values():
                    os.close(fd)
        for block_hash in hashes:
            if block_hash not in found:
                try:
                    found[block_hash] = self._get_file(block_hash)
                except (BlockMissing, CorruptBlock):
                    pass
        return found

    def _get_file(self, block_hash: str) -> bytes:
        """A block that is a file of its own, verified (BlockMissing, CorruptBlock: as ``get``)."""
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

    def put_many(self, blocks: List[Tuple[str, bytes]], *, verified: bool = False) -> None:
        """``put`` for many blocks: the small ones packed together
        (``_store_packed_many``: one pack write and one index query for the
        batch, not one each), the others as files."""
        small: List[Tuple[str, bytes]] = []
        for block_hash, data in blocks:
            _check(block_hash)
            if not verified and hashlib.sha256(data).hexdigest() != block_hash:
                raise CorruptBlock(block_hash)
            if len(data) <= limits.PACKED_BLOCK_MAX and self._db is not None:
                small.append((block_hash, data))
            else:
                self._store(block_hash, data)
        for block_hash, data in self._store_packed_many(small):
            self._store(block_hash, data)   # a file of its own already: its time renewed

    def _store(self, block_hash: str, data, source_fd: Optional[int] = None, offset: int = 0) -> None:
        """Store a block: a small one appended to the open pack, a large one as a
        file written atomically, copied in the kernel from ``source_fd`` at
        ``offset`` when given (no copy through user space), else from ``data``."""
        path = self._path(block_hash)
        if len(data) <= limits.PACKED_BLOCK_MAX and self._db is not None and self._store_packed(block_hash, data):
            return
        if path.exists():
            os.utime(path)  # stored again: it is recent content
            return
        temp = path.with_name(f"{TEMP_PREFIX}{secrets.token_hex(8)}")
        try:
            try:
                fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
            except FileNotFoundError:  # the first block of its fan-out directory
                path.parent.mkdir(mode=PRIVATE_DIR, exist_ok=True)
                with self._lock:
                    self._fan_outs().add(path.parent.name)
                fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
            try:
                if source_fd is None or not _copy_range(source_fd, fd, len(data), offset, 0):
                    _write_all(fd, data, 0)
            finally:
                os.close(fd)
            with self._lock:
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
        checked against its hash; a packed block is always read and verified
        (it is small)."""
        _check(block_hash)
        data = self._read_packed(block_hash)
        if data is not None:
            for offset in offsets:
                _write_all(dest_fd, data, offset)
            return len(data)
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
    def ingest_file(self, path, expect: Optional[os.stat_result] = None) -> Tuple[int, str, List[Block]]:
        """Hash ``path`` into blocks, storing those the store lacks; reads the
        file once (``expect``: as ``read_blocks``). A file of one block is stored
        as it is read; the small blocks of a larger one are packed
        PACK_WRITE_BYTES at a time (``put_many``)."""
        small: List[Tuple[str, bytes]] = []
        held = [0]

        def keep(block_hash, data, fd, offset):
            if len(data) > limits.PACKED_BLOCK_MAX or self._db is None or (
                    offset == 0 and len(data) == os.fstat(fd).st_size):
                self._store(block_hash, data, fd, offset)
                return
            small.append((block_hash, bytes(data)))   # the reader reuses its buffer
            held[0] += len(data)
            if held[0] >= limits.PACK_WRITE_BYTES:
                self.put_many(small, verified=True)
                small.clear()
                held[0] = 0
        result = read_blocks(path, on_block=keep, expect=expect)
        self.put_many(small, verified=True)
        return result

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
        """(hash, time stored, size) of every stored block, packed or a file of
        its own; stray temp files are skipped."""
        if self._db is not None:
            with self._lock:
                rows = self._db.execute("SELECT hash, stored, size FROM packed").fetchall()
            for digest, stored, size in rows:
                yield digest.hex(), stored, size
        yield from self._block_files()

    def _block_files(self) -> Iterator[Tuple[str, float, int]]:
        """(hash, mtime, size) of every block stored as a file of its own."""
        try:
            fans = list(os.scandir(self.root))
        except FileNotFoundError:
            return
        for fan in fans:
            if len(fan.name) != 2 or not fan.is_dir(follow_symlinks=False):
                continue   # the packs, the index
            for entry in os.scandir(fan.path):
                if entry.name.startswith(TEMP_PREFIX):
                    continue
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                yield entry.name, st.st_mtime, st.st_size

    def total_bytes(self) -> int:
        """The bytes of every stored block: counted once (a sum in the index,
        a walk of the block files), then kept as a running total by every
        store and removal."""
        with self._lock:
            if self._bytes is None:
                (packed,) = self._db.execute("SELECT coalesce(sum(size), 0) FROM packed").fetchone() \
                    if self._db is not None else (0,)
                self._bytes = packed + sum(size for _, _, size in self._block_files())
            return self._bytes

    def _remove(self, path: Path) -> None:
        with self._lock:
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
        unix seconds: required with max_age), then repack the packs left
        mostly dead. Returns how many blocks were removed."""
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
            if self._packed(block_hash) is not None:
                self._forget(block_hash, size)
            else:
                self._remove(self.root / block_hash[:2] / block_hash)
            total -= size
            pruned += 1
        if self._db is not None:
            self.flush()
            self._repack()
        return pruned

    def _repack(self) -> None:
        """Rewrite every closed pack whose live bytes are under REPACK_BELOW of
        its size: its live blocks (verified) are appended to the open pack,
        which is fsynced, their rows moved in one durable transaction, and only
        then is the old pack deleted. A crash in between leaves the old rows
        (and the old pack) or the new ones: never a row without its bytes.
        The lock is held per record, not per pack: other threads (the hub)
        store and read blocks meanwhile."""
        with self._lock:
            live = dict(self._db.execute("SELECT pack, SUM(size) + COUNT(*) * ? FROM packed GROUP BY pack",
                                         (RECORD.size,)).fetchall())
            closed = self._pack_numbers()[:-1]   # the last is the open pack (or the next to open)
        for number in closed:
            path = self._pack_path(number)
            if live.get(number, 0) < limits.REPACK_BELOW * path.stat().st_size:
                self._move_live_blocks(number)
                os.unlink(path)

    def _move_live_blocks(self, number: int) -> None:
        with self._lock:
            rows = self._db.execute("SELECT hash, offset, size FROM packed WHERE pack = ?", (number,)).fetchall()
        moves, dropped, written = [], [], set()
        with open(self._pack_path(number), "rb", buffering=0) as old:
            for digest, offset, size in rows:
                data = os.pread(old.fileno(), size, offset)
                if len(data) != size or hashlib.sha256(data).digest() != digest:
                    dropped.append((digest, size))   # torn or altered: fetched again if needed
                    continue
                with self._lock:
                    pack, new_offset = self._append(digest.hex(), data)
                written.add(pack)
                moves.append((pack, new_offset, digest))
        for pack in written:
            fd = os.open(self._pack_path(pack), os.O_RDONLY)
            try:
                os.fsync(fd)   # the copies are durable before any row points at them
            finally:
                os.close(fd)
        with self._lock:
            self._commit()
            self._db.execute("PRAGMA synchronous=FULL")
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    self._db.executemany("UPDATE packed SET pack = ?, offset = ? WHERE hash = ? AND pack = ?",
                                         [(pack, offset, digest, number) for pack, offset, digest in moves])
                    gone = sum(size for digest, size in dropped if self._db.execute(
                        "DELETE FROM packed WHERE hash = ? AND pack = ?", (digest, number)).rowcount)
                    self._save_tail()
                    self._db.execute("COMMIT")
                except BaseException:
                    if self._db.in_transaction:   # a failed COMMIT (a full disk) may have rolled back already
                        self._db.execute("ROLLBACK")
                    raise
            finally:
                self._db.execute("PRAGMA synchronous=NORMAL")
            if gone and self._bytes is not None:
                self._bytes -= gone


_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")


def _check(block_hash: str) -> None:
    if not isinstance(block_hash, str) or not _HEX_DIGEST.fullmatch(block_hash):
        raise ValueError(f"not a sha256 hex digest: {block_hash!r}")


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


def _record(digest: bytes, data) -> bytes:
    """A pack record: the block's sha256 and size, then its bytes."""
    return b"".join((RECORD.pack(digest, len(data)), data))


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
