"""Whether a peer is in sync, and if not what is missing, in words (pure).

The node gathers the facts (``Node.status``); this turns them into the short
sentences `p2p status` prints and ``--json`` carries, so the rule "in sync"
is written once: nothing pending, failed or not synced here, and every
connected peer has what we have.
"""

from __future__ import annotations

from typing import Optional

from p2p.folder.marker import MARKER
from p2p.history.paths import shown
from p2p.units import human_size


def _plural(n: int, word: str, words: str = "") -> str:
    return f"{n} {word if n == 1 else words or word + 's'}"


def describe_lack(lacks: Optional[dict]) -> str:
    """What a peer lacks, in words ("" if nothing): "3 files (12.0 MiB), 1 deletion"."""
    if lacks is None:
        return "unknown yet"
    receiving = lacks.get("receiving") or {"files": 0, "bytes": 0}
    if lacks["files"] is None:
        return _plural(lacks["events"] + receiving["files"], "change")
    parts = []
    files, size = lacks["files"] + receiving["files"], lacks["bytes"] + receiving["bytes"]
    if files:
        parts.append(f"{_plural(files, 'file')} ({human_size(size)})")
    if lacks["dirs"]:
        parts.append(_plural(lacks["dirs"], "directory", "directories"))
    if lacks["deletes"]:
        parts.append(_plural(lacks["deletes"], "deletion"))
    return ", ".join(parts)


def what_is_missing(*, paused, scanning, local, held, transfers, waiting, not_synced, checking, peers) -> list:
    """Why the folder is not in sync, one short sentence each ([] = in sync):
    in sync means nothing pending, failed or not synced here, and every
    connected peer has what we have."""
    missing = []
    if paused:
        missing.append(f"syncing is paused: the folder or its {MARKER} marker is missing")
    if scanning:
        missing.append("scanning the folder")
    if local:
        missing.append(f"{_plural(local, 'local change')} not recorded yet")
    if held:
        missing.append(f"{_plural(held, 'event')} waiting for the events before them")
    if transfers["files"]:
        left = transfers["bytes"] - transfers["done"]
        missing.append(f"receiving {_plural(transfers['files'], 'file')} ({human_size(left)} left)")
    if waiting:
        more = f" and {_plural(len(waiting) - 1, 'other file')}" if len(waiting) > 1 else ""
        missing.append(f"waiting for a peer that has {shown(waiting[0])}{more}")
    if not_synced:
        missing.append(f"{_plural(not_synced, 'path')} not synced: see below")
    if checking:
        missing.append(f"{_plural(checking, 'path')} to check")
    if not peers:
        missing.append("no peer connected")
    for label, lacks in peers:
        lacking = describe_lack(lacks)
        if lacks is None:
            missing.append(f"waiting for {label} to say what it has")
        elif lacking:
            missing.append(f"{label} lacks {lacking}")
    return missing


def describe_paused(paused: dict) -> str:
    """What is paused, in one line (also used by `p2p status`)."""
    parts = []
    if paused.get("folder"):
        parts.append("the folder (no local change recorded, nothing written)")
    parts += [f"peer {device_id[:7]}" for device_id in paused.get("peers", ())]
    return "paused: " + ", ".join(parts) if parts else "nothing is paused"
