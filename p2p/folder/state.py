"""What this peer believes is on disk: per path, the stat and content hash last
seen, and the id of the event whose content it is.

The scan compares a fresh ``lstat`` with this record to decide whether a path
changed (so a file written by the sync itself produces no new event: echo
suppression), and the writer checks it before replacing a file, so a local
edit that was not scanned yet is never overwritten silently.

Crash safety. A record that lags behind the disk is dangerous: after a
``kill -9``, a file the sync had replaced would look edited by the user, and
the old content would come back as a new local version. So every change is
journalled as it happens, not saved now and then:

* ``.p2p/local.json`` is a snapshot (``{"journal": G, "entries": {...}}``),
  and ``.p2p/local.journal.G`` (then G+1, ...) holds one JSON line per change
  since: ``{"p": path, "e": entry}`` or ``{"p": path}`` (gone). Each line is
  written with one ``write`` before the call returns, so it survives the
  process; a torn last line is ignored.
* Replacing a file is a two-phase record: ``intend(path, new)`` journals
  ``{"p", "e": new, "or": old}`` before the rename ("the path holds new, or
  still old"), ``set(path, new)`` after it. After a crash between the two,
  ``settle(root)`` looks at the disk to pick the one it holds.
* ``compact()`` (rarely: the node calls it every ``limits.STATE_JOURNAL_MAX`` lines, and at stop)
  switches to a new journal generation under the lock, copies the entries,
  and writes the snapshot from that copy; the old journal is removed only
  after the new snapshot is in place, so a crash at any point replays to the
  same state.

Thread-safe: the hub and the thread pools (writes, scans) call it; one lock
guards the entries and the journal, and nothing iterates the live dict
outside it.
"""

from __future__ import annotations

import logging
import os
import posixpath
import stat as statmod
import threading
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Dict, List, Optional

import ujson

from p2p.security.private import create_private

log = logging.getLogger("p2p.state")

PERMISSIONS = 0o777   # the mode bits that are synced: never setuid, setgid or sticky


@dataclass(frozen=True)
class Entry:
    kind: str          # "file" or "dir"
    size: int
    mtime: int         # ns
    ino: int
    mode: int          # permission bits (0o777 at most)
    hash: str          # sha256 hex for files, "" for dirs
    event_id: str      # the event whose content this is ("" if none yet)

    def same_stat(self, st: os.stat_result) -> bool:
        """True when ``st`` shows the path unchanged since this entry (a chmod counts as a change)."""
        if self.kind == "dir":
            return statmod.S_ISDIR(st.st_mode)
        return (statmod.S_ISREG(st.st_mode) and st.st_size == self.size
                and st.st_mtime_ns == self.mtime and st.st_ino == self.ino
                and statmod.S_IMODE(st.st_mode) & PERMISSIONS == self.mode)

    @classmethod
    def from_stat(cls, st: os.stat_result, hash: str, event_id: str) -> "Entry":
        kind = "dir" if statmod.S_ISDIR(st.st_mode) else "file"
        return cls(kind, st.st_size if kind == "file" else 0, st.st_mtime_ns,
                   st.st_ino, statmod.S_IMODE(st.st_mode) & PERMISSIONS, hash, event_id)


def _entry(data) -> Optional[Entry]:
    return None if data is None else Entry(**data)


class LocalState:
    """path -> Entry, journalled to ``.p2p/local.journal.*`` and snapshotted to ``file``."""

    def __init__(self, file: Path):
        self.file = Path(file)
        self._lock = threading.Lock()
        self._entries: Dict[str, Entry] = {}
        self._by_hash: Dict[str, set] = {}   # file content hash -> paths (to detect moves)
        self._children: Dict[str, set] = {}  # directory -> the recorded paths directly inside it
        self._unsettled: Dict[str, Optional[Entry]] = {}   # path -> the old entry of an unfinished replace
        self._generation = 0
        self._journal_lines = 0
        self._fd: Optional[int] = None
        self._totals = {"file": 0, "dir": 0, "bytes": 0}   # kept by _index/_unindex (p2p status)
        self._load()
        for path, entry in self._entries.items():
            self._index(path, entry)
        self._open_journal(self._generation)

    # -- reading -------------------------------------------------------------
    def get(self, path: str) -> Optional[Entry]:
        return self._entries.get(path)   # one dict lookup: atomic

    def with_hash(self, digest: str) -> list:
        """The files recorded with this content."""
        with self._lock:
            return sorted(self._by_hash.get(digest, ()))

    def paths(self) -> List[str]:
        with self._lock:
            return list(self._entries)

    def under(self, prefix: str) -> List[str]:
        """Paths strictly inside directory ``prefix`` ("" is the whole folder),
        parents before children: the cost grows with that subtree, not the folder."""
        out: List[str] = []
        with self._lock:
            stack = [prefix]
            while stack:
                children = self._children.get(stack.pop())
                if children:
                    out.extend(children)
                    stack.extend(children)
        return out

    def __len__(self) -> int:
        return len(self._entries)

    def totals(self) -> Dict[str, int]:
        """What the disk holds, as recorded: files, directories, bytes of files
        (running counts: no walk of the entries)."""
        with self._lock:
            return {"files": self._totals["file"], "dirs": self._totals["dir"], "bytes": self._totals["bytes"]}

    # -- changing ------------------------------------------------------------
    def set(self, path: str, entry: Entry) -> None:
        with self._lock:
            self._journal({"p": path, "e": asdict(entry)})
            self._put(path, entry)
            self._unsettled.pop(path, None)

    def pop(self, path: str) -> Optional[Entry]:
        with self._lock:
            entry = self._entries.get(path)
            if entry is None:
                return None
            self._journal({"p": path})
            self._put(path, None)
            self._unsettled.pop(path, None)
            return entry

    def intend(self, path: str, entry: Entry) -> None:
        """Journal, before a rename puts ``entry``'s file at ``path``, that the
        path holds either it or what it held before; ``set`` follows the rename."""
        with self._lock:
            old = self._entries.get(path)
            self._journal({"p": path, "e": asdict(entry), "or": asdict(old) if old else None})

    def sync(self) -> None:
        """Make the journal durable (before a batch of renames it describes)."""
        with self._lock:
            fd = os.dup(self._fd)   # a compaction may switch journals meanwhile
        try:
            os.fdatasync(fd)
        finally:
            os.close(fd)

    def settle(self, root: Path) -> int:
        """After a crash: for each replace that was journalled but not confirmed,
        keep the entry whose file is on disk. Returns how many were settled."""
        with self._lock:
            unsettled, self._unsettled = self._unsettled, {}
        for path, old in unsettled.items():
            new = self._entries.get(path)
            try:
                st = os.lstat(root / path)
            except OSError:
                st = None
            if st is not None and new is not None and new.same_stat(st):
                continue
            if old is not None and st is not None and old.same_stat(st):
                self.set(path, old)    # the rename had not happened
            elif old is None and st is None:
                self.pop(path)
        return len(unsettled)

    def forget_unknown(self, known: Callable[[str], bool]) -> int:
        """Entries naming an event the history does not hold (it was lost with
        the last unsynced moment of the log) are rescanned rather than trusted:
        their stat is cleared, so the next scan hashes the file again."""
        with self._lock:
            doubtful = [(p, e) for p, e in self._entries.items() if e.event_id and not known(e.event_id)]
        for path, entry in doubtful:
            self.set(path, replace(entry, event_id="", ino=-1))
        return len(doubtful)

    # -- persistence ---------------------------------------------------------
    @property
    def journal_lines(self) -> int:
        return self._journal_lines

    def compact(self) -> None:
        """Write a snapshot and start a new journal; safe from any thread."""
        with self._lock:
            old_generation = self._generation
            self._open_journal(old_generation + 1)
            entries = dict(self._entries)
            generation = self._generation
        tmp = self.file.with_name(self.file.name + ".tmp")
        body = {"journal": generation, "entries": {p: asdict(e) for p, e in entries.items()}}
        try:
            with os.fdopen(create_private(tmp, os.O_WRONLY | os.O_TRUNC), "w", encoding="utf-8") as out:
                out.write(ujson.dumps(body))
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.file)
        except OSError:
            _remove_quietly(tmp)   # the journals (old and new) still hold every change
            raise
        for gen in range(old_generation, generation):
            _remove_quietly(self._journal_path(gen))

    def close(self) -> None:
        self.compact()
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    # -- internals -------------------------------------------------------------
    def _journal_path(self, generation: int) -> Path:
        return self.file.with_name(f"local.journal.{generation}")

    def _open_journal(self, generation: int) -> None:
        fd = os.open(self._journal_path(generation), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        if self._fd is not None:
            os.close(self._fd)
        self._fd, self._generation, self._journal_lines = fd, generation, 0

    def _journal(self, record: dict) -> None:
        line = (ujson.dumps(record, ensure_ascii=False) + "\n").encode("utf-8", "surrogateescape")
        view = memoryview(line)
        while view:
            view = view[os.write(self._fd, view):]
        self._journal_lines += 1

    def _put(self, path: str, entry: Optional[Entry]) -> None:
        self._unindex(path, self._entries.get(path))
        if entry is None:
            self._entries.pop(path, None)
        else:
            self._entries[path] = entry
            self._index(path, entry)

    def _load(self) -> None:
        generation = 0
        try:
            data = ujson.loads(self.file.read_text(encoding="utf-8"))
            if isinstance(data, dict) and "entries" in data:
                generation = int(data["journal"])
                self._entries = {p: Entry(**e) for p, e in data["entries"].items()}
            else:   # the format before journals: a plain path -> entry map
                self._entries = {p: Entry(**e) for p, e in data.items()}
        except FileNotFoundError:
            pass
        except (ValueError, TypeError, KeyError, OSError) as exc:
            log.warning("%s unreadable (%s): the start-up scan rehashes the folder", self.file.name, exc)
            self._entries = {}
        self._generation = generation
        later = sorted(int(p.name.rsplit(".", 1)[1]) for p in self.file.parent.glob("local.journal.*")
                       if p.name.rsplit(".", 1)[1].isdigit())
        for gen in (g for g in later if g >= generation):
            self._replay(self._journal_path(gen))
            self._generation = gen

    def _replay(self, path: Path) -> None:
        try:
            data = path.read_bytes()
        except OSError:
            return
        for line in data.split(b"\n"):
            if not line:
                continue
            try:
                record = ujson.loads(line)
                key = record["p"]
                entry = _entry(record.get("e"))
                if "or" in record:
                    self._unsettled[key] = _entry(record["or"])
                else:
                    self._unsettled.pop(key, None)
            except (ValueError, TypeError, KeyError):
                continue   # a torn last line (a crash mid-write): the change it began is rescanned
            if entry is None:
                self._entries.pop(key, None)
            else:
                self._entries[key] = entry

    def _index(self, path: str, entry: Entry) -> None:
        self._count(entry, 1)
        if entry.kind == "file":
            self._by_hash.setdefault(entry.hash, set()).add(path)
        self._children.setdefault(posixpath.dirname(path), set()).add(path)

    def _count(self, entry: Entry, sign: int) -> None:
        self._totals[entry.kind] = self._totals.get(entry.kind, 0) + sign
        if entry.kind == "file":
            self._totals["bytes"] += sign * entry.size

    def _unindex(self, path: str, entry: Optional[Entry]) -> None:
        if entry is None:
            return
        self._count(entry, -1)
        if entry.kind == "file":
            paths = self._by_hash.get(entry.hash)
            if paths is not None:
                paths.discard(path)
                if not paths:
                    del self._by_hash[entry.hash]
        parent = posixpath.dirname(path)
        siblings = self._children.get(parent)
        if siblings is not None:
            siblings.discard(path)
            if not siblings:
                del self._children[parent]


def _remove_quietly(path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
