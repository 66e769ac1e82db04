"""``p2p log [PATH] [--json] [--limit N]``: the history, newest first, like ``git log --oneline``.

Reads events.jsonl backwards (read-only, beside a running node), so the last
few events show at once even in a huge log. One line per change:

    2026-11-25 12:01:03  ABCDEFG  update  docs/a.txt  1.2 KiB  3fa4c1d2

(local time, origin[:7], type, path, size, hash[:8]). A rename is one line,
``rename old -> new``, for its create half; its delete half is not printed
(``--json`` prints every event, canonical, one per line). PATH matches that
path and everything under it, and renames from it.
"""

from __future__ import annotations

import sys
import unicodedata
from datetime import datetime
from pathlib import Path
from typing import Iterator, Optional

from p2p.history.event import Event
from p2p.history.log import EventLog
from p2p.units import human_size

def matches(event: Event, prefix: Optional[str]) -> bool:
    """True if ``event`` concerns ``prefix`` (a path, or a directory and what is inside it)."""
    if not prefix:
        return True
    return any(p is not None and (p == prefix or p.startswith(prefix + "/"))
               for p in (event.path, event.moved_from, event.moved_to))


def format_line(event: Event) -> str:
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
    return f"{when}  {event.origin[:7]}  {kind:<6}  {path}  {size}  {digest}"


def select(events: Iterator[Event], prefix: Optional[str], as_json: bool) -> Iterator[Event]:
    for event in events:
        if not as_json and event.moved_to is not None:
            continue  # the create half ("rename a -> b") stands for the pair
        if matches(event, prefix):
            yield event


def run(args) -> int:
    path = Path(args.home) / "events.jsonl"
    if not path.exists():
        print(f"p2p log: no history yet in {args.home}", file=sys.stderr)
        return 0
    prefix = (args.path or "").strip().rstrip("/")
    while prefix.startswith("./"):
        prefix = prefix[2:]
    prefix = "" if prefix == "." else unicodedata.normalize("NFC", prefix)
    if args.limit is not None and args.limit <= 0:
        return 0
    log = EventLog(path, read_only=True)
    try:
        shown = 0
        for event in select((event for _, event in log.iter_reverse()), prefix, args.json):
            print(event.to_json() if args.json else format_line(event))
            shown += 1
            if args.limit is not None and shown >= args.limit:
                break
    finally:
        log.close()
    return 0
