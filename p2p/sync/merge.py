"""Which version of a path wins, and what the losers' conflict copies are called.

Pure: no I/O, no clock. Every peer evaluates the same function over the same
heads, so every peer picks the same winner and names the same conflict copies.
First version of the rule (docs/CONFLICTS.md, issue 5, refines it).
"""

from __future__ import annotations

import posixpath
import re
from datetime import datetime, timedelta, timezone
from typing import Dict, Iterable, Optional, Tuple

from p2p.history.event import Event
from p2p.history.paths import MAX_SEGMENT_BYTES

CONFLICT_MARK = ".sync-conflict-"
PEER_CHARS = 7
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_CONFLICT_COPY = re.compile(r"(.*)" + re.escape(CONFLICT_MARK) + r"\d{8}-\d{6}-[A-Z2-7]{%d}(.*)\Z" % PEER_CHARS, re.S)


def precedence(event: Event):
    """Sort key: the largest key wins. An edit beats a delete (nothing is lost);
    a directory beats a file made concurrently at the same path (the directory
    may hold other files; the file is kept as a conflict copy); then the later
    Lamport clock, the later mtime, the larger origin; the id breaks any
    remaining tie so the order is total."""
    return (not event.is_delete, event.kind == "dir", event.lamport, event.mtime, event.origin, event.seq)


def winner(heads: Iterable[Event]) -> Optional[Event]:
    """The winning head among concurrent heads (None when there are none)."""
    return max(heads, key=precedence, default=None)


def why_wins(best: Event, loser: Event) -> str:
    """Why ``best`` precedes ``loser``, in words: the first key of
    ``precedence`` that tells them apart."""
    if best.is_delete != loser.is_delete:
        return "an edit beats a delete"
    if (best.kind == "dir") != (loser.kind == "dir"):
        return "a directory beats a file"
    if best.lamport != loser.lamport:
        return f"the later change: Lamport clock {best.lamport} > {loser.lamport}"
    if best.mtime != loser.mtime:
        return "same Lamport clock, the later modification time"
    if best.origin != loser.origin:
        return "same clock and modification time: the larger device id"
    return "the later event of the same device"


def live_tree(heads_by_path: Iterable[Tuple[str, Iterable[Event]]]) -> Dict[str, Event]:
    """path -> winning event, for every path whose winner is not a delete."""
    tree = {}
    for path, heads in heads_by_path:
        best = winner(heads)
        if best is not None and not best.is_delete:
            tree[path] = best
    return tree


def conflict_name(path: str, loser: Event) -> str:
    """``dir/NAME.sync-conflict-YYYYMMDD-HHMMSS-PEER.EXT`` for the losing version.

    The time is the loser's mtime in UTC, PEER the first 7 characters of its
    origin; the last extension is kept (``a.tar.gz`` -> ``a.tar.sync-conflict-...gz``)
    and a dotfile's leading dot is not an extension (``.bashrc.sync-conflict-...``).
    """
    folder, name = posixpath.split(path)
    stem, ext = posixpath.splitext(name)  # splitext leaves ".bashrc" whole
    mark = f"{CONFLICT_MARK}{_utc_stamp(loser.mtime)}-{loser.origin[:PEER_CHARS]}"
    room = MAX_SEGMENT_BYTES - len(mark) - 1  # keep at least one byte of the stem
    ext = _clip(ext, room)
    stem = _clip(stem, MAX_SEGMENT_BYTES - len(mark) - len(ext.encode("utf-8")))
    renamed = f"{stem}{mark}{ext}"
    return posixpath.join(folder, renamed) if folder else renamed


def conflict_original(path: str) -> Optional[str]:
    """The path a conflict copy (``conflict_name``) was made beside, or None
    if ``path`` is not a conflict copy. A stem that ``conflict_name`` clipped
    to fit a long name gives the clipped original."""
    folder, name = posixpath.split(path)
    match = _CONFLICT_COPY.match(name)
    if match is None or not match.group(1):
        return None
    original = match.group(1) + match.group(2)
    return posixpath.join(folder, original) if folder else original


def _utc_stamp(mtime_ns: int) -> str:
    try:
        moment = EPOCH + timedelta(microseconds=mtime_ns // 1000)
    except OverflowError:
        moment = EPOCH
    return moment.strftime("%Y%m%d-%H%M%S")


def _clip(text: str, max_bytes: int) -> str:
    """``text`` cut to at most ``max_bytes`` UTF-8 bytes, on a character boundary."""
    return text.encode("utf-8")[:max(max_bytes, 0)].decode("utf-8", "ignore")
