"""What this peer believes is on disk: per path, the stat and content hash last
seen, and the id of the event whose content it is.

The scan compares a fresh ``lstat`` with this record to decide whether a path
changed (so a file written by the sync itself produces no new event: echo
suppression), and the writer checks it before replacing a file, so a local
edit that was not scanned yet is never overwritten silently.

Storage: an SQLite database, ``.p2p/local.db`` (standard library ``sqlite3``,
WAL mode), with one table of entries (path -> entry) and one of intents.
Nothing but running totals is kept in memory, so the peer's memory does not
grow with the folder, and a start reads no snapshot and replays no journal.

Crash safety. A record that lags behind the disk is dangerous: after a
``kill -9``, a file the sync had replaced would look edited by the user, and
the old content would come back as a new local version. So every change is
its own committed transaction before the call returns (in the WAL, written:
it survives the process; ``sync()`` makes it survive a power loss), and a
transaction a crash interrupted is rolled back by SQLite at the next open.

* Replacing a file is a two-phase record: ``intend(path, new)`` records the
  intent ``(path, new, old)`` before the rename ("the path holds new, or
  still old"), ``set(path, new)`` after it removes the intent in the same
  transaction. After a crash between the two, the entry reads ``new`` and
  ``settle(root)`` looks at the disk to pick the one it holds.
* A database that cannot be read (deleted, truncated, corrupt) is replaced by
  an empty one (``fresh`` says why; the node logs it once): it holds nothing
  that events.jsonl and the disk cannot give again (the start-up scan
  rehashes the folder and records each file under the event whose content it
  has, making no new event).

Two connections. Every change goes through the writer (``_lock``: one
transaction at a time, from any thread); every read outside a change goes
through a second, read-only connection (``_read_lock``). In WAL mode a
reader sees the last committed transaction and never waits for a writer,
so the hub's lookups (the reconciler's, the fetcher's) do not stall every
greenlet while a pool thread commits a batch or fsyncs the WAL in
``sync()``.
* The snapshot and journals of earlier versions (``local.json``,
  ``local.journal.N``) are imported once, intents included, then removed.

Thread-safe: the hub and the thread pools (writes, scans) call it; one lock
guards the one connection (SQLite itself releases the GIL while it works).
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
import sqlite3
import stat as statmod
import threading
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

import ujson

from p2p import limits
from p2p.sqlite_in import rows_in

log = logging.getLogger("p2p.state")

PERMISSIONS = 0o777   # the mode bits that are synced: never setuid, setgid or sticky
SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (path BLOB PRIMARY KEY, kind TEXT NOT NULL, size INTEGER NOT NULL,
    mtime INTEGER NOT NULL, ino INTEGER NOT NULL, mode INTEGER NOT NULL, hash TEXT NOT NULL,
    event_id TEXT NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS entries_by_hash ON entries (hash) WHERE kind = 'file';
CREATE INDEX IF NOT EXISTS entries_large_{large} ON entries (path) WHERE kind = 'file' AND size > {large};
CREATE TABLE IF NOT EXISTS intents (path BLOB PRIMARY KEY, new TEXT NOT NULL, old TEXT) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER) WITHOUT ROWID;
""".replace("{large}", str(limits.ARCHIVE_LATER_MIN))   # (a literal: SQLite uses a partial index only then)
COLUMNS = "kind, size, mtime, ino, mode, hash, event_id"
_TYPE_AND_PERMISSIONS = statmod.S_IFMT(0o177777) | PERMISSIONS   # the file type and the synced bits of st_mode


def file_signature(st: os.stat_result) -> tuple:
    """What of a stat must not change for a file to count as unchanged: size,
    mtime, inode, and the file type with the synced mode bits (a regular
    file's type is ``S_IFREG``: anything else, or a chmod, differs)."""
    return st.st_size, st.st_mtime_ns, st.st_ino, st.st_mode & _TYPE_AND_PERMISSIONS


@dataclass(frozen=True)
class Entry:
    kind: str          # "file" or "dir"
    size: int
    mtime: int         # ns
    ino: int
    mode: int          # permission bits (0o777 at most)
    hash: str          # sha256 hex for files, "" for dirs
    event_id: str      # the event whose content this is ("" if none yet)

    def row(self) -> tuple:
        """The fields in the table's column order (``dataclasses.astuple`` deep-copies: 10x slower)."""
        return self.kind, self.size, self.mtime, self.ino, self.mode, self.hash, self.event_id

    def same_stat(self, st: os.stat_result) -> bool:
        """True when ``st`` shows the path unchanged since this entry (a chmod counts as a change)."""
        if self.kind == "dir":
            return statmod.S_ISDIR(st.st_mode)
        return file_signature(st) == (self.size, self.mtime, self.ino, statmod.S_IFREG | self.mode)

    @classmethod
    def from_stat(cls, st: os.stat_result, hash: str, event_id: str) -> "Entry":
        """The entry of a path ``st`` describes (one per recorded change: not
        through the frozen dataclass's ``__init__``, an ``object.__setattr__``
        call per field, 15k instructions; 8k so)."""
        kind = "dir" if statmod.S_ISDIR(st.st_mode) else "file"
        entry = object.__new__(cls)
        entry.__dict__.update(kind=kind, size=st.st_size if kind == "file" else 0, mtime=st.st_mtime_ns,
                              ino=st.st_ino, mode=statmod.S_IMODE(st.st_mode) & PERMISSIONS, hash=hash,
                              event_id=event_id)
        return entry


class StateWriteFailed(OSError):
    """The database refused a change (full disk, I/O error): nothing of it was recorded."""


def _key(path: str) -> bytes:
    return path.encode("utf-8", "surrogateescape")


def _path(key: bytes) -> str:
    return key.decode("utf-8", "surrogateescape")


def _to_json(entry: Optional[Entry]) -> Optional[str]:
    return None if entry is None else ujson.dumps(asdict(entry))


def _from_json(text: Optional[str]) -> Optional[Entry]:
    return None if text is None else Entry(**ujson.loads(text))


class LocalState:
    """path -> Entry, in the SQLite database ``file`` (``.p2p/local.db``)."""

    def __init__(self, file: Path):
        self.file = Path(file)
        self._lock = threading.Lock()        # the writer: one change at a time
        self._read_lock = threading.Lock()   # the reader connection
        self._totals = {"file": 0, "dir": 0, "bytes": 0}   # running counts (p2p status)
        self._intended: set = set()       # paths with an intent recorded (skips a DELETE per set)
        self._unsynced = False            # commits since the last sync()
        self.fresh: Optional[str] = None  # why the database was created empty at this open, if it was
        self._db = self._open()
        for kind, count, size in self._db.execute("SELECT kind, count(*), total(size) FROM entries GROUP BY kind"):
            self._totals[kind] = count
            if kind == "file":
                self._totals["bytes"] = int(size)
        self._intended = {_path(k) for (k,) in self._db.execute("SELECT path FROM intents")}
        self._reading = _Held(self._read_lock, self._connect(read_only=True))   # with self._reading as db

    # -- reading -------------------------------------------------------------
    def get(self, path: str) -> Optional[Entry]:
        with self._reading as db:
            row = db.execute(f"SELECT {COLUMNS} FROM entries WHERE path = ?", (_key(path),)).fetchone()
        return None if row is None else Entry(*row)

    def get_many(self, paths: List[str]) -> Dict[str, Entry]:
        """The entries of those of ``paths`` that have one, in one query per 500 paths."""
        with self._reading as db:
            found = _entries_of(db, [_key(p) for p in paths])
        return {_path(key): entry for key, entry in found.items()}

    def with_hashes(self, digests: Iterable[str]) -> Dict[str, List[str]]:
        """The files recorded with each of these contents (digest -> sorted
        paths; a digest no file has is left out): one query per 500 digests."""
        digests = sorted(set(digests))
        found: Dict[str, List[str]] = {}
        with self._reading as db:
            for digest, key in rows_in(db, "SELECT hash, path FROM entries WHERE kind = 'file' AND hash IN ({})",
                                       digests):
                found.setdefault(digest, []).append(_path(key))
        for paths in found.values():
            paths.sort()
        return found

    def paths(self, limit: int = -1) -> List[str]:
        """Every recorded path (at most ``limit`` of them, when given)."""
        with self._reading as db:
            return [_path(k) for (k,) in db.execute("SELECT path FROM entries LIMIT ?", (limit,))]

    def under(self, prefix: str) -> List[str]:
        """Paths strictly inside directory ``prefix`` ("" is the whole folder),
        parents before children (in byte order a parent sorts before what it
        holds): one range of the primary key, so the cost grows with that
        subtree, not the folder."""
        with self._reading as db:
            if not prefix:
                rows = db.execute("SELECT path FROM entries ORDER BY path").fetchall()
            else:
                low = _key(prefix) + b"/"
                rows = db.execute("SELECT path FROM entries WHERE path > ? AND path < ? ORDER BY path",
                                        (low, low[:-1] + b"0")).fetchall()   # "0" follows "/"
        return [_path(k) for (k,) in rows]

    def children(self, directory: str) -> Dict[str, tuple]:
        """name -> (kind, size, mtime, inode, file type and mode) of the paths
        recorded directly inside ``directory`` ("" is the folder's top): for a
        file, its last four are ``file_signature`` of an unchanged stat. One
        range of the primary key (the subtree), filtered in SQLite to the names
        with no "/" after the prefix; tuples, not entries (the start-up scan
        reads every row)."""
        low = _key(directory) + b"/" if directory else b""
        columns = f"substr(path, ?), kind, size, mtime, ino, mode | {statmod.S_IFREG}"   # (the name; a BLOB's bytes)
        start = len(low) + 1
        with self._reading as db:
            if directory:
                rows = db.execute(f"SELECT {columns} FROM entries WHERE path > ? AND path < ? "
                                        "AND instr(substr(path, ?), X'2F') = 0",
                                        (start, low, low[:-1] + b"0", start)).fetchall()   # "0" follows "/"
            else:
                rows = db.execute(f"SELECT {columns} FROM entries WHERE instr(path, X'2F') = 0",
                                        (start,)).fetchall()
        return {_path(row[0]): row[1:] for row in rows}

    def recorded(self) -> List[Tuple[str, str]]:
        """(path, event id) of every entry, in path order (the primary key's)."""
        with self._reading as db:
            rows = db.execute("SELECT path, event_id FROM entries ORDER BY path").fetchall()
        return [(_path(k), event_id) for k, event_id in rows]

    def large_files(self) -> List[str]:
        """The files recorded larger than ``limits.ARCHIVE_LATER_MIN``: one
        partial index holds only them, so this costs nothing per small file
        (it was a read of every entry at each start)."""
        with self._reading as db:
            rows = db.execute(f"SELECT path FROM entries WHERE kind = 'file' AND size > {limits.ARCHIVE_LATER_MIN}"
                              ).fetchall()
        return [_path(k) for (k,) in rows]

    def highest_seq(self, origin: str) -> int:
        """The highest seq of ``origin`` that an entry names (0 if none): one query, no Python loop."""
        prefix = origin + ":"
        with self._reading as db:
            (seq,) = db.execute(
                "SELECT max(CAST(substr(event_id, ?) AS INTEGER)) FROM entries WHERE substr(event_id, 1, ?) = ?",
                (len(prefix) + 1, len(prefix), prefix)).fetchone()
        return seq or 0

    def __len__(self) -> int:
        totals = self._totals   # (replaced whole by a change: no lock)
        return totals["file"] + totals["dir"]

    def totals(self) -> Dict[str, int]:
        """What the disk holds, as recorded: files, directories, bytes of files
        (running counts: no walk of the entries)."""
        totals = self._totals   # (replaced whole by a change: no lock)
        return {"files": totals["file"], "dirs": totals["dir"], "bytes": totals["bytes"]}

    # -- changing ------------------------------------------------------------
    def set(self, path: str, entry: Entry) -> None:
        self.set_many([(path, entry)])

    def set_many(self, changes: Iterable[Tuple[str, Optional[Entry]]]) -> Dict[str, Entry]:
        """Record many paths in one transaction (an entry, or None to forget the
        path): all of them or, on an error, none. One commit for a batch of
        recorded or landed paths instead of one per path. Returns the entries
        the paths had before."""
        changes = list(changes)
        if not changes:
            return
        keys = [_key(path) for path, _ in changes]
        with self._lock:
            old = _entries_of(self._db, keys)
            intended = set(self._intended)
            statements: List[Tuple[str, tuple]] = []
            for (path, entry), key in zip(changes, keys):
                if entry is None:
                    statements.append(("DELETE FROM entries WHERE path = ?", (key,)))
                else:
                    statements.append(("INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                                       (key,) + entry.row()))
                statements += self._settled(path, key)
            try:
                self._write(statements)
            except BaseException:
                self._intended = intended   # nothing was written: the intents stand
                raise
            before = {path: old[key] for (path, _), key in zip(changes, keys) if key in old}
            totals = dict(self._totals)
            for (path, entry), key in zip(changes, keys):
                _count(totals, old.pop(key, None), -1)
                _count(totals, entry, 1)
                if entry is not None:
                    old[key] = entry         # a path named twice counts once
            self._totals = totals
        return before

    def pop(self, path: str) -> Optional[Entry]:
        """Forget ``path``; returns the entry it had (None if none)."""
        return self.set_many([(path, None)]).get(path)

    def intend(self, path: str, entry: Entry) -> None:
        """Record, before a rename puts ``entry``'s file at ``path``, that the
        path holds either it or what it held before; ``set`` follows the rename."""
        self.intend_many([(path, entry)])

    def intend_many(self, changes: Iterable[Tuple[str, Entry]]) -> None:
        """``intend`` for a batch of paths (before their renames), in one
        transaction: all of the intents recorded or, on an error, none."""
        changes = list(changes)
        if not changes:
            return
        keys = [_key(path) for path, _ in changes]
        with self._lock:
            old = _entries_of(self._db, keys)
            self._write([("INSERT OR REPLACE INTO intents VALUES (?, ?, ?)",
                          (key, _to_json(entry), _to_json(old.get(key))))
                         for (_, entry), key in zip(changes, keys)])
            self._intended.update(path for path, _ in changes)

    def sync(self) -> None:
        """Make every change so far durable (before a batch of renames it
        describes): one commit with ``synchronous=FULL`` fsyncs the WAL, and
        with it every transaction before it. Nothing to do if nothing changed."""
        with self._lock:
            if not self._unsynced:
                return
            try:
                self._db.execute("PRAGMA synchronous = FULL")
                self._write([("INSERT OR REPLACE INTO meta VALUES ('syncs', coalesce("
                              "(SELECT value FROM meta WHERE key = 'syncs'), 0) + 1)", ())])
            finally:
                self._db.execute("PRAGMA synchronous = NORMAL")
            self._unsynced = False

    def settle(self, root: Path) -> int:
        """After a crash: for each replace that was intended but not confirmed,
        keep the entry whose file is on disk. Returns how many were settled."""
        with self._reading as db:
            intents = [(_path(k), _from_json(new), _from_json(old))
                       for k, new, old in db.execute("SELECT path, new, old FROM intents")]
        for path, new, old in intents:
            try:
                st = os.lstat(root / path)
            except OSError:
                st = None
            if old is not None and st is not None and old.same_stat(st) and not new.same_stat(st):
                self.set(path, old)    # the rename had not happened
            elif old is None and st is None:
                self.pop(path)
            else:
                self.set(path, new)    # renamed (or neither: what a rescan then looks at)
        return len(intents)

    def forget_unknown(self, vv: Dict[str, int]) -> int:
        """Entries naming an event the history does not hold (it was lost with
        the last unsynced moment of the log) are rescanned rather than trusted:
        their stat is cleared, so the next scan hashes the file again. ``vv``:
        the history's count of events per origin (an id ``ORIGIN:SEQ`` is held
        when SEQ <= vv[ORIGIN]). One query finds them (no Python loop over the
        entries), one transaction clears them."""
        known = " UNION ALL ".join(["SELECT ? AS origin, ? AS count"] * len(vv)) or "SELECT NULL, NULL WHERE 0"
        with self._reading as db:
            rows = db.execute(
                f"WITH known(origin, count) AS ({known}) SELECT path, {COLUMNS} FROM entries "
                "LEFT JOIN known ON known.origin = substr(event_id, 1, instr(event_id, ':') - 1) "
                "WHERE event_id != '' AND (known.origin IS NULL "
                "OR CAST(substr(event_id, instr(event_id, ':') + 1) AS INTEGER) > known.count)",
                [value for origin, count in vv.items() for value in (origin, count)]).fetchall()
        self.set_many((_path(row[0]), replace(Entry(*row[1:]), event_id="", ino=-1)) for row in rows)
        return len(rows)

    def close(self) -> None:
        """Checkpoint the WAL into the database (a clean stop leaves one file) and close."""
        with self._lock, self._read_lock:
            if self._db is None:
                return
            self._reading.db.close()   # (no reader open: the checkpoint can empty the WAL)
            try:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:   # the WAL keeps every change: replayed by SQLite at the next open
                log.warning("%s: WAL not checkpointed at stop (%s)", self.file.name, exc)
            self._db.close()
            self._db = None

    # -- internals -------------------------------------------------------------
    def _open(self) -> sqlite3.Connection:
        legacy = self.file.with_name("local.json")
        if not self.file.exists():
            self.fresh = f"{self.file.name} missing"
        try:
            db = self._connect()
        except sqlite3.DatabaseError as exc:
            self.fresh = f"{self.file.name} unreadable ({exc})"
            for suffix in ("", "-wal", "-shm"):
                _remove_quietly(f"{self.file}{suffix}")
            db = self._connect()
        if self.fresh and legacy != self.file and (legacy.exists() or any(self._legacy_journals())):
            self._import_legacy(db, legacy)
            self.fresh = None
        return db

    def _connect(self, read_only: bool = False) -> sqlite3.Connection:
        fd = os.open(self.file, os.O_RDWR | os.O_CREAT, 0o600)   # private from its creation
        os.close(fd)
        db = sqlite3.connect(str(self.file), isolation_level=None, check_same_thread=False)
        if read_only:   # (the writer has made the schema and chosen WAL, which the file keeps)
            db.execute("PRAGMA query_only = ON")
            return db
        try:
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
            db.executescript(SCHEMA)
            (verdict,) = db.execute("PRAGMA quick_check").fetchone()
            if verdict != "ok":
                raise sqlite3.DatabaseError(verdict)
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    def _settled(self, path: str, key: bytes) -> List[Tuple[str, tuple]]:
        """The statement that drops ``path``'s intent, if it has one (in the same transaction)."""
        if path not in self._intended:
            return []
        self._intended.discard(path)
        return [("DELETE FROM intents WHERE path = ?", (key,))]

    def _write(self, statements: Iterable[Tuple[str, tuple]]) -> None:
        """One transaction: all of ``statements`` or, on an error, none of them
        (in order; a run of the same statement is one ``executemany``)."""
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                for sql, run in itertools.groupby(statements, key=lambda statement: statement[0]):
                    db.executemany(sql, [args for _, args in run])
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:   # a failed COMMIT (a full disk) may have rolled back already
                    db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            code = errno.ENOSPC if isinstance(exc, sqlite3.OperationalError) and "full" in str(exc) else errno.EIO
            raise StateWriteFailed(code, f"{self.file.name}: {exc}") from exc
        self._unsynced = True


    # -- the format of earlier versions: local.json + local.journal.N ----------
    def _legacy_journals(self) -> List[Path]:
        gens = sorted(int(p.name.rsplit(".", 1)[1]) for p in self.file.parent.glob("local.journal.*")
                      if p.name.rsplit(".", 1)[1].isdigit())
        return [self.file.with_name(f"local.journal.{g}") for g in gens]

    def _import_legacy(self, db: sqlite3.Connection, snapshot: Path) -> None:
        """Read the old snapshot and the journals after it into ``db`` (one
        transaction), then remove them; unreadable parts are rescanned."""
        entries: Dict[str, Optional[Entry]] = {}
        intents: Dict[str, Tuple[Entry, Optional[Entry]]] = {}
        generation = 0
        try:
            data = ujson.loads(snapshot.read_text(encoding="utf-8"))
            if isinstance(data, dict) and "entries" in data:
                generation = int(data["journal"])
                data = data["entries"]
            entries = {p: Entry(**e) for p, e in data.items()}   # (or the plain map before journals)
        except FileNotFoundError:
            pass
        except (ValueError, TypeError, KeyError, OSError) as exc:
            log.warning("%s unreadable (%s): the start-up scan rehashes the folder", snapshot.name, exc)
        journals = [j for j in self._legacy_journals() if int(j.name.rsplit(".", 1)[1]) >= generation]
        for journal in journals:
            for line in journal.read_bytes().split(b"\n"):
                try:
                    record = ujson.loads(line)
                    path, entry = record["p"], _from_dict(record.get("e"))
                    if "or" in record:
                        intents[path] = (entry, _from_dict(record["or"]))
                    else:
                        intents.pop(path, None)
                except (ValueError, TypeError, KeyError):
                    continue   # a torn last line (a crash mid-write): the change it began is rescanned
                entries[path] = entry
        db.execute("BEGIN IMMEDIATE")
        db.executemany("INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       ((_key(p), *e.row()) for p, e in entries.items() if e is not None))
        db.executemany("INSERT OR REPLACE INTO intents VALUES (?, ?, ?)",
                       ((_key(p), _to_json(new), _to_json(old)) for p, (new, old) in intents.items()))
        db.execute("COMMIT")
        log.info("local state imported from %s into %s (%d entries)", snapshot.name, self.file.name,
                 sum(1 for e in entries.values() if e is not None))
        for old in [snapshot] + self._legacy_journals():
            _remove_quietly(old)


def _from_dict(data) -> Optional[Entry]:
    return None if data is None else Entry(**data)


class _Held:
    """A connection, with its lock held for the ``with`` block."""

    def __init__(self, lock: threading.Lock, db: sqlite3.Connection):
        self._lock, self.db = lock, db

    def __enter__(self) -> sqlite3.Connection:
        self._lock.acquire()
        return self.db

    def __exit__(self, *exc) -> None:
        self._lock.release()


def _entries_of(db: sqlite3.Connection, keys: List[bytes]) -> Dict[bytes, Entry]:
    """key -> Entry of those of ``keys`` recorded in ``db`` (held by its lock).
    First one range of the primary key, from the least key to the greatest,
    of at most ``limits.STATE_RANGE_ROWS`` rows per key: for keys close
    together (a scan's sorted chunk, a directory's children) that is all of
    them, 3x faster than looking each up. Keys past the rows it read (keys
    spread over the folder) are looked up, a query per 500 keys."""
    if not keys:
        return {}
    wanted = set(keys)
    limit = limits.STATE_RANGE_ROWS * len(wanted)
    rows = db.execute(f"SELECT path, {COLUMNS} FROM entries WHERE path >= ? AND path <= ? "
                            "ORDER BY path LIMIT ?", (min(wanted), max(wanted), limit)).fetchall()
    found = {row[0]: Entry(*row[1:]) for row in rows if row[0] in wanted}
    if len(rows) == limit:   # the range holds more rows than that: the rest by key
        rest = [key for key in wanted if key > rows[-1][0]]
        found.update((row[0], Entry(*row[1:])) for row in
                     rows_in(db, f"SELECT path, {COLUMNS} FROM entries WHERE path IN ({{}})", rest))
    return found


def _count(totals: Dict[str, int], entry: Optional[Entry], sign: int) -> None:
    if entry is None:
        return
    totals[entry.kind] = totals.get(entry.kind, 0) + sign
    if entry.kind == "file":
        totals["bytes"] += sign * entry.size


def _remove_quietly(path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
