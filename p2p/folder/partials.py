"""Large transfers that did not finish, kept so they resume instead of
starting again.

A file larger than ``limits.RESUME_MIN`` is assembled in a temporary file
beside its destination whose name is derived from the path and the event id
(``.p2p-tmp-`` + 16 hex digits), and listed in ``.p2p/partials.json``. If the
transfer stops (no peer has the rest, a crash, a kill -9), the temporary file
stays; the next attempt at the same version reopens it, re-verifies each
block it holds against its hash, and fetches only the others. At start, the
listed temporaries whose version is still the one wanted are kept; every
other temporary file p2p made is removed. Blocking file I/O: small, rare
writes (one per large transfer).
"""

from __future__ import annotations

import hashlib
import logging
import os
import posixpath
import secrets
from pathlib import Path
from typing import Callable, Dict, List, Optional, Set, Tuple

import ujson

from p2p.history.paths import TEMP_PREFIX, TEMP_TOKEN_HEX
from p2p.security.private import create_private

log = logging.getLogger("p2p.fetch")


def resumable_name(path: str, event_id: str) -> str:
    """The temporary file (relative to the folder) that assembles this version of ``path``."""
    digest = hashlib.sha256(f"{path}\0{event_id}".encode("utf-8", "surrogatepass")).hexdigest()
    return posixpath.join(posixpath.dirname(path), TEMP_PREFIX + digest[:TEMP_TOKEN_HEX])


class Partials:
    """temporary file -> (path, event id) of the unfinished large transfers."""

    def __init__(self, file: Path):
        self.file = Path(file)
        self._items: Dict[str, Dict[str, str]] = {}
        try:
            data = ujson.loads(self.file.read_text(encoding="utf-8"))
            self._items = {t: {"path": v["path"], "event": v["event"]} for t, v in data.items()}
        except FileNotFoundError:
            pass
        except (ValueError, TypeError, KeyError, AttributeError, OSError) as exc:
            log.warning("%s unreadable (%s): interrupted transfers start again", self.file.name, exc)

    def begin(self, path: str, event_id: str) -> Tuple[str, List[str]]:
        """Register (durably) the temporary file for this version: its name, and
        those of older versions of the same path, now abandoned (to remove)."""
        temp = resumable_name(path, event_id)
        stale = [t for t, v in self._items.items() if v["path"] == path and t != temp]
        if stale or self._items.get(temp) != {"path": path, "event": event_id}:
            for t in stale:
                del self._items[t]
            self._items[temp] = {"path": path, "event": event_id}
            self._save()
        return temp, stale

    def end(self, temp: str) -> None:
        """The transfer finished or was abandoned (its file renamed or removed)."""
        if self._items.pop(temp, None) is not None:
            self._save()

    def to_keep(self, current: Callable[[str], Optional[str]]) -> Set[str]:
        """At start: the temporaries of versions still wanted (``current(path)``
        gives the id of the version wanted at a path); the others are forgotten."""
        keep = {t for t, v in self._items.items() if current(v["path"]) == v["event"]}
        if len(keep) != len(self._items):
            self._items = {t: v for t, v in self._items.items() if t in keep}
            self._save()
        return keep

    def __len__(self) -> int:
        return len(self._items)

    def _save(self) -> None:
        tmp = self.file.with_name(f".{self.file.name}.{secrets.token_hex(4)}")
        with os.fdopen(create_private(tmp, os.O_WRONLY | os.O_EXCL), "w", encoding="utf-8") as out:
            out.write(ujson.dumps(self._items, ensure_ascii=False))
        os.replace(tmp, self.file)
