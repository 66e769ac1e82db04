"""The history's index in SQLite (``.p2p/index.db``): per path the offsets
and ids of its head events, per origin the log offset of each of its events,
and what part of events.jsonl the database covers.

No gevent, no log reading: ``History`` decides what goes in and checks the
database against the log at open (``covered``/``end``/``end_line``). Nothing
of the heads is loaded into Python objects at open: a lookup by path is one
primary-key query. The per-origin offsets (8 bytes per event) are loaded as
arrays from blobs of ``limits.INDEX_OFFSETS_CHUNK`` offsets each, so a batch
rewrites at most one partial blob per origin, never a whole table.

Writes go to ``pending`` (path -> heads, shadowing the table) and reach the
database in one transaction per ``flush``: the heads, the new offsets and the
meta rows together, so the database always describes one prefix of the log.
The writer (the only one) keeps the last ``limits.HEADS_CACHE`` paths' heads it
read or flushed in memory: a path just merged is looked up several times
while it is written (its winner, its conflicts, whether its fetch is still
wanted), one query at most.
A flush that fails (a full disk) is rolled back and kept pending; readers see
the pending heads either way. A read-only index (beside a running writer)
never flushes.

Tables: ``heads(path, offset, id, more)`` (one row per path: its first head,
and ``more``, NULL or the JSON [[offset, id], ...] of its other heads, rare),
``offsets(origin, chunk, data)``, ``meta(key, value)``.
"""

from __future__ import annotations

import itertools
import os
import sqlite3
import sys
from array import array
from collections import OrderedDict
from pathlib import Path
from typing import Collection, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import ujson

from p2p import limits
from p2p.sqlite_in import rows_in
from p2p.security.private import create_private

Heads = Tuple[Tuple[int, str], ...]     # (offset, event id) of each head
FORMAT = f"p2p-index-2-{sys.byteorder}"  # another format (or byte order) is rebuilt
PAGE = 4096                             # rows read per query when walking every path
SCHEMA = """
CREATE TABLE IF NOT EXISTS heads (path TEXT PRIMARY KEY, offset INTEGER NOT NULL, id TEXT NOT NULL,
    more TEXT) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS offsets (origin TEXT NOT NULL, chunk INTEGER NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY (origin, chunk)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
"""


def _heads(offset: int, event_id: str, more: Optional[str]) -> Heads:
    first = ((offset, event_id),)
    return first if more is None else first + tuple((o, i) for o, i in ujson.loads(more))


class BadIndex(ValueError):
    """The database cannot be used (other format, inconsistent rows): rebuild it."""


class IndexDB:
    def __init__(self, db: sqlite3.Connection, writable: bool):
        self._db = db
        self.writable = writable
        self.pending: Dict[str, Heads] = {}
        self._recent: "OrderedDict[str, Heads]" = OrderedDict()   # the table's rows last read or flushed (writer)
        self._no_heads = False                # the table holds no head at all (a rebuild): no lookups
        self._saved: Dict[str, int] = {}      # origin -> offsets the database holds
        self._meta: Optional[Dict[str, object]] = None   # the meta rows this connection last wrote

    # -- opening -------------------------------------------------------------
    @classmethod
    def open(cls, path: Path, *, read_only: bool = False) -> "IndexDB":
        """Open (or, writable, create) the database; ``sqlite3.DatabaseError`` or
        ``BadIndex`` when it cannot be used."""
        if read_only:
            db = sqlite3.connect(Path(path).absolute().as_uri() + "?mode=ro", uri=True, isolation_level=None,
                                 check_same_thread=False)
        else:
            os.close(create_private(path, os.O_RDWR))   # 0600 (the WAL files take its mode)
            db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        try:
            if not read_only:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")   # a lost commit only means a longer replay
                db.executescript(SCHEMA)
            index = cls(db, not read_only)
            index._no_heads = db.execute("SELECT 1 FROM heads LIMIT 1").fetchone() is None
            stored = index.meta("format")
            if stored is None and not read_only and index.is_empty():
                index._set_meta({"format": FORMAT})
            elif stored != FORMAT:
                raise BadIndex(f"format {stored!r}, not {FORMAT!r}")
            problem = db.execute("PRAGMA quick_check(1)").fetchone()[0]   # the pages' structure: ~0.1 s at 1M events
            if problem != "ok":
                raise BadIndex(problem)
            return index
        except BaseException:
            db.close()
            raise

    @classmethod
    def in_memory(cls) -> "IndexDB":
        """An index that lives only in this process (a reader that cannot use the file's)."""
        db = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        db.executescript(SCHEMA)
        index = cls(db, True)
        index._set_meta({"format": FORMAT})
        index._no_heads = True
        return index

    def close(self) -> None:
        self._db.close()

    def is_empty(self) -> bool:
        return self._db.execute("SELECT 1 FROM offsets LIMIT 1").fetchone() is None

    def meta(self, key: str):
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def _set_meta(self, values: Dict[str, object]) -> None:
        self._db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", values.items())

    def load_offsets(self) -> Dict[str, array]:
        """origin -> its events' log offsets by seq - 1 (``BadIndex`` if the blobs do not add up)."""
        offsets: Dict[str, array] = {}
        chunk_bytes = 8 * limits.INDEX_OFFSETS_CHUNK
        for origin, chunk, data in self._db.execute("SELECT origin, chunk, data FROM offsets ORDER BY origin, chunk"):
            values = offsets.setdefault(origin, array("q"))
            if chunk * limits.INDEX_OFFSETS_CHUNK != len(values) or len(data) % 8 or len(data) > chunk_bytes:
                raise BadIndex(f"the offsets of {origin} are not contiguous at chunk {chunk}")
            values.frombytes(data)
        self._saved = {origin: len(values) for origin, values in offsets.items()}
        return offsets

    # -- heads ---------------------------------------------------------------
    def heads(self, path: str) -> Heads:
        value = self.pending.get(path)
        if value is not None:
            return value
        if self._no_heads:
            return ()
        value = self._recent.get(path)
        if value is not None:
            self._recent.move_to_end(path)
            return value
        row = self._db.execute("SELECT offset, id, more FROM heads WHERE path = ?", (path,)).fetchone()
        value = () if row is None else _heads(*row)
        self._keep_recent(((path, value),))
        return value

    def _keep_recent(self, items) -> None:
        """Remember these (path, heads) as the table holds them (a read-only index,
        beside the writer, never does: the table changes under it)."""
        if not self.writable:
            return
        recent = self._recent
        for path, heads in items:
            recent[path] = heads
            recent.move_to_end(path)
        while len(recent) > limits.HEADS_CACHE:
            recent.popitem(last=False)

    def heads_many(self, paths: Sequence[str]) -> Dict[str, Heads]:
        """``heads`` of each of ``paths``: one query per ``IN_CHUNK`` of those
        neither pending nor recent. The rows read join the recent ones (the
        writer's), so indexing the batch's new events (``add_head``) does not
        read them again."""
        found: Dict[str, Heads] = {}
        wanted = []
        for path in paths:
            value = self.pending.get(path)
            if value is None and not self._no_heads:
                value = self._recent.get(path)
            if value is None:
                wanted.append(path)
            else:
                found[path] = value
        if wanted and not self._no_heads:
            read = {path: () for path in wanted}
            for path, offset, event_id, more in rows_in(
                    self._db, "SELECT path, offset, id, more FROM heads WHERE path IN ({})", wanted):
                read[path] = _heads(offset, event_id, more)
            self._keep_recent(read.items())
            found.update(read)
        return {path: found.get(path, ()) for path in paths}

    def add_head(self, path: str, offset: int, event_id: str, superseded: Collection[int]) -> None:
        """``path`` gains the head (offset, event_id), which supersedes the heads at ``superseded``."""
        self.pending[path] = tuple(h for h in self.heads(path) if h[0] not in superseded) + ((offset, event_id),)

    def groups(self) -> Iterator[Tuple[str, Heads]]:
        """(path, heads) for every path, a page of rows per query (bounded memory)."""
        pending = dict(self.pending)
        after = ""
        while True:
            rows = self._db.execute("SELECT path, offset, id, more FROM heads WHERE path > ? ORDER BY path LIMIT ?",
                                    (after, PAGE)).fetchall()
            for path, offset, event_id, more in rows:
                if path not in pending:
                    yield path, _heads(offset, event_id, more)
            if len(rows) < PAGE:
                break
            after = rows[-1][0]
        yield from pending.items()

    def differing(self, recorded: Iterable[Tuple[str, str]]) -> List[str]:
        """The paths whose heads are not exactly the one event ``recorded`` names
        (path, event id pairs), and those ``recorded`` lacks: one pass over the
        heads in path order (a page per query) beside ``recorded`` sorted (in
        no time when it comes in path order, as a primary-key scan gives it);
        no table is built (filling one cost 3x the whole comparison)."""
        pending = self.pending
        mine: Dict[str, str] = {}   # the recorded id of each pending path (the table is shadowed there)
        found: List[str] = []
        rows = iter(sorted(recorded))
        row = next(rows, None)
        after = ""
        while True:
            page = self._db.execute("SELECT path, id, more FROM heads WHERE path > ? ORDER BY path LIMIT ?",
                                    (after, PAGE)).fetchall()
            for path, event_id, more in page:
                while row is not None and row[0] < path:
                    if row[0] in pending:
                        mine[row[0]] = row[1]
                    row = next(rows, None)
                same = row is not None and row[0] == path
                if path in pending:
                    if same:
                        mine[path] = row[1]
                elif more is not None or not same or row[1] != event_id:
                    found.append(path)
            if len(page) < PAGE:
                break
            after = page[-1][0]
        for path, event_id in itertools.chain([row] if row is not None else [], rows):
            if path in pending:
                mine[path] = event_id
        found += [path for path, heads in pending.items() if not (len(heads) == 1 and mine.get(path) == heads[0][1])]
        return found

    # -- writing -------------------------------------------------------------
    def flush(self, offsets: Dict[str, array], meta: Optional[Dict[str, object]]) -> None:
        """Write the pending heads, the offsets appended since the last flush and
        ``meta`` (None: leave it) in one transaction; on failure roll back and
        keep them pending (raises the ``sqlite3.Error``)."""
        if not self.writable:
            return
        chunk = limits.INDEX_OFFSETS_CHUNK
        blobs = []
        for origin, values in offsets.items():
            saved = self._saved.get(origin, 0)
            for number in range(saved // chunk, (len(values) + chunk - 1) // chunk):
                blobs.append((origin, number, values[number * chunk:(number + 1) * chunk].tobytes()))
        if not blobs and not self.pending and meta in (None, self._meta):
            return
        db = self._db
        try:
            db.execute("BEGIN")
            db.executemany("INSERT OR REPLACE INTO heads VALUES (?, ?, ?, ?)",
                           ((path, heads[0][0], heads[0][1], ujson.dumps(heads[1:]) if len(heads) > 1 else None)
                            for path, heads in self.pending.items()))
            db.executemany("INSERT OR REPLACE INTO offsets VALUES (?, ?, ?)", blobs)
            if meta is not None:
                self._set_meta(meta)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        self._no_heads = self._no_heads and not self.pending
        self._keep_recent(list(self.pending.items())[-limits.HEADS_CACHE:])
        self.pending = {}
        self._saved = {origin: len(values) for origin, values in offsets.items()}
        self._meta = meta if meta is not None else self._meta
