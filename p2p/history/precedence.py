"""Which of the concurrent versions (heads) of a path wins.

Pure: no I/O, no clock. Every peer evaluates the same function over the same
heads, so every peer picks the same current version (docs/CONFLICTS.md). It
lives with the events because the history needs it to say what is current;
what the losers' conflict copies are called is sync's business
(``p2p.sync.conflicts``).
"""

from __future__ import annotations

from typing import Dict, Iterable, Optional, Tuple

from p2p.history.event import Event


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
