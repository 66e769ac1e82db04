"""What to do about one path, given its heads and what is on the local disk.

Pure functions of the event set and the local record (no I/O, no clock), used
by the node and by the convergence simulation alike:

- ``local_parents``: which events a local change supersedes — what the user
  saw on disk. If the disk held the current winner, the change supersedes
  every head; if it held an older version, only that one, so a newer remote
  version stays concurrent and the conflict rules keep both.
- ``conflict_copies``: the copies this peer must write. Only the origin of a
  losing version writes its copy (it has the content), so every peer ends with
  the same copy, made once, and it syncs as an ordinary new file.
- ``folder_action``: bring the disk to the winning version.
- ``paths_to_recheck``: what to reconcile again after paths changed on disk.
"""

from __future__ import annotations

import posixpath
from typing import Iterable, List, Optional, Sequence, Set, Tuple

from p2p.history.precedence import winner
from p2p.sync.conflicts import conflict_name

# folder actions
NOTHING = "nothing"
REMOVE = "remove"        # delete the file, or the directory once it is empty
MAKE_DIR = "make_dir"
FETCH = "fetch"          # get the winner's blocks and write the file
REPLACE = "replace"      # a file is where the winner is a directory, or the reverse:
                         # remove it (once its content is safe), then make_dir / fetch
RELABEL = "relabel"      # the disk already has the content: record the winner's id
METADATA = "metadata"    # the disk has the content, with other permissions or mtime: apply the
                         # winner's (a chmod- or touch-only change moves no content)


def local_parents(on_disk_event: Optional[str], known_on_disk: bool, heads: Sequence) -> List[str]:
    """Parents of a local change at a path with ``heads``.

    ``known_on_disk``: the local record had this path; ``on_disk_event``: the
    id of the event whose content it held ("" or None if none).
    """
    current = winner(heads)
    all_heads = [h.id for h in heads]
    if not known_on_disk:
        if current is None or current.is_delete:
            return all_heads
        return [h.id for h in heads if h.is_delete]  # a new local file beside an unseen remote one
    if not on_disk_event or current is None or on_disk_event == current.id:
        return all_heads
    return [on_disk_event]


def conflict_copies(path: str, heads: Sequence, me: str) -> List[Tuple[str, object]]:
    """(copy path, losing event) for each losing version of ours with other content."""
    if len(heads) < 2:
        return []
    best = winner(heads)
    return [(conflict_name(path, loser), loser) for loser in heads
            if loser is not best and loser.origin == me and not loser.is_delete
            and loser.kind == "file" and loser.hash != best.hash]


def folder_action(target, on_disk_kind: Optional[str], on_disk_hash: str, on_disk_event: str,
                  on_disk_meta: Optional[Tuple[int, int]] = None) -> str:
    """The action that makes the disk hold ``target`` (the winner, or None).

    ``on_disk_meta``: the file's (permission bits, mtime in ns), when known.
    """
    if target is None or target.is_delete:
        return REMOVE if on_disk_kind is not None else NOTHING
    if target.kind == "dir":
        if on_disk_kind == "dir" and on_disk_event == target.id:
            return NOTHING
        return REPLACE if on_disk_kind == "file" else MAKE_DIR
    if target.kind != "file":
        return NOTHING  # symbolic links are not synced (docs/SECURITY.md)
    if on_disk_kind == "dir":
        return REPLACE
    if on_disk_kind == "file" and on_disk_hash == target.hash:
        if on_disk_event == target.id:
            return NOTHING
        if on_disk_meta is not None and on_disk_meta != (target.mode & 0o777 or on_disk_meta[0], target.mtime):
            return METADATA
        return RELABEL
    return FETCH


def paths_to_recheck(paths: Iterable[str]) -> Set[str]:
    """The paths to reconcile again after ``paths`` changed on disk: each path and its parent.

    After a scan the disk may still differ from the winner (a remote write met a
    local change, and the rescan found nothing to record: the version was never
    written); and a directory that a write re-created for a child, while its
    own history says deleted, must go once that child is gone (the parent).
    """
    out = set()
    for path in paths:
        if path:
            out.add(path)
            parent = posixpath.dirname(path)
            if parent:
                out.add(parent)
    return out
