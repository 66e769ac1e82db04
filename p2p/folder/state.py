"""What this peer believes is on disk: per path, the stat and content hash last
seen, and the id of the event whose content it is.

The scan compares a fresh ``lstat`` with this record to decide whether a path
changed (so a file written by the sync itself produces no new event: echo
suppression), and the writer checks it before replacing a file, so a local
edit that was not scanned yet is never overwritten silently. Persisted to
``.p2p/local.json`` (atomically) so the start-up scan does not rehash
unchanged files.
"""

from __future__ import annotations

import os
import stat as statmod
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, Iterator, Optional

import ujson


@dataclass(frozen=True)
class Entry:
    kind: str          # "file" or "dir"
    size: int
    mtime: int         # ns
    ino: int
    mode: int          # permission bits
    hash: str          # sha256 hex for files, "" for dirs
    event_id: str      # the event whose content this is ("" if none yet)

    def same_stat(self, st: os.stat_result) -> bool:
        """True when ``st`` shows the path unchanged since this entry."""
        if self.kind == "dir":
            return statmod.S_ISDIR(st.st_mode)
        return (statmod.S_ISREG(st.st_mode) and st.st_size == self.size
                and st.st_mtime_ns == self.mtime and st.st_ino == self.ino)

    @classmethod
    def from_stat(cls, st: os.stat_result, hash: str, event_id: str) -> "Entry":
        kind = "dir" if statmod.S_ISDIR(st.st_mode) else "file"
        return cls(kind, st.st_size if kind == "file" else 0, st.st_mtime_ns,
                   st.st_ino, statmod.S_IMODE(st.st_mode), hash, event_id)


class LocalState:
    """path -> Entry, saved to a JSON file on ``save()``."""

    def __init__(self, file: Path):
        self.file = file
        self._entries: Dict[str, Entry] = {}
        self._by_hash: Dict[str, set] = {}   # file content hash -> paths (to detect moves)
        self.dirty = False
        if file.exists():
            try:
                data = ujson.loads(file.read_text(encoding="utf-8"))
                self._entries = {p: Entry(**e) for p, e in data.items()}
            except (ValueError, TypeError):
                self._entries = {}  # a cache: rebuilt by the start-up scan
        for path, entry in self._entries.items():
            self._index(path, entry)

    def get(self, path: str) -> Optional[Entry]:
        return self._entries.get(path)

    def set(self, path: str, entry: Entry) -> None:
        self._unindex(path, self._entries.get(path))
        self._entries[path] = entry
        self._index(path, entry)
        self.dirty = True

    def pop(self, path: str) -> Optional[Entry]:
        self.dirty = True
        entry = self._entries.pop(path, None)
        self._unindex(path, entry)
        return entry

    def with_hash(self, digest: str) -> list:
        """The files recorded with this content."""
        return sorted(self._by_hash.get(digest, ()))

    def _index(self, path: str, entry: Entry) -> None:
        if entry.kind == "file":
            self._by_hash.setdefault(entry.hash, set()).add(path)

    def _unindex(self, path: str, entry: Optional[Entry]) -> None:
        if entry is not None and entry.kind == "file":
            paths = self._by_hash.get(entry.hash)
            if paths is not None:
                paths.discard(path)
                if not paths:
                    del self._by_hash[entry.hash]

    def paths(self) -> Iterator[str]:
        return iter(list(self._entries))

    def under(self, prefix: str) -> Iterator[str]:
        """Paths strictly inside directory ``prefix`` ("" is the whole folder)."""
        start = prefix + "/" if prefix else ""
        return (p for p in list(self._entries) if p.startswith(start) and p != prefix)

    def __len__(self) -> int:
        return len(self._entries)

    def save(self) -> None:
        if not self.dirty:
            return
        tmp = self.file.with_name(self.file.name + ".tmp")
        tmp.write_text(ujson.dumps({p: asdict(e) for p, e in self._entries.items()}), encoding="utf-8")
        os.replace(tmp, self.file)
        self.dirty = False
