"""``p2p log [PATH] [--json] [--limit N]``: the history, newest first, like ``git log --oneline``.

One aligned line per change, in time order (the origin's wall clock, local
time; equal times in log order), newest first:

    2026-11-25 12:01:03  ABCDEFG:12  update  1.2 KiB  3fa4c1d2  docs/a.txt

(time, the event's id in its short form ORIGIN[:7]:SEQ, which ``p2p restore
--at`` accepts, type, size, hash[:8], path). A rename is one line, ``rename
old -> new``, for its create half; its delete half is not printed (``--json``
prints every event, canonical, one per line, in the same order).

PATH is a file or directory of the folder, matched with everything under it
and renames from or to it. It is taken as a file-system path when it is
absolute, or when, taken relative to the current directory, it lies inside
the folder (``--root``, default HOME/shared), e.g. ``shared/docs/a.txt`` from
the home; otherwise as a path inside the folder (``docs/a.txt``).

Read-only, beside a running node. Time order needs the whole log: one pass
keeps only (time, offset) of the matching events, then the lines shown are
read again by offset and validated (a corrupt line is skipped and said).
"""

from __future__ import annotations

import heapq
import os
import sys
import unicodedata
from datetime import datetime
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

import ujson

from p2p.commands.home import no_history
from p2p.history.event import Event, InvalidEvent
from p2p.history.log import EventLog
from p2p.security.identity import SHORT_ID_LENGTH
from p2p.units import human_size

TYPE_WIDTH = len("rename")


class PathOutside(ValueError):
    """A file-system path given to ``p2p log`` that is not inside the folder."""


def matches(paths, prefix: str) -> bool:
    """True if one of an event's ``paths`` (path, moved_from, moved_to) is
    ``prefix`` or inside it ("" matches everything)."""
    return not prefix or any(isinstance(p, str) and (p == prefix or p.startswith(prefix + "/")) for p in paths)


def short_id(event: Event) -> str:
    return f"{event.origin[:SHORT_ID_LENGTH]}:{event.seq}"


def columns(event: Event) -> Tuple[str, str, str, str, str, str]:
    """(time, short id, type, size, hash, path) of one event, as printed."""
    when = datetime.fromtimestamp(event.time).strftime("%Y-%m-%d %H:%M:%S")
    kind, path, size, digest = event.type, event.path, human_size(event.size), event.hash[:8]
    if event.moved_from is not None:
        kind, path = "rename", f"{event.moved_from} -> {event.path}"
    if event.kind == "dir":
        path, size, digest = path + "/", "-", "-"
    elif event.kind == "symlink" and event.target is not None:
        path = f"{path} -> {event.target}"
    if event.is_delete:
        size = digest = "-"
    return when, short_id(event), kind, size, digest, path


def format_lines(events: List[Event]) -> List[str]:
    """The events as aligned lines: each column as wide as its widest value."""
    rows = [columns(event) for event in events]
    id_width = max((len(row[1]) for row in rows), default=0)
    size_width = max((len(row[3]) for row in rows), default=0)
    return [f"{when}  {ident:<{id_width}}  {kind:<{TYPE_WIDTH}}  {size:>{size_width}}  {digest:<8}  {path}"
            for when, ident, kind, size, digest, path in rows]


def folder_path(text: str, root: str, cwd: str) -> str:
    """The folder-relative path that ``text`` names (see the module docstring)."""
    text = text.strip()
    inside = _inside(os.path.join(cwd, text), root) if text else None  # join: an absolute text stays as is
    if os.path.isabs(text) and inside is None:
        raise PathOutside(f"{text} is not inside the folder {os.path.abspath(root)}")
    if inside is not None:
        text = inside
    text = text.rstrip("/")
    while text.startswith("./"):
        text = text[2:]
    return "" if text == "." else unicodedata.normalize("NFC", text)


def _inside(path: str, root: str) -> Optional[str]:
    """``path`` relative to ``root`` ("." for the root itself), or None if outside
    it; compared as written, then with symbolic links resolved."""
    for resolve in (os.path.abspath, os.path.realpath):
        rel = os.path.relpath(resolve(path), resolve(root))
        if rel != ".." and not rel.startswith("../"):
            return rel
    return None


def _select(log: EventLog, prefix: str, every: bool) -> Iterator[Tuple[float, int]]:
    """(time, offset) of the events to show. Only the fields needed are parsed
    here (a full parse of every line would be several times slower); the lines
    shown are validated when read. ``every`` (--json) keeps both halves of a
    rename; otherwise its create half ("rename a -> b") stands for the pair."""
    for offset, line in log.iter_lines():
        try:
            fields = ujson.loads(line)
            when, paths = float(fields["time"]), (fields["path"], fields.get("moved_from"), fields.get("moved_to"))
        except (ValueError, TypeError, KeyError) as exc:
            _corrupt(offset, exc)
            continue
        if (every or paths[2] is None) and matches(paths, prefix):
            yield when, offset


def _corrupt(offset: int, exc: Exception) -> None:
    print(f"p2p log: events.jsonl: skipping a corrupt line at byte {offset}: {exc}", file=sys.stderr)


def _read(log: EventLog, offset: int) -> Optional[Event]:
    try:
        return log.read_at(offset)
    except InvalidEvent as exc:
        _corrupt(offset, exc)
        return None


def run(args) -> int:
    missing = no_history(args.home)
    if missing:
        print(f"p2p log: {missing}", file=sys.stderr)
        return 1
    try:
        prefix = folder_path(args.path or "", args.root, os.getcwd())
    except PathOutside as exc:
        print(f"p2p log: {exc}", file=sys.stderr)
        return 1
    if args.limit is not None and args.limit <= 0:
        return 0
    log = EventLog(Path(args.home) / "events.jsonl", read_only=True)
    try:
        found = list(_select(log, prefix, args.json))
        if args.limit is None:
            found.sort(reverse=True)
        else:
            found = heapq.nlargest(args.limit, found)
        events = [event for event in (_read(log, offset) for _, offset in found) if event is not None]
    finally:
        log.close()
    if not events:
        what = f"{prefix} (in the folder {os.path.abspath(args.root)})" if prefix else "the folder"
        print(f"p2p log: no event in the history concerns {what}", file=sys.stderr)
        return 1
    for line in ([event.to_json() for event in events] if args.json else format_lines(events)):
        print(line)
    return 0
