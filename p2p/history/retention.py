"""How much of the history's content the block store keeps: which blocks a
prune must spare, and the default bound on the store's size.

Pure: the moment is passed in. The node prunes (``BlockStore.prune``) with
the blocks of the current folder always kept; with ``--keep-days D`` it also
keeps every version that was current at some time in the last D days, i.e.
the versions that a change made in that window replaced, however long ago
their content was first stored.
"""

from __future__ import annotations

from typing import Callable, Iterable, Set

from p2p import limits
from p2p.history.event import Event


def default_bound(folder_bytes: int) -> int:
    """The store's size bound when ``--keep-bytes`` is not given: the current
    versions (at most the folder's own size) plus as much again of old
    versions, and at least ``limits.KEEP_OLD_MIN`` of them, so a small folder
    keeps a useful history too."""
    return folder_bytes + max(folder_bytes, limits.KEEP_OLD_MIN)


def replaced_since(events: Callable[[], Iterable[Event]], since: float) -> Set[str]:
    """The blocks of the versions that events made at ``since`` or later
    replaced (their parents): those versions were current within the window.
    ``events()`` gives the history in any order; it is read twice (the
    parents first, then their blocks), so nothing but the window's parent ids
    is held in memory."""
    parents = {parent for event in events() if event.time >= since for parent in event.parents}
    return {h for event in events() if event.id in parents for h, _ in event.blocks}
