"""What the losing versions' conflict copies are called, and which paths are copies.

Pure: no I/O, no clock. Every peer names the same conflict copies for the
same losers (docs/CONFLICTS.md); which version wins is
``p2p.history.precedence``.
"""

from __future__ import annotations

import posixpath
import re
from datetime import datetime, timedelta, timezone
from typing import Optional

from p2p.history.event import Event
from p2p.history.paths import MAX_SEGMENT_BYTES

CONFLICT_MARK = ".sync-conflict-"
PEER_CHARS = 7
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_CONFLICT_COPY = re.compile(r"(.*)" + re.escape(CONFLICT_MARK) + r"\d{8}-\d{6}-[A-Z2-7]{%d}(.*)\Z" % PEER_CHARS, re.S)


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
