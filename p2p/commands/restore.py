"""``p2p restore``: rebuild the folder as it was at a moment, or bring one path back.

``p2p restore --at WHEN --to DIR`` writes every file, directory and symlink of
that moment into DIR (new or empty), byte for byte, with modes and mtimes,
from the block store (given a PATH too: only that file or subtree). Nothing
is written outside DIR: each parent is looked at on disk as the restore goes
(a symbolic link, even one this restore made, is never written through), and
a restored link whose target, resolved in the tree as written, leaves DIR is
removed again; both are listed as skipped.
``p2p restore PATH --at WHEN`` puts that file (or subtree) back in place in
the folder (with no PATH and no --to: the whole folder, so one command undoes
a mass delete; ``--at now`` is the latest state, for a folder that went
missing), each file atomically (temporary file + rename); files created
since are left alone. It does not append to the history itself (the running
node owns events.jsonl): the node's watcher, or the next start-up scan,
records the restored content as a new change, so the restore is history and
syncs like any edit. Every needed block is checked before anything is
written: a version whose content was pruned is reported, and nothing is
touched. Nothing is written either for a home without history, a moment
before the first event, or a moment when the folder was empty: each is said
in one line (exit 1). The home is only read (``--to`` writes only DIR).
"""

from __future__ import annotations

import os
import secrets
import stat as statmod
import sys
from datetime import datetime
from pathlib import Path
from typing import Iterable, List, Tuple

from p2p.blocks.chunking import hash_file
from p2p.blocks.store import BlockMissing, BlockStore, CorruptBlock
from p2p.commands.home import no_history
from p2p.folder.marker import write_marker
from p2p.units import human_size
from p2p.history.event import Event
from p2p.history.history import History
from p2p.history.paths import TEMP_PREFIX, UnsafePath, check_path
from p2p.history.restore import BadMoment, parse_moment, select, state_at

DEFAULT_FILE_MODE = 0o644
DEFAULT_DIR_MODE = 0o755
RETENTION_HINT = "retention set by `p2p run --keep-bytes/--keep-days`"


class RestoreError(Exception):
    """A restore that cannot be done; the message is for the user."""


def run(args) -> int:
    home = Path(args.home)
    if args.at.strip().lower() == "now":
        args.at = datetime.now().isoformat(timespec="microseconds")
    try:
        missing = no_history(home)
        if missing:
            raise RestoreError(missing)
        history = History.open(home, None, read_only=True)
        try:
            state = state_at(history, args.at)
            if not state:
                raise RestoreError(_why_empty(history, args.at))
        finally:
            history.close()
        store = BlockStore(home / ".p2p" / "blocks", create=False)
        if args.to:
            chosen = dict(select(state, _user_path(args.path))) if args.path else state
            if args.path and not chosen:
                raise RestoreError(f"{args.path} did not exist as of {args.at}")
            summary = restore_tree(chosen, store, Path(args.to), args.at)
        else:
            path = _user_path(args.path) if args.path is not None else ""
            summary = restore_in_place(state, store, Path(args.root), path, args.at)
    except (RestoreError, BadMoment) as exc:
        print(f"p2p restore: {exc}", file=sys.stderr)
        return 1
    print(summary)
    return 0


def _why_empty(history: History, at: str) -> str:
    """Why the folder held nothing at ``at``: before the first event, or all deleted by then."""
    first, moment = min((event.time for event in history.events()), default=None), parse_moment(at)
    if first is None:
        return f"nothing to restore: no readable event in {history.home / 'events.jsonl'}"
    if isinstance(moment, float) and moment < first:
        when = datetime.fromtimestamp(first).isoformat(sep=" ", timespec="seconds")
        return f"nothing to restore as of {at}: that is before the history starts ({when})"
    return f"nothing to restore as of {at}: the folder was empty then (everything in it had been deleted)"


def _user_path(text: str) -> str:
    cleaned = text.strip().rstrip("/")
    while cleaned.startswith("./"):
        cleaned = cleaned[2:]
    try:
        return check_path(cleaned)
    except UnsafePath as exc:
        raise RestoreError(f"cannot restore {text!r}: {exc}") from None


def _check_content(entries: Iterable[Tuple[str, Event]], store: BlockStore, at: str) -> None:
    for path, event in entries:
        if event.kind == "file" and store.missing(event.blocks):
            raise RestoreError(f"cannot restore {path} as of {at}: its content was pruned from the block store "
                               f"({RETENTION_HINT})")


def _write_file(store: BlockStore, path: str, event: Event, dest: Path, at: str, keep_mtime: bool) -> None:
    try:
        store.write_file(event.blocks, event.hash, dest, mode=event.mode or DEFAULT_FILE_MODE,
                         mtime_ns=event.mtime if keep_mtime else None)
    except (BlockMissing, CorruptBlock) as exc:
        raise RestoreError(f"cannot restore {path} as of {at}: {exc} ({RETENTION_HINT})") from None


def _symlink(target: str, dest: Path) -> None:
    """Create (or atomically replace) a symlink."""
    temp = dest.with_name(f"{TEMP_PREFIX}{secrets.token_hex(8)}")
    os.symlink(target, temp)
    os.replace(temp, dest)


def restore_tree(state, store: BlockStore, dest: Path, at: str) -> str:
    """Write the whole folder of ``state`` into ``dest`` (new or empty)."""
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise RestoreError(f"{dest} must be an empty directory or not exist")
    entries = sorted(state.items())
    _check_content(entries, store, at)
    dest.mkdir(parents=True, exist_ok=True)
    counts = {"file": 0, "dir": 0, "symlink": 0}
    total_bytes = 0
    skipped: List[str] = []
    made_dirs: List[str] = []
    links: List[str] = []
    for path, event in entries:
        target = dest / path
        try:
            _real_parent(dest, path)
            if event.kind == "dir":
                os.mkdir(target)
            elif event.kind == "symlink":
                _symlink(event.target, target)
                os.utime(target, ns=(event.mtime, event.mtime), follow_symlinks=False)
            else:
                _write_file(store, path, event, target, at, keep_mtime=True)
                total_bytes += event.size
        except ThroughLink as exc:
            skipped.append(f"{path} ({exc})")
            continue
        except OSError as exc:  # e.g. a file where concurrent events put a directory
            skipped.append(f"{path} ({exc.strerror or exc})")
            continue
        counts[event.kind] += 1
        if event.kind == "dir":
            made_dirs.append(path)
        elif event.kind == "symlink":
            links.append(path)
    for path in _links_leaving(dest, links):   # resolved against the tree as written
        os.unlink(dest / path)
        counts["symlink"] -= 1
        skipped.append(f"{path} (its target leaves {dest} once resolved)")
    for path in reversed(made_dirs):  # directories last, deepest first: writing inside changed their mtime
        event = state[path]
        os.chmod(dest / path, event.mode or DEFAULT_DIR_MODE)
        os.utime(dest / path, ns=(event.mtime, event.mtime))
    summary = (f"restored {counts['file']} files ({human_size(total_bytes)}), {counts['dir']} directories, "
               f"{counts['symlink']} symlinks as of {at} into {dest}")
    if skipped:
        summary += f"; skipped {len(skipped)}: " + ", ".join(skipped)
    return summary


class ThroughLink(OSError):
    """Writing the path would go through a symbolic link (or a file) already in the tree."""


def _real_parent(top: Path, rel: str) -> None:
    """Make the parent directories of ``rel`` under ``top``, looking at each
    one on disk as it is now (``lstat``): a component that is a symbolic link
    or not a directory is refused, so no write goes through a link that an
    earlier entry of the same restore created (``a -> .`` then ``a/b -> ..``).
    Never lexical: links are judged by what they are, not by their text."""
    current = top
    for part in rel.split("/")[:-1]:
        current = current / part
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            os.mkdir(current)
            continue
        if statmod.S_ISLNK(st.st_mode):
            raise ThroughLink(f"{current.relative_to(top)} is a symbolic link")
        if not statmod.S_ISDIR(st.st_mode):
            raise ThroughLink(f"{current.relative_to(top)} is not a directory")


def _links_leaving(top: Path, links: List[str]) -> List[str]:
    """The restored symlinks whose target, resolved in the tree as written
    (links through links included), is outside ``top``."""
    real_top = os.path.realpath(top)
    leaving = []
    for path in links:
        resolved = os.path.realpath(top / path)
        if resolved != real_top and not resolved.startswith(real_top + os.sep):
            leaving.append(path)
    return leaving


def restore_in_place(state, store: BlockStore, root: Path, path: str, at: str) -> str:
    """Bring ``path`` (a file, a subtree, or "" for the whole folder) back in
    ``root`` as it was in ``state``. Restoring the whole folder also marks it
    as the synced folder (``p2p.folder.marker``): it is the one to sync."""
    entries = select(state, path)
    if not entries:
        raise RestoreError(f"{path or 'the folder'} was empty as of {at}" if not path
                           else f"{path} did not exist as of {at}")
    _check_content(entries, store, at)
    root.mkdir(parents=True, exist_ok=True)
    if not path:
        write_marker(root)
    written = 0
    for rel, event in entries:
        target = root / rel
        _refuse_symlinked_parents(root, rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        current = _lstat(target)
        if event.kind == "dir":
            if current is None:
                target.mkdir(mode=event.mode or DEFAULT_DIR_MODE)
                written += 1
            elif not statmod.S_ISDIR(current.st_mode):
                raise RestoreError(f"cannot restore directory {rel}: something else is in the way")
            continue
        if current is not None and statmod.S_ISDIR(current.st_mode):
            raise RestoreError(f"cannot restore {rel}: a directory is in the way")
        if event.kind == "symlink":
            if current is not None and statmod.S_ISLNK(current.st_mode) and os.readlink(target) == event.target:
                continue  # already identical
            _symlink(event.target, target)
        else:
            if current is not None and statmod.S_ISREG(current.st_mode) and current.st_size == event.size \
                    and hash_file(target)[1] == event.hash:
                continue  # already identical
            _write_file(store, rel, event, target, at, keep_mtime=False)
        written += 1
    name = path or f"the folder {root}"
    if not written:
        return f"{name} is already as it was at {at}: nothing to restore"
    detail = "" if len(entries) == 1 else f" ({written} of {len(entries)} entries written, the rest already identical)"
    return (f"restored {name} as of {at}{detail}. The running peer records this as new changes "
            f"and syncs them (or at its next start); files created since were left in place.")


def _refuse_symlinked_parents(root: Path, rel: str) -> None:
    current = root
    for part in rel.split("/")[:-1]:
        current = current / part
        if current.is_symlink():
            raise RestoreError(f"cannot restore {rel}: {current} is a symbolic link")


def _lstat(path: Path):
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


