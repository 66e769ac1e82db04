"""One query over many keys, in as many statements as SQLite's bound on
parameters allows (pure: the caller's connection, no I/O of its own)."""

from __future__ import annotations

import sqlite3
from typing import Iterator, Sequence

from p2p.limits import IN_CHUNK


def rows_in(db: sqlite3.Connection, query: str, keys: Sequence, *args) -> Iterator[tuple]:
    """The rows of ``query`` (which has one ``IN ({})``) for every key of
    ``keys``, ``IN_CHUNK`` keys a statement; ``args`` are bound after the keys."""
    for start in range(0, len(keys), IN_CHUNK):
        chunk = list(keys[start:start + IN_CHUNK])
        yield from db.execute(query.format(",".join("?" * len(chunk))), chunk + list(args))
